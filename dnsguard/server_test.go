package dnsguard

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/egressguard/egressguard/policy/decisionlog"
	"github.com/egressguard/egressguard/policy/plan"
)

var transports = []string{"udp", "tcp"}

func TestActions(t *testing.T) {
	h := newHarness(t, nil)
	for _, network := range transports {
		for _, tc := range []struct {
			name    string
			qname   string
			qtype   uint16
			rcode   int
			answer  []string
			edeRule string // EDE 15 text must name this rule
		}{
			{"allowed A", "www.staging.example.com.", dns.TypeA, dns.RcodeSuccess, []string{"A 192.0.2.10"}, ""},
			{"allowed AAAA", "www.staging.example.com.", dns.TypeAAAA, dns.RcodeSuccess, []string{"AAAA 2001:db8:1::10"}, ""},
			{"allowed via in-zone CNAME", "alias.staging.example.com.", dns.TypeA, dns.RcodeSuccess, []string{"CNAME www.staging.example.com.", "A 192.0.2.10"}, ""},
			{"allowed, does not exist", "nope.staging.example.com.", dns.TypeA, dns.RcodeNameError, []string{}, ""},
			{"allowed, 0x20 case", "WwW.StAgInG.eXaMpLe.CoM.", dns.TypeA, dns.RcodeSuccess, []string{"A 192.0.2.10"}, ""},
			{"port-filtered rule does not apply to DNS", "smtp.staging.example.com.", dns.TypeA, dns.RcodeNameError, []string{}, ""},
			{"denied A", "db.prod.example.com.", dns.TypeA, dns.RcodeNameError, []string{}, "production-zone"},
			{"denied AAAA", "db.prod.example.com.", dns.TypeAAAA, dns.RcodeNameError, []string{}, "production-zone"},
			{"denied TXT", "db.prod.example.com.", dns.TypeTXT, dns.RcodeNameError, []string{}, "production-zone"},
			{"denied MX", "prod.example.com.", dns.TypeMX, dns.RcodeNameError, []string{}, "production-zone"},
			{"denied HTTPS", "api.prod.example.com.", dns.TypeHTTPS, dns.RcodeNameError, []string{}, "production-zone"},
			{"denied, upper case", "DB.PROD.EXAMPLE.COM.", dns.TypeA, dns.RcodeNameError, []string{}, "production-zone"},
			{"denied, decimal escape", "\\100b.prod.example.com.", dns.TypeA, dns.RcodeNameError, []string{}, "production-zone"},
			{"redirected A", "api-m.paypal.com.", dns.TypeA, dns.RcodeSuccess, []string{"CNAME api-m.sandbox.paypal.com.", "A 198.51.100.7"}, "provider.paypal.api-m.paypal.com"},
			{"redirected AAAA", "API-M.PayPal.com.", dns.TypeAAAA, dns.RcodeSuccess, []string{"CNAME api-m.sandbox.paypal.com.", "AAAA 2001:db8:5a::7"}, "provider.paypal.api-m.paypal.com"},
			{"report mode answers allow", "metrics.vendor.example.", dns.TypeA, dns.RcodeSuccess, []string{"A 192.0.2.50"}, ""},
		} {
			t.Run(network+"/"+tc.name, func(t *testing.T) {
				r := h.ask(t, network, tc.qname, tc.qtype, withEDNS(1232, false))
				assert.Equal(t, dns.RcodeToString[tc.rcode], dns.RcodeToString[r.Rcode])
				assert.Equal(t, tc.answer, answerStrings(r))
				assert.True(t, r.RecursionAvailable)
				require.Len(t, r.Question, 1)
				assert.Equal(t, policyName(tc.qname), policyName(r.Question[0].Name), "question echoed as asked")
				e := ede(r)
				if tc.edeRule == "" {
					assert.Nil(t, e)
					return
				}
				require.NotNil(t, e, "EDE expected")
				assert.Equal(t, dns.ExtendedErrorCodeBlocked, e.InfoCode)
				assert.Contains(t, e.ExtraText, tc.edeRule)
				if tc.rcode == dns.RcodeNameError {
					require.Len(t, r.Ns, 1)
					soa, ok := r.Ns[0].(*dns.SOA)
					require.True(t, ok, "deny carries a SOA")
					assert.Equal(t, uint32(30), soa.Hdr.Ttl)
					assert.Equal(t, uint32(30), soa.Minttl)
					assert.True(t, dns.IsSubDomain(soa.Hdr.Name, tc.qname), "SOA %s is a parent of %s", soa.Hdr.Name, tc.qname)
				}
			})
		}
	}
	t.Run("redirect EDE says TLS fails closed", func(t *testing.T) {
		r := h.ask(t, "udp", "api-m.paypal.com.", dns.TypeA, withEDNS(1232, false))
		e := ede(r)
		require.NotNil(t, e)
		assert.Contains(t, e.ExtraText, "api-m.sandbox.paypal.com")
		assert.Contains(t, e.ExtraText, "TLS")
		assert.Equal(t, uint32(30), r.Answer[0].Header().Ttl, "synthetic CNAME carries the negative TTL")
	})
	t.Run("deny text names rule and reason", func(t *testing.T) {
		r := h.ask(t, "udp", "db.prod.example.com.", dns.TypeA, withEDNS(1232, false))
		assert.Equal(t, "egressguard: blocked by rule production-zone: production DNS zone", ede(r).ExtraText)
	})
	t.Run("production workload is not guarded", func(t *testing.T) {
		for _, network := range transports {
			r := h.ask(t, network, "db.prod.example.com.", dns.TypeA, from("127.0.0.2"))
			assert.Equal(t, dns.RcodeSuccess, r.Rcode)
			assert.Equal(t, []string{"A 192.0.2.99"}, answerStrings(r))
		}
	})
	t.Run("live provider host never reaches the upstream", func(t *testing.T) {
		before := h.auth.queries.Load()
		h.ask(t, "udp", "api-m.paypal.com.", dns.TypeTXT, withEDNS(1232, false))
		// Only the sandbox's TXT was asked upstream.
		assert.Equal(t, before+1, h.auth.queries.Load())
	})
}

