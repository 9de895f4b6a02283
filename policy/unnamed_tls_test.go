package policy

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/egressguard/egressguard/inventory"
	"github.com/egressguard/egressguard/policy/plan"
)

// The catalog's unnamed_tls reaches the plans of guarded classes (the
// sidecar decides TLS without a usable server name with it) and never the
// plans of production workloads; a bad value names the field.
func TestCatalogUnnamedTLS(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
		return p
	}
	e := newTestEngine(t, Options{CatalogFiles: []string{
		"testdata/catalogs/operator.yaml",
		write("unnamed.yaml", "unnamed_tls: deny\n"),
	}})
	staging, err := e.PlanFor(&inventory.Workload{Name: "web", Environment: "staging"})
	require.NoError(t, err)
	assert.Equal(t, plan.UnnamedTLSRuleID, staging.UnnamedTLS().ID)
	assert.Equal(t, plan.ActionDeny, staging.UnnamedTLS().Action)
	prod, err := e.PlanFor(&inventory.Workload{Name: "web", Environment: "production"})
	require.NoError(t, err)
	assert.NotEqual(t, plan.UnnamedTLSRuleID, prod.UnnamedTLS().ID, "production plans keep their default")

	// Without the key, guarded plans keep their default for unnamed TLS.
	plain := operatorEngine(t)
	p, err := plain.PlanFor(&inventory.Workload{Name: "web", Environment: "staging"})
	require.NoError(t, err)
	assert.NotEqual(t, plan.UnnamedTLSRuleID, p.UnnamedTLS().ID)

	bad := write("bad.yaml", "zones: [\"*.prod.example.com\"]\nunnamed_tls: block\n")
	_, err = NewEngine(context.Background(), Options{CatalogFiles: []string{bad}, Now: fixedNow}, zaptest.NewLogger(t), nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "bad.yaml")
	assert.Contains(t, err.Error(), "unnamed_tls")
}
