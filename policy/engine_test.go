package policy

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/egressguard/egressguard/inventory"
	"github.com/egressguard/egressguard/policy/plan"
)

var update = flag.Bool("update", false, "rewrite testdata/golden from the current policy and delete stale files")

// testNow is the fixed clock of engine tests: operator.yaml's
// old-migration exception (2025-01-31) has expired, the others have not.
var testNow = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func fixedNow() time.Time { return testNow }

func newTestEngine(t testing.TB, opts Options) *Engine {
	t.Helper()
	if opts.Now == nil {
		opts.Now = fixedNow
	}
	e, err := NewEngine(context.Background(), opts, zaptest.NewLogger(t), prometheus.NewRegistry())
	require.NoError(t, err)
	return e
}

func operatorEngine(t testing.TB) *Engine {
	return newTestEngine(t, Options{CatalogFiles: []string{"testdata/catalogs/operator.yaml"}})
}

// Read-only tests share engines: a load costs ~0.1 s, ~1 s under -race.
var (
	sharedOnce     sync.Once
	sharedOperator *Engine
	sharedDefault  *Engine
	sharedErr      error
)

func shared(t testing.TB) (operator, def *Engine) {
	t.Helper()
	sharedOnce.Do(func() {
		ctx := context.Background()
		sharedOperator, sharedErr = NewEngine(ctx, Options{CatalogFiles: []string{"testdata/catalogs/operator.yaml"}, Now: fixedNow}, zap.NewNop(), nil)
		if sharedErr == nil {
			sharedDefault, sharedErr = NewEngine(ctx, Options{Now: fixedNow}, zap.NewNop(), nil)
		}
	})
	require.NoError(t, sharedErr)
	return sharedOperator, sharedDefault
}

func sharedOperatorEngine(t testing.TB) *Engine { e, _ := shared(t); return e }

func sharedDefaultEngine(t testing.TB) *Engine { _, e := shared(t); return e }

