package stagingca

import (
	"net"
	"os"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/require"
)

// systemBundle is the Debian/Alpine CA bundle the webhook's init container
// starts from, if this machine has one.
const systemBundle = "/etc/ssl/certs/ca-certificates.crt"

// TestOpenSSLVerify checks leaves with a second, independent verifier:
// OpenSSL (crypto/x509/v3_ncons.c), as curl, Python and Node use it.
func TestOpenSSLVerify(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl is not installed: the crypto/x509 tests stand alone")
	}
	dir := t.TempDir()
	a := newAuthority(t, Config{KeyFile: "testdata/ca1.key"}, testHosts...)
	bundle := a.AnchorsPEM()
	if sys, err := os.ReadFile(systemBundle); err == nil {
		bundle = append(sys, bundle...)
	} else {
		t.Logf("no %s: anchors only", systemBundle)
	}
	ca := writeFile(t, dir, "bundle.pem", bundle)
	run := func(leafPEM []byte, host string, ip bool) (string, error) {
		leaf := writeFile(t, dir, "leaf.pem", leafPEM)
		flag := "-verify_hostname"
		if ip {
			flag = "-verify_ip"
		}
		out, err := exec.Command(openssl, "verify", "-CAfile", ca, "-purpose", "sslserver", flag, host, leaf).CombinedOutput()
		return string(out), err
	}
	for _, host := range []string{"api.stripe.com", "v2.api.twilio.com", "*.sandbox.example.com"} {
		l, err := a.Leaf(host)
		require.NoError(t, err)
		name := host
		if host[0] == '*' {
			name = "a" + host[1:]
		}
		out, err := run(l.CertPEM, name, false)
		require.NoError(t, err, out)
		require.Contains(t, out, ": OK")
	}
	for _, c := range []struct {
		dns  string
		want string
	}{
		{"www.google.com", "permitted subtree violation"},
		{"x.api.stripe.com", "excluded subtree violation"},
		{"stripe.com", "permitted subtree violation"},
		{"sandbox.example.com", "permitted subtree violation"},
	} {
		out, err := run(forge(t, a, []string{c.dns}, nil), c.dns, false)
		require.Error(t, err, out)
		require.Contains(t, out, c.want, c.dns)
	}
	out, err := run(forge(t, a, nil, []net.IP{net.ParseIP("203.0.113.7")}), "203.0.113.7", true)
	require.Error(t, err, out)
	require.Contains(t, out, "excluded subtree violation")
}
