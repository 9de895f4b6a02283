package xds

import (
	"testing"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/egressguard/egressguard/inventory"
	"github.com/egressguard/egressguard/policy/plan"
)

// TestProxylessNodeOfAPod: a proxyless client announcing the proxyless form
// of its pod's node ID ("grpc~..." for the inventory's "sidecar~...") is
// that pod's workload, not an unknown (default-environment) node; the pod's
// sidecar is another node of the same workload, each served its kind.
func TestProxylessNodeOfAPod(t *testing.T) {
	const sidecarID = "sidecar~10.244.3.17~ledger-0.payments~payments.svc.cluster.local"
	grpcID := ProxylessNodePrefix + sidecarID[len("sidecar~"):]
	snap, err := inventory.NewSnapshot("staging", []inventory.Workload{
		{Name: "ledger", Namespace: "payments", Environment: "production", NodeIDs: []string{sidecarID}}})
	require.NoError(t, err)
	prod := mustCompile(t, plan.Spec{Default: plan.ActionAllow})
	staging := mustCompile(t, smallSpec)
	plans := planFunc(func(w *inventory.Workload) (*plan.Plan, error) {
		if w.Environment == "production" {
			return prod, nil
		}
		return staging, nil
	})
	enf, err := NewEnforcer(plans, inventory.NewStatic(snap), Defaults(), zaptest.NewLogger(t), NewMetrics(nil))
	require.NoError(t, err)
	require.NoError(t, enf.streamNode(1, proxylessNode(grpcID)))
	require.NoError(t, enf.streamNode(2, sidecarNode(sidecarID)))
	require.NoError(t, enf.streamNode(3, proxylessNode("grpc~10.9.9.9~stranger.x~x.svc.cluster.local")))
	enf.requested(1, resourcev3.ListenerType, []string{"api.prod.example.com:443"})

	byID := map[string]NodeView{}
	for _, v := range enf.Nodes() {
		byID[v.ID] = v
	}
	assert.Equal(t, "ledger", byID[grpcID].Workload)
	assert.Equal(t, "production", byID[grpcID].Environment)
	assert.Equal(t, "proxyless-grpc", byID[grpcID].Kind)
	assert.Equal(t, "sidecar", byID[sidecarID].Kind)
	assert.Equal(t, prod.Fingerprint(), enf.NodeSnapshot(grpcID).Class)
	assert.Equal(t, prod.Fingerprint(), enf.NodeSnapshot(sidecarID).Class)
	assert.Equal(t, "staging", byID["grpc~10.9.9.9~stranger.x~x.svc.cluster.local"].Environment, "an unknown pod stays default")
}

// TestOneNodeIDOneKind: a stream whose client is of another kind than the
// node's other streams (a gRPC client reusing its pod's sidecar ID) is
// refused with a reason; the node's own streams go on.
func TestOneNodeIDOneKind(t *testing.T) {
	const id = "sidecar~10.244.3.17~ledger-0.payments~payments.svc.cluster.local"
	enf, err := NewEnforcer(&switchPlans{}, staticInventory(t, id), Defaults(), zaptest.NewLogger(t), NewMetrics(nil))
	require.NoError(t, err)
	enf.plans.(*switchPlans).p.Store(mustCompile(t, smallSpec))
	require.NoError(t, enf.streamNode(1, sidecarNode(id)))
	err = enf.streamNode(2, proxylessNode(id))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "is connected as a sidecar")
	require.NoError(t, enf.streamNode(3, sidecarNode(id)))
	views := enf.Nodes()
	require.Len(t, views, 1)
	assert.Equal(t, 2, views[0].Streams)
}