func TestDecisionRecordsAndMetrics(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	h := newHarnessLog(t, zap.New(core), nil)

	h.ask(t, "udp", "db.prod.example.com.", dns.TypeA)
	h.ask(t, "udp", "api-m.paypal.com.", dns.TypeA)
	h.ask(t, "udp", "metrics.vendor.example.", dns.TypeA)
	h.ask(t, "udp", "cloaked.staging.example.com.", dns.TypeA)
	h.ask(t, "udp", "www.staging.example.com.", dns.TypeA)

	recs := h.sink.all()
	got := make([]string, 0, len(recs))
	for _, r := range recs {
		assert.Equal(t, decisionlog.PathDNS, r.Path)
		assert.NotEmpty(t, r.DecisionID)
		assert.Equal(t, "checkout", r.Input.Workload.Name)
		assert.Equal(t, "payments", r.Input.Workload.Namespace)
		assert.Equal(t, "staging", r.Input.Workload.Environment)
		assert.Equal(t, "dns", r.Input.Destination.Protocol)
		got = append(got, fmt.Sprintf("%s %s %s %v", r.Input.Destination.Host, r.Result.RuleID(), r.Result.Action, r.Result.WouldDeny))
	}
	assert.Equal(t, []string{
		"db.prod.example.com production-zone deny false",
		"api-m.paypal.com provider.paypal.api-m.paypal.com redirect false",
		"metrics.vendor.example vendor-metrics allow true",
		"db.prod.example.com production-zone deny false", // the cloaked CNAME's target
	}, got, "one record per non-allow answer, none for the plain allow")

	lines := logs.FilterMessage("dns.decision").All()
	require.Len(t, lines, 4)
	fields := lines[3].ContextMap()
	assert.Equal(t, "cloaked.staging.example.com", fields[LogFieldName])
	assert.Equal(t, "production-zone", fields[LogFieldRule])
	assert.Equal(t, "target db.prod.example.com", fields[LogFieldAnswer])

	m := h.s.Metrics()
	assert.InDelta(t, 2.0, value(m.queries[idxDeny][typeIndex(dns.TypeA)]), 0)
	assert.InDelta(t, 1.0, value(m.queries[idxRedirect][typeIndex(dns.TypeA)]), 0)
	assert.InDelta(t, 2.0, value(m.queries[idxAllow][typeIndex(dns.TypeA)]), 0)
	assert.InDelta(t, 1.0, value(m.WouldDeny), 0)
	assert.InDelta(t, 1.0, value(m.AnswerBlocked), 0)
	assert.InDelta(t, 1.0, value(m.RuleHits.WithLabelValues("vendor-metrics", "would_deny")), 0)
	assert.InDelta(t, 2.0, value(m.RuleHits.WithLabelValues("production-zone", "deny")), 0)
}

