package secretscan

func databaseRules() []*Rule {
	return []*Rule{
		{
			ID: RuleDatabaseURL, Title: "Database or broker URL pointing at production", Provider: "",
			Severity: SeverityHigh, Kind: KindSecret, Env: envIdentity, prefix: 0,
			Format:  "postgres/mysql/mongodb/redis/amqp/... URLs, JDBC strings, Go MySQL and libpq DSNs whose host is in a production zone or CIDR; kind endpoint when the password is absent or a reference",
			anchors: []string{"://", "jdbc:", "@tcp(", "host="}, detect: (*fileState).urls,
			TruePositives: []Example{
				// a DSN in a JSON string in YAML
				{"configmap.yaml", "data:\n  config.json: '{\"database\": {\"url\": \"mysql://app:Zk4Qm8Xv2Lc7@db.prod.example.com:3306/app\"}}'\n"},
				{"db.env", "DATABASE_URL=postgres://app:Zk4Qm8Xv2Lc7@db.prod.example.com:5432/app\n"},
				{"db.env", "DATABASE_URL=postgres://app:${DB_PASSWORD}@db.prod.example.com:5432/app\n"},
				{"db.properties", "spring.datasource.url=jdbc:postgresql://10.20.4.7:5432/app?user=app&password=Zk4Qm8Xv2Lc7\n"},
			},
			FalsePositives: []Example{
				{"db.env", "DATABASE_URL=postgres://app:Zk4Qm8Xv2Lc7@db.staging.example.com:5432/app\n"},
				{"db.properties", "spring.datasource.url=jdbc:postgresql://10.30.4.7:5432/app\n"},
			},
		},
	}
}
