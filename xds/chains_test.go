package xds

import (
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/egressguard/egressguard/policy/plan"
)

func cidr(addr string, bits uint32) *corev3.CidrRange {
	return &corev3.CidrRange{AddressPrefix: addr, PrefixLen: wrapperspb.UInt32(bits)}
}

func chainWith(name string, m *listenerv3.FilterChainMatch) *listenerv3.FilterChain {
	return &listenerv3.FilterChain{Name: name, FilterChainMatch: m}
}

// TestCheckFilterChains: pairs of chains Envoy cannot tell apart are
// found, after Envoy's own normalisation; pairs it orders are accepted.
func TestCheckFilterChains(t *testing.T) {
	port := wrapperspb.UInt32(25)
	tests := []struct {
		name   string
		a, b   *listenerv3.FilterChainMatch
		errHas string // "" when the pair is unambiguous
	}{
		{"issue 7341: no ranges and 0.0.0.0/0",
			&listenerv3.FilterChainMatch{DestinationPort: port, PrefixRanges: []*corev3.CidrRange{cidr("0.0.0.0", 0)}, TransportProtocol: "raw_buffer"},
			&listenerv3.FilterChainMatch{DestinationPort: port, TransportProtocol: "raw_buffer"},
			"destination 0.0.0.0/0"},
		{"issue 7341: no ranges and ::/0",
			&listenerv3.FilterChainMatch{PrefixRanges: []*corev3.CidrRange{cidr("::", 0)}},
			&listenerv3.FilterChainMatch{},
			"destination ::/0"},
		{"host bits are masked",
			&listenerv3.FilterChainMatch{PrefixRanges: []*corev3.CidrRange{cidr("10.1.2.3", 8)}},
			&listenerv3.FilterChainMatch{PrefixRanges: []*corev3.CidrRange{cidr("10.0.0.0", 8)}},
			"destination 10.0.0.0/8"},
		{"an IPv4 length over 32 is 32",
			&listenerv3.FilterChainMatch{PrefixRanges: []*corev3.CidrRange{cidr("10.0.0.1", 40)}},
			&listenerv3.FilterChainMatch{PrefixRanges: []*corev3.CidrRange{cidr("10.0.0.1", 32)}},
			"destination 10.0.0.1/32"},
		{"server names are lowercased",
			&listenerv3.FilterChainMatch{ServerNames: []string{"*.Example.COM"}, TransportProtocol: "tls"},
			&listenerv3.FilterChainMatch{ServerNames: []string{"a.com", "*.example.com"}, TransportProtocol: "tls"},
			`server name ".example.com"`},
		{"one shared ALPN is enough",
			&listenerv3.FilterChainMatch{ApplicationProtocols: []string{"h2c", "http/1.1"}},
			&listenerv3.FilterChainMatch{ApplicationProtocols: []string{"http/1.1"}},
			`ALPN "http/1.1"`},
		{"overlapping ranges are ordered by length",
			&listenerv3.FilterChainMatch{PrefixRanges: []*corev3.CidrRange{cidr("10.0.0.0", 8)}},
			&listenerv3.FilterChainMatch{PrefixRanges: []*corev3.CidrRange{cidr("10.1.0.0", 16)}},
			""},
		{"an explicit catch-all of the other family",
			&listenerv3.FilterChainMatch{PrefixRanges: []*corev3.CidrRange{cidr("0.0.0.0", 0)}},
			&listenerv3.FilterChainMatch{PrefixRanges: []*corev3.CidrRange{cidr("::", 0)}},
			""},
		{"IPv4-mapped stays IPv6",
			&listenerv3.FilterChainMatch{PrefixRanges: []*corev3.CidrRange{cidr("::ffff:10.0.0.0", 104)}},
			&listenerv3.FilterChainMatch{PrefixRanges: []*corev3.CidrRange{cidr("10.0.0.0", 8)}},
			""},
		{"a port and no port",
			&listenerv3.FilterChainMatch{DestinationPort: port},
			&listenerv3.FilterChainMatch{},
			""},
		{"transport tells them apart",
			&listenerv3.FilterChainMatch{TransportProtocol: "tls"},
			&listenerv3.FilterChainMatch{TransportProtocol: "raw_buffer"},
			""},
		{"a name and no name",
			&listenerv3.FilterChainMatch{ServerNames: []string{"a.com"}},
			&listenerv3.FilterChainMatch{},
			""},
		{"partial wildcards are refused",
			&listenerv3.FilterChainMatch{ServerNames: []string{"a*.com"}},
			&listenerv3.FilterChainMatch{},
			"partial wildcard"},
		{"address_suffix is refused",
			&listenerv3.FilterChainMatch{AddressSuffix: "1"},
			&listenerv3.FilterChainMatch{},
			"not implemented"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := &listenerv3.Listener{Name: "l", FilterChains: []*listenerv3.FilterChain{chainWith("a", tc.a), chainWith("b", tc.b)}}
			err := CheckFilterChains(l)
			if tc.errHas == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.errHas)
		})
	}
}

