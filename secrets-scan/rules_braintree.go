package secretscan

func braintreeRules() []*Rule {
	return []*Rule{
		{
			ID: RuleBraintree, Title: "Braintree/PayPal production access token", Provider: "braintree",
			Severity: SeverityCritical, Kind: KindSecret, Env: envInValue, prefix: 24,
			Format:  "access_token$production$<16 [0-9a-z]>$<32 hex>; sandbox tokens say $sandbox$",
			re:      mustRe(`access_token\$production\$[0-9a-z]{16}\$[0-9a-f]{32}`),
			anchors: []string{"$production$"}, testAnchors: []string{"$sandbox$"}, message: "Braintree access token for the production environment",
			TruePositives: []Example{
				{"app.env", "BRAINTREE_TOKEN=access_token$production$x7k2m9q4w1z8p3r6$3f9a1c7e5b2d8f4a6c0e9b1d3f5a7c92\n"},
			},
			FalsePositives: []Example{
				{"app.env", "BRAINTREE_TOKEN=access_token$sandbox$x7k2m9q4w1z8p3r6$3f9a1c7e5b2d8f4a6c0e9b1d3f5a7c92\n"},
			},
		},
	}
}
