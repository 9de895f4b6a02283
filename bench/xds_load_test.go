package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/egressguard/egressguard/inventory"
	"github.com/egressguard/egressguard/xds"
)

// The load test's client side runs in a child process (this test binary
// again, TestXDSLoadClients) so the server's memory and CPU are measured
// alone. They talk over the child's stdin/stdout, one command per line:
//
//	child → parent  READY <ms>                 every stream holds its first config
//	parent → child  EXPECT <i> <lds> <rds> <cds> stream i's new versions ("-": unchanged)
//	parent → child  CHECK <t0 unix ns>         report when every stream holds them
//	child → parent  DONE <p50 ms> <p99 ms> <max ms> <not done> <responses> <client CPU ms>
//	parent → child  SETTLE                     (optional) GC, count client CPU from here
//	child → parent  SETTLED
//	parent → child  EXIT
//
// The client CPU is the child's CPU time since the previous DONE, READY or
// SETTLE:
// what the fake Envoys spent receiving, decoding and ACKing one change. On
// a machine where clients and server share the cores, wall time is at least
// (server CPU + client CPU) / cores.
const loadChildEnv = "EGRESSGUARD_XDS_LOAD_CHILD"

var loadTypes = [3]string{resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType}

// BenchmarkXDSADSLoad: N (default 1,000, env XDS_LOAD_STREAMS) Envoy-like
// ADS streams over real gRPC on 127.0.0.1, one TCP connection each, nodes
// in 20 classes with 2,000 rules per plan. One op = a policy change: the
// time from the change until every stream holds the new version of every
// resource type that changed (rebuild included).
//
//   - every-rule (the worst case): the base layer is replaced, every
//     rule ID changes, so every class and every virtual host changes.
//   - one-rule: one base rule's reason changes (its deny body), as a
//     catalog edit would. State-of-the-world RDS still sends every node
//     its whole route tables; the listener does not change.
func BenchmarkXDSADSLoad(b *testing.B) {
	b.Run("every-rule", func(b *testing.B) { adsLoad(b, makePlans(b, 0), makePlans(b, 1)) })
	b.Run("one-rule", func(b *testing.B) {
		edited := baseRules(0)
		edited[7].Reason = "production provider (edited)"
		adsLoad(b, makePlans(b, 0), plansFrom(b, edited))
	})
}

func adsLoad(b *testing.B, plansA, plansB *classPlans) {
	n := loadStreams(b)
	src := &switchSource{cur: plansA}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	enf, addr, served := startOurs(ctx, b, n, src)

	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m0)
	rss0 := rssKiB(b)

	child := startLoadChild(b, addr, n)
	defer child.close()
	ready := child.expect("READY")
	runtime.GC()
	runtime.GC() // and the pools' victim caches
	runtime.ReadMemStats(&m1)
	heapPerNode := float64(m1.HeapAlloc-m0.HeapAlloc) / float64(n) / 1024
	rssPerNode := float64(rssKiB(b)-rss0) / float64(n)
	b.Logf("%d streams connected and configured in %s ms; server heap %.1f KiB/node, RSS %.1f KiB/node",
		n, ready[0], heapPerNode, rssPerNode)

	var p50s, p99s, maxs, rebuilds, clientCPU []float64
	b.ResetTimer()
	stopProfile := startProfile(b, "server")
	cpu := startCPU(b)
	for i := range b.N {
		old := make([]*xds.Snapshot, n)
		for j := range n {
			old[j] = enf.NodeSnapshot(fmt.Sprintf("node-%d", j))
		}
		if i%2 == 0 {
			src.cur = plansB
		} else {
			src.cur = plansA
		}
		t0 := time.Now()
		enf.Rebuild()
		rebuilds = append(rebuilds, float64(time.Since(t0))/float64(time.Millisecond))
		b.StopTimer()
		done := child.check(t0, ourWant(enf, old))
		b.StartTimer()
		if done[3] != "0" {
			b.Fatalf("%s of %d streams did not get the new version within the child's deadline", done[3], n)
		}
		for k, dst := range map[int]*[]float64{0: &p50s, 1: &p99s, 2: &maxs, 5: &clientCPU} {
			v, _ := strconv.ParseFloat(done[k], 64)
			*dst = append(*dst, v)
		}
		b.Logf("change %d: rebuild %.0f ms; streams updated p50 %s ms, p99 %s ms, max %s ms; %s responses; clients %s CPU-ms",
			i, rebuilds[len(rebuilds)-1], done[0], done[1], done[2], done[4], done[5])
	}
	b.StopTimer()
	cpu.report(b)
	stopProfile()
	b.ReportMetric(median(rebuilds), "rebuild-ms")
	b.ReportMetric(median(clientCPU), "client-cpu-ms/op")
	b.ReportMetric(median(p50s), "p50-updated-ms")
	b.ReportMetric(median(p99s), "p99-updated-ms")
	b.ReportMetric(median(maxs), "all-updated-ms")
	b.ReportMetric(heapPerNode, "KiB-heap/node")
	b.ReportMetric(rssPerNode, "KiB-rss/node")
	cancel()
	<-served
}

