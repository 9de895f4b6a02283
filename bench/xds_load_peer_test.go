package bench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"

	"github.com/egressguard/egressguard/xds"
)

// BenchmarkXDSADSLoadPeer runs BenchmarkXDSADSLoad's changes against
// egressguard's xDS server and against a peer in the same process, changes
// alternating between the two so the machine's other load hits both: one
// op = the same policy change published by each (ours first on even ops,
// the peer first on odd ones). Each server has its own child process of n
// fake Envoys (TestXDSLoadClients, the same code), one TCP connection per
// stream, every response ACKed.
//
// The peer is the naive per-node approach built from stock go-control-plane:
// its own ADS server (pkg/server/v3) over cachev3.NewSnapshotCache(ads=true),
// one cachev3.Snapshot per node set with SetSnapshot, resources marshalled
// per response (per stream) by the stock cache and codec. Its rebuild is
// BenchmarkXDSRebuildPeer's: each class translated (TranslateSidecar) and
// deep-validated (Validate) once and shared by that class's nodes'
// snapshots (translating per node would cost 1,000 × ~64 CPU-ms), each
// node's snapshot checked with Consistent; per-type versions are a hash of
// the class's deterministically marshalled resources, so like ours it does
// not re-send a type that did not change.
//
// Both gRPC servers get the transport options of xds.NewServer (max
// streams, 4 KiB read / 64 KiB write buffers, keepalive); the peer uses
// the stock codec instead of ours (wireCodec) because the codec is part of
// what is compared. Before each change the parent and both client
// processes collect their garbage (outside the measurement, SETTLE) so
// neither side pays for the other's, and the clients' CPU is counted from
// there.
//
// Metrics per sub-benchmark (medians over the changes): ours-all-ms,
// peer-all-ms (every stream holds the new version), ours/peer (median of
// the per-op ratios), p50s, server CPU per change (the parent process from
// the change until the child reports done), clients' CPU per change,
// rebuild wall time, server heap per connected node.
func BenchmarkXDSADSLoadPeer(b *testing.B) {
	b.Run("every-rule", func(b *testing.B) { adsLoadPeer(b, makePlans(b, 0), makePlans(b, 1)) })
	b.Run("one-rule", func(b *testing.B) {
		edited := baseRules(0)
		edited[7].Reason = "production provider (edited)"
		adsLoadPeer(b, makePlans(b, 0), plansFrom(b, edited))
	})
}

// loadTarget is one xDS server under test: publish puts plans in effect
// and returns what each node's stream must then hold (see loadChild.check).
type loadTarget interface {
	name() string
	publish(plans *classPlans) [][3]string
}

// loadSample is one change on one target.
type loadSample struct {
	rebuild, all, p50, serverCPU, clientCPU float64 // ms
	responses                               string
}

