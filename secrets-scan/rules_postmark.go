package secretscan

func postmarkRules() []*Rule {
	return []*Rule{
		{
			ID: RulePostmark, Title: "Postmark server token", Provider: "postmark",
			Severity: SeverityHigh, Kind: KindSecret, Env: envAlwaysLive, prefix: 0,
			Format:  "a UUID under a *postmark* key; the test token is the literal POSTMARK_API_TEST",
			message: "Postmark server token", byKey: &keyRule{value: mustRe(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)},
			UnknownPositives: []Example{
				{"mail.env", "POSTMARK_SERVER_TOKEN=6f1c2e9a-4b7d-4c3e-9a8f-2d5b7e1c9f04\n"},
			},
			FalsePositives: []Example{
				{"mail.env", "POSTMARK_SERVER_TOKEN=POSTMARK_API_TEST\n"},
				{"mail.env", "REQUEST_ID=6f1c2e9a-4b7d-4c3e-9a8f-2d5b7e1c9f04\n"},
			},
		},
	}
}
