package xds

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/egressguard/egressguard/inventory"
	"github.com/egressguard/egressguard/policy/plan"
)

// jitterPlans is a PlanSource whose plan the test swaps and which takes a
// random short time to answer, as a policy engine evaluating a new class
// does: it widens the window between reading a node's inputs and
// publishing its configuration, where the publication races live.
type jitterPlans struct{ p atomic.Pointer[plan.Plan] }

func (s *jitterPlans) PlanFor(*inventory.Workload) (*plan.Plan, error) {
	p := s.p.Load()
	time.Sleep(rand.N(400 * time.Microsecond))
	return p, nil
}

func proxylessNode(id string) *corev3.Node {
	return &corev3.Node{Id: id, UserAgentName: "gRPC Go"}
}

func staticInventory(t *testing.T, nodes ...string) inventory.Source {
	t.Helper()
	var wls []inventory.Workload
	for i, n := range nodes {
		wls = append(wls, inventory.Workload{Name: fmt.Sprintf("app%d", i), Namespace: "ns", Environment: "staging", NodeIDs: []string{n}})
	}
	snap, err := inventory.NewSnapshot("staging", wls)
	require.NoError(t, err)
	return inventory.NewStatic(snap)
}

// TestPublicationIsMonotonicUnderConcurrency hammers one enforcer with
// everything that builds a node's configuration at once: sidecars
// connecting, three streams of one proxyless node subscribing to targets,
// and rebuilds after policy changes. Once everything has returned, each
// node must hold the configuration of the newest policy and of every
// target it asked for: a build that read older inputs and finished later
// must not have overwritten a newer one (the package doc's invariant).
func TestPublicationIsMonotonicUnderConcurrency(t *testing.T) {
	const sidecars, proxylessStreams, targetsPerStream, generations = 12, 3, 8, 6
	var nodes []string
	for i := range sidecars {
		nodes = append(nodes, fmt.Sprintf("side-%d", i))
	}
	nodes = append(nodes, "grpc-node")
	plans := &jitterPlans{}
	plans.p.Store(mustCompile(t, specGen(0)))
	enf, err := NewEnforcer(plans, staticInventory(t, nodes...), Defaults(), zaptest.NewLogger(t), NewMetrics(nil))
	require.NoError(t, err)

	var wg sync.WaitGroup
	wg.Go(func() {
		for g := 1; g <= generations; g++ {
			plans.p.Store(mustCompile(t, specGen(g)))
			enf.Rebuild()
		}
	})
	for i := range sidecars {
		wg.Go(func() {
			time.Sleep(rand.N(5 * time.Millisecond))
			assert.NoError(t, enf.streamNode(int64(i), sidecarNode(nodes[i])))
		})
	}
	var want []string
	for s := range proxylessStreams {
		var names []string
		for j := range targetsPerStream {
			names = append(names, fmt.Sprintf("svc-%d-%d.staging.example.com:443", s, j))
		}
		want = append(want, names...)
		wg.Go(func() {
			sid := int64(1000 + s)
			assert.NoError(t, enf.streamNode(sid, proxylessNode("grpc-node")))
			for j := range names {
				enf.requested(sid, resourcev3.ListenerType, names[:j+1])
			}
		})
	}
	wg.Wait()

	final := plans.p.Load().Fingerprint()
	for _, id := range nodes {
		s := enf.NodeSnapshot(id)
		require.NotNil(t, s, id)
		assert.Equal(t, final, s.Class, "%s holds the config of an older policy", id)
	}
	slices.Sort(want)
	assert.Equal(t, want, enf.NodeSnapshot("grpc-node").Names(resourcev3.ListenerType),
		"every target the proxyless node asked for is served")
	assert.Empty(t, enf.Nodes()[0].Error)
}

