package xds

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/egressguard/egressguard/inventory"
	"github.com/egressguard/egressguard/policy/plan"
)

// adsEnv is an ADS server on 127.0.0.1 with a swappable plan.
type adsEnv struct {
	enf   *Enforcer
	srv   *Server
	addr  string
	plans *switchPlans
}

func startADS(t *testing.T, cfg Config, spec plan.Spec, nodes ...string) *adsEnv {
	t.Helper()
	log := zaptest.NewLogger(t)
	plans := &switchPlans{}
	plans.p.Store(mustCompile(t, spec))
	var wls []inventory.Workload
	for i, n := range nodes {
		wls = append(wls, inventory.Workload{Name: fmt.Sprintf("app%d", i), Namespace: "ns", Environment: "staging", NodeIDs: []string{n}})
	}
	snap, err := inventory.NewSnapshot("staging", wls)
	require.NoError(t, err)
	enf, err := NewEnforcer(plans, inventory.NewStatic(snap), cfg, log, NewMetrics(nil))
	require.NoError(t, err)
	srv, addr := serveADS(t, cfg, enf)
	return &adsEnv{enf: enf, srv: srv, addr: addr, plans: plans}
}

// serveADS serves enf on 127.0.0.1 until the test ends.
func serveADS(t *testing.T, cfg Config, enf *Enforcer) (*Server, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := NewServer(ctx, cfg, enf, enf.log)
	require.NoError(t, err)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-served)
	})
	return srv, lis.Addr().String()
}

func dial(t *testing.T, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	if len(opts) == 0 {
		opts = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	conn, err := grpc.NewClient(addr, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func adsStream(t *testing.T, conn *grpc.ClientConn) discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	require.NoError(t, err)
	return st
}

func sidecarNode(id string) *corev3.Node { return &corev3.Node{Id: id, UserAgentName: "envoy"} }

var smallSpec = plan.Spec{Default: plan.ActionAllow, Rules: []plan.Rule{
	{ID: "prod-zone", Hosts: []string{"*.prod.example.com"}, Action: plan.ActionDeny, Reason: "production zone"},
	{ID: "prod-net", CIDRs: []string{"10.20.0.0/16"}, Action: plan.ActionDeny, Reason: "production network"},
}}

// specGen is smallSpec with one more deny rule per generation, so every
// generation changes the listener's SNI list and the route table.
func specGen(gen int) plan.Spec {
	s := smallSpec
	s.Rules = append(append([]plan.Rule(nil), smallSpec.Rules...), plan.Rule{ID: fmt.Sprintf("gen-%d", gen),
		Hosts: []string{fmt.Sprintf("api%d.live.example.com", gen)}, Action: plan.ActionDeny, Reason: "generation"})
	return s
}

func TestADSNodeWithoutID(t *testing.T) {
	env := startADS(t, Defaults(), smallSpec, "node-a")
	conn := dial(t, env.addr)

	t.Run("state of the world", func(t *testing.T) {
		st := adsStream(t, conn)
		require.NoError(t, st.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.ListenerType}))
		_, err := st.Recv()
		assert.Equal(t, codes.InvalidArgument, grpcstatus.Code(err), "%v", err)
	})
	t.Run("delta", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
		require.NoError(t, err)
		require.NoError(t, st.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ListenerType}))
		_, err = st.Recv()
		assert.Equal(t, codes.InvalidArgument, grpcstatus.Code(err), "%v", err)
	})
	t.Run("the server still serves a node with an id", func(t *testing.T) {
		st := adsStream(t, conn)
		require.NoError(t, st.Send(&discoveryv3.DiscoveryRequest{Node: sidecarNode("node-a"), TypeUrl: resourcev3.ListenerType}))
		resp, err := st.Recv()
		require.NoError(t, err)
		assert.Equal(t, resourcev3.ListenerType, resp.TypeUrl)
		assert.Len(t, resp.Resources, 1)
	})
	assert.GreaterOrEqual(t, metricValue(t, env.enf.metrics.streamsRefuse), 2.0)
}

