package plan

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// pathCase is one line of testdata/normalize_path.json, the table the xds
// translator's property test shares: Envoy configured as NormalizePath says
// must turn Raw into Normal, or refuse it when OK is false.
type pathCase struct {
	Raw    string `json:"raw"`
	Normal string `json:"normal"`
	OK     *bool  `json:"ok"`
	Why    string `json:"why"`
}

func loadPathCases(t testing.TB) []pathCase {
	b, err := os.ReadFile("testdata/normalize_path.json")
	require.NoError(t, err)
	var cases []pathCase
	require.NoError(t, json.Unmarshal(b, &cases))
	require.NotEmpty(t, cases)
	return cases
}

func TestNormalizePathTable(t *testing.T) {
	for _, c := range loadPathCases(t) {
		got, ok := NormalizePath(c.Raw)
		want := c.OK == nil || *c.OK
		require.Equal(t, want, ok, "%q (%s)", c.Raw, c.Why)
		if want {
			require.Equal(t, c.Normal, got, "%q (%s)", c.Raw, c.Why)
		}
	}
}

func TestNormalizePathNoAllocWhenNormal(t *testing.T) {
	allocs := testing.AllocsPerRun(100, func() {
		if _, ok := NormalizePath("/v1/charges/ch_123.json?limit=3"); !ok {
			t.Fatal("refused")
		}
	})
	require.Zero(t, allocs)
}

// FuzzNormalizePath: normalisation never panics, is idempotent, and its
// output has no dot segments, repeated slashes, backslashes, query,
// fragment, escaped slashes or escapes of unreserved characters.
func FuzzNormalizePath(f *testing.F) {
	for _, c := range loadPathCases(f) {
		f.Add(c.Raw)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		n, ok := NormalizePath(raw)
		if !ok {
			return
		}
		again, ok := NormalizePath(n)
		require.True(t, ok, "%q -> %q refused", raw, n)
		require.Equal(t, n, again, "not idempotent for %q", raw)
		require.True(t, strings.HasPrefix(n, "/"))
		require.NotContains(t, n, "//")
		require.NotContains(t, n, "\\")
		require.NotContains(t, n, "?")
		require.NotContains(t, n, "#")
		for _, seg := range strings.Split(n, "/") {
			require.NotContains(t, []string{".", ".."}, seg, "dot segment in %q", n)
		}
		for i := strings.IndexByte(n, '%'); i >= 0; i = strings.IndexByte(n[i+1:], '%') + i + 1 {
			v, valid := decodeEscape(n, i)
			require.True(t, valid, "invalid escape in %q", n)
			require.NotEqual(t, uint8(pathUnescape), pathClass[v], "escaped unreserved character in %q", n)
			require.NotContains(t, []byte{'/', '\\', 0}, v)
			if strings.IndexByte(n[i+1:], '%') < 0 {
				break
			}
		}
		for i := 0; i < len(n); i++ {
			require.NotEqual(t, uint8(pathEscape), pathClass[n[i]], "unescaped %q in %q", n[i], n)
		}
	})
}
