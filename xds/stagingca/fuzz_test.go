package stagingca

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func seedFiles(f *testing.F) [][]byte {
	var out [][]byte
	for _, name := range []string{"testdata/ca1.key", "testdata/ca2.key", "testdata/ec.key"} {
		b, err := os.ReadFile(name)
		require.NoError(f, err)
		out = append(out, b)
	}
	return out
}

// FuzzParseKeyPEM: any input either fails with an error or yields a usable
// signer whose certificate, if any, is for that key.
func FuzzParseKeyPEM(f *testing.F) {
	seeds := seedFiles(f)
	for _, s := range seeds {
		f.Add(s)
	}
	a, err := New(Config{KeyFile: "testdata/ca1.key"}, nopLogger())
	require.NoError(f, err)
	f.Add(append(slices.Clone(seeds[0]), a.AnchorsPEM()...))
	f.Add(append(slices.Clone(seeds[1]), a.AnchorsPEM()...))
	f.Add(a.AnchorsPEM())
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseKeyPEM(b)
		if err != nil {
			require.Nil(t, m.key)
			return
		}
		require.NotNil(t, m.key)
		if m.cert != nil {
			require.True(t, samePublicKey(m.cert.PublicKey, m.key.Public()))
		}
	})
}

// FuzzParseCertPEM: a CertFile parses to one certificate or fails.
func FuzzParseCertPEM(f *testing.F) {
	a, err := New(Config{KeyFile: "testdata/ec.key"}, nopLogger())
	require.NoError(f, err)
	f.Add(a.AnchorsPEM())
	f.Add(append(a.AnchorsPEM(), a.AnchorsPEM()...))
	f.Add(seedFiles(f)[2])
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := parseCertPEM(b)
		if err == nil {
			require.NotNil(t, c)
			require.NotEmpty(t, c.Raw)
		}
	})
}

// FuzzNormalizeHosts: the normal form is a fixpoint, every accepted pattern
// yields constraints that admit it (checked by the same rules Go applies),
// and nothing accepted is an IP address.
func FuzzNormalizeHosts(f *testing.F) {
	for _, s := range []string{"api.stripe.com", "*.stripe.com", "API.Stripe.com.", "*.com", "1.2.3.4", "a..b", "a.*.b", "x_y.example", ""} {
		f.Add(s, "api.twilio.com")
	}
	f.Fuzz(func(t *testing.T, h1, h2 string) {
		out, err := normalizeHosts([]string{h1, h2})
		if err != nil {
			return
		}
		again, err := normalizeHosts(out)
		require.NoError(t, err)
		require.Equal(t, out, again)
		permitted, excluded := constraintsFor(out)
		for _, h := range out {
			require.False(t, strings.ContainsAny(h, ":"), h)
			c := anchorLike(permitted, excluded)
			require.True(t, admits(c, h), "%q with permitted %v excluded %v", h, permitted, excluded)
			require.True(t, permits(out, h))
		}
	})
}
