package review

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/egressguard/egressguard/policy"
)

// TestLintOptOuts: every host-network opt-out is listed with its scope,
// and the exception rules hold: too far ahead is an error, expired a
// warning.
func TestLintOptOuts(t *testing.T) {
	data := []byte(`zones: ["*.prod.example.com"]
host_network_opt_outs:
  - id: node-exporter
    namespace: monitoring
    pods: "node-exporter-*"
    labels: {app: node-exporter, tier: node}
    owner: obs@example.com
    ticket: OPS-1
    expires: 2026-12-31
  - id: forever
    namespace: kube-system
    owner: net@example.com
    ticket: NET-2
    expires: 2099-12-31
  - id: stale
    namespace: kube-system
    owner: net@example.com
    ticket: NET-3
    expires: 2026-11-30
`)
	c, err := policy.ParseCatalog("c.yaml", data)
	require.NoError(t, err)
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	fs := lintOptOuts("c.yaml", data, c, now, now.Truncate(24*time.Hour).AddDate(0, 0, MaxExceptionDays))
	var buf bytes.Buffer
	require.NoError(t, WriteFindings(&buf, fs))
	assert.Equal(t, `c.yaml:3: info: host_network_opt_outs[0] (node-exporter): admits host-network pods node-exporter-* labelled app=node-exporter,tier=node in namespace monitoring until 2026-12-31 (owner obs@example.com, ticket OPS-1) [host-network-opt-out]
c.yaml:10: info: host_network_opt_outs[1] (forever): admits host-network pods of any name in namespace kube-system until 2099-12-31 (owner net@example.com, ticket NET-2) [host-network-opt-out]
c.yaml:10: error: host_network_opt_outs[1] (forever): expires 2099-12-31, more than 90 days ahead (latest allowed: 2027-03-04) [host-network-opt-out]
c.yaml:15: info: host_network_opt_outs[2] (stale): admits host-network pods of any name in namespace kube-system until 2026-11-30 (owner net@example.com, ticket NET-3) [host-network-opt-out]
c.yaml:15: warning: host_network_opt_outs[2] (stale): expired 2026-11-30 and is ignored; delete it or renew it (owner net@example.com, ticket NET-3) [host-network-opt-out]
1 error(s), 1 warning(s)
`, buf.String())
}
