package xds

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	netrbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	earlyhmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/http/early_header_mutation/header_mutation/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/egressguard/egressguard/policy/plan"
)

// simConn is one outbound connection as the sidecar sees it.
type simConn struct {
	ip        netip.Addr
	port      uint16
	transport string // "tls", "http", "tcp"
	sni       string // TLS only
	host      string // HTTP Host header
}

// simulate follows Envoy's matching on our resources and returns the
// action and the rule ID ("" where a grouped chain names none). Filter
// chains are picked by selectChain; virtual hosts by exact domain, then
// longest suffix wildcard, then "*".
func simulate(t *testing.T, res *Resources, c simConn) (string, string) {
	t.Helper()
	chain := selectChain(t, res.Listeners[0], c)
	// Network RBAC filters run in chain order before the TCP proxy; a
	// DENY filter whose policy matches closes the connection.
	for _, f := range chain.Filters {
		if !f.GetTypedConfig().MessageIs(&netrbacv3.RBAC{}) {
			continue
		}
		r := &netrbacv3.RBAC{}
		require.NoError(t, f.GetTypedConfig().UnmarshalTo(r))
		if name, denied := rbacDenies(t, r, c); denied {
			if name == "deny-sni" {
				return "deny", ""
			}
			for _, side := range []string{"named-tls:", "unnamed-tls:", "malformed-tls:"} {
				name = strings.TrimPrefix(name, side)
			}
			return "deny", name
		}
	}
	if md := chain.GetMetadata().GetFilterMetadata()["egressguard"]; md != nil {
		if act := md.Fields["action"].GetStringValue(); act != "" && !strings.Contains(chain.Name, "|http") {
			return act, md.Fields["rule"].GetStringValue()
		}
	}
	f := chain.Filters[0]
	switch {
	case f.GetTypedConfig().MessageIs(&hcmv3.HttpConnectionManager{}):
		h := &hcmv3.HttpConnectionManager{}
		require.NoError(t, f.GetTypedConfig().UnmarshalTo(h))
		var rc *routev3.RouteConfiguration
		for _, r := range res.Routes {
			if r.Name == h.GetRds().GetRouteConfigName() {
				rc = r
			}
		}
		require.NotNil(t, rc)
		authority := routingHost(h, c.host)
		vh := matchVHost(rc, strings.ToLower(authority))
		require.NotNil(t, vh, "no virtual host for %q", c.host)
		headers := earlyHeaders(t, h)
		headers[":authority"] = authority
		rt := matchRoute(t, vh, headers)
		require.NotNil(t, rt, "no route in virtual host %s", vh.Name)
		action, rule, _ := strings.Cut(rt.Name, "|")
		return action, rule
	}
	tp := &tcpproxyv3.TcpProxy{}
	require.NoError(t, f.GetTypedConfig().UnmarshalTo(tp))
	switch {
	case tp.GetCluster() == PassthroughCluster && strings.HasPrefix(tp.StatPrefix, "egressguard_report"):
		return "report", ""
	case tp.GetCluster() == PassthroughCluster:
		return "allow", ""
	case strings.HasPrefix(tp.GetCluster(), "sandbox|"):
		return "redirect", ""
	}
	return "?", tp.GetCluster()
}

