package policy

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/egressguard/egressguard/internal/memo"
	"github.com/egressguard/egressguard/inventory"
	"github.com/egressguard/egressguard/policy/plan"
)

// genCatalog writes an operator catalog with zones production zones (half
// wildcards, half exact names), 64 production networks and exceptions
// exceptions, each selecting one app label (a quarter use wildcards).
func genCatalog(tb testing.TB, zones, exceptions int) string {
	tb.Helper()
	var b strings.Builder
	b.WriteString("zones:\n")
	for i := 0; i < zones; i++ {
		if i%2 == 0 {
			fmt.Fprintf(&b, "  - \"*.svc%d.prod.example.com\"\n", i)
		} else {
			fmt.Fprintf(&b, "  - host%d.corp-prod.example.net\n", i)
		}
	}
	b.WriteString("cidrs:\n")
	for i := 0; i < 64; i++ {
		fmt.Fprintf(&b, "  - 10.%d.0.0/16\n", 100+i)
	}
	b.WriteString("mail_sink: {host: mailpit.staging.svc.cluster.local, port: 1025}\nexceptions:\n")
	for i := 0; i < exceptions; i++ {
		host := fmt.Sprintf("host%d.corp-prod.example.net", 2*i+1)
		if i%4 == 0 {
			host = fmt.Sprintf("\"*.svc%d.prod.example.com\"", 2*i)
		}
		fmt.Fprintf(&b, "  - id: exc-%d\n    workload: {environment: staging, labels: {app: app-%d}}\n    hosts: [%s]\n    expires: 2099-12-31\n    owner: team-%d@example.com\n    ticket: SEC-%d\n", i, i*7, host, i, i)
	}
	p := filepath.Join(tb.TempDir(), "generated.yaml")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}

func benchWorkloads(n int) []*inventory.Workload {
	ws := make([]*inventory.Workload, n)
	for i := range ws {
		ws[i] = &inventory.Workload{
			Name: fmt.Sprintf("svc-%d", i), Namespace: fmt.Sprintf("ns-%d", i%50), Environment: "staging",
			Labels: map[string]string{"app": fmt.Sprintf("app-%d", i), "pod-template-hash": fmt.Sprintf("%x", i*7919), "version": "v1"},
		}
	}
	return ws
}

