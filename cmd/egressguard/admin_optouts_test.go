package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	admissionv1 "k8s.io/api/admission/v1"

	"github.com/egressguard/egressguard/internal/testcert"
)

// hostNetworkReview is the AdmissionReview of a DaemonSet's host-network
// pod (not named yet) in namespace monitoring naming opt-out id.
func hostNetworkReview(t *testing.T, uid, id string) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{
		"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
		"request": map[string]any{
			"uid": uid, "namespace": "monitoring", "operation": "CREATE",
			"kind":     map[string]string{"group": "", "version": "v1", "kind": "Pod"},
			"resource": map[string]string{"group": "", "version": "v1", "resource": "pods"},
			"object": map[string]any{
				"apiVersion": "v1", "kind": "Pod",
				"metadata": map[string]any{"generateName": "node-exporter-", "namespace": "monitoring",
					"labels": map[string]string{"app": "node-exporter"}, "annotations": map[string]string{"egressguard.io/host-network-opt-out": id}},
				"spec": map[string]any{"hostNetwork": true, "containers": []any{map[string]any{"name": "exporter", "image": "prom/node-exporter:v1"}}},
			},
		},
	})
	require.NoError(t, err)
	return b
}

// TestAdminOptOutsAndIdentity runs serve with the webhook, a catalog with
// a host-network opt-out and xDS identity in enforce mode: a pod naming
// the opt-out is admitted and listed under it on /api/optouts, one naming
// an unknown ID is refused with how to add one, and a sidecar claiming a
// node ID whose pod IP is not its address is refused and listed on
// /api/identity.
func TestAdminOptOutsAndIdentity(t *testing.T) {
	cfg := testServeConfig(t)
	dir := t.TempDir()
	cat := filepath.Join(dir, "catalog.yaml")
	require.NoError(t, os.WriteFile(cat, []byte(`host_network_opt_outs:
  - {id: node-exporter, namespace: monitoring, pods: "node-exporter-*", labels: {app: node-exporter},
     owner: obs@example.com, ticket: OPS-1234, expires: 2099-12-31}
`), 0o644))
	cfg.Policy.Catalogs = []string{cat}
	cfg.Webhook.Listen = "127.0.0.1:0"
	cert := testcert.Write(t, dir, 1)
	cfg.Webhook.CertFile, cfg.Webhook.KeyFile = testcert.CertFile(dir), testcert.KeyFile(dir)
	cfg.Webhook.DNSServer = "10.96.0.53"
	cfg.Webhook.XDSAddress = "egressguard.egressguard.svc:18000"
	require.NoError(t, applySet(&cfg, "xds.identity.mode=enforce"))
	require.NoError(t, cfg.validate())
	addrs := startGuard(t, cfg)
	admin := "http://" + addrs.Admin.String()

	post := func(body []byte) *admissionv1.AdmissionResponse {
		t.Helper()
		resp, err := testcert.Client(cert).Post("https://"+addrs.Webhook.String()+"/mutate", "application/json", bytes.NewReader(body))
		require.NoError(t, err)
		defer resp.Body.Close()
		out, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode, string(out))
		var rev admissionv1.AdmissionReview
		require.NoError(t, json.Unmarshal(out, &rev))
		require.NotNil(t, rev.Response)
		return rev.Response
	}
	ok := post(hostNetworkReview(t, "11111111-0000-4000-8000-0000000000a1", "node-exporter"))
	assert.True(t, ok.Allowed)
	assert.Nil(t, ok.Patch, "admitted unchanged")
	assert.Equal(t, "node-exporter: owner obs@example.com, ticket OPS-1234, expires 2099-12-31", ok.AuditAnnotations["host-network-opt-out"])

	no := post(hostNetworkReview(t, "11111111-0000-4000-8000-0000000000a2", "OPS-1234: node exporter"))
	assert.False(t, no.Allowed)
	assert.Contains(t, no.Result.Message, `no host_network_opt_outs entry "OPS-1234: node exporter" in the catalog`)
	assert.Contains(t, no.Result.Message, "add an entry to the catalog's host_network_opt_outs")

	code, body := httpGet(t, admin+"/api/optouts")
	require.Equal(t, http.StatusOK, code, body)
	var opts struct {
		OptOuts []struct {
			ID       string `json:"id"`
			Expired  bool   `json:"expired"`
			Admitted []struct {
				Namespace, Pod string
			} `json:"admitted"`
		} `json:"opt_outs"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &opts))
	require.Len(t, opts.OptOuts, 1)
	assert.Equal(t, "node-exporter", opts.OptOuts[0].ID)
	assert.False(t, opts.OptOuts[0].Expired)
	require.Len(t, opts.OptOuts[0].Admitted, 1, "the refused pod is not listed")
	assert.Equal(t, "monitoring", opts.OptOuts[0].Admitted[0].Namespace)
	assert.Equal(t, "node-exporter-*", opts.OptOuts[0].Admitted[0].Pod)

	// A forged node ID: the pod it names is at 10.1.2.3, the stream comes
	// from 127.0.0.1.
	conn, err := grpc.NewClient(addrs.XDS.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ads, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	require.NoError(t, err)
	const forged = "sidecar~10.1.2.3~billing-1.prod~prod.svc.cluster.local"
	require.NoError(t, ads.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: forged}, TypeUrl: resourcev3.ListenerType}))
	_, err = ads.Recv()
	assert.Equal(t, codes.PermissionDenied, status.Code(err), "%v", err)

	code, body = httpGet(t, admin+"/api/identity")
	require.Equal(t, http.StatusOK, code, body)
	var id struct {
		Enabled  bool `json:"enabled"`
		Refusals []struct {
			NodeID string `json:"node_id"`
			Peer   string `json:"peer"`
			Reason string `json:"reason"`
			Mode   string `json:"mode"`
		} `json:"refusals"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &id))
	assert.True(t, id.Enabled)
	require.Len(t, id.Refusals, 1)
	assert.Equal(t, forged, id.Refusals[0].NodeID)
	assert.Equal(t, "127.0.0.1", id.Refusals[0].Peer)
	assert.Equal(t, "refused", id.Refusals[0].Mode)
	assert.Contains(t, id.Refusals[0].Reason, "the connection comes from 127.0.0.1")
}