func TestAnswerChecks(t *testing.T) {
	h := newHarness(t, nil)
	for _, network := range transports {
		for _, tc := range []struct {
			name, qname string
			qtype       uint16
			rule, what  string
		}{
			{"CNAME cloaking into a production zone", "cloaked.staging.example.com.", dns.TypeA, "production-zone", "target db.prod.example.com"},
			{"production A among others", "leaky.staging.example.com.", dns.TypeA, "production-cidr", "address 10.20.3.4"},
			{"production AAAA", "leaky6.staging.example.com.", dns.TypeAAAA, "production-cidr", "address 2001:db8:20::5"},
			{"HTTPS ipv4hint", "svc.staging.example.com.", dns.TypeHTTPS, "production-cidr", "address 10.20.0.9"},
			{"HTTPS ipv6hint", "svc6.staging.example.com.", dns.TypeHTTPS, "production-cidr", "address 2001:db8:20::9"},
			{"HTTPS alias target", "svcalias.staging.example.com.", dns.TypeHTTPS, "production-zone", "target api.prod.example.com"},
			{"DNAME into a production zone", "dname.staging.example.com.", dns.TypeDNAME, "production-zone", "target prod.example.com"},
		} {
			t.Run(network+"/"+tc.name, func(t *testing.T) {
				// Twice: the second answer comes from the cache and must be
				// checked just the same.
				for range 2 {
					r := h.ask(t, network, tc.qname, tc.qtype, withEDNS(1232, false))
					assert.Equal(t, "NXDOMAIN", dns.RcodeToString[r.Rcode])
					assert.Empty(t, r.Answer)
					e := ede(r)
					require.NotNil(t, e)
					assert.Equal(t, dns.ExtendedErrorCodeBlocked, e.InfoCode)
					assert.Contains(t, e.ExtraText, "blocked by rule "+tc.rule)
					assert.Contains(t, e.ExtraText, tc.what)
				}
			})
		}
	}
	t.Run("HTTPS with allowed hints passes", func(t *testing.T) {
		r := h.ask(t, "udp", "svcok.staging.example.com.", dns.TypeHTTPS, withEDNS(1232, false))
		assert.Equal(t, dns.RcodeSuccess, r.Rcode)
		require.Len(t, r.Answer, 1)
		assert.Contains(t, r.Answer[0].String(), `ipv4hint="192.0.2.21"`)
	})
	t.Run("same cached answer, different workload class", func(t *testing.T) {
		r := h.ask(t, "udp", "leaky.staging.example.com.", dns.TypeA, from("127.0.0.2"))
		assert.Equal(t, dns.RcodeSuccess, r.Rcode)
		assert.Len(t, r.Answer, 2)
	})
	t.Run("default-deny plan does not block every CDN address", func(t *testing.T) {
		spec := stagingSpec()
		spec.Default = plan.ActionDeny
		spec.Rules = append(spec.Rules, plan.Rule{ID: "allow-staging", Hosts: []string{"*.staging.example.com"}, Action: plan.ActionAllow})
		h.plans.staging.Store(mustPlan(t, spec))
		h.s.Rebuild()
		defer func() { h.plans.staging.Store(mustPlan(t, stagingSpec())); h.s.Rebuild() }()
		r := h.ask(t, "udp", "alias.staging.example.com.", dns.TypeA)
		assert.Equal(t, dns.RcodeSuccess, r.Rcode)
		r = h.ask(t, "udp", "other.example.net.", dns.TypeA, withEDNS(1232, false))
		assert.Equal(t, dns.RcodeNameError, r.Rcode)
		assert.Contains(t, ede(r).ExtraText, "blocked by rule default")
	})
}

