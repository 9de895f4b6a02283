package secretscan

func endpointRules() []*Rule {
	return []*Rule{
		{
			ID: RuleEndpoint, Title: "Setting pointing at a production host or network", Provider: "",
			Severity: SeverityMedium, Kind: KindEndpoint, Env: envIdentity, prefix: 0,
			Format: "a URL, host name or IP whose host is in a production zone or CIDR",
			TruePositives: []Example{
				{"app.yaml", "billing:\n  url: https://billing.example.com/v2\n"},
				{"app.env", "CACHE_HOST=10.20.9.9\n"},
			},
			FalsePositives: []Example{
				{"app.yaml", "billing:\n  url: https://billing.staging.example.com/v2\n"},
			},
		},
	}
}