func TestEngineDecisions(t *testing.T) {
	e := sharedOperatorEngine(t)
	staging := &inventory.Workload{Name: "web", Namespace: "shop", Environment: "staging",
		Labels: map[string]string{"app": "web", "pod-template-hash": "5d8f7c9b6"}}
	for _, tc := range []struct {
		name     string
		w        *inventory.Workload
		dest     string
		action   plan.Action
		rule     string
		target   string
		wouldDen bool
	}{
		{"paypal live API redirected to sandbox", staging, "api-m.paypal.com:443", plan.ActionRedirect, "provider:paypal:api-m.paypal.com", "api-m.sandbox.paypal.com:443", false},
		{"stripe has no sandbox host: denied", staging, "api.stripe.com:443", plan.ActionDeny, "provider:stripe:api.stripe.com", "", false},
		{"DNS lookup (no port) of a live host denied", staging, "api.stripe.com", plan.ActionDeny, "provider:stripe:api.stripe.com", "", false},
		{"production zone denied", staging, "orders.prod.example.com:443", plan.ActionDeny, "zone:*.prod.example.com", "", false},
		{"exact production host denied", staging, "billing.example.com:443", plan.ActionDeny, "zone:billing.example.com", "", false},
		{"production network denied", staging, "10.20.3.4:5432", plan.ActionDeny, "cidr:10.20.0.0/16", "", false},
		{"production IPv6 network denied", staging, "[2001:db8:20::9]:443", plan.ActionDeny, "cidr:2001:db8:20::/48", "", false},
		{"unrelated host allowed", staging, "github.com:443", plan.ActionAllow, plan.DefaultRuleID, "", false},
		{"SMTP goes to the mail sink", staging, "smtp.gmail.com:587", plan.ActionRedirect, "provider:smtp-submission:*:25,465,587,2525", "mailpit.staging.svc.cluster.local:1025", false},
		{"operator provider redirected to its sandbox", staging, "pay.acme-psp.example:443", plan.ActionRedirect, "provider:acme-payments:pay.acme-psp.example", "sandbox.acme-psp.example:8443", false},
		{"disabled provider is not enforced", staging, "api.twilio.com:443", plan.ActionAllow, plan.DefaultRuleID, "", false},
		{"production may reach live hosts", &inventory.Workload{Name: "web", Environment: "production"}, "api.stripe.com:443", plan.ActionAllow, plan.DefaultRuleID, "", false},
		{"production may reach production", &inventory.Workload{Name: "web", Environment: "prod"}, "10.20.3.4:5432", plan.ActionAllow, plan.DefaultRuleID, "", false},
		{"unknown environment is guarded", &inventory.Workload{Name: "web", Environment: "perf"}, "api.stripe.com:443", plan.ActionDeny, "provider:stripe:api.stripe.com", "", false},
		{"empty environment is guarded", &inventory.Workload{Name: "web"}, "orders.prod.example.com", plan.ActionDeny, "zone:*.prod.example.com", "", false},
		{"report mode answers allow and records", &inventory.Workload{Name: "web", Environment: "dev"}, "api.stripe.com:443", plan.ActionAllow, "provider:stripe:api.stripe.com", "", true},
		{"exception by name and namespace", &inventory.Workload{Name: "checkout", Namespace: "payments", Environment: "staging"}, "api.stripe.com:443", plan.ActionAllow, "exception:checkout-stripe-testmode", "", false},
		{"exception does not leak to other namespaces", &inventory.Workload{Name: "checkout", Namespace: "shop", Environment: "staging"}, "api.stripe.com:443", plan.ActionDeny, "provider:stripe:api.stripe.com", "", false},
		{"exception by label, on its port", &inventory.Workload{Name: "r", Environment: "staging", Labels: map[string]string{"app": "reporting"}}, "replica.prod.example.com:5432", plan.ActionAllow, "exception:reporting-prod-replica", "", false},
		{"exception by label, other port still denied", &inventory.Workload{Name: "r", Environment: "staging", Labels: map[string]string{"app": "reporting"}}, "replica.prod.example.com:443", plan.ActionDeny, "zone:*.prod.example.com", "", false},
		{"exception CIDR beats the shorter production prefix", &inventory.Workload{Name: "r", Environment: "staging", Labels: map[string]string{"app": "reporting"}}, "10.20.5.9:5432", plan.ActionAllow, "exception:reporting-prod-replica", "", false},
		{"expired exception is ignored", &inventory.Workload{Name: "m", Environment: "staging", Labels: map[string]string{"app": "migrator"}}, "billing.example.com:443", plan.ActionDeny, "zone:billing.example.com", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dest, err := ParseDestination(tc.dest)
			require.NoError(t, err)
			d, err := e.Decide(tc.w, dest)
			require.NoError(t, err)
			assert.Equal(t, tc.action, d.Action, "reason: %s", d.Reason())
			assert.Equal(t, tc.rule, d.RuleID())
			assert.NotEmpty(t, d.Reason())
			assert.Equal(t, tc.wouldDen, d.WouldDeny)
			if tc.target != "" {
				require.NotNil(t, d.Target())
				assert.Equal(t, tc.target, Target{Host: d.Target().Host, Port: d.Target().Port}.String())
			}
		})
	}
}

func TestReasonsAreReadable(t *testing.T) {
	e := sharedOperatorEngine(t)
	w := &inventory.Workload{Name: "web", Environment: "staging"}
	for dest, want := range map[string]string{
		"api-m.paypal.com:443":    "paypal live endpoint api-m.paypal.com: non-production workloads must use the paypal sandbox api-m.sandbox.paypal.com:443",
		"api.stripe.com:443":      "stripe (payment) live endpoint api.stripe.com: its request-level rules need the egressguard sidecar, which this workload does not run; the catalog's request_rules_fallback (deny) applies",
		"orders.prod.example.com": "*.prod.example.com is a production zone (apex prod.example.com included): non-production workloads may not reach production",
		"10.20.0.1":               "10.20.0.0/16 is a production network: non-production workloads may not reach production",
	} {
		d2, err := ParseDestination(dest)
		require.NoError(t, err)
		d, err := e.Decide(w, d2)
		require.NoError(t, err)
		assert.Equal(t, want, d.Reason(), dest)
	}
}

