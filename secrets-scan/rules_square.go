package secretscan

func squareRules() []*Rule {
	return []*Rule{
		{
			ID: RuleSquareSecret, Title: "Square production application secret", Provider: "square",
			Severity: SeverityCritical, Kind: KindSecret, Env: envInValue, prefix: 7,
			Format:  "sq0csp- + 43 [0-9A-Za-z_-]; sandbox secrets are sandbox-sq0csb-",
			re:      mustRe(`\bsq0csp-[0-9A-Za-z_-]{43}`),
			anchors: []string{"sq0csp-"}, testAnchors: []string{"sandbox-sq0"}, message: "Square production application secret (sq0csp-)",
			TruePositives: []Example{
				{"square.yaml", "square:\n  application_secret: sq0csp-dnXsiVpzz63FfkCzJr4i0B3JrTAwR4y9ojfljoQoaF1\n"},
			},
			FalsePositives: []Example{
				{"square.yaml", "square:\n  application_secret: sandbox-sq0csb-Xb7_Ka2mQ9vLc4Ty8pW1zN6rE3uJ5hG0dF2sA7kB9wM\n"},
			},
		},
		{
			ID: RuleSquareAppID, Title: "Square production application id", Provider: "square",
			Severity: SeverityLow, Kind: KindIdentifier, Env: envInValue, prefix: 7,
			Format:  "sq0idp- + 22 [0-9A-Za-z_-]; sandbox ids are sandbox-sq0idb-",
			re:      mustRe(`\bsq0idp-[0-9A-Za-z_-]{22}`),
			anchors: []string{"sq0idp-"}, message: "Square production application id (sq0idp-): the integration is in production",
			TruePositives: []Example{
				{"square.yaml", "square:\n  application_id: sq0idp-LlqsajAIxNKu8iS2G8NPRV\n"},
			},
			FalsePositives: []Example{
				{"square.yaml", "square:\n  application_id: sandbox-sq0idb-Wq3K8vN2cT7yL5pR9mB4xZ\n"},
			},
		},
		{
			ID: RuleSquareOAuth, Title: "Square production OAuth access token (legacy format)", Provider: "square",
			Severity: SeverityCritical, Kind: KindSecret, Env: envInValue, prefix: 7,
			Format:  "sq0atp- + 22 [0-9A-Za-z_-]; sandbox tokens are sandbox-sq0atb-",
			re:      mustRe(`\bsq0atp-[0-9A-Za-z_-]{22}`),
			anchors: []string{"sq0atp-"}, message: "Square production OAuth token (sq0atp-)",
			TruePositives: []Example{
				{"app.env", "SQUARE_TOKEN=sq0atp-dD53X83RZJzzzzgEOzdmen\n"},
			},
			FalsePositives: []Example{
				{"app.env", "SQUARE_TOKEN=sandbox-sq0atb-9fK2xL7qW4mC1vB8nZ3rT6\n"},
			},
		},
		{
			ID: RuleSquareAccess, Title: "Square access token in a production block", Provider: "square",
			Severity: SeverityCritical, Kind: KindSecret, Env: envContext, prefix: 4,
			Format:  "EAAA + 60 [0-9A-Za-z_-]; production and sandbox tokens look alike: SQUARE_ENVIRONMENT or the endpoint decides",
			re:      mustRe(`\bEAAA[0-9A-Za-z_-]{60}`),
			anchors: []string{"EAAA"}, message: "Square access token",
			TruePositives: []Example{
				// Square's production application id is Square's live-mode evidence
				{"app.env", "SQUARE_APPLICATION_ID=sq0idp-LlqsajAIxNKu8iS2G8NPRV\nSQUARE_ACCESS_TOKEN=EAAAu8jzPde0IgxLd6GncfBAepfJBd0Kh8oOOL8dKLzdocJ2isAjIhKtJ0RlgLKO\n"},
				{"app.env", "SQUARE_ENVIRONMENT=production\nSQUARE_ACCESS_TOKEN=EAAAu8jzPde0IgxLd6GncfBAepfJBd0Kh8oOOL8dKLzdocJ2isAjIhKtJ0RlgLKO\n"},
			},
			FalsePositives: []Example{
				// a production Twilio account is not Square's evidence
				{"app.env", "TWILIO_ACCOUNT_SID=AC0123456789abcdef0123456789abcdef\nSQUARE_ACCESS_TOKEN=EAAAu8jzPde0IgxLd6GncfBAepfJBd0Kh8oOOL8dKLzdocJ2isAjIhKtJ0RlgLKO\n"},
				{"app.env", "SQUARE_ENVIRONMENT=sandbox\nSQUARE_ACCESS_TOKEN=EAAAu8jzPde0IgxLd6GncfBAepfJBd0Kh8oOOL8dKLzdocJ2isAjIhKtJ0RlgLKO\n"},
				{"app.env", "SQUARE_ACCESS_TOKEN=EAAAu8jzPde0IgxLd6GncfBAepfJBd0Kh8oOOL8dKLzdocJ2isAjIhKtJ0RlgLKO\n"},
			},
		},
	}
}
