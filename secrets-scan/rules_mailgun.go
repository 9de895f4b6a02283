package secretscan

func mailgunRules() []*Rule {
	return []*Rule{
		{
			ID: RuleMailgun, Title: "Mailgun API key", Provider: "mailgun",
			Severity: SeverityHigh, Kind: KindSecret, Env: envAlwaysLive, prefix: 4,
			Format:  "key-<32 hex> (legacy) or <32 hex>-<8 hex>-<8 hex> under a *mailgun* key; a sandbox domain in the block makes it sandbox",
			re:      mustRe(`\bkey-[0-9a-f]{32}`),
			anchors: []string{"key-"}, message: "Mailgun API key",
			byKey: &keyRule{value: mustRe(`\b[0-9a-f]{32}-[0-9a-f]{8}-[0-9a-f]{8}\b`), find: true},
			UnknownPositives: []Example{
				{"mail.env", "MAILGUN_API_KEY=key-3f9a1c7e5b2d8f4a6c0e9b1d3f5a7c92\n"},
				{"mail.env", "MAILGUN_API_KEY=8f2c9d1e7b4a6035c8e1f9d2a7b3c6e4-5d1f7a3c-9e2b4d6f\n"},
			},
			TruePositives: []Example{
				// Mailgun's live API endpoint in the same block is Mailgun's own evidence.
				{"mail.env", "MAILGUN_API_BASE=https://api.mailgun.net/v3\nMAILGUN_API_KEY=key-3f9a1c7e5b2d8f4a6c0e9b1d3f5a7c92\n"},
			},
			FalsePositives: []Example{
				{"mail.env", "MAILGUN_DOMAIN=sandbox7c1f2a9e.mailgun.org\nMAILGUN_API_KEY=key-3f9a1c7e5b2d8f4a6c0e9b1d3f5a7c92\n"},
			},
		},
	}
}
