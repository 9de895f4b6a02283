package dnsguard

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/egressguard/egressguard/policy"
	"github.com/egressguard/egressguard/policy/plan"
)

// denied asserts a deny answer naming rule.
func denied(t *testing.T, r *dns.Msg, rule string) {
	t.Helper()
	assert.Equal(t, dns.RcodeNameError, r.Rcode)
	assert.Empty(t, r.Answer)
	if e := ede(r); assert.NotNil(t, e) {
		assert.Contains(t, e.ExtraText, "blocked by rule "+rule)
	}
}

// Class 1: addresses that embed a production IPv4 address are that address,
// in A/AAAA answers and in HTTPS hints, with the catalog's own NAT64 prefix
// too; names IDNA rejects under a production zone are refused.
func TestAnswersInNormalForm(t *testing.T) {
	h := newHarness(t, nil)
	spec := stagingSpec()
	spec.NAT64 = []string{"2001:db8:64::/96"}
	h.plans.staging.Store(mustPlan(t, spec))
	h.s.Rebuild()
	for _, tc := range []struct {
		name  string
		qtype uint16
	}{
		{"nat64.staging.example.com.", dns.TypeAAAA},
		{"nat64own.staging.example.com.", dns.TypeAAAA},
		{"sixtofour.staging.example.com.", dns.TypeAAAA},
		{"compat.staging.example.com.", dns.TypeAAAA},
		{"svcnat64.staging.example.com.", dns.TypeHTTPS},
	} {
		for _, network := range transports {
			denied(t, h.ask(t, network, tc.name, tc.qtype, withEDNS(1232, false)), "production-cidr")
		}
	}
	// Without the catalog prefix, the cluster's own NAT64 range is plain IPv6.
	h.plans.staging.Store(mustPlan(t, stagingSpec()))
	h.s.Rebuild()
	r := h.ask(t, "udp", "nat64own.staging.example.com.", dns.TypeAAAA)
	assert.Equal(t, dns.RcodeSuccess, r.Rcode)

	for _, q := range []string{"a\\226\\128\\141b.prod.example.com.", "\\204\\129api.prod.example.com.", "a\\032b.prod.example.com."} {
		denied(t, h.ask(t, "udp", q, dns.TypeA, withEDNS(1232, false)), "production-zone")
	}
	denied(t, h.ask(t, "udp", "x.staging.example.\\226\\128\\141com.", dns.TypeA, withEDNS(1232, false)), plan.MalformedRuleID)
}

// Class 2 through DNS: the catalog's "*.prod.example.com" covers the apex,
// asked directly or reached through a CNAME; provider wildcards stay strict.
func TestZoneApexThroughCatalog(t *testing.T) {
	dir := t.TempDir()
	cat := filepath.Join(dir, "catalog.yaml")
	require.NoError(t, os.WriteFile(cat, []byte("zones: [\"*.prod.example.com\"]\ncidrs: [10.20.0.0/16]\n"), 0o600))
	eng, err := policy.NewEngine(context.Background(), policy.Options{CatalogFiles: []string{cat}}, zaptest.NewLogger(t), prometheus.NewRegistry())
	require.NoError(t, err)
	h := newHarness(t, nil)
	s := startWithPlans(t, h, eng)
	for _, network := range transports {
		for _, q := range []string{"prod.example.com.", "PROD.example.com.", "apexalias.staging.example.com.", "db.prod.example.com."} {
			denied(t, s.ask(t, network, q, dns.TypeA, withEDNS(1232, false)), "zone:*.prod.example.com")
		}
	}
	r := s.ask(t, "udp", "www.staging.example.com.", dns.TypeA)
	assert.Equal(t, dns.RcodeSuccess, r.Rcode)
}

// startWithPlans starts a second dnsguard on h's upstream whose plans come
// from a policy engine.
func startWithPlans(t *testing.T, h *harness, src PlanSource) *harness {
	t.Helper()
	cfg := Defaults()
	cfg.Listen = "127.0.0.1:0"
	cfg.Upstreams = []string{h.auth.addr}
	cfg.CheckUpstreams = false
	s, err := New(cfg, src, testInventory(t), nil, zaptest.NewLogger(t), prometheus.NewRegistry())
	require.NoError(t, err)
	require.NoError(t, s.Start(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, s.Shutdown(ctx))
	})
	u, tc := s.Addr()
	return &harness{s: s, auth: h.auth, udp: u.String(), tcp: tc.String()}
}

// Class 3: a host rule filtered to SMTP ports only is decided by DNS (the
// sidecar sees no name on those ports); "*" on those ports is not.
func TestDNSHeldRules(t *testing.T) {
	h := newHarness(t, nil)
	spec := stagingSpec()
	spec.Rules = append(spec.Rules,
		plan.Rule{ID: "mail-live", Hosts: []string{"smtp.mail.example.net"}, Ports: []uint16{25, 587, 2587}, Action: plan.ActionRedirect,
			Redirect: &plan.Redirect{Host: "api-m.sandbox.paypal.com", Port: 25}, Reason: "mail goes to the sink"},
	)
	h.plans.staging.Store(mustPlan(t, spec))
	h.s.Rebuild()
	r := h.ask(t, "udp", "smtp.mail.example.net.", dns.TypeA)
	require.Equal(t, dns.RcodeSuccess, r.Rcode)
	assert.Equal(t, []string{"CNAME api-m.sandbox.paypal.com.", "A 198.51.100.7"}, answerStrings(r))
	// The stagingSpec's "*" on 25/587 stays with the sidecar.
	r = h.ask(t, "udp", "www.staging.example.com.", dns.TypeA)
	assert.Equal(t, dns.RcodeSuccess, r.Rcode)
}