// TestEnvoyModelRefusesIssue7341: the envoysim model itself treats a chain
// without prefix_ranges as Envoy does, so the layout this package emitted
// before CheckFilterChains existed (a rule's 0.0.0.0/0 next to the
// range-less "other" cell) is ambiguous there too.
func TestEnvoyModelRefusesIssue7341(t *testing.T) {
	m := func(pr ...*corev3.CidrRange) *listenerv3.FilterChainMatch {
		return &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(25), PrefixRanges: pr, TransportProtocol: "raw_buffer"}
	}
	l := &listenerv3.Listener{FilterChains: []*listenerv3.FilterChain{
		chainWith("smtp", m(cidr("0.0.0.0", 0))),
		chainWith("other", m()),
	}}
	_, err := envoySelect(l, simConn{ip: netip.MustParseAddr("192.0.2.1"), port: 25, transport: "tcp"})
	require.ErrorContains(t, err, "7341")
	// IPv6 has only the range-less chain: unambiguous.
	fc, err := envoySelect(l, simConn{ip: netip.MustParseAddr("2001:db8::1"), port: 25, transport: "tcp"})
	require.NoError(t, err)
	assert.Equal(t, "other", fc.Name)
}

// TestGoldenChainsUnambiguous runs the checker on every golden case (the
// golden test also does, through Validate; this names it).
func TestGoldenChainsUnambiguous(t *testing.T) {
	ins, err := filepath.Glob("testdata/in/*.yaml")
	require.NoError(t, err)
	for _, in := range ins {
		res := translateCase(t, in)
		for _, l := range res.Listeners {
			assert.NoError(t, CheckFilterChains(l), in)
		}
	}
}

// randomSpec draws a plan from small pools chosen to collide: catch-all
// ranges of both families, nested prefixes, mapped forms, the same
// patterns on several ports, every action and mode.
func randomSpec(r *rand.Rand) plan.Spec {
	hosts := []string{"*", "*.prod.example.com", "prod.example.com", "api.prod.example.com", "*.example.com",
		"a.b.prod.example.com", "*.b.prod.example.com", "dns.google", "cloudflare-dns.com", "api.stripe.com"}
	cidrs := []string{"0.0.0.0/0", "::/0", "10.0.0.0/8", "10.20.0.0/16", "10.20.5.0/24", "10.20.5.7/32",
		"::ffff:10.30.0.0/112", "2001:db8::/32", "2001:db8:1::/48", "64:ff9b::/96", "8.8.8.8/32"}
	ports := []uint16{25, 443, 853, 587}
	pickN := func(pool []string, max int) []string {
		var out []string
		for range r.IntN(max + 1) {
			out = append(out, pool[r.IntN(len(pool))])
		}
		return out
	}
	spec := plan.Spec{Default: plan.Action(r.IntN(2))}
	if r.IntN(3) == 0 {
		spec.NAT64 = []string{"2001:db8:64::/96"}
	}
	if r.IntN(8) == 0 {
		spec.Mode = plan.ModeReport
	}
	for i := range 1 + r.IntN(8) {
		rule := plan.Rule{ID: fmt.Sprintf("r%d", i), Hosts: pickN(hosts, 3), CIDRs: pickN(cidrs, 3), Action: plan.Action(r.IntN(3))}
		if len(rule.Hosts)+len(rule.CIDRs) == 0 {
			rule.CIDRs = []string{cidrs[r.IntN(len(cidrs))]}
		}
		if r.IntN(3) == 0 {
			rule.Ports = []uint16{ports[r.IntN(len(ports))]}
		}
		if rule.Action == plan.ActionRedirect {
			rule.Redirect = &plan.Redirect{Host: "sandbox.staging.example", Port: 443, TLS: r.IntN(2) == 0}
		}
		if r.IntN(6) == 0 {
			rule.Mode = plan.ModeReport
		}
		spec.Rules = append(spec.Rules, rule)
	}
	return spec
}

