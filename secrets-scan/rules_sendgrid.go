package secretscan

func sendgridRules() []*Rule {
	return []*Rule{
		{
			ID: RuleSendGrid, Title: "SendGrid API key", Provider: "sendgrid",
			Severity: SeverityHigh, Kind: KindSecret, Env: envAlwaysLive, prefix: 3,
			Format:  "SG.<22 [A-Za-z0-9_-]>.<43 [A-Za-z0-9_-]>; SendGrid has no test keys",
			re:      mustRe(`\bSG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}`),
			anchors: []string{"SG."}, message: "SendGrid API key (SendGrid has no test keys)",
			UnknownPositives: []Example{
				{"mail.env", "SENDGRID_API_KEY=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\n"},
			},
			FalsePositives: []Example{
				{"mail.env", "ENVIRONMENT=production\nSENDGRID_API_KEY=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\n"},
				{"mail.env", "SENDGRID_API_KEY=SG.xxxxxxxxxxxxxxxxxxxxxx.xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n"},
			},
		},
	}
}