func TestBlockResponses(t *testing.T) {
	for _, tc := range []struct {
		mode   BlockResponse
		qtype  uint16
		rcode  int
		answer []string
		soa    bool
	}{
		{BlockSinkhole, dns.TypeA, dns.RcodeSuccess, []string{"A 0.0.0.0"}, false},
		{BlockSinkhole, dns.TypeAAAA, dns.RcodeSuccess, []string{"AAAA ::"}, false},
		{BlockSinkhole, dns.TypeTXT, dns.RcodeSuccess, []string{}, true},
		{BlockRefused, dns.TypeA, dns.RcodeRefused, []string{}, false},
		{BlockNXDomain, dns.TypeA, dns.RcodeNameError, []string{}, true},
	} {
		t.Run(fmt.Sprintf("%s/%s", tc.mode, dns.TypeToString[tc.qtype]), func(t *testing.T) {
			h := newHarness(t, func(c *Config) { c.BlockResponse = tc.mode; c.NegativeTTL = 45 * time.Second })
			r := h.ask(t, "udp", "db.prod.example.com.", tc.qtype, withEDNS(1232, false))
			assert.Equal(t, dns.RcodeToString[tc.rcode], dns.RcodeToString[r.Rcode])
			assert.Equal(t, tc.answer, answerStrings(r))
			for _, rr := range r.Answer {
				assert.Equal(t, uint32(45), rr.Header().Ttl)
			}
			assert.Equal(t, tc.soa, len(r.Ns) == 1)
			e := ede(r)
			require.NotNil(t, e)
			assert.Equal(t, dns.ExtendedErrorCodeBlocked, e.InfoCode)
			assert.Contains(t, e.ExtraText, "production-zone")
		})
	}
}

func TestQueryTypes(t *testing.T) {
	h := newHarness(t, nil)
	for _, tc := range []struct {
		name, qname string
		qtype       uint16
		want        string
	}{
		{"MX", "www.staging.example.com.", dns.TypeMX, "mail.staging.example.com."},
		{"TXT", "www.staging.example.com.", dns.TypeTXT, "v=spf1 -all"},
		{"SRV", "_sip._tcp.staging.example.com.", dns.TypeSRV, "sip.staging.example.com."},
		{"PTR of a production address is answered as usual", "4.3.20.10.in-addr.arpa.", dns.TypePTR, "db.prod.example.com."},
		{"ANY gets a minimal RFC 8482 answer", "www.staging.example.com.", dns.TypeANY, "RFC8482"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.ask(t, "udp", tc.qname, tc.qtype)
			require.Equal(t, dns.RcodeSuccess, r.Rcode)
			require.Len(t, r.Answer, 1)
			assert.Contains(t, r.Answer[0].String(), tc.want)
		})
	}
	t.Run("ANY on a denied name is denied", func(t *testing.T) {
		r := h.ask(t, "udp", "db.prod.example.com.", dns.TypeANY)
		assert.Equal(t, dns.RcodeNameError, r.Rcode)
	})
	t.Run("class CH is refused", func(t *testing.T) {
		m := new(dns.Msg)
		m.SetQuestion("version.bind.", dns.TypeTXT)
		m.Question[0].Qclass = dns.ClassCHAOS
		r, _, err := new(dns.Client).Exchange(m, h.udp)
		require.NoError(t, err)
		assert.Equal(t, dns.RcodeRefused, r.Rcode)
	})
	t.Run("AXFR is refused", func(t *testing.T) {
		r := h.ask(t, "tcp", "staging.example.com.", dns.TypeAXFR)
		assert.Equal(t, dns.RcodeRefused, r.Rcode)
	})
}

