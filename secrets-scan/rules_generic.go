package secretscan

func genericRules() []*Rule {
	return []*Rule{
		{
			ID: RuleGeneric, Title: "Credential of a production connection", Provider: "",
			Severity: SeverityHigh, Kind: KindSecret, Env: envContext, prefix: 0,
			Format: "a credential-looking value under a *password*/*secret*/*token*/*key* setting whose block sets a production host under the same connection prefix (DB_HOST / DB_PASSWORD)",
			byKey:  &keyRule{secretKey: true}, // last of the rules: it takes what no other claims
			TruePositives: []Example{
				{"app.yaml", "orders:\n  db_host: db.prod.example.com\n  db_password: Tq8Zm3Xc7Lv2Nb5W\n"},
				// one connection in a flat file: the same prefix names it
				{"app.env", "ORDERS_DB_HOST=10.20.4.7\nORDERS_DB_PASSWORD=Tq8Zm3Xc7Lv2Nb5W\n"},
				{"db.properties", "spring.datasource.url=jdbc:postgresql://db.prod.example.com:5432/app\nspring.datasource.password=Tq8Zm3Xc7Lv2Nb5W\n"},
				// a block named as one connection: its credentials go with its host
				{"app.yaml", "database:\n  db_host: db.prod.example.com\n  password: Tq8Zm3Xc7Lv2Nb5W\n"},
				{"app.toml", "[orders.db]\nhostname = \"10.20.4.7\"\nadmin_password = \"Tq8Zm3Xc7Lv2Nb5W\"\n"},
			},
			FalsePositives: []Example{
				{"app.yaml", "orders:\n  db_host: db.staging.example.com\n  db_password: Tq8Zm3Xc7Lv2Nb5W\n"},
				// a generic marker binds no credential
				{"app.yaml", "payments:\n  environment: production\n  webhook_secret: whsec_Ga2Ke8UZk4Qm8Xv2Lc7Nb1Tr5\n"},
				// another connection's production host
				{"app.env", "CACHE_HOST=cache.staging.example.com\nCACHE_PASSWORD=Tq8Zm3Xc7Lv2Nb5W\nBILLING_URL=https://billing.example.com/v2\n"},
				// a service block is no connection: its token is not the database's
				{"app.yaml", "orders:\n  db_host: db.prod.example.com\n  api_token: Tq8Zm3Xc7Lv2Nb5W\n"},
				{"app.yaml", "payments:\n  environment: production\n  webhook_secret: ${WEBHOOK_SECRET}\n"},
				{"app.yaml", "payments:\n  environment: production\n  password_file: /run/secrets/payments\n"},
			},
		},
	}
}
