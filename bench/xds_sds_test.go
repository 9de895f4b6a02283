package bench

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/egressguard/egressguard/policy/plan"
	"github.com/egressguard/egressguard/xds"
	"github.com/egressguard/egressguard/xds/stagingca"
)

// benchCerts hands out leaves of a realistic size (an RSA-2048 leaf and
// its chain, ≈3.5 KiB of PEM) whose bytes change on each rotation.
type benchCerts struct {
	gen     atomic.Int64
	changes chan struct{}
}

func (c *benchCerts) Leaf(host string) (stagingca.Leaf, error) {
	g := c.gen.Load()
	return stagingca.Leaf{
		CertPEM: bytes.Repeat(fmt.Appendf(nil, "%s gen %d ", host, g), 2400/len(host)),
		KeyPEM:  bytes.Repeat(fmt.Appendf(nil, "key %d ", g), 200),
	}, nil
}

func (c *benchCerts) Changes() <-chan struct{} { return c.changes }

// interceptRules is the base layer, its sandbox redirects made plaintext
// (with a staging CA a TLS redirect is intercepted too), plus one
// intercepted Stripe rule, whose default's reason is edited by gen.
func interceptRules(gen int) []plan.Rule {
	rules := baseRules(0)
	for i := range rules {
		if rd := rules[i].Redirect; rd != nil {
			rules[i].Redirect = &plan.Redirect{Host: rd.Host, Port: 80}
		}
	}
	return append(rules, plan.Rule{ID: "stripe-api", Hosts: []string{"api.stripe.com"}, Action: plan.ActionAllow,
		Requests: &plan.RequestPolicy{
			Rules: []plan.RequestRule{
				{ID: "stripe-api/live", Action: plan.ActionDeny, Reason: "live key",
					Headers: []plan.HeaderMatch{{Name: "authorization", Value: &plan.StringMatch{Prefix: "Bearer sk_live_"}}}},
				{ID: "stripe-api/test", Action: plan.ActionAllow,
					Headers: []plan.HeaderMatch{{Name: "authorization", Value: &plan.StringMatch{Prefix: "Bearer sk_test_"}}}},
			},
			Default: plan.RequestRule{ID: "stripe-api/default", Action: plan.ActionDeny, Reason: fmt.Sprintf("no test key (edit %d)", gen)},
		}})
}

// sdsCounter counts the responses of each type the streams receive.
type sdsCounter struct {
	mu    sync.Mutex
	count map[string]int
	last  map[string]time.Time
}

func (c *sdsCounter) add(typ string) {
	c.mu.Lock()
	c.count[typ]++
	c.last[typ] = time.Now()
	c.mu.Unlock()
}

// waitFor waits until n more responses of typ than base arrived, or the
// deadline; it returns the time of the last one and whether all came.
func (c *sdsCounter) waitFor(typ string, base, n int, deadline time.Time) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.count[typ] < base+n {
		if time.Now().After(deadline) {
			return time.Time{}, false
		}
		c.mu.Unlock()
		time.Sleep(time.Millisecond)
		c.mu.Lock()
	}
	return c.last[typ], true
}

func (c *sdsCounter) get(typ string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.count[typ]
}