func adsLoadPeer(b *testing.B, plansA, plansB *classPlans) {
	n := loadStreams(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// Ours, exactly as in BenchmarkXDSADSLoad.
	ours := &ourTarget{src: &switchSource{cur: plansA}, n: n}
	var ourAddr string
	var served <-chan error
	ours.enf, ourAddr, served = startOurs(ctx, b, n, ours.src)
	defer func() { cancel(); <-served }()

	// The peer.
	peer := &peerTarget{b: b, ctx: ctx, n: n, cache: cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil)}
	peer.publish(plansA)
	gs := grpc.NewServer(
		// xds.NewServer's transport options, without its codec.
		grpc.MaxConcurrentStreams(uint32(xds.Defaults().MaxStreams)),
		grpc.ReadBufferSize(4<<10),
		grpc.WriteBufferSize(64<<10),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	)
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(gs, serverv3.NewServer(ctx, peer.cache, serverv3.CallbackFuncs{}))
	peerLis := listenLocal(b)
	go func() { _ = gs.Serve(peerLis) }()
	defer gs.Stop()

	connect := func(name, addr string) (*loadChild, float64) {
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&m0)
		c := startLoadChild(b, addr, n)
		ready := c.expect("READY")
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&m1)
		heap := (float64(m1.HeapAlloc) - float64(m0.HeapAlloc)) / float64(n) / 1024
		b.Logf("%s: %d streams connected and configured in %s ms; server heap %.1f KiB/node", name, n, ready[0], heap)
		return c, heap
	}
	ourChild, ourHeap := connect(ours.name(), ourAddr)
	defer ourChild.close()
	peerChild, peerHeap := connect(peer.name(), peerLis.Addr().String())
	defer peerChild.close()
	logConfigSizes(b, ours.enf, peer)

	targets := [2]loadTarget{ours, peer}
	children := [2]*loadChild{ourChild, peerChild}
	var samples [2][]loadSample
	var ratios []float64
	for i := 0; b.Loop(); i++ {
		plans := plansB
		if i%2 == 1 {
			plans = plansA
		}
		for k := range 2 {
			t := k
			if i%2 == 1 {
				t = 1 - k
			}
			runtime.GC()
			children[0].settle()
			children[1].settle()
			cpu0 := processCPU(b)
			t0 := time.Now()
			want := targets[t].publish(plans)
			rebuild := time.Since(t0)
			done := children[t].check(t0, want)
			serverCPU := processCPU(b) - cpu0
			if done[3] != "0" {
				b.Fatalf("%s: %s of %d streams did not get the new version within the child's deadline", targets[t].name(), done[3], n)
			}
			s := loadSample{rebuild: ms(rebuild), serverCPU: ms(serverCPU), all: atof(done[2]), p50: atof(done[0]),
				clientCPU: atof(done[5]), responses: done[4]}
			samples[t] = append(samples[t], s)
			extra := ""
			if targets[t] == loadTarget(peer) {
				extra = fmt.Sprintf(" (%.0f ms of it hashing)", ms(peer.hashing))
			}
			logChange(b, "change %d %s: all streams %.0f ms (p50 %.0f); rebuild %.0f ms%s; server %.0f CPU-ms, clients %.0f CPU-ms; %s responses",
				i, targets[t].name(), s.all, s.p50, s.rebuild, extra, s.serverCPU, s.clientCPU, s.responses)
		}
		ratios = append(ratios, samples[0][i].all/samples[1][i].all)
		logChange(b, "change %d: ours/peer all streams %.2f", i, ratios[i])
	}
	b.StopTimer()
	pick := func(t int, f func(loadSample) float64) float64 {
		var v []float64
		for _, s := range samples[t] {
			v = append(v, f(s))
		}
		return median(v)
	}
	for t, prefix := range [2]string{"ours", "peer"} {
		b.ReportMetric(pick(t, func(s loadSample) float64 { return s.all }), prefix+"-all-ms")
		b.ReportMetric(pick(t, func(s loadSample) float64 { return s.p50 }), prefix+"-p50-ms")
		b.ReportMetric(pick(t, func(s loadSample) float64 { return s.serverCPU }), prefix+"-server-cpu-ms")
		b.ReportMetric(pick(t, func(s loadSample) float64 { return s.clientCPU }), prefix+"-client-cpu-ms")
		b.ReportMetric(pick(t, func(s loadSample) float64 { return s.rebuild }), prefix+"-rebuild-ms")
	}
	b.ReportMetric(ourHeap, "ours-KiB-heap/node")
	b.ReportMetric(peerHeap, "peer-KiB-heap/node")
	b.ReportMetric(median(ratios), "ours/peer")
}

// logChange logs one change's figures, also on stderr: the testing package
// keeps only 10 lines of a benchmark's log.
func logChange(b *testing.B, format string, args ...any) {
	b.Helper()
	b.Logf(format, args...)
	fmt.Fprintf(os.Stderr, "%s: "+format+"\n", append([]any{b.Name()}, args...)...)
}

