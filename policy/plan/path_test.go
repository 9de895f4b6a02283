package plan

import (
	"encoding/json"
	"os"
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