// TestRandomPlansChainsUnambiguous is the property test of class 4: for
// random plans, every generated listener passes CheckFilterChains, and the
// Envoy model (which fails on any tie) reproduces plan.Decide for raw TCP
// and plaintext HTTP, and its action for TLS, on destinations drawn from
// the same pools.
func TestRandomPlansChainsUnambiguous(t *testing.T) {
	r := rand.New(rand.NewPCG(12, 4))
	ips := []string{"10.20.5.7", "10.20.5.9", "10.20.1.1", "10.9.9.9", "10.30.1.1", "8.8.8.8", "192.0.2.1",
		"2001:db8:1::5", "2001:db8:2::5", "2606:4700::1",
		// IPv6 forms of 10.20.5.7: mapped, compatible, NAT64 well-known,
		// local-use (/48 layout), 6to4, the cluster's NAT64 prefix.
		"::ffff:10.20.5.7", "::a14:507", "64:ff9b::a14:507", "64:ff9b:1:a14:5:700::", "2002:a14:507::1", "2001:db8:64::a14:507"}
	names := []string{"prod.example.com", "api.prod.example.com", "x.b.prod.example.com", "example.com", "dns.google",
		"api.stripe.com", "github.com",
		// Addresses given as names: the connection's address decides.
		"10.20.5.7", "167772161", "0xa.0x14.0.1", "2001:db8:1::5"}
	ports := []uint16{25, 443, 853, 80}
	n, compared := 150, 0
	if testing.Short() {
		n = 40
	}
	for i := range n {
		spec := randomSpec(r)
		p, err := plan.Compile(spec)
		if err != nil {
			continue
		}
		res, err := TranslateSidecar(p, NodeSettings{})
		require.NoError(t, err, "plan %d: %+v", i, spec)
		require.NoError(t, Validate(res), "plan %d: %+v", i, spec)
		for _, ipS := range ips {
			ip := netip.MustParseAddr(ipS)
			port := ports[r.IntN(len(ports))]
			d := p.Decide(plan.Destination{IP: ip, Port: port})
			act, rule := simulate(t, res, simConn{ip: ip, port: port, transport: "tcp"})
			require.Equal(t, want(d), act, "plan %d tcp %s:%d: %+v", i, ip, port, spec)
			require.Equal(t, d.RuleID(), rule, "plan %d tcp %s:%d", i, ip, port)
			h := names[r.IntN(len(names))]
			d = p.Decide(plan.Destination{Host: h, IP: ip, Port: port})
			act, rule = simulate(t, res, simConn{ip: ip, port: port, transport: "http", host: h})
			require.Equal(t, want(d), act, "plan %d http %s to %s:%d: %+v", i, h, ip, port, spec)
			require.Equal(t, d.RuleID(), rule, "plan %d http %s to %s:%d", i, h, ip, port)
			act, _ = simulate(t, res, simConn{ip: ip, port: port, transport: "tls", sni: h})
			requireTLS(t, d, act, "plan %d tls %s to %s:%d: %+v", i, h, ip, port, spec)
			// No SNI, and a trailing dot: decided on the address alone.
			d = p.Decide(plan.Destination{IP: ip, Port: port})
			for _, sni := range []string{"", h + "."} {
				act, _ = simulate(t, res, simConn{ip: ip, port: port, transport: "tls", sni: sni})
				requireTLS(t, d, act, "plan %d tls SNI %q to %s:%d: %+v", i, sni, ip, port, spec)
			}
			compared++
		}
	}
	t.Logf("%d plans, %d destinations compared", n, compared)
}

// requireTLS: the sidecar's TLS action is plan.Decide's, redirect being a
// deny (TLS is not terminated). One departure is allowed: a TLS fallback
// chain serving both an allowed name and a report-mode address records a
// would-deny for both (see tlsFallback); it never loses one or changes
// whether the connection passes.
func requireTLS(t *testing.T, d plan.Decision, act string, msg string, args ...any) {
	t.Helper()
	w := strings.Replace(want(d), "redirect", "deny", 1)
	if w == "allow" && act == "report" {
		return
	}
	require.Equal(t, w, act, append([]any{msg}, args...)...)
}