// TestStreamsOfOneNodeNeverLoseAListener is what grpc-go does with three
// channels: three ADS streams, one node ID, each asking for its own target,
// opened at once while policy reloads run. A listener a stream asked for
// must be in every listener response that stream gets (grpc-go fails the
// channel with "resource ... has been removed" otherwise), and the node is
// one node with three streams on the admin view.
func TestStreamsOfOneNodeNeverLoseAListener(t *testing.T) {
	const rounds, streams = 12, 3
	env := startADS(t, Defaults(), specGen(0))
	plans := &jitterPlans{}
	plans.p.Store(mustCompile(t, specGen(0)))
	env.enf.plans = plans
	conn := dial(t, env.addr)
	gen := 0
	for round := range rounds {
		node := proxylessNode(fmt.Sprintf("grpc-round-%d", round))
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		var wg sync.WaitGroup
		wg.Go(func() {
			for range 2 {
				gen++
				plans.p.Store(mustCompile(t, specGen(gen)))
				env.enf.Rebuild()
			}
		})
		first := make(chan struct{}, streams)
		for s := range streams {
			target := fmt.Sprintf("svc-%d.staging.example.com:443", s)
			st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
			require.NoError(t, err)
			wg.Go(func() {
				req := &discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ListenerType, ResourceNames: []string{target}}
				if !assert.NoError(t, st.Send(req)) {
					return
				}
				for n := 0; ; n++ {
					resp, err := st.Recv()
					if ctx.Err() != nil {
						return
					}
					if !assert.NoError(t, err) {
						return
					}
					got := listenerNames(t, resp)
					assert.Contains(t, got, target, "round %d stream %d response %d lost its listener", round, s, n)
					if n == 0 {
						first <- struct{}{}
					}
					req = &discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.ListenerType, ResourceNames: []string{target},
						VersionInfo: resp.VersionInfo, ResponseNonce: resp.Nonce}
					if st.Send(req) != nil {
						return
					}
				}
			})
		}
		for range streams {
			select {
			case <-first:
			case <-ctx.Done():
				t.Fatalf("round %d: a stream got no listener response", round)
			}
		}
		views := 0
		for _, v := range env.enf.Nodes() {
			if v.ID == node.Id {
				views++
				assert.Equal(t, streams, v.Streams)
			}
		}
		assert.Equal(t, 1, views, "one node, however many streams")
		// Give the reloads time to finish while the streams listen.
		require.Eventually(t, func() bool {
			s := env.enf.NodeSnapshot(node.Id)
			return s != nil && s.Class == plans.p.Load().Fingerprint() && len(s.Names(resourcev3.ListenerType)) == streams
		}, 20*time.Second, 5*time.Millisecond)
		cancel()
		wg.Wait()
		if t.Failed() {
			return
		}
	}
}

func listenerNames(t *testing.T, resp *discoveryv3.DiscoveryResponse) []string {
	t.Helper()
	var out []string
	for _, a := range resp.Resources {
		m, err := a.UnmarshalNew()
		require.NoError(t, err)
		out = append(out, m.(interface{ GetName() string }).GetName())
	}
	return out
}

// gatedPlans is a PlanSource that, once armed, holds the next PlanFor call
// until the test releases it: a rebuild that has read its nodes' inputs
// and is still working.
type gatedPlans struct {
	p     atomic.Pointer[plan.Plan]
	armed atomic.Pointer[planGate]
}

type planGate struct{ reached, release chan struct{} }

func (g *gatedPlans) arm() *planGate {
	gt := &planGate{reached: make(chan struct{}), release: make(chan struct{})}
	g.armed.Store(gt)
	return gt
}

func (g *gatedPlans) PlanFor(*inventory.Workload) (*plan.Plan, error) {
	if gt := g.armed.Swap(nil); gt != nil {
		close(gt.reached)
		<-gt.release
	}
	return g.p.Load(), nil
}

