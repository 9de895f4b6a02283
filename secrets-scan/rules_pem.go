package secretscan

func pemRules() []*Rule {
	return []*Rule{
		{
			ID: RulePrivateKey, Title: "Private key (PEM)", Provider: "",
			Severity: SeverityHigh, Kind: KindSecret, Env: envAlwaysLive, prefix: 0,
			Format:  "-----BEGIN [RSA |EC |DSA |OPENSSH |ENCRYPTED ]PRIVATE KEY----- with a base64 body of 64+ characters",
			re:      mustRe(`-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----`),
			anchors: []string{"-----BEGIN"}, message: "private key", detect: (*fileState).pem,
			UnknownPositives: []Example{
				{"tls.yaml", "tls:\n  key: |\n    -----BEGIN PRIVATE KEY-----\n    MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n    MzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu\n    -----END PRIVATE KEY-----\n"},
			},
			FalsePositives: []Example{
				// A GCP service account's key belongs to its project (staging here).
				{"sa.json", `{"type": "service_account", "project_id": "acme-staging", "private_key": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\nMzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu\n-----END PRIVATE KEY-----\n"}`},
				{"tls.yaml", "tls:\n  key: |\n    -----BEGIN PRIVATE KEY-----\n    ...\n    -----END PRIVATE KEY-----\n"},
			},
		},
	}
}
