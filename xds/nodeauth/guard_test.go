package nodeauth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/egressguard/egressguard/inventory"
	"github.com/egressguard/egressguard/inventory/kube"
)

// Pods of the test inventory; every loopback address is this machine's, so
// a client can dial from each of them.
var (
	prodIP    = netip.MustParseAddr("127.0.0.2")
	stagingIP = netip.MustParseAddr("127.0.0.3")
	prodNode  = kube.NodeID(prodIP, "api-0", "prod", "")
	stageNode = kube.NodeID(stagingIP, "web-0", "staging", "")
)

func testInventory(t *testing.T, extra ...inventory.Workload) *inventory.Store {
	t.Helper()
	ws := append([]inventory.Workload{
		{Name: "api", Namespace: "prod", Environment: "production",
			IPs: []netip.Prefix{netip.PrefixFrom(prodIP, 32)}, NodeIDs: []string{prodNode}},
		{Name: "web", Namespace: "staging", Environment: "staging",
			IPs: []netip.Prefix{netip.PrefixFrom(stagingIP, 32)}, NodeIDs: []string{stageNode}},
	}, extra...)
	snap, err := inventory.NewSnapshot(inventory.DefaultEnvironment, ws)
	require.NoError(t, err)
	return inventory.NewStore(snap)
}

// echoADS answers every SotW and delta request with the node ID it was
// made for: what a real xDS server would key the configuration on.
type echoADS struct {
	discoveryv3.UnimplementedAggregatedDiscoveryServiceServer
}

func (echoADS) StreamAggregatedResources(s discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	node := ""
	for {
		req, err := s.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if req.GetNode().GetId() != "" {
			node = req.GetNode().GetId()
		}
		if err := s.Send(&discoveryv3.DiscoveryResponse{VersionInfo: node, TypeUrl: req.GetTypeUrl()}); err != nil {
			return err
		}
	}
}

func (echoADS) DeltaAggregatedResources(s discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	for {
		req, err := s.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if err := s.Send(&discoveryv3.DeltaDiscoveryResponse{SystemVersionInfo: req.GetNode().GetId(), TypeUrl: req.GetTypeUrl()}); err != nil {
			return err
		}
	}
}

// fakeReviewer stands in for TokenReview: tokens maps a token to the pod it
// proves; any other token is rejected the way the API server words it.
type fakeReviewer map[string]PodIdentity

func (f fakeReviewer) Review(_ context.Context, token string) (PodIdentity, error) {
	if id, ok := f[token]; ok {
		return id, nil
	}
	return PodIdentity{}, fmt.Errorf("%w: [invalid bearer token, service account token has expired]", ErrTokenRejected)
}

type harness struct {
	guard *Guard
	addr  string
	logs  *observer.ObservedLogs
	reg   *prometheus.Registry
}

func startGuarded(t *testing.T, mode Mode, inv inventory.Source, rev Reviewer) *harness {
	t.Helper()
	core, logs := observer.New(zap.InfoLevel)
	reg := prometheus.NewRegistry()
	cfg := Defaults()
	cfg.Mode = mode
	g, err := New(cfg, inv, rev, zap.New(core), reg)
	require.NoError(t, err)
	srv := grpc.NewServer(g.ServerOptions()...)
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(srv, echoADS{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return &harness{guard: g, addr: lis.Addr().String(), logs: logs, reg: reg}
}

// client dials h from the local address from.
func (h *harness) client(t *testing.T, from netip.Addr) discoveryv3.AggregatedDiscoveryServiceClient {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: from.AsSlice()}}
	conn, err := grpc.NewClient("passthrough:///"+h.addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", addr)
		}))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return discoveryv3.NewAggregatedDiscoveryServiceClient(conn)
}

// sotw opens an ADS stream (with token as call credentials when set), sends
// one request for node and returns the stream and the first answer's error.
func sotw(t *testing.T, c discoveryv3.AggregatedDiscoveryServiceClient, token, node string) (discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	s, err := c.StreamAggregatedResources(ctx)
	require.NoError(t, err)
	require.NoError(t, s.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: node}, TypeUrl: "type.googleapis.com/envoy.config.listener.v3.Listener"}))
	resp, err := s.Recv()
	if err == nil {
		require.Equal(t, node, resp.GetVersionInfo(), "served the claimed node's configuration")
	}
	return s, err
}