// TestADSUnknownType: a request for a type that is not served gets no
// answer and does not disturb the stream; requests after it are answered.
func TestADSUnknownType(t *testing.T) {
	env := startADS(t, Defaults(), smallSpec, "node-a")
	st := adsStream(t, dial(t, env.addr))
	for _, typ := range []string{resourcev3.RuntimeType, "type.googleapis.com/not.a.Type"} {
		require.NoError(t, st.Send(&discoveryv3.DiscoveryRequest{Node: sidecarNode("node-a"), TypeUrl: typ}))
	}
	require.NoError(t, st.Send(&discoveryv3.DiscoveryRequest{Node: sidecarNode("node-a"), TypeUrl: resourcev3.ClusterType}))
	resp, err := st.Recv()
	require.NoError(t, err)
	assert.Equal(t, resourcev3.ClusterType, resp.TypeUrl, "the first answer is for the served type")
	assert.NotEmpty(t, resp.Resources)
	assert.GreaterOrEqual(t, metricValue(t, env.enf.metrics.unknownTypes), 2.0)

	// ADS needs a type URL on every request: go-control-plane ends such a
	// stream; the others go on.
	bad := adsStream(t, dial(t, env.addr))
	require.NoError(t, bad.Send(&discoveryv3.DiscoveryRequest{Node: sidecarNode("node-a")}))
	_, err = bad.Recv()
	assert.Equal(t, codes.InvalidArgument, grpcstatus.Code(err), "%v", err)
	require.NoError(t, st.Send(&discoveryv3.DiscoveryRequest{Node: sidecarNode("node-a"), TypeUrl: resourcev3.ListenerType}))
	resp, err = st.Recv()
	require.NoError(t, err)
	assert.Equal(t, resourcev3.ListenerType, resp.TypeUrl)
}

// TestADSNACKForever: a client that rejects every version it gets. Each
// version is sent once: after a NACK (once the server has recorded it) the
// next listener response must be a version the client has not seen, which
// only a real change produces; a server that re-sent NACKed config (the
// go-control-plane snapshot cache's storm, #962) would fail here.
func TestADSNACKForever(t *testing.T) {
	env := startADS(t, Defaults(), specGen(0), "node-a")
	st := adsStream(t, dial(t, env.addr))
	node := sidecarNode("node-a")
	require.NoError(t, st.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ListenerType}))
	seen := map[string]bool{}
	const rounds = 5
	for round := range rounds {
		resp, err := st.Recv()
		require.NoError(t, err)
		require.Equal(t, resourcev3.ListenerType, resp.TypeUrl)
		require.False(t, seen[resp.VersionInfo], "round %d: version %s sent again after a NACK", round, resp.VersionInfo)
		seen[resp.VersionInfo] = true
		require.NoError(t, st.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ListenerType,
			ResponseNonce: resp.Nonce, ErrorDetail: &status.Status{Code: int32(codes.InvalidArgument), Message: "rejected by test"}}))
		require.Eventually(t, func() bool {
			s, ok := env.enf.cache.status("node-a")
			return ok && s.NACKs == uint64(round+1)
		}, 30*time.Second, 5*time.Millisecond, "the server records the NACK")
		// Publishing the same plan again changes nothing and sends nothing.
		env.enf.Rebuild()
		env.plans.p.Store(mustCompile(t, specGen(round+1)))
		env.enf.Rebuild()
	}
	resp, err := st.Recv()
	require.NoError(t, err)
	assert.False(t, seen[resp.VersionInfo])
	s, ok := env.enf.cache.status("node-a")
	require.True(t, ok)
	assert.Equal(t, uint64(rounds), s.NACKs)
	assert.Equal(t, "rejected by test", s.LastNACKs["listener"].Detail)
	assert.InDelta(t, float64(rounds+1), metricValue(t, env.enf.metrics.pushes.WithLabelValues("listener")), 0)
	assert.InDelta(t, float64(rounds), metricValue(t, env.enf.metrics.nacks.WithLabelValues("listener")), 0)
}

