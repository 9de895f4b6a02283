package admin

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/egressguard/egressguard/policy"
	"github.com/egressguard/egressguard/xds/nodeauth"
)

func TestIdentityAPI(t *testing.T) {
	off := httptest.NewServer(API(Options{}))
	defer off.Close()
	code, _, body := get(t, off.URL+"/api/identity")
	require.Equal(t, http.StatusOK, code)
	assert.JSONEq(t, `{"enabled": false, "refusals": []}`, string(body))

	at := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	srv := httptest.NewServer(API(Options{IdentityRefusals: func() []nodeauth.Refusal {
		return []nodeauth.Refusal{
			{Time: at, NodeID: "sidecar~10.1.2.3~pay-1.prod~prod.svc.cluster.local", Peer: "10.9.9.9", Evidence: nodeauth.EvidencePeer, Reason: "peer 10.9.9.9 is not pod 10.1.2.3", Enforced: true},
			{Time: at, NodeID: "sidecar~10.1.2.4~shop-1.staging~staging.svc.cluster.local", Peer: "10.9.9.8", Evidence: nodeauth.EvidenceToken, Reason: "token audience"},
		}
	}}))
	defer srv.Close()
	code, _, body = get(t, srv.URL+"/api/identity")
	require.Equal(t, http.StatusOK, code)
	var got struct {
		Enabled  bool `json:"enabled"`
		Refusals []struct {
			Peer, Evidence, Reason, Mode string
			NodeID                       string `json:"node_id"`
		} `json:"refusals"`
	}
	require.NoError(t, json.Unmarshal(body, &got))
	assert.True(t, got.Enabled)
	require.Len(t, got.Refusals, 2)
	assert.Equal(t, "sidecar~10.1.2.3~pay-1.prod~prod.svc.cluster.local", got.Refusals[0].NodeID)
	assert.Equal(t, "10.9.9.9", got.Refusals[0].Peer)
	assert.Equal(t, "peer", got.Refusals[0].Evidence)
	assert.Equal(t, "peer 10.9.9.9 is not pod 10.1.2.3", got.Refusals[0].Reason)
	assert.Equal(t, ModeRefused, got.Refusals[0].Mode)
	assert.Equal(t, ModeWouldDeny, got.Refusals[1].Mode, "report mode: served and recorded")
}

func TestOptOutsAPI(t *testing.T) {
	cat, err := policy.ParseCatalog("c.yaml", []byte(`host_network_opt_outs:
  - {id: node-exporter, namespace: monitoring, pods: "node-exporter-*", owner: obs, ticket: OPS-1, expires: 2026-12-31}
  - {id: old-cni, namespace: kube-system, owner: net, ticket: NET-2, expires: 2026-01-31}
`))
	require.NoError(t, err)
	now := time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)
	views := NewOptOutViews(cat, nil, now)
	require.Len(t, views, 2)
	assert.False(t, views[0].Expired)
	assert.True(t, views[1].Expired)
	assert.Empty(t, views[0].Admitted)

	srv := httptest.NewServer(API(Options{HostNetworkOptOuts: func() []OptOutView { return views }}))
	defer srv.Close()
	code, _, body := get(t, srv.URL+"/api/optouts")
	require.Equal(t, http.StatusOK, code)
	var got struct {
		OptOuts []map[string]any `json:"opt_outs"`
	}
	require.NoError(t, json.Unmarshal(body, &got))
	require.Len(t, got.OptOuts, 2)
	assert.Equal(t, "node-exporter", got.OptOuts[0]["id"])
	assert.Equal(t, "monitoring", got.OptOuts[0]["namespace"])
	assert.Equal(t, "node-exporter-*", got.OptOuts[0]["pods"])
	assert.Equal(t, "2026-12-31", got.OptOuts[0]["expires"])
	assert.Equal(t, "obs", got.OptOuts[0]["owner"])
	assert.Equal(t, []any{}, got.OptOuts[0]["admitted"])
	assert.Equal(t, true, got.OptOuts[1]["expired"])
}
