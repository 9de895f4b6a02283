package dnsguard

import (
	"fmt"
	"net"
	"testing"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/egressguard/egressguard/policy/plan"
)

// memWriter is an in-memory dns.ResponseWriter: it keeps the last answer.
type memWriter struct {
	remote net.Addr
	last   []byte
	msgs   int
}

func (w *memWriter) LocalAddr() net.Addr  { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 53), Port: 53} }
func (w *memWriter) RemoteAddr() net.Addr { return w.remote }
func (w *memWriter) WriteMsg(m *dns.Msg) error {
	b, err := m.Pack()
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}
func (w *memWriter) Write(b []byte) (int, error) {
	w.last = append(w.last[:0], b...)
	w.msgs++
	return len(b), nil
}
func (w *memWriter) Close() error        { return nil }
func (w *memWriter) TsigStatus() error   { return nil }
func (w *memWriter) TsigTimersOnly(bool) {}
func (w *memWriter) Hijack()             {}

func newMemWriter(ip string) *memWriter {
	return &memWriter{remote: &net.UDPAddr{IP: net.ParseIP(ip), Port: 40000}}
}

// largeSpec is a plan of the size a real catalog yields: 2,000 host
// patterns and 200 CIDRs on top of the test rules.
func largeSpec() plan.Spec {
	spec := stagingSpec()
	for i := range 2000 {
		host := fmt.Sprintf("api%d.provider%d.example", i, i%97)
		if i%2 == 0 {
			host = fmt.Sprintf("*.zone%d.prod.example", i)
		}
		spec.Rules = append(spec.Rules, plan.Rule{ID: fmt.Sprintf("r%d", i), Hosts: []string{host}, Action: plan.ActionDeny})
	}
	for i := range 200 {
		spec.Rules = append(spec.Rules, plan.Rule{ID: fmt.Sprintf("c%d", i), CIDRs: []string{fmt.Sprintf("10.%d.0.0/16", 100+i%150)}, Action: plan.ActionDeny})
	}
	return spec
}

// BenchmarkServeDNSCacheHit is the in-process query path of a cache hit
// with the policy on: client → plan (memoised), Decide on the name, cache
// lookup, answer check (memoised per plan), answer patched into a pooled
// buffer. The socket I/O of the listener is not included.
func BenchmarkServeDNSCacheHit(b *testing.B) {
	for _, tc := range []struct {
		name  string
		qname string
		edns  bool
	}{
		{"A", "www.staging.example.com.", false},
		{"A+EDNS", "www.staging.example.com.", true},
		{"A+0x20", "WwW.StAgInG.ExAmPlE.CoM.", true},
		{"CNAME chain", "alias.staging.example.com.", true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			h := newHarnessLog(b, zap.NewNop(), nil)
			h.plans.staging.Store(mustPlan(b, largeSpec()))
			h.s.Rebuild()
			req := new(dns.Msg)
			req.SetQuestion(tc.qname, dns.TypeA)
			if tc.edns {
				req.SetEdns0(1232, false)
			}
			w := newMemWriter("127.0.0.1")
			h.s.ServeDNS(w, req) // warm: miss, fills the cache
			h.s.ServeDNS(w, req)
			r := new(dns.Msg)
			require.NoError(b, r.Unpack(w.last))
			require.Equal(b, dns.RcodeSuccess, r.Rcode)
			require.NotEmpty(b, r.Answer)
			misses := value(h.s.metrics.CacheMisses)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				h.s.ServeDNS(w, req)
			}
			b.StopTimer()
			require.InDelta(b, misses, value(h.s.metrics.CacheMisses), 0, "every iteration was a hit")
		})
	}
}

// BenchmarkServeDNSDeny is the path of a denied name (synthesised answer).
func BenchmarkServeDNSDeny(b *testing.B) {
	h := newHarnessLog(b, zap.NewNop(), nil)
	h.plans.staging.Store(mustPlan(b, largeSpec()))
	h.s.Rebuild()
	req := new(dns.Msg)
	req.SetQuestion("db.prod.example.com.", dns.TypeA)
	req.SetEdns0(1232, false)
	w := newMemWriter("127.0.0.1")
	b.ReportAllocs()
	for b.Loop() {
		h.s.ServeDNS(w, req)
	}
}

// BenchmarkPolicyName is name normalisation on the common path.
func BenchmarkPolicyName(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = policyName("www.staging.example.com.")
		_ = cacheName("www.staging.example.com.")
	}
}
