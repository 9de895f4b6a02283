package secretscan

func jwtRules() []*Rule {
	return []*Rule{
		{
			ID: RuleJWT, Title: "JWT issued by or for production", Provider: "jwt",
			Severity: SeverityHigh, Kind: KindSecret, Env: envIdentity, prefix: 3,
			Format:  "base64url(header).base64url(payload).signature whose iss or aud is a production issuer/audience",
			re:      mustRe(`\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*`),
			anchors: []string{"eyJ"}, detect: (*fileState).jwt,
			TruePositives: []Example{
				// {"alg":"HS256","typ":"JWT"} . {"iss":"https://auth.prod.example.com","sub":"svc"} . sig
				{"client.yaml", "auth:\n  token: eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJodHRwczovL2F1dGgucHJvZC5leGFtcGxlLmNvbSIsInN1YiI6InN2YyJ9.c2lnbmF0dXJlLWJ5dGVzLWhlcmU\n"},
			},
			FalsePositives: []Example{
				// iss https://auth.staging.example.com
				{"client.yaml", "auth:\n  token: eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJodHRwczovL2F1dGguc3RhZ2luZy5leGFtcGxlLmNvbSIsInN1YiI6InN2YyJ9.c2lnbmF0dXJlLWJ5dGVzLWhlcmU\n"},
			},
		},
	}
}

func (st *fileState) jwt(it *item, _ keyClass, r *Rule) bool {
	found := false
	for _, loc := range r.re.FindAllIndex(it.val, -1) {
		iss, aud, ok := jwtClaims(it.val[loc[0]:loc[1]])
		if !ok {
			continue
		}
		found = true
		var why string
		if st.d.c.issuers[iss] {
			why = "JWT issued by production issuer " + iss
		}
		for _, a := range aud {
			if why == "" && st.d.c.audiences[a] {
				why = "JWT for production audience " + a
			}
		}
		if why != "" {
			st.report(st.newFinding(r, it, loc[0], loc[1], why))
		}
	}
	return found
}
