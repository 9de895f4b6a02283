package secretscan

import (
	"encoding/base64"
	"testing"

	"github.com/stretchr/testify/assert"
)

type at struct {
	line int
	col  int // 0: not checked
	rule string
}

func findingsAt(fs []Finding) []at {
	var out []at
	for _, f := range fs {
		out = append(out, at{f.Line, f.Column, f.Rule})
	}
	return out
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// TestDecoders: every format leads to the file, line and column of the
// original text, decoded values included.
func TestDecoders(t *testing.T) {
	d := newExampleDetector(t)
	pp := "EKj4Tn8Wq2Zx6Cv1Bm5Nr9Yp3Ls7Hd0Fg4Ja8Xk2Qe6Wt1Uo5Ri9Py3Mz7Nc0Lv"
	for _, tc := range []struct {
		name, path, content string
		want                []at
	}{
		{"yaml quoted", "v.yaml", "a:\n  b: 1\n  key: \"" + liveKey + "\"\n", []at{{3, 9, RuleStripeSecret}}},
		{"yaml multi-doc", "m.yaml", "x: 1\n---\nkey: " + liveKey + "\n...\n---\ny: " + liveKey + "\n", []at{{3, 6, RuleStripeSecret}, {6, 4, RuleStripeSecret}}},
		{"yaml block scalar pem", "t.yaml", "tls:\n  key: |\n    -----BEGIN RSA PRIVATE KEY-----\n    " + pemLine + "\n    " + pemLine + "\n    -----END RSA PRIVATE KEY-----\nnext: 1\n", []at{{3, 5, RulePrivateKey}}},
		{"k8s secret data base64", "s.yaml", "apiVersion: v1\ndata:\n  STRIPE: " + b64(liveKey) + "\n  ENV: " + b64("PAYPAL_MODE=live\nPAYPAL_SECRET="+pp+"\n") + "\nkind: Secret\n",
			[]at{{3, 11, RuleStripeSecret}, {4, 8, RulePayPalSecret}}},
		{"configmap data is not base64", "c.yaml", "kind: ConfigMap\ndata:\n  STRIPE: " + b64(liveKey) + "\n", nil},
		{"k8s env list", "d.yaml", "spec:\n  containers:\n  - name: app\n    env:\n    - name: PAYPAL_MODE\n      value: live\n    - name: PAYPAL_CLIENT_SECRET\n      value: " + pp + "\n",
			[]at{{8, 14, RulePayPalSecret}}},
		{"compose env list", "docker-compose.yml", "services:\n  app:\n    environment:\n      - SQUARE_ENVIRONMENT=production\n      - SQUARE_TOKEN=EAAAu8jzPde0IgxLd6GncfBAepfJBd0Kh8oOOL8dKLzdocJ2isAjIhKtJ0RlgLKO\n",
			[]at{{5, 22, RuleSquareAccess}}},
		{"json", "c.json", "{\n  \"paypal\": {\"mode\": \"live\",\n   \"secret\": \"" + pp + "\"}\n}\n", []at{{3, 15, RulePayPalSecret}}},
		{"ecs task definition", "task.json", `{"containerDefinitions": [{"name": "app", "environment": [` + "\n" +
			`{"name": "TWILIO_ACCOUNT_SID", "value": "AC0123456789abcdef0123456789abcdef"},` + "\n" +
			`{"name": "TWILIO_AUTH_TOKEN", "value": "9f8e7d6c5b4a39281706f5e4d3c2b1a0"}]}]}`,
			[]at{{2, 0, RuleTwilioSID}, {3, 0, RuleTwilioAuthToken}}},
		{"json secret", "s.json", `{"kind": "Secret", "data": {"k": "` + b64(liveKey) + `"}}`, []at{{1, 0, RuleStripeSecret}}},
		{"json escaped pem in gcp key", "sa.json", `{"type": "service_account", "project_id": "acme-prod", "private_key": "-----BEGIN PRIVATE KEY-----\n` + pemLine + `\n` + pemLine + `\n-----END PRIVATE KEY-----\n"}`,
			[]at{{1, 0, RuleGCPServiceAcct}}},
		{"env", ".env", "# comment\nexport STRIPE=\"" + liveKey + "\" # trailing\n", []at{{2, 16, RuleStripeSecret}}},
		{"properties continuation", "a.properties", "stripe.key=sk_live_4eC39HqLyjW\\\n    Darjtt1zdp7dc8Ym2\n", []at{{1, 0, RuleStripeSecret}}},
		{"ini sections are blocks", "c.ini", "[paypal-live]\nmode = live\n[paypal-test]\nclient_secret = " + pp + "\n", nil},
		{"ini", "c.ini", "[paypal]\nmode = live\nclient_secret = " + pp + "\n", []at{{3, 17, RulePayPalSecret}}},
		{"toml multi-line string", "c.toml", "[tls]\nkey = \"\"\"\n-----BEGIN PRIVATE KEY-----\n" + pemLine + "\n" + pemLine + "\n-----END PRIVATE KEY-----\n\"\"\"\n", []at{{3, 0, RulePrivateKey}}},
		{"tfvars block", "x.tfvars", "paypal = {\n  mode = \"live\"\n  client_secret = \"" + pp + "\"\n}\n", []at{{3, 20, RulePayPalSecret}}},
		{"text paragraphs", "notes.txt", "PAYPAL_MODE=live\n\nPAYPAL_SECRET=" + pp + "\n", nil},
		{"url with unencoded password", "db.env", "DB=postgres://app:p#ss/w?rd1@db.prod.example.com:5432/x\n", []at{{1, 4, RuleDatabaseURL}}},
		{"jdbc oracle", "db.properties", "url=jdbc:oracle:thin:@10.20.1.2:1521:ORCL\n", []at{{1, 5, RuleDatabaseURL}}},
		{"go mysql dsn", "db.env", "DSN=app:Zk4Qm8Xv2Lc7@tcp(db.prod.example.com:3306)/shop\n", []at{{1, 5, RuleDatabaseURL}}},
		{"ipv6 production cidr", "x.env", "CACHE_HOST=[2001:db8::1]:6379\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs, _ := d.Scan(tc.path, []byte(tc.content))
			got := findingsAt(fs)
			for i := range got {
				if i < len(tc.want) && tc.want[i].col == 0 {
					got[i].col = 0
				}
			}
			assert.Equal(t, tc.want, got, "%+v", fs)
		})
	}
}

const pemLine = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj"
