package secretscan

func paypalRules() []*Rule {
	return []*Rule{
		{
			ID: RulePayPalSecret, Title: "PayPal client secret in a production block", Provider: "paypal",
			Severity: SeverityCritical, Kind: KindSecret, Env: envContext, prefix: 2,
			Format: "40..100 [0-9A-Za-z_-] under a *secret* key; live and sandbox secrets look alike: the endpoint or PAYPAL_MODE decides",
			byKey:  &keyRule{secretKey: true},
			TruePositives: []Example{
				{"paypal.yaml", "paypal:\n  mode: live\n  client_id: AZq8Lm3Nc7Xv2Bt5Ry9Wp4Ks6Dh1Gf0Jz8Qe3Ua7Io2Pm\n  client_secret: EKj4Tn8Wq2Zx6Cv1Bm5Nr9Yp3Ls7Hd0Fg4Ja8Xk2Qe6Wt1Uo5Ri9Py3Mz7Nc0Lv\n"},
				{"paypal.yaml", "paypal:\n  base_url: https://api-m.paypal.com\n  client_secret: EKj4Tn8Wq2Zx6Cv1Bm5Nr9Yp3Ls7Hd0Fg4Ja8Xk2Qe6Wt1Uo5Ri9Py3Mz7Nc0Lv\n"},
			},
			FalsePositives: []Example{
				// Adyen's live marker is not PayPal's
				{"app.env", "PAYPAL_CLIENT_SECRET=EKj4Tn8Wq2Zx6Cv1Bm5Nr9Yp3Ls7Hd0Fg4Ja8Xk2Qe6Wt1Uo5Ri9Py3Mz7Nc0Lv\nADYEN_ENVIRONMENT=LIVE\n"},
				// nor is a production host or a generic environment marker
				{"app.env", "ENVIRONMENT=production\nDB_HOST=db.prod.example.com\nPAYPAL_CLIENT_SECRET=EKj4Tn8Wq2Zx6Cv1Bm5Nr9Yp3Ls7Hd0Fg4Ja8Xk2Qe6Wt1Uo5Ri9Py3Mz7Nc0Lv\n"},
				{"paypal.yaml", "paypal:\n  mode: sandbox\n  client_secret: EKj4Tn8Wq2Zx6Cv1Bm5Nr9Yp3Ls7Hd0Fg4Ja8Xk2Qe6Wt1Uo5Ri9Py3Mz7Nc0Lv\n"},
				{"paypal.yaml", "paypal:\n  base_url: https://api-m.sandbox.paypal.com\n  client_secret: EKj4Tn8Wq2Zx6Cv1Bm5Nr9Yp3Ls7Hd0Fg4Ja8Xk2Qe6Wt1Uo5Ri9Py3Mz7Nc0Lv\n"},
			},
		},
	}
}
