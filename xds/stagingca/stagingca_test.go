package stagingca

import (
	"crypto/x509"
	"encoding/pem"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
)

func newAuthority(t testing.TB, cfg Config, hosts ...string) *Authority {
	t.Helper()
	a, err := New(cfg, zaptest.NewLogger(t))
	require.NoError(t, err)
	if hosts != nil {
		require.NoError(t, a.SetPermitted(hosts))
	}
	return a
}

// parseCerts parses every CERTIFICATE block of a PEM bundle.
func parseCerts(t testing.TB, b []byte) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return out
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		require.NoError(t, err)
		out = append(out, c)
	}
}

func TestLeafForPermittedHost(t *testing.T) {
	a := newAuthority(t, Config{KeyFile: "testdata/ca1.key"}, "api.stripe.com", "*.sandbox.example.com")
	l, err := a.Leaf("api.stripe.com")
	require.NoError(t, err)
	leaf := parseCerts(t, l.CertPEM)
	require.Len(t, leaf, 1)
	require.Equal(t, []string{"api.stripe.com"}, leaf[0].DNSNames)
	_, err = a.Leaf("api.paypal.com")
	require.ErrorContains(t, err, "not intercepted")
}
