package secretscan

func adyenRules() []*Rule {
	return []*Rule{
		{
			ID: RuleAdyenClientKey, Title: "Adyen live client key", Provider: "adyen",
			Severity: SeverityLow, Kind: KindIdentifier, Env: envInValue, prefix: 5,
			Format:  "live_ + 32 [A-Z0-9]; test client keys are test_",
			re:      mustRe(`\blive_[A-Z0-9]{32}`),
			anchors: []string{"live_"}, testAnchors: []string{"test_"}, testRe: mustRe(`\btest_[A-Z0-9]{32}\b`), message: "Adyen live client key (live_): the integration is in live mode",
			TruePositives: []Example{
				{"checkout.yaml", "adyen:\n  clientKey: live_2KHVDGAJ8GXBENYJQWX4HH5344TFJGVQ\n"},
			},
			FalsePositives: []Example{
				{"checkout.yaml", "adyen:\n  clientKey: test_4K7BN7XJ8B7TFQ7XKWO886VOMPZOM75W\n"},
			},
		},
		{
			ID: RuleAdyenAPIKey, Title: "Adyen API key in a production block", Provider: "adyen",
			Severity: SeverityCritical, Kind: KindSecret, Env: envContext, prefix: 3,
			Format:  "AQE + base64 characters (80..250); live and test keys look alike: the -live endpoint decides",
			re:      mustRe(`\bAQE[0-9A-Za-z+/=_.-]{77,247}`),
			anchors: []string{"AQE"}, message: "Adyen API key",
			TruePositives: []Example{
				// a live_ client key of the same provider says live mode
				{"checkout.yaml", "adyen:\n  clientKey: live_2KHVDGAJ8GXBENYJQWX4HH5344TFJGVQ\n  apiKey: AQEyhmfxK4vNbhFGw0m/n3Q5qf3VaY9UCJ1+XWZe9W27jmlZiv4PD4jhfNMofnLr2K5i8/0QwV1bDb7kfNy1WIxIIkxgBw==-lUKXT9IQ5GZ6d6RH4nnuOG4Bu6F5s6fC3VLsCfdtGKk=-Dt;5Ul:k7JU?v7[9\n"},
				{"checkout.yaml", "adyen:\n  endpoint: https://1797a841fbb37ca7-AcmeShop-checkout-live.adyenpayments.com/checkout\n  apiKey: AQEyhmfxK4vNbhFGw0m/n3Q5qf3VaY9UCJ1+XWZe9W27jmlZiv4PD4jhfNMofnLr2K5i8/0QwV1bDb7kfNy1WIxIIkxgBw==-lUKXT9IQ5GZ6d6RH4nnuOG4Bu6F5s6fC3VLsCfdtGKk=-Dt;5Ul:k7JU?v7[9\n"},
			},
			FalsePositives: []Example{
				// a test_ client key says test mode, a production database notwithstanding
				{"checkout.env", "ADYEN_CLIENT_KEY=test_4K7BN7XJ8B7TFQ7XKWO886VOMPZOM75W\nADYEN_API_KEY=AQEyhmfxK4vNbhFGw0m/n3Q5qf3VaY9UCJ1+XWZe9W27jmlZiv4PD4jhfNMofnLr2K5i8/0QwV1bDb7kfNy1WIxIIkxgBw==-lUKXT9IQ5GZ6d6RH4nnuOG4Bu6F5s6fC3VLsCfdtGKk=-Dt;5Ul:k7JU?v7[9\nDATABASE_URL=postgres://app@db.prod.example.com/app\n"},
				{"checkout.yaml", "adyen:\n  endpoint: https://checkout-test.adyen.com/v71\n  apiKey: AQEyhmfxK4vNbhFGw0m/n3Q5qf3VaY9UCJ1+XWZe9W27jmlZiv4PD4jhfNMofnLr2K5i8/0QwV1bDb7kfNy1WIxIIkxgBw==-lUKXT9IQ5GZ6d6RH4nnuOG4Bu6F5s6fC3VLsCfdtGKk=-Dt;5Ul:k7JU?v7[9\n"},
			},
		},
	}
}
