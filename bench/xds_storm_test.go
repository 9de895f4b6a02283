package bench

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// BenchmarkXDSConnectStorm is issue 4's "5,000 streams connecting at once:
// the server stays up and serves the rest". N sidecars (default 5,000, env
// XDS_STORM_STREAMS), each on its own TCP connection, are released at the
// same instant and ask for their listeners over ADS; every one must be
// served (one op = one storm, from release until the last stream holds its
// listener), then a newcomer must still be served. Plans: 20 classes of the
// 2,000-rule load-test base layer, so each stream gets a full-size listener.
// Not part of make test (the race detector caps a process at 8,128
// goroutines):
//
//	go test ./bench -run '^$' -bench XDSConnectStorm -benchtime 1x -timeout 600s
func BenchmarkXDSConnectStorm(b *testing.B) {
	n := 5000
	if v := os.Getenv("XDS_STORM_STREAMS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// One node more than the storm: the newcomer served after it.
	_, addr, _ := startOurs(ctx, b, n+1, makePlans(b, 0))

	for range b.N {
		stormOnce(b, addr, n)
	}
	// The server is still up and serves a newcomer.
	if _, err := fetchListener(ctx, addr, fmt.Sprintf("node-%d", n)); err != nil {
		b.Fatalf("after the storm, a new stream was not served: %v", err)
	}
}

// stormOnce releases n streams at once and waits until each holds its
// listener (or fails); it fails the benchmark unless all n were served.
func stormOnce(b *testing.B, addr string, n int) {
	b.StopTimer()
	release := make(chan struct{})
	hold := make(chan struct{})
	lat := make([]time.Duration, n)
	errs := make([]error, n)
	var wg, answered sync.WaitGroup
	answered.Add(n)
	var t0 time.Time
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-release
			ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
			defer cancel()
			conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				errs[i] = err
				answered.Done()
				return
			}
			defer conn.Close()
			st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
			if err == nil {
				err = st.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: fmt.Sprintf("node-%d", i), UserAgentName: "envoy"}, TypeUrl: resourcev3.ListenerType})
			}
			var resp *discoveryv3.DiscoveryResponse
			if err == nil {
				resp, err = st.Recv()
			}
			if err == nil && len(resp.Resources) != 1 {
				err = fmt.Errorf("%d listeners", len(resp.Resources))
			}
			lat[i], errs[i] = time.Since(t0), err
			answered.Done()
			if err == nil {
				<-hold // keep the stream (and its connection) open until all are served
			}
		}()
	}
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	b.StartTimer()
	t0 = time.Now()
	close(release)
	answered.Wait()
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&m1)
	close(hold)
	wg.Wait()
	failed := 0
	for i, err := range errs {
		if err != nil {
			if failed < 5 {
				b.Logf("stream %d: %v", i, err)
			}
			failed++
		}
	}
	slices.Sort(lat)
	b.ReportMetric(ms(lat[n/2]), "p50-ms")
	b.ReportMetric(ms(lat[n*99/100]), "p99-ms")
	b.ReportMetric(ms(lat[n-1]), "all-ms")
	b.ReportMetric(float64(failed), "failed")
	b.Logf("%d streams released at once: %d served, %d failed; p50 %.0f ms, p99 %.0f ms, all %.0f ms; heap %+.1f MiB (server and clients, one process)",
		n, n-failed, failed, ms(lat[n/2]), ms(lat[n*99/100]), ms(lat[n-1]), float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc))/(1<<20))
	if failed > 0 {
		b.Fatalf("%d of %d streams were not served", failed, n)
	}
}

// fetchListener opens one ADS stream as node and returns its listener
// response.
func fetchListener(ctx context.Context, addr, node string) (*discoveryv3.DiscoveryResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return nil, err
	}
	if err := st.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: node, UserAgentName: "envoy"}, TypeUrl: resourcev3.ListenerType}); err != nil {
		return nil, err
	}
	return st.Recv()
}