func TestClassKeyReadsOnlyDeclaredLabels(t *testing.T) {
	e := operatorEngine(t)
	assert.Equal(t, []string{"app"}, e.ClassLabels())
	a := &inventory.Workload{Name: "web", Namespace: "shop", Environment: "staging",
		Labels: map[string]string{"app": "web", "pod-template-hash": "aaaa", "version": "1"}}
	b := &inventory.Workload{Name: "web", Namespace: "shop", Environment: "staging",
		Labels: map[string]string{"app": "web", "pod-template-hash": "bbbb", "version": "2"}}
	c := &inventory.Workload{Name: "web", Namespace: "shop", Environment: "staging",
		Labels: map[string]string{"app": "reporting"}}
	assert.Equal(t, e.ClassKey(a), e.ClassKey(b), "pod-template-hash and version are not read by the policy")
	assert.NotEqual(t, e.ClassKey(a), e.ClassKey(c))
	assert.NotContains(t, e.ClassKey(a), "pod-template-hash")
	assert.Equal(t, `staging{name="web", namespace="shop", label:app="web"}`, e.ClassDescription(a))
	pa, err := e.PlanFor(a)
	require.NoError(t, err)
	pb, err := e.PlanFor(b)
	require.NoError(t, err)
	assert.Same(t, pa, pb, "one plan per class")
	assert.Equal(t, 1+4, e.Status().ClassesCached, "4 canaries + this class")
}

func TestEngineFailsClosed(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"bad catalog", Options{CatalogFiles: []string{"testdata/invalid/bad_cidr.yaml"}}, `testdata/invalid/bad_cidr.yaml:4: cidrs[1]: bad CIDR`},
		{"unknown field", Options{CatalogFiles: []string{"testdata/invalid/unknown_field.yaml"}}, `unknown_field.yaml:5: providers[0].endpoints[0].sandbox_host: unknown field`},
		{"missing catalog", Options{CatalogFiles: []string{"testdata/nope.yaml"}}, "testdata/nope.yaml"},
		{"Rego syntax error names file and line", Options{PolicyDir: "testdata/policy"}, "testdata/policy/bad.rego:5: rego_parse_error"},
		{"no policy at all", Options{ReplaceDefaultPolicy: true, PolicyDir: t.TempDir()}, "no Rego modules"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Now = fixedNow
			e, err := NewEngine(context.Background(), tc.opts, zaptest.NewLogger(t), nil)
			require.Error(t, err)
			assert.Nil(t, e)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestCustomPolicyWithoutPlanFailsClosed(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "p.rego"), []byte("package egressguard\n\nsomething := 1\n"), 0o600))
	_, err := NewEngine(context.Background(), Options{ReplaceDefaultPolicy: true, PolicyDir: dir}, zaptest.NewLogger(t), nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no module defines data.egressguard.plan")
}

func TestCustomPolicyReplacingDefault(t *testing.T) {
	dir := t.TempDir()
	// A deny-by-default policy that declares no class labels: the engine
	// then keys classes on every label (correct, if less shared).
	require.NoError(t, os.WriteFile(filepath.Join(dir, "allowlist.rego"), []byte(`package egressguard

plan := {"default": "deny", "rules": [{"id": "allow:github", "hosts": ["*.github.com", "github.com"], "action": "allow", "reason": "source code"}]}
`), 0o600))
	e := newTestEngine(t, Options{ReplaceDefaultPolicy: true, PolicyDir: dir})
	w := &inventory.Workload{Name: "a", Environment: "staging", Labels: map[string]string{"x": "1"}}
	d, err := e.Decide(w, plan.Destination{Host: "api.github.com", Port: 443})
	require.NoError(t, err)
	assert.Equal(t, "allow:github", d.RuleID())
	d, err = e.Decide(w, plan.Destination{Host: "example.com", Port: 443})
	require.NoError(t, err)
	assert.Equal(t, plan.ActionDeny, d.Action)
	assert.Equal(t, `staging{name="a", namespace="", label:x="1"}`, e.ClassDescription(w))
	_, err = e.ReferenceDecision(context.Background(), w, plan.Destination{Host: "example.com"})
	assert.ErrorIs(t, err, ErrNoReference)
}

func TestCustomPolicyBadRuleIsAnError(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "typo.rego"), []byte(`package egressguard

plan := {"default": "allow", "rules": [{"id": "x", "host": ["a.example"], "action": "deny"}]}
`), 0o600))
	_, err := NewEngine(context.Background(), Options{ReplaceDefaultPolicy: true, PolicyDir: dir}, zaptest.NewLogger(t), nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `unknown field "host"`)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(to, b, 0o600))
}

