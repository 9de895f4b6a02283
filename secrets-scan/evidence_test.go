package secretscan

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestEvidenceBindsToItsProvider checks the package's property: evidence
// for provider P never upgrades a credential of provider Q. Each
// credential is scanned alone, then beside every other provider's
// production evidence (and beside production hosts and generic markers,
// which are no provider's), in a flat .env file and in one YAML object;
// its own findings must not change.
func TestEvidenceBindsToItsProvider(t *testing.T) {
	d := newExampleDetector(t)
	type snippet struct {
		provider string
		lines    []string // KEY=value
	}
	// Production evidence, one provider each ("" = a production host or a
	// generic marker, which belongs to no provider).
	evidence := []snippet{
		{"paypal", []string{"PAYPAL_MODE=live"}},
		{"paypal", []string{"PAYPAL_BASE_URL=https://api-m.paypal.com"}},
		{"adyen", []string{"ADYEN_ENVIRONMENT=LIVE"}},
		{"adyen", []string{"ADYEN_CLIENT_KEY=live_2KHVDGAJ8GXBENYJQWX4HH5344TFJGVQ"}},
		{"square", []string{"SQUARE_ENVIRONMENT=production"}},
		{"square", []string{"SQUARE_APPLICATION_ID=sq0idp-LlqsajAIxNKu8iS2G8NPRV"}},
		{"twilio", []string{"TWILIO_ACCOUNT_SID=AC0123456789abcdef0123456789abcdef"}},
		{"aws", []string{"AWS_ACCESS_KEY_ID=AKIARZPUZDIKGLB5JZPW"}},
		{"stripe", []string{"STRIPE_PUBLISHABLE_KEY=pk_live_Ab3dE6gH9jK2mN5pQ8sT1vW4yZ7c"}},
		{"mailgun", []string{"MAILGUN_API_BASE=https://api.mailgun.net/v3"}},
		{"", []string{"ENVIRONMENT=production"}},
		{"", []string{"BILLING_URL=https://billing.example.com/v2"}},
		{"", []string{"LEDGER_HOST=db.prod.example.com"}},
	}
	// Credentials whose environment the value does not carry.
	credentials := []snippet{
		{"paypal", []string{"PAYPAL_CLIENT_SECRET=EKj4Tn8Wq2Zx6Cv1Bm5Nr9Yp3Ls7Hd0Fg4Ja8Xk2Qe6Wt1Uo5Ri9Py3Mz7Nc0Lv"}},
		{"adyen", []string{"ADYEN_API_KEY=AQEyhmfxK4vNbhFGw0m/n3Q5qf3VaY9UCJ1+XWZe9W27jmlZiv4PD4jhfNMofnLr2K5i8/0QwV1bDb7kfNy1WIxIIkxgBw==-lUKXT9IQ5GZ6d6RH4nnuOG4Bu6F5s6fC3VLsCfdtGKk=-Dt;5Ul:k7JU?v7[9"}},
		{"square", []string{"SQUARE_ACCESS_TOKEN=EAAAu8jzPde0IgxLd6GncfBAepfJBd0Kh8oOOL8dKLzdocJ2isAjIhKtJ0RlgLKO"}},
		{"twilio", []string{"TWILIO_AUTH_TOKEN=9f8e7d6c5b4a39281706f5e4d3c2b1a0"}},
		{"aws", []string{"AWS_SECRET_ACCESS_KEY=q8Lm3Nc7Xv2Bt5Ry9Wp4Ks6Dh1Gf0Jz8Qe3Ua7I/"}},
		{"github", []string{"GITHUB_TOKEN=ghp_FLZDe1f8rESQedUStPKR0CsTy4Qwb8DwkNhF"}},
		{"sendgrid", []string{"SENDGRID_API_KEY=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"}},
		{"slack", []string{"SLACK_BOT_TOKEN=xoxb-2871459603-4815162342108-Qm7Xv2Lc9Nb4Kt1Rz8Wp3Ys6"}},
		{"mailgun", []string{"MAILGUN_API_KEY=key-3f9a1c7e5b2d8f4a6c0e9b1d3f5a7c92"}},
		{"", []string{"SESSION_SIGNING_KEY=Tq8Zm3Xc7Lv2Nb5WxR4"}},
	}
	// verdicts are the findings on the credential's lines: the first n
	// settings (in YAML, after the object's key line).
	verdicts := func(name, content string, n int) []string {
		fs, _ := d.Scan(name, []byte(content))
		first := 1
		if strings.HasSuffix(name, ".yaml") {
			first = 2
		}
		var out []string
		for _, f := range fs {
			if f.Line >= first && f.Line < first+n {
				out = append(out, fmt.Sprintf("%d %s %s %s", f.Line, f.Rule, f.Kind, f.Environment))
			}
		}
		return out
	}
	yamlOf := func(lines []string) string {
		var b strings.Builder
		b.WriteString("app:\n")
		for _, l := range lines {
			k, v, _ := strings.Cut(l, "=")
			fmt.Fprintf(&b, "  %s: %q\n", strings.ToLower(k), v)
		}
		return b.String()
	}
	for _, c := range credentials {
		aloneEnv := verdicts("app.env", strings.Join(c.lines, "\n")+"\n", len(c.lines))
		aloneYAML := verdicts("app.yaml", yamlOf(c.lines), len(c.lines))
		for _, e := range evidence {
			if e.provider == c.provider && e.provider != "" {
				continue
			}
			both := append(append([]string{}, c.lines...), e.lines...)
			assert.Equal(t, aloneEnv, verdicts("app.env", strings.Join(both, "\n")+"\n", len(c.lines)),
				"%s credential beside %q evidence %v (.env)", c.provider, e.provider, e.lines)
			assert.Equal(t, aloneYAML, verdicts("app.yaml", yamlOf(both), len(c.lines)),
				"%s credential beside %q evidence %v (YAML)", c.provider, e.provider, e.lines)
		}
	}
	// And the property is not vacuous: each provider's own evidence does
	// upgrade its credential.
	for _, pair := range [][2]int{{0, 0}, {1, 2}, {2, 4}, {3, 6}, {4, 7}, {8, 9}} {
		c, e := credentials[pair[0]], evidence[pair[1]]
		both := append(append([]string{}, c.lines...), e.lines...)
		got := verdicts("app.env", strings.Join(both, "\n")+"\n", len(c.lines))
		if assert.NotEmpty(t, got, "%s's own evidence %v", c.provider, e.lines) {
			assert.Contains(t, got[0], "production", "%s's own evidence %v", c.provider, e.lines)
		}
	}
}

