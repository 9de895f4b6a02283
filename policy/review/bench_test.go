package review

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/egressguard/egressguard/inventory"
	"github.com/egressguard/egressguard/policy/decisionlog"
	"github.com/egressguard/egressguard/policy/plan"
)

// benchCatalog writes a catalog with nZones production zones (half exact,
// half wildcard), 64 CIDRs, 20 providers and nExc exceptions selecting
// app=app-<i>. head changes 2% of the zones, widens every tenth exception
// and adds a sandbox to one provider.
func benchCatalog(t testing.TB, dir string, nZones, nExc int, head bool) {
	t.Helper()
	var b strings.Builder
	b.WriteString("environments:\n  production: [production]\n  non_production: [staging, qa, dev]\nzones:\n")
	for i := range nZones {
		if head && i%50 == 0 {
			fmt.Fprintf(&b, "  - \"svc%d.new.prod.example.com\"\n", i) // replaced zone
			continue
		}
		if i%2 == 0 {
			fmt.Fprintf(&b, "  - \"*.z%d.prod.example.com\"\n", i)
		} else {
			fmt.Fprintf(&b, "  - \"api%d.corp.example.com\"\n", i)
		}
	}
	b.WriteString("cidrs:\n")
	for i := range 64 {
		fmt.Fprintf(&b, "  - 10.%d.0.0/16\n", 100+i)
	}
	b.WriteString("mail_sink: {host: mailpit.staging.svc.cluster.local, port: 1025}\nproviders:\n")
	for i := range 20 {
		fmt.Fprintf(&b, "  - name: prov%d\n    category: payment\n    endpoints:\n      - live: api.prov%d.com\n", i, i)
		if head && i == 3 {
			fmt.Fprintf(&b, "        sandbox: {host: api.sandbox.prov%d.com, port: 443, tls: true}\n", i)
		}
		fmt.Fprintf(&b, "      - live: hooks.prov%d.com\n        ports: [443, 8443]\n", i)
	}
	b.WriteString("  - name: smtp\n    category: email\n    endpoints:\n      - ports: [25, 587]\n        sink: true\nexceptions:\n")
	for i := range nExc {
		host := fmt.Sprintf("api%d.corp.example.com", 2*i+1)
		if head && i%10 == 0 {
			host = fmt.Sprintf("\"*.z%d.prod.example.com\"", 2*i)
		}
		fmt.Fprintf(&b, "  - id: exc%d\n    workload: {environment: staging, labels: {app: app-%d}}\n    hosts: [%s]\n    expires: 2027-03-01\n    owner: team%d@example.com\n    ticket: SEC-%d\n", i, i, host, i, i)
	}
	if err := os.WriteFile(filepath.Join(dir, "catalog.yaml"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// benchDecisions writes n decision records spread over nClasses workloads
// and the catalog's hosts and CIDRs.
func benchDecisions(t testing.TB, path string, n, nClasses, nZones int) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	rng := rand.New(rand.NewPCG(1, 2))
	envs := []string{"staging", "qa", "dev", "production"}
	for i := range n {
		c := rng.IntN(nClasses)
		wl := &inventory.Workload{Name: fmt.Sprintf("w%d", c), Namespace: "ns", Environment: envs[c%len(envs)], Labels: map[string]string{"app": fmt.Sprintf("app-%d", c)}}
		var d plan.Destination
		switch rng.IntN(4) {
		case 0:
			d = plan.Destination{Host: fmt.Sprintf("svc%d.z%d.prod.example.com", rng.IntN(50), 2*rng.IntN(nZones/2)), Port: 443, Protocol: "tls"}
		case 1:
			d = plan.Destination{Host: fmt.Sprintf("api%d.corp.example.com", 2*rng.IntN(nZones/2)+1), Protocol: "dns"}
		case 2:
			d = plan.Destination{IP: netipMust(fmt.Sprintf("10.%d.%d.%d", 100+rng.IntN(80), rng.IntN(256), rng.IntN(256))), Port: 5432, Protocol: "tcp"}
		default:
			d = plan.Destination{Host: fmt.Sprintf("host%d.example.org", rng.IntN(20000)), Port: 443, Protocol: "http"}
		}
		rec := decisionlog.Record{DecisionID: fmt.Sprintf("%032x", i), Timestamp: time.Unix(1800000000+int64(i), 0).UTC(), Path: decisionlog.PathXDS,
			Input:  decisionlog.Input{Workload: decisionlog.WorkloadRef{Name: wl.Name, Namespace: wl.Namespace, Environment: wl.Environment, Labels: wl.Labels}, Destination: decisionlog.Destination{Host: d.Host, Port: d.Port, IP: d.IP, Protocol: d.Protocol}},
			Result: plan.Decision{Action: plan.ActionDeny, Matched: plan.ActionDeny, Rule: &plan.Rule{ID: "zone:x"}}}
		b, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(b)
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

const (
	benchZones     = 2000
	benchClasses   = 1000
	benchExc       = 100
	benchDecisionN = 100_000
)

// BenchmarkDiffLarge is the figure: two 2,000-zone catalogs, 1,000
// workload classes (inventory workloads app-0..app-999 over four
// environments; exceptions select 100 of them), 100,000 recorded decisions.
// It times the whole command path: compile both versions, read the log,
// diff. Run: go test ./policy/review -run '^$' -bench DiffLarge -benchtime 3x
func BenchmarkDiffLarge(b *testing.B) {
	dir := b.TempDir()
	for _, side := range []string{"base", "head"} {
		if err := os.MkdirAll(filepath.Join(dir, side), 0o755); err != nil {
			b.Fatal(err)
		}
		benchCatalog(b, filepath.Join(dir, side), benchZones, benchExc, side == "head")
	}
	logPath := filepath.Join(dir, "decisions.jsonl")
	benchDecisions(b, logPath, benchDecisionN, benchClasses, benchZones)
	ws := make([]inventory.Workload, 0, benchClasses)
	envs := []string{"staging", "qa", "dev", "production"}
	for c := range benchClasses {
		ws = append(ws, inventory.Workload{Name: fmt.Sprintf("w%d", c), Namespace: "ns", Environment: envs[c%len(envs)], Labels: map[string]string{"app": fmt.Sprintf("app-%d", c)}})
	}
	inv, err := inventory.NewSnapshot("staging", ws)
	if err != nil {
		b.Fatal(err)
	}
	now := func() time.Time { return time.Date(2027, 1, 15, 0, 0, 0, 0, time.UTC) }
	ctx := context.Background()
	b.Run("shared-base", func(b *testing.B) { benchDiffRun(b, ctx, dir, logPath, inv, now, false) })
	b.Run("full-compare", func(b *testing.B) { benchDiffRun(b, ctx, dir, logPath, inv, now, true) })
}

// benchDiffRun times the command path; full disables the shared-base
// shortcut (the peer: every plan pair decides every destination).
func benchDiffRun(b *testing.B, ctx context.Context, dir, logPath string, inv *inventory.Snapshot, now func() time.Time, full bool) {
	for b.Loop() {
		t0 := time.Now()
		o := LoadOptions{NoDefaultCatalog: false, Now: now, Log: zap.NewNop()}
		base, err := Load(ctx, filepath.Join(dir, "base"), o)
		if err != nil {
			b.Fatal(err)
		}
		head, err := Load(ctx, filepath.Join(dir, "head"), o)
		if err != nil {
			b.Fatal(err)
		}
		tLoad := time.Since(t0)
		recs, err := ReadDecisionFile(logPath)
		if err != nil {
			b.Fatal(err)
		}
		tRead := time.Since(t0) - tLoad
		rep, err := Diff(base, head, Inputs{Inventory: inv, Decisions: recs, fullCompare: full})
		if err != nil {
			b.Fatal(err)
		}
		tDiff := time.Since(t0) - tLoad - tRead
		if err := rep.WriteText(io.Discard); err != nil {
			b.Fatal(err)
		}
		if err := rep.WriteMarkdown(io.Discard, MarkdownOptions{}); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(time.Since(t0).Seconds(), "total-s")
		if !rep.Widens || len(rep.Decisions) == 0 {
			b.Fatalf("expected a widening diff, got %+v", rep.Stats)
		}
		b.ReportMetric(tLoad.Seconds(), "load-s")
		b.ReportMetric(tRead.Seconds(), "read-s")
		b.ReportMetric(tDiff.Seconds(), "diff-s")
		b.ReportMetric(float64(rep.Stats.Compared), "decisions")
		b.ReportMetric(float64(rep.Stats.Classes), "classes")
		b.ReportMetric(float64(rep.Stats.PlanPairs), "plan-pairs")
		b.ReportMetric(float64(len(rep.Decisions)), "changes")
		base.Close()
		head.Close()
	}
}

// BenchmarkDecisionPeer is the per-decision cost diff pays (plan.Decide on
// both plans) against the peer it avoids: asking the Rego reference
// (data.egressguard.decision) per destination, on the same 2,000-zone
// catalog. Run: go test ./policy/review -run '^$' -bench DecisionPeer
func BenchmarkDecisionPeer(b *testing.B) {
	dir := b.TempDir()
	benchCatalog(b, dir, benchZones, benchExc, false)
	s, err := Load(context.Background(), dir, LoadOptions{Now: func() time.Time { return time.Date(2027, 1, 15, 0, 0, 0, 0, time.UTC) }, Log: zap.NewNop()})
	if err != nil {
		b.Fatal(err)
	}
	w := &inventory.Workload{Name: "w1", Namespace: "ns", Environment: "staging", Labels: map[string]string{"app": "app-1"}}
	p, err := s.Engine.PlanFor(w)
	if err != nil {
		b.Fatal(err)
	}
	pc := newProbeCollector()
	pc.addPlan(p)
	dests := pc.destinations()
	b.Run("plan.Decide", func(b *testing.B) {
		i := 0
		for b.Loop() {
			_ = p.Decide(dests[i%len(dests)])
			i++
		}
	})
	b.Run("rego.reference", func(b *testing.B) {
		ctx := context.Background()
		i := 0
		for b.Loop() {
			if _, err := s.Engine.ReferenceDecision(ctx, w, dests[i%len(dests)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}
