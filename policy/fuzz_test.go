package policy

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzParseCatalog: parsing never panics, and a parsed catalog marshals to
// YAML that parses back to the same catalog (marshal is a parse fixpoint).
func FuzzParseCatalog(f *testing.F) {
	f.Add(DefaultCatalog().Data)
	for _, dir := range []string{"testdata/catalogs", "testdata/invalid"} {
		ents, err := os.ReadDir(dir)
		require.NoError(f, err)
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			require.NoError(f, err)
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseCatalog("fuzz.yaml", b)
		if err != nil {
			return
		}
		out, err := MarshalCatalog(c)
		require.NoError(t, err)
		c2, err := ParseCatalog("again.yaml", out)
		require.NoError(t, err, "marshalled catalog does not parse:\n%s", out)
		out2, err := MarshalCatalog(c2)
		require.NoError(t, err)
		require.Equal(t, string(out), string(out2))
	})
}

// FuzzParseScenarios: no panic on any input.
func FuzzParseScenarios(f *testing.F) {
	f.Add(defaultScenarios())
	b, err := os.ReadFile("testdata/scenarios/operator.yaml")
	require.NoError(f, err)
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = ParseScenarios("fuzz.yaml", b)
	})
}

// FuzzParseDestination: no panic; an accepted destination renders back to
// a string that parses to the same destination.
func FuzzParseDestination(f *testing.F) {
	for _, s := range []string{"api-m.paypal.com:443", "10.0.0.1", "[2001:db8::1]:443", "::ffff:1.2.3.4", "bücher.example:80", "a..b", ":80", "https://api.stripe.com/v1/charges", "167772161:25", "xds:///payments:443", "0x7f.1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDestination(s)
		if err != nil {
			return
		}
		host := d.Host
		if d.IP.IsValid() {
			host = d.IP.String()
		}
		again := host
		if d.Port != 0 {
			if d.IP.Is6() {
				again = "[" + host + "]"
			}
			again += ":" + itoa(int(d.Port))
		}
		d2, err := ParseDestination(again)
		require.NoError(t, err, "re-parse %q (from %q)", again, s)
		d.Protocol = "" // a URL's scheme is not rendered back
		require.Equal(t, d, d2)
	})
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}
