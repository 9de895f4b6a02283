package secretscan

import "bytes"

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

// pem finds private-key blocks with a real body. Keys inside GCP
// service-account objects are judged by the project instead.
func (st *fileState) pem(it *item, _ keyClass, r *Rule) bool {
	v := it.val
	found := false
	for _, loc := range r.re.FindAllIndex(v, -1) {
		found = true
		rest := v[loc[1]:]
		end := bytes.Index(rest, []byte("-----END"))
		if end < 0 {
			end = len(rest)
			if end > 8192 {
				end = 8192
			}
		}
		if !pemBody(rest[:end]) {
			continue
		}
		stop := loc[1] + end
		f := st.newFinding(r, it, loc[0], stop, r.message)
		f.Redacted = string(v[loc[0]:loc[1]]) + "****"
		st.defer_(r, "", it.scope, f)
	}
	return found
}

// pemBody: at least 64 base64 characters once whitespace, escaped newlines
// and quotes are dropped, and nothing else.
func pemBody(b []byte) bool {
	n := 0
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case c == '\\' && i+1 < len(b) && (b[i+1] == 'n' || b[i+1] == 'r'):
			i++
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '"' || c == '\'':
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '+', c == '/', c == '=':
			n++
		case c == ':' || c == '-' || c == ',': // Proc-Type / DEK-Info headers of encrypted keys
		default:
			return false
		}
	}
	return n >= 64
}