func requireDenied(t *testing.T, err error, contains string) {
	t.Helper()
	require.Error(t, err)
	assert.Equal(t, codes.PermissionDenied, status.Code(err), "%v", err)
	assert.Contains(t, status.Convert(err).Message(), contains)
}

func (h *harness) count(evidence Evidence, result Result) float64 {
	return testutil.ToFloat64(h.guard.metrics.checks.WithLabelValues(string(evidence), string(result)))
}

func TestPeerEvidence(t *testing.T) {
	h := startGuarded(t, ModeEnforce, testInventory(t), nil)

	t.Run("genuine sidecar served", func(t *testing.T) {
		_, err := sotw(t, h.client(t, prodIP), "", prodNode)
		require.NoError(t, err)
	})
	t.Run("forged node ID from another pod's address refused", func(t *testing.T) {
		_, err := sotw(t, h.client(t, stagingIP), "", prodNode)
		requireDenied(t, err, "the node ID names pod prod/api-0 at 127.0.0.2, the connection comes from 127.0.0.3")
	})
	t.Run("unknown pod from its own address served the default plan", func(t *testing.T) {
		_, err := sotw(t, h.client(t, netip.MustParseAddr("127.0.0.9")), "", kube.NodeID(netip.MustParseAddr("127.0.0.9"), "new-0", "prod", ""))
		require.NoError(t, err)
	})
	t.Run("unknown pod ID naming another address refused", func(t *testing.T) {
		// A pod that does not exist yet must not be claimable in advance.
		_, err := sotw(t, h.client(t, stagingIP), "", kube.NodeID(netip.MustParseAddr("127.0.0.9"), "new-0", "prod", ""))
		requireDenied(t, err, "the connection comes from 127.0.0.3")
	})

	assert.InDelta(t, 1.0, h.count(EvidencePeer, ResultVerified), 0)
	assert.InDelta(t, 1.0, h.count(EvidencePeer, ResultUnknown), 0)
	assert.InDelta(t, 2.0, h.count(EvidencePeer, ResultDenied), 0)
	recent := h.guard.Recent()
	require.Len(t, recent, 2)
	assert.Equal(t, "127.0.0.3", recent[1].Peer)
	assert.Equal(t, prodNode, recent[1].NodeID, "oldest last")
	assert.True(t, recent[1].Enforced)
	assert.Equal(t, 2, h.logs.FilterMessage("xDS stream refused: node identity not proven").Len())
}

// A proxyless gRPC client's node ID ("grpc~" + its pod's sidecar ID) is
// served as that pod (the enforcer resolves it through the sidecar ID), so
// it is proven like the sidecar's: a forged one is refused, whatever the
// evidence.
func TestProxylessNodeID(t *testing.T) {
	rev := fakeReviewer{
		"token-api-0": {Namespace: "prod", ServiceAccount: "api", Pod: "api-0"},
		"token-web-0": {Namespace: "staging", ServiceAccount: "web", Pod: "web-0"},
	}
	h := startGuarded(t, ModeEnforce, testInventory(t), rev)
	grpcProd := ProxylessNodePrefix + strings.TrimPrefix(prodNode, "sidecar~")
	nat := netip.MustParseAddr("127.0.0.7")

	_, err := sotw(t, h.client(t, prodIP), "", grpcProd)
	require.NoError(t, err, "from its pod's address")
	_, err = sotw(t, h.client(t, stagingIP), "", grpcProd)
	requireDenied(t, err, "the node ID names pod prod/api-0 at 127.0.0.2, the connection comes from 127.0.0.3")
	_, err = sotw(t, h.client(t, nat), "token-api-0", grpcProd)
	require.NoError(t, err, "its pod's token behind NAT")
	_, err = sotw(t, h.client(t, nat), "token-web-0", grpcProd)
	requireDenied(t, err, "the token is bound to pod staging/web-0, the node ID names pod prod/api-0")
	assert.InDelta(t, 1.0, h.count(EvidencePeer, ResultVerified), 0, "known through the sidecar ID, not unknown")
	assert.InDelta(t, 1.0, h.count(EvidenceToken, ResultVerified), 0)
}