// startOurs runs egressguard's enforcer and xDS server (xds.Defaults) on
// 127.0.0.1 for the sidecar nodes node-0 … node-(n-1) in the 20 load-test
// classes (class<i%20>). It returns the enforcer, the server's address and
// Serve's result, delivered once ctx ends.
func startOurs(ctx context.Context, b *testing.B, n int, plans xds.PlanSource, opts ...xds.Option) (*xds.Enforcer, string, <-chan error) {
	b.Helper()
	wls := make([]inventory.Workload, 0, n)
	for i := range n {
		wls = append(wls, inventory.Workload{Name: fmt.Sprintf("class%d", i%20), Namespace: fmt.Sprintf("ns%d", i),
			Environment: "staging", NodeIDs: []string{fmt.Sprintf("node-%d", i)}})
	}
	snap, err := inventory.NewSnapshot("staging", wls)
	if err != nil {
		b.Fatal(err)
	}
	cfg := xds.Defaults()
	enf, err := xds.NewEnforcer(plans, inventory.NewStatic(snap), cfg, zap.NewNop(), xds.NewMetrics(nil), opts...)
	if err != nil {
		b.Fatal(err)
	}
	srv, err := xds.NewServer(ctx, cfg, enf, zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	lis := listenLocal(b)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, lis) }()
	return enf, lis.Addr().String(), served
}

// ourWant lists, per node, the versions of every resource type that
// changed since old (the nodes' snapshots before the change), "-" for the
// types that did not: what each stream must hold when the change is done.
func ourWant(enf *xds.Enforcer, old []*xds.Snapshot) [][3]string {
	want := make([][3]string, len(old))
	for j := range old {
		cur := enf.NodeSnapshot(fmt.Sprintf("node-%d", j))
		for t, typ := range loadTypes {
			names := []string(nil) // LDS, CDS: wildcard
			if typ == resourcev3.RouteType {
				names = routeNames(cur)
			}
			v := cur.ResponseVersion(typ, names)
			if old[j] != nil && old[j].ResponseVersion(typ, names) == v {
				v = "-"
			}
			want[j][t] = v
		}
	}
	return want
}

// loadChild is the load test's client process (TestXDSLoadClients): n
// fake Envoys connected to one xDS server.
type loadChild struct {
	b     *testing.B
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines *bufio.Scanner
}

