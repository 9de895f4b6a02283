package stagingca

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// BenchmarkLeaf compares a cold mint (a new ECDSA P-256 leaf key, the CA's
// signature, the self-check against the anchor) with a cache hit, per CA
// key type.
func BenchmarkLeaf(b *testing.B) {
	for _, key := range []struct{ name, file string }{{"rsa2048", "testdata/ca1.key"}, {"ecdsaP256", "testdata/ec.key"}} {
		a := newAuthority(b, Config{KeyFile: key.file}, testHosts...)
		a.log = nopLogger()
		b.Run("mint/"+key.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				a.mu.Lock()
				clear(a.leaves)
				a.mu.Unlock()
				_, err := a.Leaf("api.stripe.com")
				require.NoError(b, err)
			}
		})
		b.Run("cached/"+key.name, func(b *testing.B) {
			_, err := a.Leaf("api.stripe.com")
			require.NoError(b, err)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := a.Leaf("api.stripe.com"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSetPermitted measures an anchor rebuild (a policy activation
// that changes the intercepted hosts) for a catalog-sized host set.
func BenchmarkSetPermitted(b *testing.B) {
	for _, key := range []struct{ name, file string }{{"rsa2048", "testdata/ca1.key"}, {"ecdsaP256", "testdata/ec.key"}} {
		a := newAuthority(b, Config{KeyFile: key.file})
		a.log = nopLogger()
		sets := [2][]string{}
		for i := range 60 {
			sets[0] = append(sets[0], fmt.Sprintf("api%d.example.com", i))
			sets[1] = append(sets[1], fmt.Sprintf("api%d.example.net", i))
		}
		b.Run(key.name+"/60hosts", func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				require.NoError(b, a.SetPermitted(sets[i%2]))
				i++
			}
		})
	}
}