func TestPeerEvidenceDeltaStream(t *testing.T) {
	h := startGuarded(t, ModeEnforce, testInventory(t), nil)
	for _, tc := range []struct {
		from netip.Addr
		ok   bool
	}{{prodIP, true}, {stagingIP, false}} {
		s, err := h.client(t, tc.from).DeltaAggregatedResources(t.Context())
		require.NoError(t, err)
		require.NoError(t, s.Send(&discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Id: prodNode}, TypeUrl: "t"}))
		resp, err := s.Recv()
		if tc.ok {
			require.NoError(t, err)
			assert.Equal(t, prodNode, resp.GetSystemVersionInfo())
		} else {
			requireDenied(t, err, "the connection comes from 127.0.0.3")
		}
	}
}

// A node ID that is not a sidecar ID is proven by the inventory alone: the
// peer address must belong to the node's workload. When a later inventory
// gives the node to another workload, the stream ends before it is sent
// anything more.
func TestPeerEvidenceFollowsInventory(t *testing.T) {
	inv := testInventory(t)
	h := startGuarded(t, ModeEnforce, inv, nil)

	s, err := sotw(t, h.client(t, stagingIP), "", "orders-client")
	require.NoError(t, err, "unknown node: served (default plan)")

	snap, err := inventory.NewSnapshot(inventory.DefaultEnvironment, []inventory.Workload{
		{Name: "orders", Namespace: "prod", Environment: "production",
			IPs: []netip.Prefix{netip.PrefixFrom(prodIP, 32)}, NodeIDs: []string{"orders-client"}},
	})
	require.NoError(t, err)
	inv.Replace(snap)
	require.NoError(t, s.Send(&discoveryv3.DiscoveryRequest{TypeUrl: "t2"}))
	_, err = s.Recv()
	requireDenied(t, err, "the node ID is workload prod/orders, the inventory knows no workload at 127.0.0.3")

	_, err = sotw(t, h.client(t, prodIP), "", "orders-client")
	require.NoError(t, err, "from the workload's own address")
}

func TestReportMode(t *testing.T) {
	h := startGuarded(t, ModeReport, testInventory(t), fakeReviewer{})
	_, err := sotw(t, h.client(t, stagingIP), "", prodNode)
	require.NoError(t, err, "report mode serves the claimed configuration")
	_, err = sotw(t, h.client(t, prodIP), "expired", prodNode)
	require.NoError(t, err)

	assert.InDelta(t, 1.0, h.count(EvidencePeer, ResultWouldDeny), 0)
	assert.InDelta(t, 1.0, h.count(EvidenceToken, ResultWouldDeny), 0)
	assert.Zero(t, h.count(EvidencePeer, ResultDenied))
	recent := h.guard.Recent()
	require.Len(t, recent, 2)
	assert.False(t, recent[0].Enforced)
	assert.Contains(t, recent[0].Reason, "service account token has expired")
	assert.Equal(t, 2, h.logs.FilterMessage("xDS node identity not proven; served (identity mode report)").Len())
}