// TestADSLastACKAndNACK: the server records, per node and type, the last
// ACK (the versions accepted, when) and the last NACK apart; both reach the
// admin debug API (DebugHandler) and the node list (Nodes). A NACK of a
// later version leaves the last ACK as it was.
func TestADSLastACKAndNACK(t *testing.T) {
	env := startADS(t, Defaults(), specGen(0), "node-a")
	st := adsStream(t, dial(t, env.addr))
	node := sidecarNode("node-a")
	require.NoError(t, st.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ListenerType}))
	resp, err := st.Recv()
	require.NoError(t, err)
	start := time.Now()
	require.NoError(t, st.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ListenerType, VersionInfo: resp.VersionInfo, ResponseNonce: resp.Nonce}))
	var acked NodeStatus
	require.Eventually(t, func() bool {
		acked = env.enf.Nodes()[0].Protocol
		return acked.LastACKs["listener"] != nil
	}, 30*time.Second, 5*time.Millisecond, "the server records the ACK")
	ack := *acked.LastACKs["listener"]
	assert.Len(t, ack.Version, 24)
	assert.False(t, ack.At.Before(start.Add(-time.Second)))
	assert.Empty(t, acked.LastNACKs)

	env.plans.p.Store(mustCompile(t, specGen(1)))
	env.enf.Rebuild()
	resp, err = st.Recv()
	require.NoError(t, err)
	require.NoError(t, st.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ListenerType, VersionInfo: resp.VersionInfo,
		ResponseNonce: resp.Nonce, ErrorDetail: &status.Status{Code: int32(codes.InvalidArgument), Message: "rejected by test"}}))
	require.Eventually(t, func() bool { return env.enf.Nodes()[0].Protocol.NACKs == 1 }, 30*time.Second, 5*time.Millisecond)

	rec := httptest.NewRecorder()
	env.enf.DebugHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/debug/xds?node=node-a", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	var dbg struct {
		Protocol NodeStatus `json:"protocol"`
	}
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &dbg), rec.Body.String())
	require.Contains(t, dbg.Protocol.LastACKs, "listener")
	assert.Equal(t, ack.Version, dbg.Protocol.LastACKs["listener"].Version, "a NACK does not move the last ACK")
	assert.True(t, ack.At.Equal(dbg.Protocol.LastACKs["listener"].At))
	nack := dbg.Protocol.LastNACKs["listener"]
	require.NotNil(t, nack)
	assert.Equal(t, "rejected by test", nack.Detail)
	assert.NotEqual(t, ack.Version, nack.Version, "the rejected versions are the new ones")
	assert.False(t, nack.At.Before(ack.At))
}

// TestADSManyStreams: 500 streams open at once (over 10 connections, nodes
// in 5 classes) all get their configuration; classes are shared.
func TestADSManyStreams(t *testing.T) {
	const streams, conns, classes = 500, 10, 5
	var nodes []string
	for i := range streams {
		nodes = append(nodes, fmt.Sprintf("node-%d", i))
	}
	env := startADS(t, Defaults(), smallSpec, nodes...)
	// Five classes: the plan source gives each workload's class its own plan.
	base := mustCompile(t, smallSpec)
	var classPlans []*plan.Plan
	for c := range classes {
		s := smallSpec
		s.Rules = append(append([]plan.Rule(nil), smallSpec.Rules...), plan.Rule{ID: fmt.Sprintf("class-%d", c),
			Hosts: []string{fmt.Sprintf("svc%d.staging.example.com", c)}, Action: plan.ActionAllow})
		classPlans = append(classPlans, mustCompile(t, s))
	}
	env.enf.plans = planFunc(func(w *inventory.Workload) (*plan.Plan, error) {
		var i int
		if _, err := fmt.Sscanf(w.Name, "app%d", &i); err != nil {
			return base, nil
		}
		return classPlans[i%classes], nil
	})
	cc := make([]*grpc.ClientConn, conns)
	for i := range cc {
		cc[i] = dial(t, env.addr)
	}
	var wg sync.WaitGroup
	errs := make(chan error, streams)
	release := make(chan struct{})
	for i := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(cc[i%conns]).StreamAggregatedResources(ctx)
			if err == nil {
				err = st.Send(&discoveryv3.DiscoveryRequest{Node: sidecarNode(nodes[i]), TypeUrl: resourcev3.ListenerType})
			}
			var resp *discoveryv3.DiscoveryResponse
			if err == nil {
				resp, err = st.Recv()
			}
			if err == nil && len(resp.Resources) != 1 {
				err = fmt.Errorf("stream %d: %d listeners", i, len(resp.Resources))
			}
			errs <- err
			if err == nil {
				// Hold the stream until every stream is configured.
				<-release
			}
		}()
	}
	for range streams {
		require.NoError(t, <-errs)
	}
	assert.InDelta(t, float64(streams), metricValue(t, env.enf.metrics.connected), 0)
	assert.InDelta(t, float64(classes), metricValue(t, env.enf.metrics.classes), 0)
	// Nodes of a class hold the very same snapshot.
	assert.Same(t, env.enf.NodeSnapshot("node-0"), env.enf.NodeSnapshot(fmt.Sprintf("node-%d", classes)))
	assert.NotSame(t, env.enf.NodeSnapshot("node-0"), env.enf.NodeSnapshot("node-1"))
	close(release)
	wg.Wait()
}