// rbacDenies evaluates a network RBAC filter of action DENY on c, as
// Envoy's RoleBasedAccessControlEngineImpl::handleAction does
// (source/extensions/filters/common/rbac/engine_impl.cc: denied when any
// policy matches), with the matchers the translation writes
// (source/extensions/filters/common/rbac/matchers.cc: AlwaysMatcher,
// OrMatcher, NotMatcher, RequestedServerNameMatcher on the connection's
// requested server name, empty without SNI). It returns the policy.
func rbacDenies(t *testing.T, r *netrbacv3.RBAC, c simConn) (string, bool) {
	t.Helper()
	require.Equal(t, rbacv3.RBAC_DENY, r.Rules.Action)
	sni := ""
	if c.transport == "tls" {
		sni = c.sni
	}
	var perm func(p *rbacv3.Permission) bool
	perm = func(p *rbacv3.Permission) bool {
		switch x := p.Rule.(type) {
		case *rbacv3.Permission_Any:
			return x.Any
		case *rbacv3.Permission_NotRule:
			return !perm(x.NotRule)
		case *rbacv3.Permission_OrRules:
			return slices.ContainsFunc(x.OrRules.Rules, perm)
		case *rbacv3.Permission_RequestedServerName:
			switch m := x.RequestedServerName.MatchPattern.(type) {
			case *matcherv3.StringMatcher_Exact:
				return sni == m.Exact
			case *matcherv3.StringMatcher_Suffix:
				return strings.HasSuffix(sni, m.Suffix)
			case *matcherv3.StringMatcher_SafeRegex:
				return fullMatch(t, m.SafeRegex.Regex, sni)
			}
		}
		t.Fatalf("permission not simulated: %v", p)
		return false
	}
	names := make([]string, 0, len(r.Rules.Policies))
	for name := range r.Rules.Policies {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		pol := r.Rules.Policies[name]
		for _, pr := range pol.Principals {
			require.True(t, pr.GetAny(), "only the any principal is simulated")
		}
		if slices.ContainsFunc(pol.Permissions, perm) {
			return name, true
		}
	}
	return "", false
}

// routingHost is the Host an HTTP connection manager routes on, as
// ConnectionManagerUtility::maybeNormalizeHost
// (source/common/http/conn_manager_utility.cc) leaves it: first a trailing
// dot removed, at the end or just before the port
// (strip_trailing_host_dot, HeaderUtility::stripTrailingHostDot in
// source/common/http/header_utility.cc), then the port
// (strip_any_host_port, HeaderUtility::stripPortFromHost). Routes' header
// matchers see it so; virtual host domains match it case-insensitively
// (RouteMatcher::findVirtualHost in source/common/router/config_impl.cc
// lowercases the host).
func routingHost(h *hcmv3.HttpConnectionManager, host string) string {
	if h.StripTrailingHostDot {
		if i := strings.LastIndexByte(host, '.'); i >= 0 && (i == len(host)-1 || host[i+1] == ':') {
			host = host[:i] + host[i+1:]
		}
	}
	if h.GetStripAnyHostPort() {
		if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
			host = host[:i]
		}
	}
	return host
}

// fullMatch is Envoy's safe_regex: RE2, the whole string must match
// (Regex::CompiledGoogleReMatcher::match in source/common/common/regex.cc
// uses RE2::FullMatch). Go's regexp is RE2 syntax.
func fullMatch(t *testing.T, re, s string) bool {
	t.Helper()
	r, err := regexp.Compile(`^(?:` + re + `)$`)
	require.NoError(t, err)
	return r.MatchString(s)
}

// earlyHeaders applies the HCM's early header mutations (run before
// routing) to a request that carries none of its own headers. A client
// sending the same header is overwritten (OVERWRITE_IF_EXISTS_OR_ADD).
func earlyHeaders(t *testing.T, h *hcmv3.HttpConnectionManager) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, ext := range h.EarlyHeaderMutationExtensions {
		hm := &earlyhmv3.HeaderMutation{}
		require.NoError(t, ext.GetTypedConfig().UnmarshalTo(hm))
		for _, m := range hm.Mutations {
			a := m.GetAppend()
			require.NotNil(t, a, "only append mutations are simulated")
			require.Equal(t, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD, a.AppendAction)
			out[a.Header.Key] = a.Header.Value
		}
	}
	return out
}