func TestReloadKeepsLastGoodPolicy(t *testing.T) {
	dir := t.TempDir()
	cat := filepath.Join(dir, "catalog.yaml")
	copyFile(t, "testdata/catalogs/operator.yaml", cat)
	reg := prometheus.NewRegistry()
	// MaxShrink 1: this test replaces the catalog with a much smaller one.
	e, err := NewEngine(context.Background(), Options{CatalogFiles: []string{cat}, Now: fixedNow, MaxShrink: 1}, zaptest.NewLogger(t), reg)
	require.NoError(t, err)
	var notified atomic.Int32
	cancel := e.Subscribe(func() { notified.Add(1) })
	defer cancel()
	v1 := e.Version()
	w := &inventory.Workload{Name: "web", Environment: "staging"}
	dest := plan.Destination{Host: "orders.prod.example.com", Port: 443}

	// Unchanged files: no new version, no notification.
	require.NoError(t, e.Reload(context.Background()))
	assert.Equal(t, v1, e.Version())
	assert.Equal(t, int32(0), notified.Load())

	// A broken catalog: the error names file, line and field; v1 keeps serving.
	require.NoError(t, os.WriteFile(cat, []byte("zones:\n  - \"*.prod.example.com\"\ncidrs: [10.20.0.0/33]\n"), 0o600))
	err = e.Reload(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), cat+":3: cidrs[0]: bad CIDR")
	assert.Equal(t, v1, e.Version())
	d, err := e.Decide(w, dest)
	require.NoError(t, err)
	assert.Equal(t, plan.ActionDeny, d.Action)
	st := e.Status()
	assert.Contains(t, st.LastError, cat+":3")
	assert.Equal(t, v1, st.Version)
	assert.InDelta(t, 1, metricValue(t, e.metrics.Reloads.WithLabelValues(reloadError)), 0)
	assert.Equal(t, int32(0), notified.Load())

	// A fixed catalog that changes the policy: new version, subscribers told.
	require.NoError(t, os.WriteFile(cat, []byte("zones: [\"*.other-prod.example.com\"]\n"), 0o600))
	require.NoError(t, e.Reload(context.Background()))
	assert.NotEqual(t, v1, e.Version())
	assert.Equal(t, int32(1), notified.Load())
	assert.Empty(t, e.Status().LastError)
	d, err = e.Decide(w, dest)
	require.NoError(t, err)
	assert.Equal(t, plan.ActionAllow, d.Action, "orders.prod.example.com is no longer a production zone")
	d, err = e.Decide(w, plan.Destination{Host: "x.other-prod.example.com"})
	require.NoError(t, err)
	assert.Equal(t, plan.ActionDeny, d.Action)
}

func TestReloadRegoErrorKeepsServing(t *testing.T) {
	dir := t.TempDir()
	e := newTestEngine(t, Options{PolicyDir: dir})
	v1 := e.Version()
	copyFile(t, "testdata/policy/bad.rego", filepath.Join(dir, "bad.rego"))
	err := e.Reload(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), filepath.Join(dir, "bad.rego")+":5: rego_parse_error")
	assert.Equal(t, v1, e.Version())
	_, err = e.PlanFor(&inventory.Workload{Name: "x", Environment: "staging"})
	require.NoError(t, err)
}

func TestExpiredExceptionIgnoredAndReported(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	reg := prometheus.NewRegistry()
	e, err := NewEngine(context.Background(), Options{CatalogFiles: []string{"testdata/catalogs/operator.yaml"}, Now: fixedNow},
		zap.New(core), reg)
	require.NoError(t, err)
	want := []ExpiredException{{ID: "old-migration", File: "testdata/catalogs/operator.yaml", Expires: "2025-01-31", Owner: "carol@example.com", Ticket: "SEC-42"}}
	assert.Equal(t, want, e.ExpiredExceptions())
	assert.Equal(t, want, e.Status().ExpiredExceptions)
	assert.InDelta(t, 1, metricValue(t, e.metrics.ExpiredExceptions), 0)
	entries := logs.FilterMessage("policy exception expired and is ignored").All()
	require.Len(t, entries, 1)
	assert.Equal(t, "old-migration", entries[0].ContextMap()["exception"])
	for _, x := range e.Catalog().Exceptions {
		assert.NotEqual(t, "old-migration", x.ID)
	}

	// The day it expires, a reload drops the next one and changes the version.
	later := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	e.opts.Now = func() time.Time { return later }
	v1 := e.Version()
	require.NoError(t, e.Reload(context.Background()))
	assert.NotEqual(t, v1, e.Version())
	assert.Len(t, e.ExpiredExceptions(), 4)
	d, err := e.Decide(&inventory.Workload{Name: "checkout", Namespace: "payments", Environment: "staging"}, plan.Destination{Host: "api.stripe.com", Port: 443})
	require.NoError(t, err)
	assert.Equal(t, plan.ActionDeny, d.Action)
}