// startLoadChild starts n fake Envoys against addr in a child process;
// expect("READY") waits until every stream holds its first config.
func startLoadChild(b *testing.B, addr string, n int) *loadChild {
	cmd := exec.Command(os.Args[0], "-test.run=^TestXDSLoadClients$")
	cmd.Env = append(os.Environ(), loadChildEnv+"="+addr, "XDS_LOAD_STREAMS="+strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	return &loadChild{b: b, cmd: cmd, in: in, lines: bufio.NewScanner(out)}
}

// expect reads the child's output up to the next line starting with
// prefix and returns that line's other fields.
func (c *loadChild) expect(prefix string) []string {
	for c.lines.Scan() {
		f := strings.Fields(c.lines.Text())
		if len(f) > 0 && f[0] == prefix {
			return f[1:]
		}
	}
	c.b.Fatalf("load client exited before %s: %v", prefix, c.lines.Err())
	return nil
}

// check tells the child the versions each stream must hold (want[i]: LDS,
// RDS, CDS; "-": unchanged) and waits for its DONE line: p50, p99, max
// (ms since t0), streams not done, responses, client CPU ms.
func (c *loadChild) check(t0 time.Time, want [][3]string) []string {
	var sb strings.Builder
	for j, w := range want {
		fmt.Fprintf(&sb, "EXPECT %d %s %s %s\n", j, w[0], w[1], w[2])
	}
	fmt.Fprintf(&sb, "CHECK %d\n", t0.UnixNano())
	if _, err := io.WriteString(c.in, sb.String()); err != nil {
		c.b.Fatal(err)
	}
	return c.expect("DONE")
}

// settle has the child collect its garbage and count its CPU from now on.
func (c *loadChild) settle() {
	if _, err := io.WriteString(c.in, "SETTLE\n"); err != nil {
		c.b.Fatal(err)
	}
	c.expect("SETTLED")
}

func (c *loadChild) close() {
	fmt.Fprintln(c.in, "EXIT")
	_ = c.cmd.Wait()
}

// startProfile writes a CPU profile of the changes only (not the setup) to
// $XDS_LOAD_PROFILE_DIR/<name>.prof when that variable is set; the returned
// function stops it.
func startProfile(tb testing.TB, name string) func() {
	dir := os.Getenv("XDS_LOAD_PROFILE_DIR")
	if dir == "" {
		return func() {}
	}
	if b, ok := tb.(*testing.B); ok {
		name += "-" + strings.ReplaceAll(b.Name(), "/", "-")
	}
	f, err := os.Create(filepath.Join(dir, name+".prof"))
	if err != nil {
		tb.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		tb.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}
}

func routeNames(s *xds.Snapshot) []string { return s.Names(resourcev3.RouteType) }

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func rssKiB(tb testing.TB) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		tb.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			v, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return v
		}
	}
	return 0
}

// loadStream is one fake Envoy: it subscribes to CDS and LDS (wildcard) and
// to the route configurations its listener names, ACKs every response,
// remembers when each version arrived and, like Envoy, holds the resources
// it accepted until the next version replaces them.
type loadStream struct {
	node string
	// drop: do not hold resources (XDS_LOAD_CLIENT_DROP=1, how the load
	// test's clients behaved before 2026-11-28, for comparisons).
	drop bool

	mu      sync.Mutex
	history [3][]seen
	count   int
	held    [3][]*anypb.Any
}

type seen struct {
	version string
	at      int64
}

func (s *loadStream) run(ctx context.Context, conn *grpc.ClientConn) error {
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return err
	}
	node := &corev3.Node{Id: s.node, UserAgentName: "envoy"}
	if err := st.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType}); err != nil {
		return err
	}
	if err := st.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ListenerType}); err != nil {
		return err
	}
	var rdsNames []string
	var rdsVersion, rdsNonce string
	for {
		resp, err := st.Recv()
		if err != nil {
			return err
		}
		now := time.Now().UnixNano()
		t := slices.Index(loadTypes[:], resp.GetTypeUrl())
		if t >= 0 {
			s.mu.Lock()
			s.history[t] = append(s.history[t], seen{resp.GetVersionInfo(), now})
			s.count++
			if !s.drop {
				s.held[t] = resp.GetResources()
			}
			s.mu.Unlock()
		}
		ack := &discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resp.GetTypeUrl(), VersionInfo: resp.GetVersionInfo(),
			ResponseNonce: resp.GetNonce()}
		if resp.GetTypeUrl() == resourcev3.RouteType {
			ack.ResourceNames = rdsNames
			rdsVersion, rdsNonce = resp.GetVersionInfo(), resp.GetNonce()
		}
		if err := st.Send(ack); err != nil {
			return err
		}
		if resp.GetTypeUrl() != resourcev3.ListenerType {
			continue
		}
		names, err := listenerRouteNames(resp)
		if err != nil {
			return err
		}
		if !slices.Equal(names, rdsNames) {
			rdsNames = names
			if err := st.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.RouteType, ResourceNames: names,
				VersionInfo: rdsVersion, ResponseNonce: rdsNonce}); err != nil {
				return err
			}
		}
	}
}

// listenerRouteNames lists the RDS names the listeners' HTTP connection
// managers use, as Envoy would subscribe to them.
func listenerRouteNames(resp *discoveryv3.DiscoveryResponse) ([]string, error) {
	var names []string
	for _, a := range resp.GetResources() {
		l := &listenerv3.Listener{}
		if err := a.UnmarshalTo(l); err != nil {
			return nil, err
		}
		for _, fc := range l.FilterChains {
			for _, f := range fc.Filters {
				if !f.GetTypedConfig().MessageIs(&hcmv3.HttpConnectionManager{}) {
					continue
				}
				h := &hcmv3.HttpConnectionManager{}
				if err := f.GetTypedConfig().UnmarshalTo(h); err != nil {
					return nil, err
				}
				if n := h.GetRds().GetRouteConfigName(); n != "" && !slices.Contains(names, n) {
					names = append(names, n)
				}
			}
		}
	}
	slices.Sort(names)
	return names, nil
}

