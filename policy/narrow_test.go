package policy

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/egressguard/egressguard/inventory"
	"github.com/egressguard/egressguard/policy/plan"
)

// An exception for a host opens that host and nothing behind it: the same
// production address with another Host/SNI, none, or in another spelling is
// still denied, and a zone exception "*.X" does not open the apex X.
func TestExceptionsStayNarrow(t *testing.T) {
	cat := filepath.Join(t.TempDir(), "catalog.yaml")
	require.NoError(t, os.WriteFile(cat, []byte(`
zones: ["*.prod.example.com"]
cidrs: [10.20.0.0/16]
exceptions:
  - id: checkout-status
    workload: {environment: staging, labels: {app: checkout}}
    hosts: [status.prod.example.com]
    expires: 2099-12-31
    owner: a@example.com
    ticket: SEC-1
  - id: reporting-zone
    workload: {environment: staging, labels: {app: reporting}}
    hosts: ["*.prod.example.com"]
    expires: 2099-12-31
    owner: a@example.com
    ticket: SEC-2
`), 0o600))
	e := newTestEngine(t, Options{CatalogFiles: []string{cat}})
	checkout := &inventory.Workload{Name: "checkout", Environment: "staging", Labels: map[string]string{"app": "checkout"}}
	p, err := e.PlanFor(checkout)
	require.NoError(t, err)
	for _, r := range p.Spec().Rules {
		if r.Action == plan.ActionAllow {
			assert.Empty(t, r.CIDRs, "exception rule %s opens addresses", r.ID)
		}
	}
	prod := netip.MustParseAddr("10.20.1.1")
	decide := func(w *inventory.Workload, d plan.Destination) string {
		t.Helper()
		dec, err := e.Decide(w, d)
		require.NoError(t, err)
		return dec.RuleID()
	}
	assert.Equal(t, "exception:checkout-status", decide(checkout, plan.Destination{Host: "status.prod.example.com", IP: prod, Port: 443}))
	for _, d := range []plan.Destination{
		{Host: "other.prod.example.com", IP: prod, Port: 443},
		{Host: "www.example.org", IP: prod, Port: 443},
		{IP: prod, Port: 443},
		{Host: "10.20.1.1", IP: prod, Port: 443},
		{Host: "10.20.1.1", Port: 443},
		{IP: netip.MustParseAddr("64:ff9b::a14:101"), Port: 443},
		{Host: "www.example.org", IP: netip.MustParseAddr("::ffff:10.20.1.1"), Port: 443},
	} {
		dec, err := e.Decide(checkout, d)
		require.NoError(t, err)
		assert.Equal(t, plan.ActionDeny, dec.Action, "%+v decided by %s", d, dec.RuleID())
	}
	reporting := &inventory.Workload{Name: "r", Environment: "staging", Labels: map[string]string{"app": "reporting"}}
	assert.Equal(t, "exception:reporting-zone", decide(reporting, plan.Destination{Host: "db.prod.example.com", Port: 5432}))
	assert.Equal(t, "zone:*.prod.example.com", decide(reporting, plan.Destination{Host: "prod.example.com", Port: 443}), "the apex stays closed")
	assert.Equal(t, "cidr:10.20.0.0/16", decide(reporting, plan.Destination{IP: prod, Port: 5432}))
}
