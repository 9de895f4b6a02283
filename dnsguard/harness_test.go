package dnsguard

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/egressguard/egressguard/inventory"
	"github.com/egressguard/egressguard/policy/decisionlog"
	"github.com/egressguard/egressguard/policy/plan"
)

// stagingSpec is the plan of the staging workloads in these tests.
func stagingSpec() plan.Spec {
	return plan.Spec{
		Default: plan.ActionAllow,
		Rules: []plan.Rule{
			{ID: "production-zone", Hosts: []string{"*.prod.example.com", "prod.example.com"}, Action: plan.ActionDeny, Reason: "production DNS zone", Category: "production-zone"},
			{ID: "production-cidr", CIDRs: []string{"10.20.0.0/16", "2001:db8:20::/48"}, Action: plan.ActionDeny, Reason: "production network", Category: "production-cidr"},
			{ID: "provider.paypal.api-m.paypal.com", Hosts: []string{"api-m.paypal.com"}, Action: plan.ActionRedirect,
				Redirect: &plan.Redirect{Host: "api-m.sandbox.paypal.com", Port: 443, TLS: true}, Reason: "PayPal live API", Category: "payment"},
			{ID: "vendor-metrics", Hosts: []string{"metrics.vendor.example"}, Action: plan.ActionDeny, Mode: plan.ModeReport, Reason: "rolling out"},
			// Port-filtered on every name ("*"): enforced by the sidecar only, never by DNS.
			{ID: "smtp-submission", Hosts: []string{"*"}, Ports: []uint16{25, 587}, Action: plan.ActionDeny, Reason: "mail goes to the sink"},
		},
	}
}

func mustPlan(t testing.TB, spec plan.Spec) *plan.Plan {
	t.Helper()
	p, err := plan.Compile(spec)
	require.NoError(t, err)
	return p
}

// envPlans is a PlanSource keyed by environment; the staging plan can be
// swapped at run time.
type envPlans struct {
	staging atomic.Pointer[plan.Plan]
	prod    *plan.Plan
	fail    atomic.Bool
	calls   atomic.Int64
}

func (e *envPlans) PlanFor(w *inventory.Workload) (*plan.Plan, error) {
	e.calls.Add(1)
	if e.fail.Load() {
		return nil, errFakePolicy
	}
	if w.Environment == "production" {
		return e.prod, nil
	}
	return e.staging.Load(), nil
}

type fakeErr string

func (e fakeErr) Error() string { return string(e) }

const errFakePolicy = fakeErr("policy engine has no valid policy")

func newEnvPlans(t testing.TB) *envPlans {
	e := &envPlans{prod: mustPlan(t, plan.Spec{Default: plan.ActionAllow})}
	e.staging.Store(mustPlan(t, stagingSpec()))
	return e
}

// testInventory: 127.0.0.1 is a staging workload, 127.0.0.2 production;
// anything else is unknown (default environment: staging).
func testInventory(t testing.TB) *inventory.Store {
	t.Helper()
	snap, err := inventory.NewSnapshot("staging", []inventory.Workload{
		{Name: "checkout", Namespace: "payments", Environment: "staging", Labels: map[string]string{"app": "checkout"},
			IPs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}},
		{Name: "ledger", Namespace: "finance", Environment: "production",
			IPs: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}},
	})
	require.NoError(t, err)
	return inventory.NewStatic(snap)
}

type recordSink struct {
	mu   sync.Mutex
	recs []decisionlog.Record
}

func (r *recordSink) Log(rec decisionlog.Record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec)
}

func (r *recordSink) all() []decisionlog.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]decisionlog.Record(nil), r.recs...)
}

type harness struct {
	s     *Server
	auth  *authServer
	plans *envPlans
	sink  *recordSink
	reg   *prometheus.Registry
	udp   string
	tcp   string
}

// newHarness starts an authoritative upstream with the test zone and a
// dnsguard in front of it. extra upstreams are tried before the zone's.
func newHarness(t testing.TB, mutate func(*Config), before ...string) *harness {
	t.Helper()
	return newHarnessLog(t, zaptest.NewLogger(t), mutate, before...)
}

