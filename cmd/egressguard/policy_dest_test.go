package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// policy eval decides every spelling of a destination on its normal form,
// refuses what cannot be normalised with the accepted forms, and says which
// enforcement point holds the rule.
func TestPolicyEvalDestinations(t *testing.T) {
	cat := []string{"--catalog", "../../deploy/examples/catalog.yaml", "--workload", "env=staging"}
	eval := func(dest string) (string, error) {
		return runCLI(t, append(append([]string{"policy", "eval"}, cat...), "--dest", dest)...)
	}
	for dest, want := range map[string][]string{
		"https://api.stripe.com/v1/charges": {"destination  https://api.stripe.com/v1/charges", "decision     deny", "rule         provider:stripe:api.stripe.com"},
		"orders-db.prod.example.com:5432":   {"rule         zone:*.prod.example.com", "enforced by  dns (name), sidecar (SNI/Host)"},
		"prod.example.com":                  {"decision     deny", "rule         zone:*.prod.example.com", "apex prod.example.com included"},
		"dns://smtp.sendgrid.net":           {"decision     deny", "enforced by  dns (name)\n"},
		"smtp.sendgrid.net:443":             {"rule         default"},
		"1.1.1.1:853":                       {"decision     deny", "category     dns-bypass", "sidecar (destination address)"},
	} {
		out, err := eval(dest)
		require.NoError(t, err, dest)
		for _, w := range want {
			assert.Contains(t, out, w, dest)
		}
	}
	// Every spelling of a production address is the same address.
	for _, dest := range []string{"10.20.3.4:443", "169083652:443", "012.024.3.4:443", "0xa.0x14.0x304:443", "[::ffff:10.20.3.4]:443", "[64:ff9b::a14:304]:443", "[2002:a14:304::1]:443"} {
		out, err := eval(dest)
		require.NoError(t, err, dest)
		assert.Contains(t, out, "decision     deny", dest)
		assert.Contains(t, out, "rule         cidr:10.20.0.0/16", dest)
	}
	for _, dest := range []string{"10.20.3.08", "ftp://x.example", "api.example.123", "[10.0.0.1]:443", "host:"} {
		_, err := eval(dest)
		require.Error(t, err, dest)
		assert.Contains(t, err.Error(), "--dest", dest)
	}
	_, err := eval("10.20.3.08")
	assert.ErrorContains(t, err, "inet_aton")
	_, err = eval("gopher://x")
	assert.ErrorContains(t, err, "https://api.stripe.com/v1/charges")
}

// policy explain shows that a zone "*.X" covers its apex X: the zone rule
// carries X as an exact pattern and says so in its reason.
func TestPolicyExplainZoneApex(t *testing.T) {
	out, err := runCLI(t, "policy", "explain", "--catalog", "../../deploy/examples/catalog.yaml", "--workload", "env=staging", "--dest", "prod.example.com:443")
	require.NoError(t, err)
	assert.Contains(t, out, "zone:*.prod.example.com")
	assert.Contains(t, out, "apex prod.example.com included")
	assert.Regexp(t, `\* host prod\.example\.com +deny +zone:\*\.prod\.example\.com: most specific`, out)
}