// matchRoute picks the first route whose header matchers (exact, prefix
// and regex string matches, as the translation writes them) all hold; every route
// matches any path ("/").
func matchRoute(t *testing.T, vh *routev3.VirtualHost, headers map[string]string) *routev3.Route {
	t.Helper()
	for _, rt := range vh.Routes {
		require.Equal(t, "/", rt.Match.GetPrefix())
		ok := true
		for _, hm := range rt.Match.Headers {
			v, present := headers[hm.Name]
			sm := hm.GetStringMatch()
			switch {
			case sm.GetExact() != "":
				ok = ok && present && v == sm.GetExact()
			case sm.GetPrefix() != "":
				ok = ok && present && strings.HasPrefix(v, sm.GetPrefix())
			case sm.GetSafeRegex() != nil:
				ok = ok && present && fullMatch(t, sm.GetSafeRegex().GetRegex(), v)
			default:
				t.Fatalf("only exact, prefix and regex header matches are simulated: %v", sm)
			}
		}
		if ok {
			return rt
		}
	}
	return nil
}

func matchVHost(rc *routev3.RouteConfiguration, host string) *routev3.VirtualHost {
	var star, best *routev3.VirtualHost
	bestLen := -1
	for _, vh := range rc.VirtualHosts {
		for _, d := range vh.Domains {
			switch {
			case d == host:
				return vh
			case d == "*":
				star = vh
			case strings.HasPrefix(d, "*") && strings.HasSuffix(host, d[1:]) && len(host) > len(d)-1 && len(d) > bestLen:
				best, bestLen = vh, len(d)
			}
		}
	}
	if best != nil {
		return best
	}
	return star
}

// TestSidecarMatchesDecide runs plan.Decide and the simulated sidecar on the
// same destinations and requires the same answer (action and rule) for
// plaintext HTTP and raw TCP, and the same action for TLS (TLS redirect is a
// deny; a TLS SNI chain groups rules so it names none).
func TestSidecarMatchesDecide(t *testing.T) {
	hosts := []string{"api-m.paypal.com", "www.paypal.com", "a.b.paypal.com", "paypal.com", "status.prod.example.com",
		"db.prod.example.com", "billing.example.com", "example.com", "api.mailgun.net", "collector.analytics.example.com",
		"API-M.PayPal.com.", "x.svc.cluster.local", "github.com", "api.github.com", "foo.staging.example.com", "10.20.1.1",
		"corp.example.com", "a.corp.example.com", "team.corp.example.com", "x.team.corp.example.com", "a.b.team.corp.example.com",
		"db.team.corp.example.com", "x.db.team.corp.example.com", "ro.db.team.corp.example.com", "a.ro.db.team.corp.example.com", "api.stripe.com", "x.api.stripe.com"}
	ips := []string{"10.20.1.1", "10.20.5.9", "10.9.9.9", "192.0.2.1", "2001:db8:1::5", "2001:db8:2::5", "10.30.1.1", "10.30.9.9", "10.21.3.4", "10.22.0.1"}
	ports := []uint16{80, 443, 25, 587, 8080}
	cases, err := filepath.Glob("testdata/in/*.yaml")
	require.NoError(t, err)
	n := 0
	for _, in := range cases {
		if strings.HasPrefix(filepath.Base(in), "grpc-") {
			continue
		}
		p := loadSpec(t, in)
		res, err := TranslateSidecar(p, NodeSettings{})
		require.NoError(t, err)
		t.Run(filepath.Base(in), func(t *testing.T) {
			for _, ipS := range ips {
				ip := netip.MustParseAddr(ipS)
				for _, port := range ports {
					// raw TCP: no name.
					d := p.Decide(plan.Destination{IP: ip, Port: port})
					act, rule := simulate(t, res, simConn{ip: ip, port: port, transport: "tcp"})
					assert.Equal(t, want(d), act, "tcp %s:%d", ipS, port)
					assert.Equal(t, d.RuleID(), rule, "tcp %s:%d", ipS, port)
					for _, h := range hosts {
						d := p.Decide(plan.Destination{Host: h, IP: ip, Port: port})
						act, rule := simulate(t, res, simConn{ip: ip, port: port, transport: "http", host: h})
						d = outsideInterception(p, d)
						assert.Equal(t, want(d), act, "http Host %s to %s:%d", h, ipS, port)
						assert.Equal(t, d.RuleID(), rule, "http Host %s to %s:%d", h, ipS, port)
						act, _ = simulate(t, res, simConn{ip: ip, port: port, transport: "tls", sni: strings.ToLower(strings.TrimSuffix(h, "."))})
						wantTLS := want(d)
						if wantTLS == "redirect" {
							wantTLS = "deny"
						}
						assert.Equal(t, wantTLS, act, "tls SNI %s to %s:%d", h, ipS, port)
						n++
					}
				}
			}
		})
	}
	t.Logf("%d destinations compared", n)
}