// newHarnessLog is newHarness with the server's logger given.
func newHarnessLog(t testing.TB, log *zap.Logger, mutate func(*Config), before ...string) *harness {
	t.Helper()
	h := &harness{auth: startAuth(t, loadZone(t, "upstream.zone")), plans: newEnvPlans(t), sink: &recordSink{}, reg: prometheus.NewRegistry()}
	cfg := Defaults()
	cfg.Listen = "127.0.0.1:0"
	cfg.Upstreams = append(append([]string{}, before...), h.auth.addr)
	cfg.UpstreamTimeout = 300 * time.Millisecond
	cfg.QueryTimeout = 2 * time.Second
	cfg.CheckUpstreams = false
	if mutate != nil {
		mutate(&cfg)
	}
	s, err := New(cfg, h.plans, testInventory(t), h.sink, log, h.reg)
	require.NoError(t, err)
	require.NoError(t, s.Start(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, s.Shutdown(ctx))
	})
	h.s = s
	u, tc := s.Addr()
	h.udp, h.tcp = u.String(), tc.String()
	return h
}

type queryOpt func(m *dns.Msg, c *dns.Client)

// withEDNS sets an OPT record with the given buffer size and options.
func withEDNS(size uint16, do bool, opts ...dns.EDNS0) queryOpt {
	return func(m *dns.Msg, _ *dns.Client) {
		m.SetEdns0(size, do)
		m.IsEdns0().Option = append(m.IsEdns0().Option, opts...)
	}
}

// from sends the query from another loopback source address.
func from(ip string) queryOpt {
	return func(_ *dns.Msg, c *dns.Client) {
		if c.Net == "tcp" {
			c.Dialer = &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
		} else {
			c.Dialer = &net.Dialer{LocalAddr: &net.UDPAddr{IP: net.ParseIP(ip)}}
		}
	}
}

func (h *harness) ask(t testing.TB, network, name string, qtype uint16, opts ...queryOpt) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	c := &dns.Client{Net: network, Timeout: 5 * time.Second, UDPSize: 65535}
	for _, o := range opts {
		o(m, c)
	}
	addr := h.udp
	if network == "tcp" {
		addr = h.tcp
	}
	r, _, err := c.Exchange(m, addr)
	require.NoError(t, err, "query %s %s over %s", name, dns.TypeToString[qtype], network)
	require.Equal(t, m.Id, r.Id)
	return r
}

// ede returns the Extended DNS Error of an answer, nil if none.
func ede(m *dns.Msg) *dns.EDNS0_EDE {
	if opt := m.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			if e, ok := o.(*dns.EDNS0_EDE); ok {
				return e
			}
		}
	}
	return nil
}

func answerStrings(m *dns.Msg) []string {
	out := make([]string, 0, len(m.Answer))
	for _, rr := range m.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, "A "+rr.A.String())
		case *dns.AAAA:
			out = append(out, "AAAA "+rr.AAAA.String())
		case *dns.CNAME:
			out = append(out, "CNAME "+rr.Target)
		default:
			out = append(out, dns.TypeToString[rr.Header().Rrtype])
		}
	}
	return out
}

// value reads a counter or gauge.
func value(c prometheus.Collector) float64 {
	ch := make(chan prometheus.Metric, 1)
	go func() { c.Collect(ch); close(ch) }()
	var total float64
	for m := range ch {
		var d dto.Metric
		if err := m.Write(&d); err != nil {
			panic(err)
		}
		switch {
		case d.Counter != nil:
			total += d.Counter.GetValue()
		case d.Gauge != nil:
			total += d.Gauge.GetValue()
		}
	}
	return total
}

// rewriteEntry replaces a cached entry with a modified copy (entries are
// immutable once stored; this is how a test moves time).
func rewriteEntry(t testing.TB, s *Server, k cacheKey, mod func(e *entry)) {
	t.Helper()
	old, ok := s.cache.get(k)
	require.True(t, ok, "no cache entry for %v", k)
	e := &entry{wire: old.wire, ttls: old.ttls, rcode: old.rcode, stored: old.stored, expires: old.expires, ips: old.ips, names: old.names}
	mod(e)
	s.cache.put(k, e)
}

func timeNow() time.Time { return time.Now() }
