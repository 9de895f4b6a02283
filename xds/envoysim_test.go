package xds

import (
	"net/netip"
	"path/filepath"
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

// simulate follows Envoy's documented matching on our resources: filter
// chains by destination port, then longest destination prefix, then
// server_names (exact, then longest "*." suffix, then none), then transport
// and application protocol; virtual hosts by exact domain, then longest
// suffix wildcard, then "*". It returns the action and the rule ID
// ("" where a grouped chain names none).
func simulate(t *testing.T, res *Resources, c simConn) (string, string) {
	t.Helper()
	lis := res.Listeners[0]
	cands := lis.FilterChains
	// destination_port
	var byPort []*listenerv3.FilterChain
	for _, fc := range cands {
		if p := fc.FilterChainMatch.GetDestinationPort(); p != nil && p.Value == uint32(c.port) {
			byPort = append(byPort, fc)
		}
	}
	if len(byPort) == 0 {
		for _, fc := range cands {
			if fc.FilterChainMatch.GetDestinationPort() == nil {
				byPort = append(byPort, fc)
			}
		}
	}
	// prefix_ranges: longest match, else chains without ranges
	best, bestBits := []*listenerv3.FilterChain(nil), -1
	for _, fc := range byPort {
		for _, r := range fc.FilterChainMatch.PrefixRanges {
			pfx := netip.PrefixFrom(netip.MustParseAddr(r.AddressPrefix), int(r.PrefixLen.GetValue()))
			if pfx.Contains(c.ip) && pfx.Bits() > bestBits {
				best, bestBits = nil, pfx.Bits()
			}
			if pfx.Contains(c.ip) && pfx.Bits() == bestBits {
				best = append(best, fc)
			}
		}
	}
	if best == nil {
		for _, fc := range byPort {
			if len(fc.FilterChainMatch.PrefixRanges) == 0 {
				best = append(best, fc)
			}
		}
	}
	// server_names
	var bySNI []*listenerv3.FilterChain
	if c.sni != "" {
		for _, cand := range append([]string{c.sni}, suffixWildcards(c.sni)...) {
			for _, fc := range best {
				for _, n := range fc.FilterChainMatch.ServerNames {
					if n == cand {
						bySNI = append(bySNI, fc)
					}
				}
			}
			if bySNI != nil {
				break
			}
		}
	}
	if bySNI == nil {
		for _, fc := range best {
			if len(fc.FilterChainMatch.ServerNames) == 0 {
				bySNI = append(bySNI, fc)
			}
		}
	}
	// transport + application protocols
	var chain *listenerv3.FilterChain
	for _, fc := range bySNI {
		m := fc.FilterChainMatch
		switch {
		case c.transport == "tls" && m.TransportProtocol == "tls":
			chain = fc
		case c.transport == "http" && m.TransportProtocol == "raw_buffer" && len(m.ApplicationProtocols) > 0:
			chain = fc
		case c.transport == "tcp" && m.TransportProtocol == "raw_buffer" && len(m.ApplicationProtocols) == 0:
			chain = fc
		}
	}
	require.NotNil(t, chain, "no filter chain for %+v", c)
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
		vh := matchVHost(rc, strings.ToLower(strings.TrimSuffix(c.host, ".")))
		require.NotNil(t, vh, "no virtual host for %q", c.host)
		rt := matchRoute(t, vh, earlyHeaders(t, h))
		require.NotNil(t, rt, "no route in virtual host %s", vh.Name)
		action, rule, _ := strings.Cut(rt.Name, "|")
		return action, rule
	case f.GetTypedConfig().MessageIs(&netrbacv3.RBAC{}):
		r := &netrbacv3.RBAC{}
		require.NoError(t, f.GetTypedConfig().UnmarshalTo(r))
		require.Equal(t, rbacv3.RBAC_DENY, r.Rules.Action)
		for name := range r.Rules.Policies {
			if name == "deny-sni" {
				return "deny", ""
			}
			return "deny", name
		}
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

// matchRoute picks the first route whose header matchers (exact and
// prefix string matches, as the translation writes them) all hold; every route
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
			default:
				t.Fatalf("only exact and prefix header matches are simulated: %v", sm)
			}
		}
		if ok {
			return rt
		}
	}
	return nil
}

func suffixWildcards(name string) []string {
	var out []string
	for i := 0; i < len(name); i++ {
		if name[i] == '.' {
			out = append(out, "*"+name[i:])
		}
	}
	return out
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