// BenchmarkCheckFilterChains measures the chain check against the rest of
// Validate on one large listener (2,000 host rules, 10 production CIDRs
// with their IPv6 embeddings, a port-443 and a port-853 table), in the
// same run: report the ratio of check to validate.
func BenchmarkCheckFilterChains(b *testing.B) {
	spec := plan.Spec{Default: plan.ActionAllow}
	for i := range 2000 {
		h := fmt.Sprintf("api%d.provider%d.example.com", i, i%97)
		if i%10 == 0 {
			h = fmt.Sprintf("*.zone%d.prod.example.com", i)
		}
		spec.Rules = append(spec.Rules, plan.Rule{ID: fmt.Sprintf("r%d", i), Hosts: []string{h}, Action: plan.Action(i % 2)})
	}
	for i := range 10 {
		spec.Rules = append(spec.Rules, plan.Rule{ID: fmt.Sprintf("cidr%d", i), CIDRs: []string{fmt.Sprintf("10.%d.0.0/16", 20+i)}, Action: plan.ActionDeny})
	}
	spec.Rules = append(spec.Rules,
		plan.Rule{ID: "p443", Hosts: []string{"pay.example.com"}, Ports: []uint16{443}, Action: plan.ActionDeny},
		plan.Rule{ID: "dot", CIDRs: []string{"0.0.0.0/0", "::/0"}, Ports: []uint16{853}, Action: plan.ActionDeny})
	p, err := plan.Compile(spec)
	require.NoError(b, err)
	res, err := TranslateSidecar(p, NodeSettings{})
	require.NoError(b, err)
	b.Run("check", func(b *testing.B) {
		for b.Loop() {
			require.NoError(b, CheckFilterChains(res.Listeners[0]))
		}
		b.ReportMetric(float64(len(res.Listeners[0].FilterChains)), "chains")
	})
	b.Run("validate", func(b *testing.B) {
		for b.Loop() {
			require.NoError(b, Validate(res))
		}
	})
}

// TestChainCheckMemo: the enforcer checks a listener's chains once per
// content. A rebuild whose policy changed only what the listener does not
// carry (a reason, shown in the routes' deny bodies) reuses the verdict; a
// changed listener is checked; a verdict unused for a whole rebuild is
// forgotten. An ambiguous listener's error is memoised as well.
func TestChainCheckMemo(t *testing.T) {
	plans := &switchPlans{}
	plans.p.Store(mustCompile(t, specGen(0)))
	m := NewMetrics(nil)
	enf, err := NewEnforcer(plans, staticInventory(t, "node-a"), Defaults(), zaptest.NewLogger(t), m)
	require.NoError(t, err)
	require.NoError(t, enf.streamNode(1, sidecarNode("node-a")))
	counts := func() (computed, memo float64) {
		return metricValue(t, m.chainChecks.WithLabelValues("computed")), metricValue(t, m.chainChecks.WithLabelValues("memo"))
	}
	computed, memo := counts()
	require.InDelta(t, 1.0, computed, 0)
	require.InDelta(t, 0.0, memo, 0)

	reworded := specGen(0)
	reworded.Rules[0].Reason = "production zone (reworded)"
	plans.p.Store(mustCompile(t, reworded))
	before := enf.NodeSnapshot("node-a")
	enf.Rebuild()
	require.NotSame(t, before, enf.NodeSnapshot("node-a"), "the class changed: rebuilt and published")
	computed, memo = counts()
	assert.InDelta(t, 1.0, computed, 0, "the listener is unchanged: not checked again")
	assert.InDelta(t, 1.0, memo, 0)

	plans.p.Store(mustCompile(t, specGen(1)))
	enf.Rebuild()
	plans.p.Store(mustCompile(t, specGen(2)))
	enf.Rebuild()
	computed, _ = counts()
	assert.InDelta(t, 3.0, computed, 0, "new SNI lists: new listeners, checked")
	plans.p.Store(mustCompile(t, specGen(0)))
	enf.Rebuild()
	computed, _ = counts()
	assert.InDelta(t, 4.0, computed, 0, "generation 0's listener was forgotten two rebuilds ago")

	amb := &listenerv3.Listener{Name: "amb", FilterChains: []*listenerv3.FilterChain{
		chainWith("a", &listenerv3.FilterChainMatch{PrefixRanges: []*corev3.CidrRange{cidr("0.0.0.0", 0)}}),
		chainWith("b", &listenerv3.FilterChainMatch{}),
	}}
	cm := newChainMemo(NewMetrics(nil))
	d := sha256.Sum256([]byte("amb"))
	first := cm.check(amb, d)
	require.Error(t, first)
	assert.Equal(t, first, cm.check(amb, d), "the memoised verdict of an ambiguous listener is its error")
}
