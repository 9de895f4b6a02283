package secretscan

func fingerprintRules() []*Rule {
	return []*Rule{
		{
			ID: RuleFingerprint, Title: "Exact production secret (salted fingerprint match)", Provider: "",
			Severity: SeverityCritical, Kind: KindSecret, Env: envIdentity, prefix: 0,
			Format: "any value whose hex(sha256(salt || value)) is in the catalog's fingerprints",
			TruePositives: []Example{
				{"app.env", "SESSION_SIGNING_KEY=correct-horse-battery-staple-42\n"},
			},
			FalsePositives: []Example{
				{"app.env", "SESSION_SIGNING_KEY=correct-horse-battery-staple-43\n"},
			},
		},
	}
}