// Class 7 at DNS: an exception for one production host resolves that host
// to its production address, and opens nothing else.
func TestExceptionStaysNarrow(t *testing.T) {
	h := newHarness(t, nil)
	spec := stagingSpec()
	spec.Rules = append([]plan.Rule{{ID: "exception:exc", Hosts: []string{"exc.prod.example.com"}, Action: plan.ActionAllow}}, spec.Rules...)
	h.plans.staging.Store(mustPlan(t, spec))
	h.s.Rebuild()
	r := h.ask(t, "udp", "exc.prod.example.com.", dns.TypeA)
	require.Equal(t, dns.RcodeSuccess, r.Rcode)
	assert.Equal(t, []string{"A 10.20.7.7"}, answerStrings(r))
	denied(t, h.ask(t, "udp", "db.prod.example.com.", dns.TypeA, withEDNS(1232, false)), "production-zone")
	denied(t, h.ask(t, "udp", "leaky.staging.example.com.", dns.TypeA, withEDNS(1232, false)), "production-cidr")
	p := h.plans.staging.Load()
	prodIP := plan.Destination{IP: netip.MustParseAddr("10.20.7.7"), Port: 443}
	assert.Equal(t, "production-cidr", p.Decide(prodIP).RuleID(), "bare IP")
	prodIP.Host = "www.staging.example.com"
	assert.Equal(t, "production-cidr", p.Decide(prodIP).RuleID(), "another SNI")
	prodIP.Host = "exc.prod.example.com"
	assert.Equal(t, "exception:exc", p.Decide(prodIP).RuleID())
}

// Class 5: records production names own, or MX/SRV/NS records pointing to
// them, are stripped from an otherwise allowed answer.
func TestStripProductionRecords(t *testing.T) {
	up := startCrafted(t, func(q dns.Question, m *dns.Msg) {
		rr := func(s string) dns.RR { r, err := dns.NewRR(s); require.NoError(t, err); return r }
		switch q.Qtype {
		case dns.TypeMX:
			m.Answer = []dns.RR{rr(q.Name + " 300 IN MX 10 mx.staging.example.com."), rr(q.Name + " 300 IN MX 20 mx.prod.example.com.")}
			m.Extra = []dns.RR{rr("mx.staging.example.com. 300 IN A 192.0.2.30"), rr("mx.prod.example.com. 300 IN A 192.0.2.31")}
		case dns.TypeSRV:
			m.Answer = []dns.RR{rr(q.Name + " 300 IN SRV 10 5 443 api.prod.example.com."), rr(q.Name + " 300 IN SRV 10 5 443 api.staging.example.com.")}
		case dns.TypeA:
			m.Answer = []dns.RR{rr(q.Name + " 300 IN A 192.0.2.40"), rr("injected.prod.example.com. 300 IN A 192.0.2.41")}
			m.Ns = []dns.RR{rr("prod.example.com. 300 IN NS ns1.prod.example.com."), rr("staging.example.com. 300 IN NS ns.prod.example.com.")}
			m.Extra = []dns.RR{rr("ns1.prod.example.com. 300 IN A 192.0.2.53")}
		}
	})
	h := newHarness(t, func(c *Config) { c.Upstreams = []string{up} })
	for _, network := range transports {
		for range 2 { // the second answer comes from the cache
			r := h.ask(t, network, "mail.staging.example.com.", dns.TypeMX)
			require.Equal(t, dns.RcodeSuccess, r.Rcode)
			require.Len(t, r.Answer, 1)
			assert.Equal(t, "mx.staging.example.com.", r.Answer[0].(*dns.MX).Mx)
			require.Len(t, r.Extra, 1+countOPT(r))
			assert.Contains(t, r.Extra[0].String(), "mx.staging.example.com.")

			r = h.ask(t, network, "_https._tcp.staging.example.com.", dns.TypeSRV)
			require.Len(t, r.Answer, 1)
			assert.Equal(t, "api.staging.example.com.", r.Answer[0].(*dns.SRV).Target)

			r = h.ask(t, network, "web.staging.example.com.", dns.TypeA)
			assert.Equal(t, []string{"A 192.0.2.40"}, answerStrings(r))
			assert.Empty(t, r.Ns)
			assert.Equal(t, 0, len(r.Extra)-countOPT(r))
		}
	}
	// A production client gets the whole answer.
	r := h.ask(t, "udp", "web.staging.example.com.", dns.TypeA, from("127.0.0.2"))
	assert.Len(t, r.Answer, 2)
	assert.Len(t, r.Ns, 2)
}

func countOPT(m *dns.Msg) int {
	if m.IsEdns0() != nil {
		return 1
	}
	return 0
}

// startCrafted runs an upstream that answers every query through fill.
func startCrafted(t *testing.T, fill func(q dns.Question, m *dns.Msg)) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	l, err := net.Listen("tcp", pc.LocalAddr().String())
	require.NoError(t, err)
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		fill(r.Question[0], m)
		_ = w.WriteMsg(m)
	})
	u := &dns.Server{PacketConn: pc, Handler: handler}
	tc := &dns.Server{Listener: l, Handler: handler}
	go func() { _ = u.ActivateAndServe() }()
	go func() { _ = tc.ActivateAndServe() }()
	t.Cleanup(func() { _ = u.Shutdown(); _ = tc.Shutdown() })
	return pc.LocalAddr().String()
}