func loadStreams(b *testing.B) int {
	n := 1000
	if v := os.Getenv("XDS_LOAD_STREAMS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	return n
}

func listenLocal(b *testing.B) net.Listener {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	return lis
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func atof(s string) float64 {
	v, _ := strconv.ParseFloat(s, 64)
	return v
}

// ourTarget is egressguard's enforcer behind xds.NewServer.
type ourTarget struct {
	enf *xds.Enforcer
	src *switchSource
	n   int
}

func (o *ourTarget) name() string { return "egressguard" }

func (o *ourTarget) publish(plans *classPlans) [][3]string {
	old := make([]*xds.Snapshot, o.n)
	for j := range o.n {
		old[j] = o.enf.NodeSnapshot(fmt.Sprintf("node-%d", j))
	}
	o.src.cur = plans
	o.enf.Rebuild()
	return ourWant(o.enf, old)
}

// peerTarget is the naive per-node peer: stock SnapshotCache, one snapshot
// per node (see BenchmarkXDSADSLoadPeer).
type peerTarget struct {
	b     *testing.B
	ctx   context.Context
	n     int
	cache cachev3.SnapshotCache
	// versions[c] is class c's current LDS, RDS, CDS version.
	versions [20][3]string
	// last[c] is class c's current resources (for logConfigSizes).
	last [20]*xds.Resources
	// hashing is the time the last publish spent on contentVersion.
	hashing time.Duration
}

func (p *peerTarget) name() string { return "peer" }

var peerTypes = [3]types.ResponseType{types.Listener, types.Route, types.Cluster}

func (p *peerTarget) publish(plans *classPlans) [][3]string {
	want := make([][3]string, p.n)
	p.hashing = 0
	for c := range 20 {
		res, err := xds.TranslateSidecar(plans.plans[fmt.Sprintf("class%d", c)], xds.NodeSettings{})
		if err != nil {
			p.b.Fatal(err)
		}
		if err := xds.Validate(res); err != nil {
			p.b.Fatal(err)
		}
		var items [3][]types.Resource
		for _, l := range res.Listeners {
			items[0] = append(items[0], l)
		}
		for _, r := range res.Routes {
			items[1] = append(items[1], r)
		}
		for _, cl := range res.Clusters {
			items[2] = append(items[2], cl)
		}
		var w [3]string
		h0 := time.Now()
		for t := range 3 {
			v := contentVersion(p.b, items[t])
			w[t] = v
			if v == p.versions[c][t] {
				w[t] = "-"
			}
			p.versions[c][t] = v
		}
		p.hashing += time.Since(h0)
		p.last[c] = res
		for node := c; node < p.n; node += 20 {
			snap := &cachev3.Snapshot{}
			for t, rt := range peerTypes {
				snap.Resources[rt] = cachev3.NewResources(p.versions[c][t], items[t])
			}
			if err := snap.Consistent(); err != nil {
				p.b.Fatal(err)
			}
			if err := p.cache.SetSnapshot(p.ctx, fmt.Sprintf("node-%d", node), snap); err != nil {
				p.b.Fatal(err)
			}
			want[node] = w
		}
	}
	return want
}

// contentVersion is a hash of the resources' deterministic wire form.
func contentVersion(b *testing.B, items []types.Resource) string {
	h := sha256.New()
	for _, r := range items {
		raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
		if err != nil {
			b.Fatal(err)
		}
		fmt.Fprintf(h, "%d\x00", len(raw))
		h.Write(raw)
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// logConfigSizes logs what one node of class 0 is sent by each server, in
// wire bytes per type, and fails unless the sizes are equal (both push the
// same config).
func logConfigSizes(b *testing.B, enf *xds.Enforcer, peer *peerTarget) {
	ourSnap := enf.NodeSnapshot("node-0")
	for _, typ := range loadTypes {
		ourBytes := 0
		for _, m := range ourSnap.Resources(typ) {
			ourBytes += proto.Size(m)
		}
		peerBytes := 0
		switch typ {
		case resourcev3.ListenerType:
			for _, l := range peer.last[0].Listeners {
				peerBytes += proto.Size(l)
			}
		case resourcev3.RouteType:
			for _, r := range peer.last[0].Routes {
				peerBytes += proto.Size(r)
			}
		case resourcev3.ClusterType:
			for _, c := range peer.last[0].Clusters {
				peerBytes += proto.Size(c)
			}
		}
		b.Logf("node-0 %s: ours %d bytes, peer %d bytes", typ[len("type.googleapis.com/envoy.config."):], ourBytes, peerBytes)
		if ourBytes != peerBytes {
			b.Fatalf("node-0 %s: ours %d bytes, peer %d: the two servers would not push the same config", typ, ourBytes, peerBytes)
		}
	}
}