// BenchmarkXDSSDSPush: N (default 1,000, XDS_LOAD_STREAMS) sidecar ADS
// streams over real gRPC on 127.0.0.1 (in this process), nodes in 20
// classes of the 2,000-rule base plus an intercepted Stripe rule; each
// stream holds its listener, the route configurations and the SDS secret
// its listener names, ACKing everything. One op = two changes, measured
// until every stream got the new version: a staging CA rotation (only the
// secret changes: rebuild of the intercepting classes + SDS push), then a
// policy edit of the intercepted rule's default reason (only its route
// configuration changes: the push without secrets). Reported: both, and
// their ratio.
func BenchmarkXDSSDSPush(b *testing.B) {
	n := loadStreams(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	planGen := []*classPlans{plansFrom(b, interceptRules(0)), plansFrom(b, interceptRules(1))}
	src := &switchSource{cur: planGen[0]}
	certs := &benchCerts{changes: make(chan struct{}, 1)}
	enf, addr, served := startOurs(ctx, b, n, src, xds.WithCertificates(certs))

	cnt := &sdsCounter{count: map[string]int{}, last: map[string]time.Time{}}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := sdsStream(ctx, conn, fmt.Sprintf("node-%d", i), cnt); err != nil && ctx.Err() == nil {
				errs <- err
			}
		}()
	}
	if _, ok := cnt.waitFor(resourcev3.SecretType, 0, n, time.Now().Add(2*time.Minute)); !ok {
		select {
		case err := <-errs:
			b.Fatalf("streams did not all get their secret (%d of %d): %v", cnt.get(resourcev3.SecretType), n, err)
		default:
			b.Fatalf("streams did not all get their secret: %d of %d (%d listeners)", cnt.get(resourcev3.SecretType), n, cnt.get(resourcev3.ListenerType))
		}
	}
	var secretMS, routeMS []float64
	b.ResetTimer()
	cpu := startCPU(b)
	for i := range b.N {
		base := cnt.get(resourcev3.SecretType)
		t0 := time.Now()
		certs.gen.Add(1)
		certs.changes <- struct{}{}
		last, ok := cnt.waitFor(resourcev3.SecretType, base, n, time.Now().Add(2*time.Minute))
		if !ok {
			b.Fatalf("rotation %d: %d of %d streams got the new secret", i, cnt.get(resourcev3.SecretType)-base, n)
		}
		secretMS = append(secretMS, float64(last.Sub(t0))/float64(time.Millisecond))

		base = cnt.get(resourcev3.RouteType)
		t0 = time.Now()
		src.cur = planGen[(i+1)%2]
		enf.Rebuild()
		last, ok = cnt.waitFor(resourcev3.RouteType, base, n, time.Now().Add(2*time.Minute))
		if !ok {
			b.Fatalf("policy edit %d: %d of %d streams got the new routes", i, cnt.get(resourcev3.RouteType)-base, n)
		}
		routeMS = append(routeMS, float64(last.Sub(t0))/float64(time.Millisecond))
		b.Logf("change %d: secret rotation all updated in %.0f ms; route edit in %.0f ms", i, secretMS[i], routeMS[i])
	}
	b.StopTimer()
	cpu.report(b)
	b.ReportMetric(median(secretMS), "secret-all-updated-ms")
	b.ReportMetric(median(routeMS), "route-all-updated-ms")
	b.ReportMetric(median(secretMS)/median(routeMS), "secret/route")
	cancel()
	wg.Wait()
	<-served
	close(errs)
	for err := range errs {
		b.Error(err)
	}
}

// sdsStream is one Envoy-like ADS client: it asks for its listener, then
// the route configurations and secrets the listener names, and ACKs every
// response; it counts the responses by type.
func sdsStream(ctx context.Context, conn *grpc.ClientConn, id string, cnt *sdsCounter) error {
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return err
	}
	node := &corev3.Node{Id: id, UserAgentName: "envoy"}
	if err := st.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ListenerType}); err != nil {
		return err
	}
	names := map[string][]string{}
	for {
		resp, err := st.Recv()
		if err != nil {
			return err
		}
		typ := resp.GetTypeUrl()
		cnt.add(typ)
		if err := st.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: typ, ResourceNames: names[typ],
			VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}); err != nil {
			return err
		}
		if typ != resourcev3.ListenerType {
			continue
		}
		rds, sds, err := listenerRefs(resp)
		if err != nil {
			return err
		}
		for typ, want := range map[string][]string{resourcev3.RouteType: rds, resourcev3.SecretType: sds} {
			if !slices.Equal(want, names[typ]) {
				names[typ] = want
				if err := st.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: typ, ResourceNames: want}); err != nil {
					return err
				}
			}
		}
	}
}

// listenerRefs lists the RDS and SDS names a listener response uses.
func listenerRefs(resp *discoveryv3.DiscoveryResponse) (rds, sds []string, err error) {
	rds, err = listenerRouteNames(resp)
	if err != nil {
		return nil, nil, err
	}
	for _, a := range resp.GetResources() {
		l := &listenerv3.Listener{}
		if err := a.UnmarshalTo(l); err != nil {
			return nil, nil, err
		}
		for _, fc := range l.FilterChains {
			tc := fc.GetTransportSocket().GetTypedConfig()
			if tc == nil || !tc.MessageIs(&tlsv3.DownstreamTlsContext{}) {
				continue
			}
			d := &tlsv3.DownstreamTlsContext{}
			if err := tc.UnmarshalTo(d); err != nil {
				return nil, nil, err
			}
			for _, s := range d.GetCommonTlsContext().GetTlsCertificateSdsSecretConfigs() {
				if !slices.Contains(sds, s.Name) {
					sds = append(sds, s.Name)
				}
			}
		}
	}
	slices.Sort(sds)
	return rds, sds, nil
}