func TestEDNS(t *testing.T) {
	h := newHarness(t, nil)
	t.Run("unknown options are not echoed, our OPT is", func(t *testing.T) {
		cookie := &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"}
		nsid := &dns.EDNS0_NSID{Code: dns.EDNS0NSID}
		for _, name := range []string{"www.staging.example.com.", "db.prod.example.com."} {
			for range 2 { // miss, then hit
				r := h.ask(t, "udp", name, dns.TypeA, withEDNS(4000, true, cookie, nsid))
				opt := r.IsEdns0()
				require.NotNil(t, opt)
				assert.Equal(t, uint16(1232), opt.UDPSize())
				assert.True(t, opt.Do())
				for _, o := range opt.Option {
					assert.Equal(t, uint16(dns.EDNS0EDE), o.Option(), "only EDE may appear")
				}
			}
		}
	})
	t.Run("no EDNS in, no OPT out", func(t *testing.T) {
		r := h.ask(t, "udp", "www.staging.example.com.", dns.TypeA)
		assert.Nil(t, r.IsEdns0())
	})
	t.Run("large answer truncated to the client's buffer, full over TCP", func(t *testing.T) {
		// The upstream truncates its UDP answer (> 1232 bytes): dnsguard
		// retries over TCP, caches the full answer, and truncates what it
		// sends each UDP client to that client's buffer.
		before := value(h.s.Metrics().TCPRetries)
		r := h.ask(t, "udp", "big.staging.example.com.", dns.TypeTXT, withEDNS(1232, false))
		assert.True(t, r.Truncated)
		assert.InDelta(t, before+1, value(h.s.Metrics().TCPRetries), 0)
		assert.Positive(t, h.auth.tcpQ.Load())
		r.Compress = true
		assert.LessOrEqual(t, r.Len(), 1232)

		r = h.ask(t, "udp", "big.staging.example.com.", dns.TypeTXT)
		assert.True(t, r.Truncated)
		r.Compress = true
		assert.LessOrEqual(t, r.Len(), 512)

		r = h.ask(t, "tcp", "big.staging.example.com.", dns.TypeTXT)
		assert.False(t, r.Truncated)
		assert.Len(t, r.Answer, 30)
	})
	t.Run("client buffer above ours is capped at udp_size", func(t *testing.T) {
		r := h.ask(t, "udp", "big.staging.example.com.", dns.TypeTXT, withEDNS(4096, false))
		assert.True(t, r.Truncated)
		r.Compress = true
		assert.LessOrEqual(t, r.Len(), 1232)
	})
	t.Run("EDNS version 1 gets BADVERS", func(t *testing.T) {
		m := new(dns.Msg)
		m.SetQuestion("www.staging.example.com.", dns.TypeA)
		m.SetEdns0(1232, false)
		m.IsEdns0().SetVersion(1)
		r, _, err := new(dns.Client).Exchange(m, h.udp)
		require.NoError(t, err)
		assert.Equal(t, dns.RcodeBadVers, r.Rcode)
		require.NotNil(t, r.IsEdns0())
		assert.Equal(t, uint8(0), r.IsEdns0().Version())
	})
}

func TestCacheAndTTL(t *testing.T) {
	h := newHarness(t, nil)
	r := h.ask(t, "udp", "www.staging.example.com.", dns.TypeA)
	require.Len(t, r.Answer, 1)
	n := h.auth.queries.Load()
	r2 := h.ask(t, "udp", "WWW.staging.example.com.", dns.TypeA)
	assert.Equal(t, n, h.auth.queries.Load(), "answered from the cache")
	assert.Equal(t, "WWW.staging.example.com.", r2.Question[0].Name)
	assert.LessOrEqual(t, r2.Answer[0].Header().Ttl, uint32(300))
	assert.InDelta(t, 1.0, value(h.s.Metrics().CacheHits), 0)

	// Negative answers are cached for min(SOA TTL, SOA MINIMUM, negative_ttl).
	r = h.ask(t, "udp", "missing.staging.example.com.", dns.TypeA)
	require.Equal(t, dns.RcodeNameError, r.Rcode)
	require.Len(t, r.Ns, 1)
	assert.LessOrEqual(t, r.Ns[0].Header().Ttl, uint32(30))
	n = h.auth.queries.Load()
	h.ask(t, "udp", "missing.staging.example.com.", dns.TypeA)
	assert.Equal(t, n, h.auth.queries.Load())

	// TTLs age: pretend the entry was stored 100 s ago.
	rewriteEntry(t, h.s, cacheKey{name: "www.staging.example.com.", qtype: dns.TypeA}, func(e *entry) {
		e.stored -= int64(100 * time.Second)
	})
	r = h.ask(t, "udp", "www.staging.example.com.", dns.TypeA)
	assert.LessOrEqual(t, r.Answer[0].Header().Ttl, uint32(200))
}

func TestCacheBounded(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.CacheSize = 64 })
	for i := range 500 {
		h.ask(t, "udp", fmt.Sprintf("u%d.staging.example.com.", i), dns.TypeA)
	}
	assert.LessOrEqual(t, h.s.cache.len(), 64+cacheShards, "per-shard rounding only")
	assert.Positive(t, value(h.s.Metrics().CacheEvictions))
}