func TestPlanForConcurrentWithReloads(t *testing.T) {
	dir := t.TempDir()
	cat := filepath.Join(dir, "catalog.yaml")
	copyFile(t, "testdata/catalogs/operator.yaml", cat)
	e := newTestEngine(t, Options{CatalogFiles: []string{cat}, MaxShrink: 1})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var lookups atomic.Int64
	for g := 0; g < 3; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				w := &inventory.Workload{Name: "w", Environment: "staging", Labels: map[string]string{"app": fmt.Sprintf("app-%d", i%7)}}
				p, err := e.PlanFor(w)
				if !assert.NoError(t, err) {
					return
				}
				d := p.Decide(plan.Destination{Host: "api.stripe.com", Port: 443})
				if !assert.Equal(t, plan.ActionDeny, d.Action) {
					return
				}
				lookups.Add(1)
			}
		}()
	}
	for i := 0; i < 2; i++ {
		zones := fmt.Sprintf("zones: [\"*.prod%d.example.com\"]\n", i)
		require.NoError(t, os.WriteFile(cat, []byte(zones), 0o600))
		require.NoError(t, e.Reload(context.Background()))
	}
	cancel()
	wg.Wait()
	assert.Positive(t, lookups.Load())
}

func TestWatchReloadsOnChange(t *testing.T) {
	dir := t.TempDir()
	cat := filepath.Join(dir, "catalog.yaml")
	copyFile(t, "testdata/catalogs/operator.yaml", cat)
	e := newTestEngine(t, Options{CatalogFiles: []string{cat}, Debounce: 20 * time.Millisecond, MaxShrink: 1})
	changed := make(chan string, 8)
	defer e.Subscribe(func() { changed <- e.Version() })()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Watch(ctx) }()
	v1 := e.Version()

	// Retry the write until the watcher has picked it up (the watch starts
	// asynchronously); bounded by the test's own deadline below.
	deadline := time.After(20 * time.Second)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var v2 string
	for v2 == "" {
		require.NoError(t, os.WriteFile(cat, []byte("zones: [\"*.watched.example.com\"]\n"), 0o600))
		select {
		case v2 = <-changed:
		case <-tick.C:
		case <-deadline:
			t.Fatal("no reload after the catalog changed")
		}
	}
	assert.NotEqual(t, v1, v2)

	// A broken edit is reported and the last good policy keeps serving.
	require.NoError(t, os.WriteFile(cat, []byte("zones: [\"bad..zone\"]\n"), 0o600))
	require.Eventually(t, func() bool { return strings.Contains(e.Status().LastError, cat+":1: zones[0]") },
		20*time.Second, 20*time.Millisecond)
	assert.Equal(t, v2, e.Version())
	cancel()
	require.NoError(t, <-done)
}

// A catalog written after the engine read it but before Watch placed its
// watches sends no event; Watch must still see it.
func TestWatchSeesAChangeMadeBeforeItStarted(t *testing.T) {
	dir := t.TempDir()
	cat := filepath.Join(dir, "catalog.yaml")
	copyFile(t, "testdata/catalogs/operator.yaml", cat)
	e := newTestEngine(t, Options{CatalogFiles: []string{cat}, Debounce: 20 * time.Millisecond, MaxShrink: 1})
	v1 := e.Version()
	require.NoError(t, os.WriteFile(cat, []byte("zones: [\"*.early.example.com\"]\n"), 0o600))
	changed := make(chan string, 8)
	defer e.Subscribe(func() { changed <- e.Version() })()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Watch(ctx) }()
	select {
	case v2 := <-changed:
		assert.NotEqual(t, v1, v2)
	case <-time.After(20 * time.Second):
		t.Fatal("a change made before Watch started was never loaded")
	}
	cancel()
	require.NoError(t, <-done)
}