// metricValue sums what a collector (counter or gauge) reports.
func metricValue(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 16)
	c.Collect(ch)
	close(ch)
	sum := 0.0
	for m := range ch {
		var pb dto.Metric
		require.NoError(t, m.Write(&pb))
		sum += pb.GetCounter().GetValue() + pb.GetGauge().GetValue()
	}
	return sum
}

type planFunc func(*inventory.Workload) (*plan.Plan, error)

func (f planFunc) PlanFor(w *inventory.Workload) (*plan.Plan, error) { return f(w) }

// TestADSStreamLimit: streams over the limit are refused with
// RESOURCE_EXHAUSTED; the others are served.
func TestADSStreamLimit(t *testing.T) {
	cfg := Defaults()
	cfg.MaxStreams = 8
	env := startADS(t, cfg, smallSpec, "node-a")
	var held []discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	refused := 0
	for range 12 {
		st := adsStream(t, dial(t, env.addr)) // one connection each: the limit is per server
		// A refused stream may already be closed when the request is sent;
		// Recv then reports why.
		_ = st.Send(&discoveryv3.DiscoveryRequest{Node: sidecarNode("node-a"), TypeUrl: resourcev3.ListenerType})
		resp, err := st.Recv()
		if err != nil {
			assert.Equal(t, codes.ResourceExhausted, grpcstatus.Code(err), "%v", err)
			refused++
			continue
		}
		assert.Len(t, resp.Resources, 1)
		held = append(held, st)
	}
	assert.Len(t, held, 8)
	assert.Equal(t, 4, refused)
	assert.InDelta(t, 4.0, metricValue(t, env.enf.metrics.streamsRefuse), 0)
}