// TestFingerprintedProviderUnmatchedIsStaging: when the catalog
// fingerprints all of a provider's production values, that provider's
// credential matching none is staging's; one matching is production.
func TestFingerprintedProviderUnmatchedIsStaging(t *testing.T) {
	const prod, staging = "ghp_FLZDe1f8rESQedUStPKR0CsTy4Qwb8DwkNhF", "ghp_Q2w7Lk9Zx4Cv1Bn8Mm3As6Df0Gh5Jk2Lp9Qr"
	salt := []byte("fingerprint-salt-16b")
	set, _, err := MakeFingerprints(strings.NewReader(prod+"\n"), salt, "vault github")
	require.NoError(t, err)
	p := exampleProduction()
	without, err := NewDetector(p)
	require.NoError(t, err)
	set.Provider = "github"
	p.Fingerprints = append(p.Fingerprints, set)
	with, err := NewDetector(p)
	require.NoError(t, err)

	fs, _ := without.Scan("ci.env", []byte("GITHUB_TOKEN="+staging+"\n"))
	require.Len(t, fs, 1)
	assert.Equal(t, KindCredential, fs[0].Kind, "no fingerprints for GitHub: environment unknown")

	fs, _ = with.Scan("ci.env", []byte("GITHUB_TOKEN="+staging+"\n"))
	assert.Empty(t, fs, "GitHub's production values are all fingerprinted and this is not one")

	fs, _ = with.Scan("ci.env", []byte("GITHUB_TOKEN="+prod+"\n"))
	require.Len(t, fs, 1)
	assert.Equal(t, RuleFingerprint, fs[0].Rule)
	assert.Equal(t, KindSecret, fs[0].Kind)
}