func TestMetricsLint(t *testing.T) {
	reg := prometheus.NewRegistry()
	_, err := NewEngine(context.Background(), Options{Now: fixedNow}, zaptest.NewLogger(t), reg)
	require.NoError(t, err)
	mfs, err := reg.Gather()
	require.NoError(t, err)
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	require.NoError(t, err)
	assert.Empty(t, problems)
}

// ---------------------------------------------------------------- golden

type goldenCase struct {
	name string
	w    inventory.Workload
}

var goldenCases = []goldenCase{
	{"staging-web", inventory.Workload{Name: "web", Namespace: "shop", Environment: "staging", Labels: map[string]string{"app": "web"}}},
	{"staging-web-sidecar", inventory.Workload{Name: "web", Namespace: "shop", Environment: "staging", Labels: map[string]string{"app": "web"}, Sidecar: true}},
	{"staging-reporting-exception", inventory.Workload{Name: "reporting", Namespace: "data", Environment: "staging", Labels: map[string]string{"app": "reporting"}}},
	{"staging-checkout-exception", inventory.Workload{Name: "checkout", Namespace: "payments", Environment: "staging"}},
	{"dev-report-mode", inventory.Workload{Name: "web", Environment: "dev"}},
	{"production", inventory.Workload{Name: "web", Environment: "production"}},
}

type goldenFile struct {
	Workload inventory.Workload `json:"workload"`
	Class    string             `json:"class"`
	Plan     plan.Spec          `json:"plan"`
}

// TestGoldenPlans pins the plans the default catalog (plus the operator
// fixture) compiles to. `go test ./policy -run TestGoldenPlans -update`
// rewrites them and deletes golden files no case produces.
func TestGoldenPlans(t *testing.T) {
	e := sharedOperatorEngine(t)
	dir := filepath.Join("testdata", "golden")
	want := map[string]bool{}
	for _, gc := range goldenCases {
		file := gc.name + ".json"
		want[file] = true
		t.Run(gc.name, func(t *testing.T) {
			p, err := e.PlanFor(&gc.w)
			require.NoError(t, err)
			got, err := json.MarshalIndent(goldenFile{Workload: gc.w, Class: e.ClassDescription(&gc.w), Plan: p.Spec()}, "", "  ")
			require.NoError(t, err)
			got = append(got, '\n')
			path := filepath.Join(dir, file)
			if *update {
				require.NoError(t, os.WriteFile(path, got, 0o644))
				return
			}
			b, err := os.ReadFile(path)
			require.NoError(t, err, "run go test ./policy -run TestGoldenPlans -update")
			assert.JSONEq(t, string(b), string(got))
		})
	}
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, ent := range ents {
		if want[ent.Name()] {
			continue
		}
		if *update {
			require.NoError(t, os.Remove(filepath.Join(dir, ent.Name())))
		} else {
			t.Errorf("stale golden file %s: run with -update", ent.Name())
		}
	}
}

// ---------------------------------------------------------------- property

// TestPlanAgreesWithRegoReference checks that the Go matcher (plan.Decide on
// the compiled plan) and the Rego reference (data.egressguard.decision) give
// the same answer on destinations derived from the catalog and on random
// ones, for several workload classes.
func TestPlanAgreesWithRegoReference(t *testing.T) {
	e := sharedOperatorEngine(t)
	cat := e.Catalog()
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	dests := propertyDestinations(cat, seed, 150)
	workloads := []*inventory.Workload{
		{Name: "web", Environment: "staging", Labels: map[string]string{"app": "web"}},
		{Name: "r", Environment: "staging", Labels: map[string]string{"app": "reporting"}},
		{Name: "checkout", Namespace: "payments", Environment: "staging"},
		{Name: "mailer", Environment: "qa"},
		{Name: "web", Environment: "dev"},
		{Name: "web", Environment: "production"},
	}
	ctx := context.Background()
	n := 0
	r := newRand(seed)
	for _, w := range workloads {
		p, err := e.PlanFor(w)
		require.NoError(t, err)
		// A random sample per workload keeps the test bounded (the Rego
		// reference costs about a millisecond per decision).
		r.Shuffle(len(dests), func(i, j int) { dests[i], dests[j] = dests[j], dests[i] })
		for _, d := range dests[:min(len(dests), 150)] {
			got := p.Decide(d)
			ref, err := e.ReferenceDecision(ctx, w, d)
			require.NoError(t, err, "destination %+v", d)
			if !agrees(got, ref) {
				t.Errorf("workload %s/%s env %s, dest %+v: plan says %s by %s, Rego says %s by %s",
					w.Namespace, w.Name, w.Environment, d, got.Action, got.RuleID(), ref.Action, ref.Rule)
			}
			n++
		}
	}
	t.Logf("%d decisions compared", n)
}