// BenchmarkCompilePlans measures, on a generated 2,000-zone catalog with 100
// exceptions: loading the policy (parse, validate, Rego compile, shared rule
// sets evaluated once, shared layer compiled once), then compiling plans for
// 1,000 workload classes, and the heap each class retains beyond what the
// classes share.
//
//	go test ./policy -run '^$' -bench BenchmarkCompilePlans -benchtime 3x
func BenchmarkCompilePlans(b *testing.B) {
	cat := genCatalog(b, 2000, 100)
	ws := benchWorkloads(1000)
	opts := Options{CatalogFiles: []string{cat}, Now: func() time.Time { return testNow }}
	ctx := context.Background()

	b.Run("load", func(b *testing.B) {
		cpu0 := cpuTime()
		for i := 0; i < b.N; i++ {
			if _, err := NewEngine(ctx, opts, zap.NewNop(), prometheus.NewRegistry()); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64((cpuTime()-cpu0).Milliseconds())/float64(b.N), "cpu-ms/op")
	})

	b.Run("classes=1000", func(b *testing.B) {
		var perClass float64
		var cpu time.Duration
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			e, err := NewEngine(ctx, opts, zap.NewNop(), prometheus.NewRegistry())
			if err != nil {
				b.Fatal(err)
			}
			cpu0 := cpuTime()
			b.StartTimer()
			for _, w := range ws {
				if _, err := e.PlanFor(w); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			cpu += cpuTime() - cpu0
			if got := e.Status().ClassesCached; got != len(ws)+3 {
				b.Fatalf("%d classes cached, want %d", got, len(ws)+3)
			}
			// Retained per class: the heap with the class cache, minus the
			// heap once the classes (not the shared layer) are dropped.
			perClass = float64(liveHeap()-dropClasses(e)) / float64(len(ws))
			runtime.KeepAlive(e)
			b.StartTimer()
		}
		b.ReportMetric(perClass, "B/class")
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(ws)), "ns/class")
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N)/float64(len(ws)), "cpu-ns/class")
	})

	b.Run("hit", func(b *testing.B) {
		e, err := NewEngine(ctx, opts, zap.NewNop(), prometheus.NewRegistry())
		if err != nil {
			b.Fatal(err)
		}
		for _, w := range ws {
			if _, err := e.PlanFor(w); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := e.PlanFor(ws[i%len(ws)]); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkNaivePlans is the peer: a full plan per class (plan.Compile of
// base + overlay rules, no shared layer), as the engine would do without
// the shared rule-set extension. Same catalog, 200 classes.
//
//	go test ./policy -run '^$' -bench BenchmarkNaivePlans -benchtime 3x
func BenchmarkNaivePlans(b *testing.B) {
	cat := genCatalog(b, 2000, 100)
	ws := benchWorkloads(200)
	ctx := context.Background()
	e, err := NewEngine(ctx, Options{CatalogFiles: []string{cat}, Now: func() time.Time { return testNow }}, zap.NewNop(), nil)
	if err != nil {
		b.Fatal(err)
	}
	s := e.cur.Load()
	b.ResetTimer()
	var perClass float64
	var cpu time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		before := liveHeap()
		cpu0 := cpuTime()
		b.StartTimer()
		plans := make([]*plan.Plan, 0, len(ws))
		for _, w := range ws {
			_, in := s.class.classOf(w)
			pr, err := s.evalPlan(ctx, in)
			if err != nil {
				b.Fatal(err)
			}
			var rules []plan.Rule
			for _, n := range pr.Include {
				rules = append(rules, s.rulesets[n]...)
			}
			for _, n := range pr.OverlayInclude {
				rules = append(rules, s.rulesets[n]...)
			}
			p, err := plan.Compile(plan.Spec{Default: pr.Default, Mode: pr.Mode, Rules: append(rules, pr.Rules...)})
			if err != nil {
				b.Fatal(err) // exception rules share no IDs with catalog rules
			}
			plans = append(plans, p)
		}
		b.StopTimer()
		cpu += cpuTime() - cpu0
		perClass = float64(liveHeap()-before) / float64(len(ws))
		runtime.KeepAlive(plans)
		b.StartTimer()
	}
	b.ReportMetric(perClass, "B/class")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(ws)), "ns/class")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N)/float64(len(ws)), "cpu-ns/class")
}

// BenchmarkReferenceDecision is the Rego reference (never on a hot path) on
// the 2,000-zone catalog, for comparison with plan.Decide.
func BenchmarkReferenceDecision(b *testing.B) {
	cat := genCatalog(b, 2000, 100)
	e, err := NewEngine(context.Background(), Options{CatalogFiles: []string{cat}, Now: func() time.Time { return testNow }}, zap.NewNop(), nil)
	if err != nil {
		b.Fatal(err)
	}
	w := benchWorkloads(1)[0]
	d := plan.Destination{Host: "a.b.svc1000.prod.example.com", Port: 443}
	p, err := e.PlanFor(w)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("rego", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := e.ReferenceDecision(context.Background(), w, d); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("plan", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			p.Decide(d)
		}
	})
}

func liveHeap() int64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// dropClasses empties the class cache (keeping the shared layers) and
// returns the live heap afterwards.
func dropClasses(e *Engine) int64 {
	s := e.cur.Load()
	s.plans = memo.Memo[string, *plan.Plan]{}
	h := liveHeap()
	runtime.KeepAlive(e)
	return h
}

// cpuTime is the process's user+system CPU time: on a shared, overloaded
// machine it is steadier than wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
