// Package bench holds egressguard's load tests and benchmarks (not run by
// make test). xds: go test ./bench -run '^$' -bench BenchmarkXDS -benchtime 3x
package bench

import (
	"fmt"
	"runtime"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"go.uber.org/zap"

	"github.com/egressguard/egressguard/inventory"
	"github.com/egressguard/egressguard/policy/plan"
	"github.com/egressguard/egressguard/xds"
)

// classPlans is a PlanSource: 20 classes sharing a 2,000-rule base, each
// with a small overlay; the node's workload name picks the class.
type classPlans struct{ plans map[string]*plan.Plan }

func (c *classPlans) PlanFor(w *inventory.Workload) (*plan.Plan, error) { return c.plans[w.Name], nil }

func baseRules(gen int) []plan.Rule {
	rules := make([]plan.Rule, 0, 2000)
	for i := range 1990 {
		r := plan.Rule{ID: fmt.Sprintf("r%d-g%d", i, gen), Hosts: []string{fmt.Sprintf("api%d.provider%d.example.com", i, i%97)},
			Action: plan.ActionDeny, Reason: "production provider"}
		switch i % 10 {
		case 0:
			r.Hosts = []string{fmt.Sprintf("*.zone%d.prod.example.com", i)}
		case 1:
			r.Action, r.Redirect = plan.ActionRedirect, &plan.Redirect{Host: fmt.Sprintf("sandbox%d.example.net", i%50), Port: 443, TLS: true}
		case 2:
			r.Ports = []uint16{443}
		}
		rules = append(rules, r)
	}
	for i := range 10 {
		rules = append(rules, plan.Rule{ID: fmt.Sprintf("cidr%d", i), CIDRs: []string{fmt.Sprintf("10.%d.0.0/16", 20+i)}, Action: plan.ActionDeny, Reason: "prod net"})
	}
	return rules
}

func makePlans(b *testing.B, gen int) *classPlans { return plansFrom(b, baseRules(gen)) }

// plansFrom builds the 20 classes on a base layer of these rules.
func plansFrom(b *testing.B, rules []plan.Rule) *classPlans {
	base, err := plan.CompileLayer(rules)
	if err != nil {
		b.Fatal(err)
	}
	cp := &classPlans{plans: map[string]*plan.Plan{}}
	for c := range 20 {
		p, err := plan.New(base, []plan.Rule{{ID: fmt.Sprintf("exc-%d", c), Hosts: []string{fmt.Sprintf("svc%d.staging.example.com", c)}, Action: plan.ActionAllow}},
			plan.ActionAllow, plan.ModeEnforce)
		if err != nil {
			b.Fatal(err)
		}
		cp.plans[fmt.Sprintf("class%d", c)] = p
	}
	return cp
}

// BenchmarkXDSRebuild: 1,000 connected sidecar nodes in 20 classes with
// 2,000 rules per plan; one op = a full rebuild after a policy change that
// touches every class (translate, validate including every Any, marshal,
// publish).
func BenchmarkXDSRebuild(b *testing.B) {
	var wls []inventory.Workload
	for n := range 1000 {
		wls = append(wls, inventory.Workload{Name: fmt.Sprintf("class%d", n%20), Namespace: fmt.Sprintf("ns%d", n), Environment: "staging",
			NodeIDs: []string{fmt.Sprintf("node-%d", n)}})
	}
	snap, err := inventory.NewSnapshot("staging", wls)
	if err != nil {
		b.Fatal(err)
	}
	plansA, plansB := makePlans(b, 0), makePlans(b, 1)
	src := &switchSource{cur: plansA}
	enf, err := xds.NewEnforcer(src, inventory.NewStatic(snap), xds.Defaults(), zap.NewNop(), xds.NewMetrics(nil))
	if err != nil {
		b.Fatal(err)
	}
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	// Connect the nodes through the server's stream callbacks (what an ADS
	// stream's first request runs), without gRPC streams.
	srv, err := xds.NewServer(b.Context(), xds.Defaults(), enf, zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	for n := range 1000 {
		req := &discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: fmt.Sprintf("node-%d", n), UserAgentName: "envoy"}, TypeUrl: resourcev3.ListenerType}
		if err := srv.OnStreamOpen(b.Context(), int64(n), resourcev3.ListenerType); err != nil {
			b.Fatal(err)
		}
		if err := srv.OnStreamRequest(int64(n), req); err != nil {
			b.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&m1)
	heapPerNode := float64(m1.HeapAlloc-m0.HeapAlloc) / 1000 / 1024
	b.ResetTimer()
	cpu := startCPU(b)
	for i := range b.N {
		if i%2 == 0 {
			src.cur = plansB
		} else {
			src.cur = plansA
		}
		enf.Rebuild()
	}
	cpu.report(b)
	b.ReportMetric(heapPerNode, "KiB-heap/node")
}

type switchSource struct{ cur *classPlans }

func (s *switchSource) PlanFor(w *inventory.Workload) (*plan.Plan, error) { return s.cur.PlanFor(w) }