// TestXDSLoadClients is BenchmarkXDSADSLoad's client process; it does
// nothing unless started by the benchmark.
func TestXDSLoadClients(t *testing.T) {
	addr := os.Getenv(loadChildEnv)
	if addr == "" {
		t.Skip("helper process of BenchmarkXDSADSLoad")
	}
	n, err := strconv.Atoi(os.Getenv("XDS_LOAD_STREAMS"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	streams := make([]*loadStream, n)
	var wg sync.WaitGroup
	for i := range n {
		// Envoy's HTTP/2 defaults for its xDS connection: 256 MiB stream
		// and connection windows.
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20)),
			grpc.WithInitialWindowSize(256<<20), grpc.WithInitialConnWindowSize(256<<20))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		streams[i] = &loadStream{node: fmt.Sprintf("node-%d", i), drop: os.Getenv("XDS_LOAD_CLIENT_DROP") == "1"}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := streams[i].run(ctx, conn); err != nil && ctx.Err() == nil {
				fmt.Fprintf(os.Stderr, "stream %d: %v\n", i, err)
			}
		}()
	}
	defer wg.Wait()
	defer cancel()
	waitUntil := func(deadline time.Duration, done func() bool) bool {
		end := time.Now().Add(deadline)
		for time.Now().Before(end) {
			if done() {
				return true
			}
			time.Sleep(5 * time.Millisecond)
		}
		return done()
	}
	if !waitUntil(5*time.Minute, func() bool {
		for _, s := range streams {
			s.mu.Lock()
			ok := len(s.history[0]) > 0 && len(s.history[1]) > 0 && len(s.history[2]) > 0
			s.mu.Unlock()
			if !ok {
				return false
			}
		}
		return true
	}) {
		t.Fatal("streams did not all get a first config")
	}
	fmt.Printf("READY %d\n", time.Since(start).Milliseconds())
	lastCPU := processCPU(t)

	want := make([][3]string, n)
	stopProfile := startProfile(t, "clients") // every change, none of the setup
	defer stopProfile()
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		switch {
		case len(f) == 5 && f[0] == "EXPECT":

			i, _ := strconv.Atoi(f[1])
			want[i] = [3]string{f[2], f[3], f[4]}
		case len(f) == 2 && f[0] == "CHECK":
			t0, _ := strconv.ParseInt(f[1], 10, 64)
			lat := make([]float64, n)
			notDone := 0
			// doneAt is when stream i holds every changed type's new
			// version (0: not yet).
			doneAt := func(i int) int64 {
				s := streams[i]
				s.mu.Lock()
				defer s.mu.Unlock()
				var last int64
				for typ, v := range want[i] {
					if v == "-" {
						continue
					}
					at := int64(0)
					for _, h := range s.history[typ] {
						if h.at >= t0 && h.version == v {
							at = h.at
							break
						}
					}
					if at == 0 {
						return 0
					}
					last = max(last, at)
				}
				return max(last, t0)
			}
			waitUntil(60*time.Second, func() bool {
				for i := range n {
					if doneAt(i) == 0 {
						return false
					}
				}
				return true
			})
			responses := 0
			for i := range n {
				at := doneAt(i)
				if at == 0 {
					notDone++
					continue
				}
				lat[i] = float64(at-t0) / float64(time.Millisecond)
				streams[i].mu.Lock()
				for typ := range 3 {
					for _, h := range streams[i].history[typ] {
						if h.at >= t0 {
							responses++
						}
					}
				}
				streams[i].mu.Unlock()
			}
			slices.Sort(lat)
			cpu := processCPU(t)
			fmt.Printf("DONE %.0f %.0f %.0f %d %d %d\n", lat[n/2], lat[n*99/100], lat[n-1], notDone, responses,
				(cpu - lastCPU).Milliseconds())
			lastCPU = cpu
		case len(f) == 1 && f[0] == "SETTLE":
			// Collect this process's garbage and count client CPU
			// from here (BenchmarkXDSADSLoadPeer, before each change).
			runtime.GC()
			lastCPU = processCPU(t)
			fmt.Println("SETTLED")
		case len(f) == 1 && f[0] == "EXIT":
			return
		}
	}
}