// TestSubscriptionsRacingAReload: a proxyless client subscribes to 100
// targets, a reload starts (and has read the node's targets), the client
// subscribes to 100 more while the reload is still building, then the
// reload finishes. The reload's build is older than the subscriptions'
// and must be dropped: every target stays answered, and no response takes
// a listener away. The subscriptions go one request at a time, each
// naming every target so far, the way grpc-go asks for new channels.
func TestSubscriptionsRacingAReload(t *testing.T) {
	const half = 100
	env := startADS(t, Defaults(), specGen(0), "grpc-sub")
	plans := &gatedPlans{}
	plans.p.Store(mustCompile(t, specGen(0)))
	env.enf.plans = plans
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(dial(t, env.addr)).StreamAggregatedResources(ctx)
	require.NoError(t, err)
	responses := make(chan *discoveryv3.DiscoveryResponse, 16)
	go func() {
		defer close(responses)
		for {
			resp, err := st.Recv()
			if err != nil {
				return
			}
			responses <- resp
		}
	}()

	var names []string
	var last *discoveryv3.DiscoveryResponse
	most := 0 // the most listeners a response has carried
	send := func() {
		req := &discoveryv3.DiscoveryRequest{Node: proxylessNode("grpc-sub"), TypeUrl: resourcev3.ListenerType,
			ResourceNames: slices.Clone(names)}
		if last != nil {
			req.VersionInfo, req.ResponseNonce = last.VersionInfo, last.Nonce
		}
		require.NoError(t, st.Send(req))
	}
	take := func(resp *discoveryv3.DiscoveryResponse, ok bool) {
		require.True(t, ok, "stream ended")
		require.GreaterOrEqual(t, len(resp.Resources), most, "a response took listeners away")
		most, last = len(resp.Resources), resp
		send() // the ACK names every target, as grpc-go's does
	}
	// subscribe asks for targets up to n, then waits until all are answered.
	subscribe := func(n int) {
		for len(names) < n {
			names = append(names, fmt.Sprintf("svc-%03d.staging.example.com:443", len(names)))
			send()
			select {
			case resp, ok := <-responses:
				take(resp, ok)
			default:
			}
		}
		deadline := time.After(20 * time.Second)
		for last == nil || len(last.Resources) < n {
			select {
			case resp, ok := <-responses:
				take(resp, ok)
			case <-deadline:
				t.Fatalf("%d targets subscribed, %d answered", n, len(last.GetResources()))
			}
		}
	}

	subscribe(half)
	plans.p.Store(mustCompile(t, specGen(1)))
	gate := plans.arm()
	rebuilt := make(chan struct{})
	go func() {
		defer close(rebuilt)
		env.enf.Rebuild()
	}()
	<-gate.reached // the reload has taken the node's targets
	subscribe(2 * half)
	close(gate.release)
	<-rebuilt

	assert.Len(t, env.enf.NodeSnapshot("grpc-sub").Names(resourcev3.ListenerType), 2*half,
		"every subscribed target is served after the reload")
	assert.Equal(t, plans.p.Load().Fingerprint(), env.enf.NodeSnapshot("grpc-sub").Class)
	// Anything the reload sent must not take a listener away (take checks).
	quiet := time.After(300 * time.Millisecond)
	for {
		select {
		case resp, ok := <-responses:
			take(resp, ok)
		case <-quiet:
			return
		}
	}
}

// failingPlans fails every workload's plan while fail is set.
type failingPlans struct {
	switchPlans
	fail atomic.Bool
}

func (f *failingPlans) PlanFor(w *inventory.Workload) (*plan.Plan, error) {
	if f.fail.Load() {
		return nil, fmt.Errorf("policy: workload %s: evaluation failed", w.Name)
	}
	return f.switchPlans.PlanFor(w)
}

