package secretscan

import "strings"

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

type gcpInfo struct {
	isSA      bool
	project   string
	projLine  int
	keyLine   int
	keyCol    int
	keyFP     string
	keyVia    string
	keyLength int
}

// gcpItem follows service-account JSON objects.
func (st *fileState) gcpItem(it *item) {
	if len(it.key) == 0 {
		return
	}
	switch string(it.key) {
	case "type":
		if string(it.val) == "service_account" {
			st.gcp(it.scope).isSA = true
		}
	case "project_id":
		g := st.gcp(it.scope)
		g.project, g.projLine = string(it.val), it.line
		if len(st.d.c.gcp) > 0 {
			prod := st.d.c.gcp[strings.ToLower(g.project)]
			st.addMarker(it.scope, marker{prod: prod, provider: "gcp", line: it.line, what: "GCP project " + g.project})
		}
	case "private_key":
		g := st.gcp(it.scope)
		g.keyLine, g.keyCol = st.pos(it, 0)
		g.keyFP = findingFingerprint(RuleGCPServiceAcct, st.path, it.val)
		g.keyLength = len(it.val)
		if st.override != nil {
			g.keyVia = st.override.via
		}
	}
}

func (st *fileState) gcp(scope int32) *gcpInfo {
	s := &st.scopes[scope]
	if s.gcp == nil {
		s.gcp = &gcpInfo{}
	}
	return s.gcp
}
