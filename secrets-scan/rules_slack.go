package secretscan

func slackRules() []*Rule {
	return []*Rule{
		{
			ID: RuleSlackToken, Title: "Slack token", Provider: "slack",
			Severity: SeverityHigh, Kind: KindSecret, Env: envAlwaysLive, prefix: 5,
			Format:  "xox[abposr]-<digits and letters separated by ->, or xapp-1-...; Slack has no test tokens",
			re:      mustRe(`\b(?:xox[abposr]-[0-9]{8,13}-[0-9A-Za-z-]{8,80}|xapp-[0-9]-[A-Z0-9]{8,12}-[0-9]{8,14}-[0-9a-f]{32,64})`),
			anchors: []string{"xox", "xapp-"}, message: "Slack token (Slack has no test tokens)",
			UnknownPositives: []Example{
				{"bot.yaml", "slack:\n  token: xoxb-2871459603-4815162342108-Qm7Xv2Lc9Nb4Kt1Rz8Wp3Ys6\n"},
			},
			FalsePositives: []Example{
				{"bot.yaml", "slack:\n  token: xoxb-your-token-here\n"},
			},
		},
		{
			ID: RuleSlackWebhook, Title: "Slack incoming webhook URL", Provider: "slack",
			Severity: SeverityMedium, Kind: KindSecret, Env: envAlwaysLive, prefix: 33,
			Format:  "https://hooks.slack.com/services/T<id>/B<id>/<24 [A-Za-z0-9]>",
			re:      mustRe(`https://hooks\.slack\.com/(?:services|workflows)/T[A-Z0-9]{6,12}/B[A-Z0-9]{6,12}/[A-Za-z0-9]{20,40}`),
			anchors: []string{"hooks.slack.com/"}, message: "Slack incoming webhook URL",
			UnknownPositives: []Example{
				{"alerts.ini", "[slack]\nwebhook = https://hooks.slack.com/services/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\n"},
			},
			FalsePositives: []Example{
				{"alerts.ini", "[slack]\nwebhook = https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX\n"},
			},
		},
	}
}
