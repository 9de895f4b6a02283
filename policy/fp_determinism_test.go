package policy

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/egressguard/egressguard/inventory"
)

// TestPlanFingerprintDeterministic: two engines loaded from the same files
// give every class the same plan fingerprint (xds versions and policy diff
// grouping depend on it).
func TestPlanFingerprintDeterministic(t *testing.T) {
	var b strings.Builder
	b.WriteString("zones:\n")
	for i := range 50 {
		fmt.Fprintf(&b, "  - \"*.svc%d.prod.example.com\"\n", i)
	}
	b.WriteString("exceptions:\n")
	for i := range 20 {
		fmt.Fprintf(&b, "  - id: e%d\n    workload: {environment: staging, labels: {app: app-%d}}\n    hosts: [\"*.svc%d.prod.example.com\", \"x%d.svc%d.prod.example.com\"]\n    cidrs: [10.%d.0.0/16]\n    expires: 2099-01-01\n    owner: o\n    ticket: T-%d\n", i, i%5, i, i, (i+1)%50, i, i)
	}
	f := filepath.Join(t.TempDir(), "c.yaml")
	require.NoError(t, os.WriteFile(f, []byte(b.String()), 0o600))
	fps := func() map[string]string {
		e, err := NewEngine(context.Background(), Options{CatalogFiles: []string{f}}, zap.NewNop(), nil)
		require.NoError(t, err)
		out := map[string]string{}
		for i := range 5 {
			w := &inventory.Workload{Name: "w", Environment: "staging", Labels: map[string]string{"app": fmt.Sprintf("app-%d", i)}}
			p, err := e.PlanFor(w)
			require.NoError(t, err)
			out[w.Labels["app"]] = p.Fingerprint()
		}
		return out
	}
	first := fps()
	for range 5 {
		require.Equal(t, first, fps())
	}
}