func TestUpstreamFailures(t *testing.T) {
	t.Run("timeout then failover to the next upstream", func(t *testing.T) {
		h := newHarness(t, nil, silentUDP(t))
		r := h.ask(t, "udp", "www.staging.example.com.", dns.TypeA)
		assert.Equal(t, dns.RcodeSuccess, r.Rcode)
		assert.Equal(t, []string{"A 192.0.2.10"}, answerStrings(r))
	})
	t.Run("SERVFAIL then failover", func(t *testing.T) {
		bad := startAuth(t, loadZone(t, "upstream.zone"))
		bad.mode.Store(modeServfail)
		h := newHarness(t, nil, bad.addr)
		r := h.ask(t, "udp", "www.staging.example.com.", dns.TypeA)
		assert.Equal(t, dns.RcodeSuccess, r.Rcode)
		assert.Equal(t, int64(1), bad.queries.Load())
	})
	t.Run("refused port then failover", func(t *testing.T) {
		h := newHarness(t, nil, closedPort(t))
		r := h.ask(t, "udp", "www.staging.example.com.", dns.TypeA)
		assert.Equal(t, dns.RcodeSuccess, r.Rcode)
	})
	t.Run("every upstream times out: SERVFAIL + EDE 22", func(t *testing.T) {
		h := newHarness(t, nil)
		h.auth.mode.Store(modeSilent)
		r := h.ask(t, "udp", "www.staging.example.com.", dns.TypeA, withEDNS(1232, false))
		assert.Equal(t, dns.RcodeServerFailure, r.Rcode)
		require.NotNil(t, ede(r))
		assert.Equal(t, dns.ExtendedErrorCodeNoReachableAuthority, ede(r).InfoCode)
		assert.Contains(t, ede(r).ExtraText, h.auth.addr)
	})
	t.Run("every upstream answers SERVFAIL", func(t *testing.T) {
		h := newHarness(t, nil)
		h.auth.mode.Store(modeServfail)
		r := h.ask(t, "udp", "www.staging.example.com.", dns.TypeA, withEDNS(1232, false))
		assert.Equal(t, dns.RcodeServerFailure, r.Rcode)
		assert.Equal(t, dns.ExtendedErrorCodeNetworkError, ede(r).InfoCode)
		assert.Contains(t, ede(r).ExtraText, "SERVFAIL")
	})
	t.Run("TCP closed mid-answer: EDE 23, then failover", func(t *testing.T) {
		cut := cutTCP(t)
		h := newHarness(t, func(c *Config) { c.Upstreams = []string{cut} })
		r := h.ask(t, "udp", "www.staging.example.com.", dns.TypeA, withEDNS(1232, false))
		assert.Equal(t, dns.RcodeServerFailure, r.Rcode)
		assert.Equal(t, dns.ExtendedErrorCodeNetworkError, ede(r).InfoCode)
		assert.Contains(t, ede(r).ExtraText, "cut short")

		h2 := newHarness(t, nil, cut)
		r = h2.ask(t, "udp", "www.staging.example.com.", dns.TypeA)
		assert.Equal(t, dns.RcodeSuccess, r.Rcode)
	})
	t.Run("serve stale when every upstream fails", func(t *testing.T) {
		h := newHarness(t, nil)
		h.ask(t, "udp", "www.staging.example.com.", dns.TypeA)
		key := cacheKey{name: "www.staging.example.com.", qtype: dns.TypeA}
		rewriteEntry(t, h.s, key, func(e *entry) { e.expires = time.Now().Add(-time.Minute).UnixNano() }) // expired a minute ago
		h.auth.mode.Store(modeSilent)
		r := h.ask(t, "udp", "www.staging.example.com.", dns.TypeA, withEDNS(1232, false))
		assert.Equal(t, dns.RcodeSuccess, r.Rcode)
		require.Len(t, r.Answer, 1)
		assert.Equal(t, uint32(staleAnswerTTL), r.Answer[0].Header().Ttl)
		require.NotNil(t, ede(r))
		assert.Equal(t, dns.ExtendedErrorCodeStaleAnswer, ede(r).InfoCode)

		rewriteEntry(t, h.s, key, func(e *entry) { e.expires = time.Now().Add(-time.Hour).UnixNano() }) // beyond serve_stale (10m)
		r = h.ask(t, "udp", "www.staging.example.com.", dns.TypeA)
		assert.Equal(t, dns.RcodeServerFailure, r.Rcode)
	})
	t.Run("no goroutine or socket leak under upstream failure", func(t *testing.T) {
		h := newHarness(t, nil, silentUDP(t), closedPort(t))
		h.auth.mode.Store(modeSilent)
		base := runtime.NumGoroutine()
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				m := new(dns.Msg)
				m.SetQuestion(fmt.Sprintf("leak%d.staging.example.com.", i), dns.TypeA)
				c := &dns.Client{Timeout: 5 * time.Second}
				_, _, _ = c.Exchange(m, h.udp)
			}()
		}
		wg.Wait()
		assert.Eventually(t, func() bool { return runtime.NumGoroutine() <= base+2 }, 5*time.Second, 20*time.Millisecond,
			"goroutines: before %d, now %d", base, runtime.NumGoroutine())
		for _, u := range h.s.fwd.ups {
			assert.LessOrEqual(t, len(u.idle), idleUDPConns)
		}
	})
}