// TestDeltaADS: incremental xDS sends what changed and names what went.
func TestDeltaADS(t *testing.T) {
	env := startADS(t, Defaults(), specGen(0), "node-a")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(dial(t, env.addr)).DeltaAggregatedResources(ctx)
	require.NoError(t, err)
	node := sidecarNode("node-a")
	require.NoError(t, st.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType}))
	resp, err := st.Recv()
	require.NoError(t, err)
	require.Equal(t, resourcev3.ClusterType, resp.TypeUrl)
	names := map[string]string{}
	for _, r := range resp.Resources {
		names[r.Name] = r.Version
	}
	assert.Contains(t, names, PassthroughCluster)
	assert.Contains(t, names, BlackholeCluster)
	require.NoError(t, st.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType, ResponseNonce: resp.Nonce}))

	// Subscribe to one route configuration by name.
	require.NoError(t, st.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.RouteType,
		ResourceNamesSubscribe: []string{HTTPRouteConfigName}}))
	resp, err = st.Recv()
	require.NoError(t, err)
	require.Equal(t, resourcev3.RouteType, resp.TypeUrl)
	require.Len(t, resp.Resources, 1)
	assert.Equal(t, HTTPRouteConfigName, resp.Resources[0].Name)
	routeV := resp.Resources[0].Version
	require.NoError(t, st.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.RouteType, ResponseNonce: resp.Nonce}))

	// A change that adds a sandbox redirect: CDS sends only the new cluster,
	// RDS the changed route configuration.
	s := specGen(0)
	s.Rules = append(s.Rules, plan.Rule{ID: "stripe", Hosts: []string{"api.stripe.com"}, Action: plan.ActionRedirect,
		Redirect: &plan.Redirect{Host: "sandbox.stripe.example", Port: 443, TLS: true}, Reason: "live Stripe"})
	env.plans.p.Store(mustCompile(t, s))
	env.enf.Rebuild()
	got := map[string]*discoveryv3.DeltaDiscoveryResponse{}
	for len(got) < 2 {
		resp, err := st.Recv()
		require.NoError(t, err)
		got[resp.TypeUrl] = resp
		require.NoError(t, st.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resp.TypeUrl, ResponseNonce: resp.Nonce}))
	}
	cds := got[resourcev3.ClusterType]
	require.NotNil(t, cds)
	require.Len(t, cds.Resources, 1, "only the new cluster")
	assert.Equal(t, "sandbox|sandbox.stripe.example:443|tls", cds.Resources[0].Name)
	rds := got[resourcev3.RouteType]
	require.NotNil(t, rds)
	require.Len(t, rds.Resources, 1)
	assert.NotEqual(t, routeV, rds.Resources[0].Version)

	// Taking the redirect away removes the cluster.
	env.plans.p.Store(mustCompile(t, specGen(0)))
	env.enf.Rebuild()
	for {
		resp, err := st.Recv()
		require.NoError(t, err)
		require.NoError(t, st.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resp.TypeUrl, ResponseNonce: resp.Nonce}))
		if resp.TypeUrl == resourcev3.ClusterType {
			assert.Empty(t, resp.Resources)
			assert.Equal(t, []string{"sandbox|sandbox.stripe.example:443|tls"}, resp.RemovedResources)
			break
		}
	}
}

// TestSotWAndDeltaStreamsOfOneNode: go-control-plane numbers SotW and delta
// streams with separate counters, so the first of each shares ID 1. Closing
// the SotW stream must leave the node, served on its delta stream,
// connected and with its snapshot (before the fix the close unregistered
// the node: its delta stream would get no further policy).
func TestSotWAndDeltaStreamsOfOneNode(t *testing.T) {
	env := startADS(t, Defaults(), smallSpec, "node-a")
	conn := dial(t, env.addr)
	sotwCtx, closeSotW := context.WithCancel(context.Background())
	defer closeSotW()
	sotw, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(sotwCtx)
	require.NoError(t, err)
	require.NoError(t, sotw.Send(&discoveryv3.DiscoveryRequest{Node: sidecarNode("node-a"), TypeUrl: resourcev3.ListenerType}))
	_, err = sotw.Recv()
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	delta, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	require.NoError(t, err)
	require.NoError(t, delta.Send(&discoveryv3.DeltaDiscoveryRequest{Node: sidecarNode("node-a"), TypeUrl: resourcev3.ListenerType}))
	_, err = delta.Recv()
	require.NoError(t, err)
	streams := func() int {
		if nodes := env.enf.Nodes(); len(nodes) == 1 && nodes[0].ID == "node-a" {
			return nodes[0].Streams
		}
		return 0
	}
	require.Eventually(t, func() bool { return streams() == 2 }, 10*time.Second, 5*time.Millisecond, "one node, two streams")

	closeSotW()
	require.Eventually(t, func() bool { return streams() != 2 }, 10*time.Second, 5*time.Millisecond)
	assert.Equal(t, 1, streams(), "the node stays connected on its delta stream")
	require.NotNil(t, env.enf.NodeSnapshot("node-a"), "the delta stream's node keeps its snapshot")
}