// TestANodeKeepsItsLastGoodConfig states the rule keepLastGood names: when
// a node's configuration cannot be built, nothing is published; the node
// goes on being served its last good snapshot, and the error is on the
// admin view until a build succeeds again.
func TestANodeKeepsItsLastGoodConfig(t *testing.T) {
	plans := &failingPlans{}
	plans.p.Store(mustCompile(t, specGen(0)))
	m := NewMetrics(nil)
	enf, err := NewEnforcer(plans, staticInventory(t, "node-a", "grpc-a"), Defaults(), zaptest.NewLogger(t), m)
	require.NoError(t, err)
	require.NoError(t, enf.streamNode(1, sidecarNode("node-a")))
	require.NoError(t, enf.streamNode(2, proxylessNode("grpc-a")))
	enf.requested(2, resourcev3.ListenerType, []string{"api.staging.example.com:443"})
	good := map[string]*Snapshot{"node-a": enf.NodeSnapshot("node-a"), "grpc-a": enf.NodeSnapshot("grpc-a")}
	for id, s := range good {
		require.NotNil(t, s, id)
	}

	plans.p.Store(mustCompile(t, specGen(1)))
	plans.fail.Store(true)
	enf.Rebuild()
	enf.requested(2, resourcev3.ListenerType, []string{"api.staging.example.com:443", "new.staging.example.com:443"})
	for _, v := range enf.Nodes() {
		assert.Same(t, good[v.ID], enf.NodeSnapshot(v.ID), "%s keeps its last good snapshot", v.ID)
		assert.Contains(t, v.Error, "evaluation failed", v.ID)
	}
	assert.InDelta(t, 1.0, metricValue(t, m.rebuilds.WithLabelValues("error")), 0)

	plans.fail.Store(false)
	enf.Rebuild()
	for _, v := range enf.Nodes() {
		assert.Empty(t, v.Error, v.ID)
		assert.Equal(t, plans.p.Load().Fingerprint(), enf.NodeSnapshot(v.ID).Class, v.ID)
	}
	assert.Len(t, enf.NodeSnapshot("grpc-a").Names(resourcev3.ListenerType), 2, "the target asked for meanwhile is served")
}

// TestSettleDropsOlderBuilds: settle applies builds in generation order
// only. A build older than one already settled is dropped, whether the
// newer one was published or failed, and so is a build of a node that has
// since disconnected and come back as a new node.
func TestSettleDropsOlderBuilds(t *testing.T) {
	plans := &switchPlans{}
	plans.p.Store(mustCompile(t, specGen(0)))
	m := NewMetrics(nil)
	enf, err := NewEnforcer(plans, staticInventory(t, "node-a"), Defaults(), zaptest.NewLogger(t), m)
	require.NoError(t, err)
	require.NoError(t, enf.streamNode(1, sidecarNode("node-a")))

	build := func(gen int) *nodeBuild {
		enf.mu.Lock()
		b := enf.startBuild(enf.nodes["node-a"])
		enf.mu.Unlock()
		plans.p.Store(mustCompile(t, specGen(gen)))
		b.resolve(enf.inv.Current(), enf.plans)
		require.NoError(t, b.err)
		b.snap, b.err = enf.classFor(b.p).snapshot(enf, b.kind, b.port, b.targets)
		require.NoError(t, b.err)
		return b
	}
	settle := func(b *nodeBuild) outcome {
		enf.mu.Lock()
		defer enf.mu.Unlock()
		return enf.settle(b)
	}
	older, newer := build(1), build(2)
	assert.Equal(t, outcomePublished, settle(newer))
	assert.Equal(t, outcomeDropped, settle(older))
	assert.Same(t, newer.snap, enf.NodeSnapshot("node-a"))

	older, newer = build(3), build(4)
	newer.err = errors.New("translate: boom")
	assert.Equal(t, outcomeKeptLastGood, settle(newer))
	assert.Equal(t, outcomeDropped, settle(older), "older than a failed build: the node keeps its last good one")
	assert.Equal(t, mustCompile(t, specGen(2)).Fingerprint(), enf.NodeSnapshot("node-a").Class)

	stale := build(5)
	enf.streamClosed(1)
	require.NoError(t, enf.streamNode(2, sidecarNode("node-a")))
	fresh := enf.NodeSnapshot("node-a")
	assert.Equal(t, outcomeDropped, settle(stale), "a build of the node's previous connection")
	assert.Same(t, fresh, enf.NodeSnapshot("node-a"))
	assert.InDelta(t, 3.0, metricValue(t, m.droppedBuilds), 0)
}
