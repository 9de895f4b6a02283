package secretscan

func stripeRules() []*Rule {
	return []*Rule{
		{
			ID: RuleStripeSecret, Title: "Stripe live secret key", Provider: "stripe",
			Severity: SeverityCritical, Kind: KindSecret, Env: envInValue, prefix: 8,
			Format:  "sk_live_ + 24..247 [0-9A-Za-z]; test keys are sk_test_",
			re:      mustRe(`\bsk_live_[0-9A-Za-z]{24,247}`),
			anchors: []string{"sk_live_"}, testAnchors: []string{"sk_test_"}, message: "Stripe live-mode secret key (sk_live_)",
			TruePositives: []Example{
				// a random key that happens to hold "xxxx" is no placeholder
				{"app.env", "STRIPE_SECRET_KEY=sk_live_4eC39HqLxxxxDarjtT1zdp7dcQ\n"},
				// base64 of JSON inside YAML
				{"values.yaml", "settings_b64: eyJzdHJpcGUiOiB7InNlY3JldF9rZXkiOiAic2tfbGl2ZV9VYmJZckVxbVNNOXdDWjdVdzl4Zm9nb0UifX0=\n"},
				{"app.env", "STRIPE_SECRET_KEY=sk_live_UbbYrEqmSM9wCZ7Uw9xfogoE\n"},
				{"values.yaml", "stripe:\n  apiKey: \"sk_live_51Hx9QmKZ2vTYc8dNa0bLw3pE7rUf6gJ\"\n"},
			},
			FalsePositives: []Example{
				{"values.yaml", "settings_b64: eyJzdHJpcGUiOiB7InNlY3JldF9rZXkiOiAic2tfdGVzdF9VYmJZckVxbVNNOXdDWjdVdzl4Zm9nb0UifX0=\n"},
				{"app.env", "STRIPE_SECRET_KEY=sk_test_mvnEN5N1aE6PwZPf1Qh6yYTW\n"},
				{"app.env", "STRIPE_SECRET_KEY=sk_live_xxxxxxxxxxxxxxxxxxxxxxxx\n"},
				{"app.env", "STRIPE_SECRET_KEY=${STRIPE_SECRET_KEY}\n"},
			},
		},
		{
			ID: RuleStripeRestricted, Title: "Stripe live restricted key", Provider: "stripe",
			Severity: SeverityHigh, Kind: KindSecret, Env: envInValue, prefix: 8,
			Format:  "rk_live_ + 24..247 [0-9A-Za-z]; test keys are rk_test_",
			re:      mustRe(`\brk_live_[0-9A-Za-z]{24,247}`),
			anchors: []string{"rk_live_"}, testAnchors: []string{"rk_test_"}, message: "Stripe live-mode restricted key (rk_live_)",
			TruePositives: []Example{
				{"config.json", `{"stripe": {"restricted": "rk_live_9Tq2LmNc7XvB4rE1wZy6KpAs3Dh8"}}`},
			},
			FalsePositives: []Example{
				{"config.json", `{"stripe": {"restricted": "rk_test_9Tq2LmNc7XvB4rE1wZy6KpAs3Dh8"}}`},
			},
		},
		{
			ID: RuleStripePublish, Title: "Stripe live publishable key", Provider: "stripe",
			Severity: SeverityLow, Kind: KindIdentifier, Env: envInValue, prefix: 8,
			Format:  "pk_live_ + 24..247 [0-9A-Za-z] (public, but proves a live integration)",
			re:      mustRe(`\bpk_live_[0-9A-Za-z]{24,247}`),
			anchors: []string{"pk_live_"}, testAnchors: []string{"pk_test_"}, message: "Stripe live-mode publishable key (pk_live_): the integration is in live mode",
			TruePositives: []Example{
				{"app.properties", "stripe.publishable=pk_live_Ab3dE6gH9jK2mN5pQ8sT1vW4yZ7c\n"},
			},
			FalsePositives: []Example{
				{"app.properties", "stripe.publishable=pk_test_Ab3dE6gH9jK2mN5pQ8sT1vW4yZ7c\n"},
			},
		},
	}
}
