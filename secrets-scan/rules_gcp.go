package secretscan

func gcpRules() []*Rule {
	return []*Rule{
		{
			ID: RuleGCPServiceAcct, Title: "GCP service-account key of a production project", Provider: "gcp",
			Severity: SeverityCritical, Kind: KindSecret, Env: envIdentity, prefix: 0,
			Format: `service-account JSON: {"type": "service_account", "project_id": ..., "private_key": PEM}`,
			TruePositives: []Example{
				// the service-account JSON held in an env var's value (escaped JSON in a YAML string)
				{"deploy.yaml", `env:
- name: GOOGLE_CREDENTIALS
  value: "{\"type\": \"service_account\", \"project_id\": \"acme-prod\", \"private_key_id\": \"1f2e3d\", \"private_key\": \"-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\\nMzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu\\n-----END PRIVATE KEY-----\\n\"}"
`},
				{"sa.json", `{"type": "service_account", "project_id": "acme-prod", "private_key_id": "1f2e3d", "private_key": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\nMzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu\n-----END PRIVATE KEY-----\n", "client_email": "ci@acme-prod.iam.gserviceaccount.com"}`},
			},
			FalsePositives: []Example{
				{"sa.json", `{"type": "service_account", "project_id": "acme-staging", "private_key_id": "1f2e3d", "private_key": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\nMzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu\n-----END PRIVATE KEY-----\n", "client_email": "ci@acme-staging.iam.gserviceaccount.com"}`},
			},
		},
	}
}
