package secretscan

func twilioRules() []*Rule {
	return []*Rule{
		{
			ID: RuleTwilioAuthToken, Title: "Twilio auth token of a production account", Provider: "twilio",
			Severity: SeverityCritical, Kind: KindSecret, Env: envContext, prefix: 0,
			Format: "32 hex under a *token*/*auth* key; the account SID next to it (or the block) decides",
			byKey:  &keyRule{secretKey: true, value: mustRe(`^[0-9a-f]{32}$`), paired: true},
			TruePositives: []Example{
				{"twilio.env", "TWILIO_ACCOUNT_SID=AC0123456789abcdef0123456789abcdef\nTWILIO_AUTH_TOKEN=9f8e7d6c5b4a39281706f5e4d3c2b1a0\n"},
			},
			FalsePositives: []Example{
				// a test account's token in a file that also holds the production account
				{"twilio.env", "LIVE_TWILIO_ACCOUNT_SID=AC0123456789abcdef0123456789abcdef\nTEST_TWILIO_ACCOUNT_SID=ACfedcba9876543210fedcba9876543210\nTEST_TWILIO_AUTH_TOKEN=9f8e7d6c5b4a39281706f5e4d3c2b1a0\n"},
				// a test account's token beside a production host
				{"twilio.env", "TWILIO_ACCOUNT_SID=ACfedcba9876543210fedcba9876543210\nTWILIO_AUTH_TOKEN=9f8e7d6c5b4a39281706f5e4d3c2b1a0\nCACHE_HOST=10.20.9.9\n"},
				{"twilio.env", "TWILIO_ACCOUNT_SID=ACfedcba9876543210fedcba9876543210\nTWILIO_AUTH_TOKEN=9f8e7d6c5b4a39281706f5e4d3c2b1a0\n"},
			},
		},
		{
			ID: RuleTwilioSID, Title: "Twilio production account SID", Provider: "twilio",
			Severity: SeverityLow, Kind: KindIdentifier, Env: envIdentity, prefix: 2,
			Format:  "AC + 32 hex, listed as production in the catalog",
			re:      mustRe(`\bAC[0-9a-f]{32}`),
			anchors: []string{"AC"}, detect: (*fileState).twilioSID,
			TruePositives: []Example{
				{"twilio.env", "TWILIO_ACCOUNT_SID=AC0123456789abcdef0123456789abcdef\n"},
			},
			FalsePositives: []Example{
				{"twilio.env", "TWILIO_ACCOUNT_SID=ACfedcba9876543210fedcba9876543210\n"},
			},
		},
	}
}

func (st *fileState) twilioSID(it *item, _ keyClass, r *Rule) bool {
	if len(it.val) < 34 {
		return false
	}
	found := false
	for _, loc := range r.re.FindAllIndex(it.val, -1) {
		if longer(it.val, loc) {
			continue
		}
		found = true
		sid := string(it.val[loc[0]:loc[1]])
		prov, prod := st.d.c.accounts[sid]
		if prod {
			st.report(st.newFinding(r, it, loc[0], loc[1], "Twilio account SID listed as production ("+prov+")"))
			st.addMarker(it.scope, marker{prod: true, provider: "twilio", line: it.line, what: "production Twilio account " + sid[:6] + "…", paired: true, pair: pairPrefix(st.keyBuf)})
		} else if st.d.hasAccounts {
			st.addMarker(it.scope, marker{prod: false, provider: "twilio", line: it.line, what: "non-production Twilio account", paired: true, pair: pairPrefix(st.keyBuf)})
		}
	}
	// A SID is an identifier, never a credential: generic rules may still
	// look at the value only if it is something else.
	return found
}
