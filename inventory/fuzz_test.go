package inventory

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// FuzzParse: parsing never panics, and Marshal is a parse fixpoint:
// parse(marshal(s)) equals s and marshals to the same bytes.
func FuzzParse(f *testing.F) {
	for _, dir := range []string{"testdata/valid", "testdata/invalid"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
		require.NoError(f, err)
		for _, file := range files {
			b, err := os.ReadFile(file)
			require.NoError(f, err)
			f.Add(b)
		}
	}
	f.Add([]byte("workloads:\n- {name: a, environment: qa, ips: ['::ffff:1.2.3.4', 'fd00::/8'], labels: {'x y': \"\\u00e9\"}}\n"))
	f.Add([]byte("default_environment: 'yes'\nworkloads: [{name: '0x10', environment: 'null', namespace: '~'}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse("fuzz.yaml", data)
		if err != nil {
			return
		}
		b, err := s.Marshal()
		require.NoError(t, err)
		again, err := Parse("marshalled.yaml", b)
		require.NoError(t, err, "marshalled:\n%s", b)
		assertSameSnapshot(t, s, again)
		b2, err := again.Marshal()
		require.NoError(t, err)
		assert.Equal(t, string(b), string(b2))
	})
}