func TestHotSwapDuringFlood(t *testing.T) {
	h := newHarness(t, nil)
	allowAll := mustPlan(t, plan.Spec{Default: plan.ActionAllow})
	guarded := mustPlan(t, stagingSpec())
	stop := make(chan struct{})
	var swaps atomic.Int64
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if i%2 == 0 {
				h.plans.staging.Store(allowAll)
			} else {
				h.plans.staging.Store(guarded)
			}
			h.s.Rebuild()
			swaps.Add(1)
			time.Sleep(time.Millisecond)
		}
	}()
	var wg sync.WaitGroup
	var failed, answered atomic.Int64
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			network := transports[w%2]
			c := &dns.Client{Net: network, Timeout: 3 * time.Second}
			addr := h.udp
			if network == "tcp" {
				addr = h.tcp
			}
			for i := range 150 {
				name := "www.staging.example.com."
				if i%3 == 0 {
					name = "db.prod.example.com."
				}
				m := new(dns.Msg)
				m.SetQuestion(name, dns.TypeA)
				r, _, err := c.Exchange(m, addr)
				switch {
				case err != nil:
					failed.Add(1)
				case name == "www.staging.example.com." && (r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1):
					failed.Add(1)
				case name == "db.prod.example.com." && r.Rcode != dns.RcodeSuccess && r.Rcode != dns.RcodeNameError:
					failed.Add(1) // one plan or the other, never SERVFAIL
				default:
					answered.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	assert.Zero(t, failed.Load())
	assert.Equal(t, int64(8*150), answered.Load())
	assert.Positive(t, swaps.Load())
}

func TestPlanErrorFailsClosed(t *testing.T) {
	h := newHarness(t, nil)
	h.plans.fail.Store(true)
	h.s.Rebuild()
	r := h.ask(t, "udp", "www.staging.example.com.", dns.TypeA, withEDNS(1232, false))
	assert.Equal(t, dns.RcodeServerFailure, r.Rcode)
	assert.Contains(t, ede(r).ExtraText, "no policy")
	assert.InDelta(t, 1.0, value(h.s.Metrics().PlanErrors), 0)
	h.plans.fail.Store(false)
	r = h.ask(t, "udp", "www.staging.example.com.", dns.TypeA)
	assert.Equal(t, dns.RcodeSuccess, r.Rcode)
}

func TestPlanResolutionIsMemoised(t *testing.T) {
	h := newHarness(t, nil)
	for range 5 {
		h.ask(t, "udp", "www.staging.example.com.", dns.TypeA)
	}
	assert.Equal(t, int64(1), h.plans.calls.Load())
	h.s.Rebuild()
	h.ask(t, "udp", "www.staging.example.com.", dns.TypeA)
	assert.Equal(t, int64(2), h.plans.calls.Load())
}

func TestMalformedQueries(t *testing.T) {
	h := newHarness(t, nil)
	conn, err := net.Dial("udp", h.udp)
	require.NoError(t, err)
	defer conn.Close()
	valid := new(dns.Msg).SetQuestion("www.staging.example.com.", dns.TypeA)
	vb, err := valid.Pack()
	require.NoError(t, err)
	for _, junk := range [][]byte{
		{0x00},                       // shorter than a header: dropped
		[]byte("GET / HTTP/1.1\r\n"), // not DNS
		append(append([]byte{}, vb[:12]...), 0xff, 0xff),       // header, broken question
		{0x12, 0x34, 0x01, 0x00, 0x00, 0x02, 0, 0, 0, 0, 0, 0}, // two questions, none present
	} {
		_, err := conn.Write(junk)
		require.NoError(t, err)
	}
	// The server is still answering.
	r := h.ask(t, "udp", "www.staging.example.com.", dns.TypeA)
	assert.Equal(t, dns.RcodeSuccess, r.Rcode)
	assert.GreaterOrEqual(t, value(h.s.Metrics().Malformed), 3.0)

	t.Run("NOTIFY is not implemented", func(t *testing.T) {
		m := new(dns.Msg)
		m.SetNotify("staging.example.com.")
		r, _, err := new(dns.Client).Exchange(m, h.udp)
		require.NoError(t, err)
		assert.Equal(t, dns.RcodeNotImplemented, r.Rcode)
	})
}

func TestStartErrors(t *testing.T) {
	auth := startAuth(t, loadZone(t, "upstream.zone"))
	start := func(t *testing.T, mutate func(*Config)) error {
		cfg := Defaults()
		cfg.Listen = "127.0.0.1:0"
		cfg.Upstreams = []string{auth.addr}
		cfg.UpstreamTimeout = 300 * time.Millisecond
		mutate(&cfg)
		s, err := New(cfg, newEnvPlans(t), testInventory(t), nil, zaptest.NewLogger(t), nil)
		if err != nil {
			return err
		}
		if err := s.Start(context.Background()); err != nil {
			return err
		}
		return s.Shutdown(context.Background())
	}
	t.Run("healthy upstream starts", func(t *testing.T) {
		require.NoError(t, start(t, func(*Config) {}))
	})
	t.Run("port in use", func(t *testing.T) {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		require.NoError(t, err)
		defer pc.Close()
		err = start(t, func(c *Config) { c.Listen = pc.LocalAddr().String() })
		require.Error(t, err)
		assert.Contains(t, err.Error(), "port already in use")
		assert.Contains(t, err.Error(), pc.LocalAddr().String())
	})
	t.Run("unparsable upstream", func(t *testing.T) {
		err := start(t, func(c *Config) { c.Upstreams = []string{"10.0.0.1", "resolver.internal:53"} })
		require.Error(t, err)
		assert.Contains(t, err.Error(), "dns.upstreams[1]")
		assert.Contains(t, err.Error(), "not an IP address")
	})
	t.Run("upstream that is not a DNS server", func(t *testing.T) {
		g := garbageUDP(t)
		err := start(t, func(c *Config) { c.Upstreams = []string{auth.addr, g} })
		require.Error(t, err)
		assert.Contains(t, err.Error(), "upstream "+g+" is not a usable DNS server")
	})
	t.Run("upstream port closed", func(t *testing.T) {
		cp := closedPort(t)
		err := start(t, func(c *Config) { c.Upstreams = []string{cp} })
		require.Error(t, err)
		assert.Contains(t, err.Error(), cp)
		assert.Contains(t, err.Error(), "refused")
	})
	t.Run("no upstream answers", func(t *testing.T) {
		err := start(t, func(c *Config) { c.Upstreams = []string{silentUDP(t)} })
		require.Error(t, err)
		assert.Contains(t, err.Error(), "no upstream answered")
	})
	t.Run("upstreams from resolv.conf", func(t *testing.T) {
		host, port, _ := net.SplitHostPort(auth.addr)
		rc := t.TempDir() + "/resolv.conf"
		require.NoError(t, os.WriteFile(rc, []byte("search example.com\nnameserver "+host+"\noptions ndots:1\n"), 0o600))
		// resolv.conf has no port syntax: check the parse, not the probe.
		cfg := Defaults()
		cfg.ResolvConf = rc
		addrs, err := cfg.upstreamAddrs()
		require.NoError(t, err)
		require.Len(t, addrs, 1)
		assert.Equal(t, host+":53", addrs[0].String())
		_ = port
	})
}

func TestShutdownDrainsInFlight(t *testing.T) {
	slow := silentUDP(t)
	h := newHarness(t, func(c *Config) { c.UpstreamTimeout = 500 * time.Millisecond }, slow)
	done := make(chan *dns.Msg, 1)
	go func() {
		m := new(dns.Msg)
		m.SetQuestion("www.staging.example.com.", dns.TypeA)
		r, _, _ := (&dns.Client{Timeout: 5 * time.Second}).Exchange(m, h.udp)
		done <- r
	}()
	// Wait until the query is stuck on the silent upstream, then shut down.
	require.Eventually(t, func() bool { return len(h.s.fwd.sem) > 0 }, 5*time.Second, 5*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, h.s.Shutdown(ctx))
	r := <-done
	require.NotNil(t, r, "the query in flight was answered")
	assert.Equal(t, dns.RcodeSuccess, r.Rcode)
	assert.True(t, strings.HasPrefix(answerStrings(r)[0], "A "))
}
