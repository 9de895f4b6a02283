package secretscan

// exampleProduction is the production description the rules' true and
// false positives are written against (and the one the docs use).
func exampleProduction() Production {
	return Production{
		Zones: []string{"*.prod.example.com", "billing.example.com"},
		CIDRs: []string{"10.20.0.0/16"},
		Providers: []ProviderEndpoint{
			{Provider: "paypal", Live: "api-m.paypal.com", Sandbox: "api-m.sandbox.paypal.com"},
			{Provider: "paypal", Live: "api.paypal.com", Sandbox: "api.sandbox.paypal.com"},
			{Provider: "adyen", Live: "*.adyenpayments.com", Sandbox: "checkout-test.adyen.com"},
			{Provider: "square", Live: "connect.squareup.com", Sandbox: "connect.squareupsandbox.com"},
			{Provider: "twilio", Live: "api.twilio.com"},
			{Provider: "mailgun", Live: "api.mailgun.net"},
		},
		AWSAccounts:  []string{"123456789012"},
		GCPProjects:  []string{"acme-prod"},
		JWTIssuers:   []string{"https://auth.prod.example.com"},
		JWTAudiences: []string{"payments-prod"},
		AccountIDs:   map[string][]string{"twilio": {"AC0123456789abcdef0123456789abcdef"}},
		Fingerprints: []FingerprintSet{{
			Algorithm: "sha256",
			Salt:      []byte("egressguard-example-salt"),
			Values:    []string{"0afcbe0acd81786eec7d70ca11b4bcf5b155c11c512ca0010ceeed0662d2c4fe"},
			Source:    "example vault export",
		}},
	}
}