// propertyDestinations derives destinations from every catalog pattern (the
// name itself, a subdomain, the parent, with and without matching ports) and
// adds random names, IPs and ports.
func propertyDestinations(c *Catalog, seed int64, random int) []plan.Destination {
	var out []plan.Destination
	ports := []uint16{0, 25, 443, 587, 5432, 8443}
	var patterns []string
	patterns = append(patterns, c.Zones...)
	for _, p := range c.Providers {
		for _, e := range p.Endpoints {
			if e.Live != "" {
				patterns = append(patterns, e.Live)
			}
			if e.Sandbox != nil {
				patterns = append(patterns, e.Sandbox.Host)
			}
		}
	}
	for _, x := range c.Exceptions {
		patterns = append(patterns, x.Hosts...)
	}
	sort.Strings(patterns)
	for i, pat := range patterns {
		if pat == "*" {
			continue // not a name
		}
		name := strings.TrimPrefix(pat, "*.")
		port := ports[i%len(ports)]
		out = append(out,
			plan.Destination{Host: name, Port: port},
			plan.Destination{Host: "x." + name, Port: ports[(i+1)%len(ports)]},
			plan.Destination{Host: "a.b." + name, Port: port},
			plan.Destination{Host: name, Protocol: plan.ProtocolDNS},
			plan.Destination{Host: "x." + name, Protocol: plan.ProtocolDNS},
		)
		if j := strings.IndexByte(name, '.'); j > 0 {
			out = append(out, plan.Destination{Host: name[j+1:], Port: port})
		}
	}
	var cidrs []string
	cidrs = append(cidrs, c.CIDRs...)
	for _, x := range c.Exceptions {
		cidrs = append(cidrs, x.CIDRs...)
	}
	for i, s := range cidrs {
		pfx := netip.MustParsePrefix(s)
		out = append(out,
			plan.Destination{IP: pfx.Addr(), Port: ports[i%len(ports)]},
			plan.Destination{IP: pfx.Addr().Next(), Port: 5432},
			plan.Destination{Host: "unlisted.example.org", IP: pfx.Addr().Next(), Port: 443},
		)
		if pfx.Addr().Is4() { // the same address through NAT64 and 6to4
			for _, q := range plan.EmbeddingPrefixes(netip.PrefixFrom(pfx.Addr().Next(), 32), nil) {
				out = append(out, plan.Destination{IP: q.Addr(), Port: ports[i%len(ports)]})
			}
		}
	}
	r := newRand(seed)
	labels := []string{"api", "www", "prod", "example", "com", "paypal", "stripe", "net", "smtp", "db", "acme-psp", "io"}
	for i := 0; i < random; i++ {
		var parts []string
		for j := 0; j < 1+r.Intn(4); j++ {
			parts = append(parts, labels[r.Intn(len(labels))])
		}
		d := plan.Destination{Host: strings.Join(parts, "."), Port: ports[r.Intn(len(ports))]}
		if r.Intn(3) == 0 {
			d.IP = netip.AddrFrom4([4]byte{10, byte(18 + r.Intn(4)), byte(r.Intn(8)), byte(r.Intn(256))})
			if r.Intn(2) == 0 {
				d.Host = ""
			}
		}
		out = append(out, d)
	}
	return out
}

func newRand(seed int64) *rand.Rand { return rand.New(rand.NewSource(seed)) }

// metricValue reads one counter or gauge.
func metricValue(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	var pb dto.Metric
	require.NoError(t, (<-ch).Write(&pb))
	if pb.Counter != nil {
		return pb.Counter.GetValue()
	}
	return pb.Gauge.GetValue()
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
}