func TestTokenEvidence(t *testing.T) {
	rev := fakeReviewer{
		"token-api-0": {Namespace: "prod", ServiceAccount: "api", Pod: "api-0"},
		"token-web-0": {Namespace: "staging", ServiceAccount: "web", Pod: "web-0"},
	}
	h := startGuarded(t, ModeEnforce, testInventory(t), rev)
	nat := netip.MustParseAddr("127.0.0.7") // every client behind one NAT address

	t.Run("genuine proxyless client behind NAT served", func(t *testing.T) {
		_, err := sotw(t, h.client(t, nat), "token-api-0", prodNode)
		require.NoError(t, err)
	})
	t.Run("token for pod A with the node ID of pod B refused", func(t *testing.T) {
		_, err := sotw(t, h.client(t, nat), "token-web-0", prodNode)
		requireDenied(t, err, "the token is bound to pod staging/web-0, the node ID names pod prod/api-0")
	})
	t.Run("token beats a matching address", func(t *testing.T) {
		// The address would prove the claim; the token presented says
		// otherwise, and a presented token is the claim.
		_, err := sotw(t, h.client(t, prodIP), "token-web-0", prodNode)
		requireDenied(t, err, "bound to pod staging/web-0")
	})
	t.Run("rejected token refused", func(t *testing.T) {
		_, err := sotw(t, h.client(t, prodIP), "expired", prodNode)
		requireDenied(t, err, "token rejected")
	})
	t.Run("node ID naming no pod refused", func(t *testing.T) {
		_, err := sotw(t, h.client(t, nat), "token-api-0", "orders-client")
		requireDenied(t, err, "the node ID names no pod")
	})
	assert.InDelta(t, 1.0, h.count(EvidenceToken, ResultVerified), 0)
	assert.InDelta(t, 4.0, h.count(EvidenceToken, ResultDenied), 0)
	// Two tokens accepted, each presented twice: the second time from the
	// cache. The rejected token is never cached.
	assert.InDelta(t, 2.0, testutil.ToFloat64(h.guard.metrics.reviews.WithLabelValues("authenticated")), 0)
	assert.InDelta(t, 1.0, testutil.ToFloat64(h.guard.metrics.reviews.WithLabelValues("rejected")), 0)
	assert.InDelta(t, 2.0, testutil.ToFloat64(h.guard.metrics.cache.WithLabelValues("hit")), 0)
	assert.InDelta(t, 3.0, testutil.ToFloat64(h.guard.metrics.cache.WithLabelValues("miss")), 0)
}

func TestMalformedAuthorization(t *testing.T) {
	for name, rev := range map[string]Reviewer{"with reviewer": fakeReviewer{}, "without": nil} {
		t.Run(name, func(t *testing.T) {
			h := startGuarded(t, ModeEnforce, testInventory(t), rev)
			ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Basic dXNlcjpwdw==")
			s, err := h.client(t, prodIP).StreamAggregatedResources(ctx)
			require.NoError(t, err)
			require.NoError(t, s.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: prodNode}}))
			_, err = s.Recv()
			requireDenied(t, err, "not a bearer token")
			assert.NotContains(t, err.Error(), "dXNlcjpwdw", "the credential is never echoed")
		})
	}
	h := startGuarded(t, ModeEnforce, testInventory(t), nil)
	_, err := sotw(t, h.client(t, prodIP), "some-token", prodNode)
	requireDenied(t, err, "no Kubernetes API server is configured")
}

func TestRecentIsBounded(t *testing.T) {
	cfg := Defaults()
	cfg.Mode, cfg.Recent = ModeEnforce, 3
	g, err := New(cfg, testInventory(t), nil, zap.NewNop(), nil)
	require.NoError(t, err)
	for i := range 5 {
		g.record(Refusal{NodeID: fmt.Sprint(i)})
	}
	var ids []string
	for _, r := range g.Recent() {
		ids = append(ids, r.NodeID)
	}
	assert.Equal(t, []string{"4", "3", "2"}, ids)
}

func TestConfigValidate(t *testing.T) {
	require.NoError(t, Defaults().Validate())
	bad := Config{Mode: "block", ReviewTimeout: -1}
	err := bad.Validate()
	require.Error(t, err)
	for _, want := range []string{
		`xds.identity.mode: "block" is not one of off, report, enforce`,
		"xds.identity.audience: must not be empty",
		"xds.identity.review_timeout: -1ns must be positive",
		"xds.identity.recent: 0 must be at least 1",
		"xds.identity.review_cache_ttl: 0s must be positive",
		"xds.identity.review_cache_size: 0 must be at least 1",
	} {
		assert.Contains(t, err.Error(), want)
	}
	_, err = New(Defaults(), testInventory(t), nil, zap.NewNop(), nil)
	require.ErrorContains(t, err, "off installs no guard")
}