func want(d plan.Decision) string {
	switch {
	case d.WouldDeny:
		return "report"
	case d.Action == plan.ActionDeny:
		return "deny"
	case d.Action == plan.ActionRedirect:
		return "redirect"
	}
	return "allow"
}

// selectChain picks the filter chain Envoy would for c, following
// FilterChainManagerImpl::findFilterChain and the findFilterChainFor*
// functions it calls (source/common/listener_manager/filter_chain_manager_impl.cc).
// Where Envoy's index would hold two chains in one place (it answers one
// of them arbitrarily, or refuses the listener), the test fails.
func selectChain(t *testing.T, l *listenerv3.Listener, c simConn) *listenerv3.FilterChain {
	t.Helper()
	fc, err := envoySelect(l, c)
	require.NoError(t, err)
	return fc
}

// envoySelect is selectChain, with an error where no chain or more than
// one could answer.
func envoySelect(l *listenerv3.Listener, c simConn) (*listenerv3.FilterChain, error) {
	// findFilterChain: the chains of the destination port if any chain
	// names it, with no fallback to the port-less chains once it does
	// (the default filter chain answers then; we set none); otherwise
	// the chains without destination_port.
	var cands []*listenerv3.FilterChain
	for _, fc := range l.FilterChains {
		if p := fc.FilterChainMatch.GetDestinationPort(); p != nil && p.Value == uint32(c.port) {
			cands = append(cands, fc)
		}
	}
	if len(cands) == 0 {
		for _, fc := range l.FilterChains {
			if fc.FilterChainMatch.GetDestinationPort() == nil {
				cands = append(cands, fc)
			}
		}
	}
	if len(cands) == 0 {
		return nil, fmt.Errorf("no filter chain for port %d", c.port)
	}

	// findFilterChainForDestinationIP: one LC trie per port over the
	// chains' prefixes, each normalised by CidrRange::create
	// (source/common/network/cidr_range.cc), a chain without
	// prefix_ranges entered as 0.0.0.0/0 and ::/0 (makeCidrListEntry). The
	// trie answers the node of the longest prefix containing the address;
	// chains listing the same range string share that node's server-name
	// map, but the empty key and an explicit catch-all are two maps at one
	// prefix (envoyproxy/envoy issue 7341): ambiguous.
	type ipKey struct{ key, prefix string }
	best := -1
	nodes := map[ipKey][]*listenerv3.FilterChain{}
	for _, fc := range cands {
		rs := fc.FilterChainMatch.GetPrefixRanges()
		if len(rs) == 0 {
			for _, all := range anyPrefixes {
				pfx := netip.MustParsePrefix(all)
				if pfx.Contains(c.ip) {
					best = max(best, pfx.Bits())
					nodes[ipKey{"", pfx.String()}] = append(nodes[ipKey{"", pfx.String()}], fc)
				}
			}
			continue
		}
		for _, r := range rs {
			pfx, err := envoyPrefix(r)
			if err != nil {
				return nil, err
			}
			if pfx.Contains(c.ip) {
				best = max(best, pfx.Bits())
				nodes[ipKey{pfx.String(), pfx.String()}] = append(nodes[ipKey{pfx.String(), pfx.String()}], fc)
			}
		}
	}
	if best < 0 {
		return nil, fmt.Errorf("no filter chain for destination %s", c.ip)
	}
	var node []*listenerv3.FilterChain
	keys := 0
	for k, fcs := range nodes {
		if netip.MustParsePrefix(k.prefix).Bits() == best {
			node = fcs
			keys++
		}
	}
	if keys != 1 {
		return nil, fmt.Errorf("destination %s: chains with and without prefix_ranges share a trie node (envoyproxy/envoy issue 7341)", c.ip)
	}

	// findFilterChainForServerName: the exact (lowercased) name, then each
	// "*." suffix from the longest, starting at the second character and
	// never the final one alone, then chains without server_names.
	sni := strings.ToLower(c.sni)
	hasName := func(fc *listenerv3.FilterChain, key string) bool {
		for _, n := range fc.FilterChainMatch.ServerNames {
			n = strings.ToLower(n)
			if strings.HasPrefix(n, "*.") {
				n = n[1:]
			}
			if n == key {
				return true
			}
		}
		return key == "" && len(fc.FilterChainMatch.ServerNames) == 0
	}
	byName := func(key string) []*listenerv3.FilterChain {
		var out []*listenerv3.FilterChain
		for _, fc := range node {
			if hasName(fc, key) {
				out = append(out, fc)
			}
		}
		return out
	}
	named := byName(sni)
	if named == nil {
		for pos := indexFrom(sni, '.', 1); pos >= 0 && pos < len(sni)-1; pos = indexFrom(sni, '.', pos+1) {
			if named = byName(sni[pos:]); named != nil {
				break
			}
		}
	}
	if named == nil {
		named = byName("")
	}
	if len(named) == 0 {
		return nil, fmt.Errorf("no filter chain for server name %q", c.sni)
	}

	// findFilterChainForTransportProtocol: the detected protocol ("tls"
	// from the TLS inspector, else "raw_buffer"), then chains without one.
	transport, alpn := "raw_buffer", []string(nil)
	switch c.transport {
	case "tls":
		transport = "tls"
	case "http":
		alpn = []string{"http/1.1"} // what the HTTP inspector reports for HTTP/1.1
	}
	pick := func(fcs []*listenerv3.FilterChain, ok func(*listenerv3.FilterChain) bool) []*listenerv3.FilterChain {
		var out []*listenerv3.FilterChain
		for _, fc := range fcs {
			if ok(fc) {
				out = append(out, fc)
			}
		}
		return out
	}
	byTransport := pick(named, func(fc *listenerv3.FilterChain) bool { return fc.FilterChainMatch.TransportProtocol == transport })
	if byTransport == nil {
		byTransport = pick(named, func(fc *listenerv3.FilterChain) bool { return fc.FilterChainMatch.TransportProtocol == "" })
	}
	// findFilterChainForApplicationProtocols: the first requested protocol
	// some chain lists, then chains without application_protocols.
	var byALPN []*listenerv3.FilterChain
	for _, a := range alpn {
		if byALPN = pick(byTransport, func(fc *listenerv3.FilterChain) bool {
			return slices.Contains(fc.FilterChainMatch.ApplicationProtocols, a)
		}); byALPN != nil {
			break
		}
	}
	if byALPN == nil {
		byALPN = pick(byTransport, func(fc *listenerv3.FilterChain) bool { return len(fc.FilterChainMatch.ApplicationProtocols) == 0 })
	}
	// The source fields are unused here; two chains left would have made
	// Envoy refuse the listener (addFilterChainForSourcePorts).
	if len(byALPN) != 1 {
		return nil, fmt.Errorf("%d filter chains for %+v", len(byALPN), c)
	}
	return byALPN[0], nil
}

// indexFrom is std::string::find(c, from): the index of c at or after
// from, or -1.
func indexFrom(s string, c byte, from int) int {
	if from > len(s) {
		return -1
	}
	if i := strings.IndexByte(s[from:], c); i >= 0 {
		return from + i
	}
	return -1
}
