package inject

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
)

// testOptOuts answers as a catalog holding the opt-outs "node-agent"
// (namespace kube-system) and "shop-agent" (namespace shop) would
// (policy.Catalog.AdmitHostNetwork is tested in package policy, the
// wiring of the two in cmd/egressguard).
func testOptOuts(id string, _ *corev1.Pod, ns string) (string, error) {
	want := map[string]string{"node-agent": "kube-system", "shop-agent": "shop"}[id]
	if want == "" {
		return "", fmt.Errorf("no host_network_opt_outs entry %q in the catalog", id)
	}
	if ns != want {
		return "", fmt.Errorf("opt-out %q is for namespace %q, not %q", id, want, ns)
	}
	return "owner team-ops, ticket OPS-1, expires 2026-12-31", nil
}

func hostNetworkPod(optOut string) *corev1.Pod {
	p := samplePod()
	p.Spec.HostNetwork = true
	if optOut != "" {
		p.Annotations[AnnotationHostNetworkOptOut] = optOut
	}
	return p
}

// TestHostNetworkOptOutNamesACatalogEntry: free text, an unknown ID or
// another namespace's opt-out is no opt-out (refused with the reason and
// how to add one); without a catalog nothing is; a covering opt-out admits
// the pod unchanged, audited and logged.
func TestHostNetworkOptOutNamesACatalogEntry(t *testing.T) {
	inj := injectorIn(t, ModeEnforce)
	log := NewOptOutLog(2)
	inj.hostNet = hostNetworkGate{check: testOptOuts, log: log}
	for v, why := range map[string]string{
		"":                  "",
		"OPS-7: cni daemon": `no host_network_opt_outs entry "OPS-7: cni daemon"`,
		"node-agent":        `opt-out "node-agent" is for namespace "kube-system", not "shop"`,
	} {
		_, _, err := inj.Inject(hostNetworkPod(v), "shop")
		var refused *RefusedError
		require.ErrorAs(t, err, &refused, "opt-out %q", v)
		assert.Contains(t, refused.Reason, why)
		assert.Contains(t, refused.Reason, "host_network_opt_outs (id, namespace shop, pods or labels, owner, ticket, expires")
		assert.Contains(t, refused.Reason, AnnotationHostNetworkOptOut+": <id>")
	}
	assert.Empty(t, log.Recent("node-agent"))

	bare := injectorIn(t, ModeEnforce)
	_, _, err := bare.Inject(hostNetworkPod("shop-agent"), "shop")
	require.ErrorContains(t, err, "this webhook has no catalog of opt-outs")

	for i, name := range []string{"a", "b", ""} {
		p := hostNetworkPod(" shop-agent ")
		p.Name, p.GenerateName = name, "agent-"
		out, d, err := inj.Inject(p, "shop")
		require.NoError(t, err, i)
		assert.Same(t, p, out)
		assert.Equal(t, SkipHostNetwork, d.Reason)
		assert.Equal(t, map[string]string{AuditHostNetworkOptOut: "shop-agent: owner team-ops, ticket OPS-1, expires 2026-12-31"}, d.Audit)
	}
	got := log.Recent("shop-agent")
	require.Len(t, got, 2, "the log keeps perID admissions")
	assert.Equal(t, "agent-*", got[0].Pod, "newest first; an unnamed pod by its generateName")
	assert.Equal(t, "b", got[1].Pod)
	assert.Equal(t, "shop", got[0].Namespace)
	assert.Equal(t, "shop-agent", got[0].OptOut)
}

// TestHostNetworkOptOutReportMode: report mode admits a host-network pod
// without a valid opt-out, recording why enforce mode would refuse it.
func TestHostNetworkOptOutReportMode(t *testing.T) {
	inj := injectorIn(t, ModeReport)
	inj.hostNet = hostNetworkGate{check: testOptOuts}
	p := hostNetworkPod("node-agent")
	out, d, err := inj.Inject(p, "shop")
	require.NoError(t, err)
	assert.Same(t, p, out)
	require.Len(t, d.WouldDeny, 1)
	assert.Contains(t, d.WouldDeny[0], `opt-out "node-agent" is for namespace "kube-system"`)
	assert.Empty(t, d.Audit)
}
