package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
)

// TestProxyStatusAndConfig runs the guard, connects a sidecar over ADS that
// ACKs its clusters and NACKs its listeners, and reads both back with the
// two commands.
func TestProxyStatusAndConfig(t *testing.T) {
	addrs := startGuard(t, testServeConfig(t))
	admin := addrs.Admin.String()

	conn, err := grpc.NewClient(addrs.XDS.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ads, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	require.NoError(t, err)
	const nodeID = "sidecar~10.1.2.3~checkout.payments~payments.svc.cluster.local"
	node := &corev3.Node{Id: nodeID, UserAgentName: "envoy"}
	require.NoError(t, ads.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ListenerType}))
	resp, err := ads.Recv()
	require.NoError(t, err)
	require.NoError(t, ads.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ListenerType,
		ResponseNonce: resp.Nonce, ErrorDetail: &status.Status{Code: int32(codes.InvalidArgument), Message: "listener rejected by the test"}}))
	require.NoError(t, ads.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType}))
	resp, err = ads.Recv()
	require.NoError(t, err)
	require.Equal(t, resourcev3.ClusterType, resp.TypeUrl)
	require.NoError(t, ads.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType,
		VersionInfo: resp.VersionInfo, ResponseNonce: resp.Nonce}))

	var out string
	require.Eventually(t, func() bool {
		out, err = runCLI(t, "proxy-status", "--admin", admin)
		return err == nil && strings.Contains(out, nodeID) && strings.Contains(out, "listener rejected by the test") && strings.Contains(out, "cluster v")
	}, 10*time.Second, 50*time.Millisecond, "proxy-status never showed the ACK and the NACK: %s %v", out, err)
	assert.Regexp(t, `(?m)^NODE\s+KIND\s+WORKLOAD\s+ENVIRONMENT\s+PLAN\s+VERSION\s+STREAMS\s+NACKS\s+LAST ACK\s+LAST NACK$`, out)
	assert.Regexp(t, `(?m)^sidecar~10\.1\.2\.3~\S+\s+sidecar\s+.*staging.*\s1\s+1\s+cluster v[0-9a-f]{24} \d+s ago\s+listener v[0-9a-f]{24} \d+s ago: listener rejected by the test$`, out)

	out, err = runCLI(t, "proxy-status", "--admin", "http://"+admin, "-o", "json")
	require.NoError(t, err)
	var st struct {
		Nodes []struct {
			ID       string `json:"id"`
			Protocol struct {
				LastACKs  map[string]struct{ At time.Time } `json:"last_acks"`
				LastNACKs map[string]struct{ At time.Time } `json:"last_nacks"`
			} `json:"protocol"`
		} `json:"nodes"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &st), out)
	require.Len(t, st.Nodes, 1)
	assert.Equal(t, nodeID, st.Nodes[0].ID)
	require.Contains(t, st.Nodes[0].Protocol.LastACKs, "cluster")
	require.Contains(t, st.Nodes[0].Protocol.LastNACKs, "listener")
	assert.NotContains(t, st.Nodes[0].Protocol.LastACKs, "listener", "a NACK is not an ACK")
	assert.False(t, st.Nodes[0].Protocol.LastNACKs["listener"].At.After(st.Nodes[0].Protocol.LastACKs["cluster"].At), "the ACK came after the NACK")

	out, err = runCLI(t, "proxy-config", nodeID, "--admin", admin)
	require.NoError(t, err)
	assert.Regexp(t, `(?m)^listener\s+\S+\s+\S+:\d+, \d+ filter chains$`, out)
	assert.Regexp(t, `(?m)^cluster\s+\S+`, out)

	out, err = runCLI(t, "proxy-config", nodeID, "--admin", admin, "--type", "listener", "-o", "json")
	require.NoError(t, err)
	var listeners []map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &listeners), out)
	require.NotEmpty(t, listeners)
	assert.Contains(t, listeners[0], "filterChains")

	_, err = runCLI(t, "proxy-config", "sidecar~no~such~node", "--admin", admin)
	require.ErrorContains(t, err, "404 Not Found: node not connected")
	_, err = runCLI(t, "proxy-config", nodeID, "--admin", admin, "--type", "runtime")
	require.ErrorContains(t, err, `--type "runtime": want listener, route, cluster, endpoint, secret or all`)
	_, err = runCLI(t, "proxy-status", "--admin", "127.0.0.1:1")
	require.ErrorContains(t, err, "is `egressguard serve` running? --admin sets the address")
}

// TestProxyStatusToken: --admin-token-file sends the token as a bearer
// token; a refusal says which flag gives one.
func TestProxyStatusToken(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer s3cret" {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"admin API requires a token"}`))
			return
		}
		_, _ = w.Write([]byte(`{"xds_enabled":true,"nodes":[]}`))
	}))
	defer srv.Close()
	_, err := runCLI(t, "proxy-status", "--admin", srv.URL)
	require.ErrorContains(t, err, "401 Unauthorized: admin API requires a token (give a token with --admin-token-file)")

	tok := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(tok, []byte("s3cret\n"), 0o600))
	out, err := runCLI(t, "proxy-status", "--admin", srv.URL, "--admin-token-file", tok)
	require.NoError(t, err)
	assert.Contains(t, out, "(no xDS clients connected)")
}

// TestProxyConfigSecrets: secrets are listed by name and version, the only
// fields the admin API gives for them.
func TestProxyConfigSecrets(t *testing.T) {
	var out strings.Builder
	require.NoError(t, writeProxyConfig(&out, []string{"secrets"}, map[string][]json.RawMessage{
		"secrets": {json.RawMessage(`{"name":"egressguard-intercept~api.stripe.com","version":"0a1b2c"}`)},
	}))
	assert.Regexp(t, `(?m)^secret\s+egressguard-intercept~api\.stripe\.com\s+version 0a1b2c$`, out.String())
}
