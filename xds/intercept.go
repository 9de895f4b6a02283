package xds

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/egressguard/egressguard/policy/plan"
	"github.com/egressguard/egressguard/xds/stagingca"
)

// HTTPS interception (sidecars only). For each host pattern of an
// intercepted host rule (plan.Rule.Intercepted: request-level rules, or a
// redirect to a TLS sandbox) the sidecar's outbound listener has, in every
// cell, one filter chain matching the pattern as SNI that terminates TLS
// with the staging CA's leaf for the pattern (an SDS secret on the ADS
// stream, InterceptSecretName) and hands the requests to an HTTP
// connection manager whose routes are the rule's request rules, first
// match wins, then its default (interceptRoutes). Allowed requests leave
// over TLS again to where the client was going (InterceptUpstreamCluster:
// the original destination, SNI and certificate name taken from the Host
// header, which the route configuration holds to the rule's patterns),
// verified against the sidecar image's system roots; redirected requests
// go to the sandbox's cluster (TLS with the sandbox's name); denied ones
// get the 403 JSON body.
//
// Without a staging CA (no Certificates) a rule with request-level rules
// is a denial whose chain metadata says interception is not configured; a
// TLS redirect stays the deny it was. Plaintext HTTP to a host with
// request-level rules, and proxyless gRPC clients (nothing to intercept
// with), are denied (verdictOf).

const (
	// InterceptSecretPrefix starts the SDS secret name of an intercepted
	// host pattern: "egressguard-intercept~api.stripe.com".
	InterceptSecretPrefix = "egressguard-intercept~"
	// InterceptUpstreamCluster re-originates TLS to the connection's
	// original destination for allowed intercepted requests.
	InterceptUpstreamCluster = "egressguard_intercept_upstream"

	interceptRoutePrefix = "intercept|"
	// frontingRuleID decides a request whose Host is not one of the
	// intercepted rule's names (domain fronting inside the TLS session).
	frontingRuleID = "egressguard.fronting"
)

// noteNoRequests is the deny reason of a request-level rule where requests
// cannot be seen: plaintext HTTP and proxyless gRPC.
const noteNoRequests = "request-level rule: requests to this host are decided only on HTTPS intercepted by the sidecar"

// noteNoCA is the deny reason of a request-level rule on a sidecar without
// a staging CA.
const noteNoCA = "HTTPS interception is not configured (no staging CA): request-level rules deny"

// InterceptSecretName is the SDS secret of an intercepted host pattern.
func InterceptSecretName(pattern string) string { return InterceptSecretPrefix + pattern }

// Certificates is the staging CA as the translation uses it
// (*stagingca.Authority): a leaf per intercepted host pattern, cached per
// rotation, and a tick whenever leaves change.
type Certificates interface {
	Leaf(host string) (stagingca.Leaf, error)
	Changes() <-chan struct{}
}

var _ Certificates = (*stagingca.Authority)(nil)

// Option configures an Enforcer.
type Option func(*Enforcer)

// WithCertificates makes sidecars intercept the HTTPS of intercepted host
// rules with leaves of c, served over SDS, re-pushed on c.Changes().
func WithCertificates(c Certificates) Option { return func(e *Enforcer) { e.certs = c } }

// interceptPort says whether intercept chains are built in the cells of a
// destination port: 443, and every port no rule names (0). A port some
// rule names for another protocol (25, 587, 853, ...) keeps the
// intercepted names in its SNI chains, where a rule with request rules
// denies (fail closed) and a TLS redirect denies as before: one chain per
// intercepted pattern in every such cell would multiply the listener's
// size for connections HTTPS clients do not make.
func interceptPort(port uint16) bool { return port == 0 || port == 443 }

// intercepting says whether the builder gives r its own TLS chains: with a
// CA every intercepted rule, without one only request-level rules (denied,
// saying so).
func (b *sidecarBuilder) intercepting(r *plan.Rule) bool {
	return r.Requests != nil || b.s.Certificates != nil && r.Intercepted()
}

// interceptChain is the TLS chain of one intercepted host pattern in a cell.
func (b *sidecarBuilder) interceptChain(m *listenerv3.FilterChainMatch, cell, pattern string, r *plan.Rule) *listenerv3.FilterChain {
	m.ServerNames = []string{pattern}
	m.TransportProtocol = "tls"
	name := cell + "|tls-intercept|" + pattern
	deny := func(reason string) *listenerv3.FilterChain {
		md := chainMetadata(vDeny, r.ID)
		md.FilterMetadata["egressguard"].Fields["reason"] = structpb.NewStringValue(reason)
		return &listenerv3.FilterChain{Name: name, FilterChainMatch: m, Filters: b.tcpFilters(name, verdict{kind: vDeny, rule: r}, false), Metadata: md}
	}
	if b.s.Certificates == nil {
		return deny(noteNoCA)
	}
	if err := b.secret(pattern); err != nil {
		return deny(fmt.Sprintf("no staging certificate for %s: %v", pattern, err))
	}
	rc := b.interceptRoutes(r)
	return &listenerv3.FilterChain{
		Name:             name,
		FilterChainMatch: m,
		TransportSocket: &corev3.TransportSocket{
			Name: "envoy.transport_sockets.tls",
			ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(&tlsv3.DownstreamTlsContext{
				CommonTlsContext: &tlsv3.CommonTlsContext{
					TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: InterceptSecretName(pattern), SdsConfig: adsConfigSource()}},
					AlpnProtocols:                  []string{"h2", "http/1.1"},
				},
			})},
		},
		Filters:  []*listenerv3.Filter{networkFilter("envoy.filters.network.http_connection_manager", b.interceptHCM(name, rc))},
		Metadata: chainMetadata(vIntercept, r.ID),
	}
}

// secret adds (once) the SDS secret of an intercepted pattern.
func (b *sidecarBuilder) secret(pattern string) error {
	name := InterceptSecretName(pattern)
	if err, ok := b.leafErr[name]; ok {
		return err
	}
	leaf, err := b.s.Certificates.Leaf(pattern)
	b.leafErr[name] = err
	if err != nil {
		return err
	}
	b.secrets[name] = leafSecret(name, leaf)
	return nil
}

// leafSecret is the SDS secret of a leaf.
func leafSecret(name string, leaf stagingca.Leaf) *tlsv3.Secret {
	return &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: leaf.CertPEM}},
		PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: leaf.KeyPEM}},
	}}}
}

// interceptHCM is the HTTP connection manager of an intercept chain. The
// path is normalised before routing so that route matching sees
// plan.NormalizePath's form (see pathNormalisation).
func (b *sidecarBuilder) interceptHCM(chain, routeName string) *hcmv3.HttpConnectionManager {
	h := routedHCM(statPrefix("egressguard_intercept", chain), routeName, b.interceptAccessLog())
	pathNormalisation(h)
	return h
}

// interceptAccessLog logs every intercepted request that is not a plain
// allow by its route name ("<action>|<request rule id>") and nothing the
// client sent in a header: request headers carry the credentials the rules
// look at.
func (b *sidecarBuilder) interceptAccessLog() *accesslogv3.AccessLog {
	return b.routeAccessLog(map[string]string{
		"decision":    "%ROUTE_NAME%",
		"sni":         "%REQUESTED_SERVER_NAME%",
		"status":      "%RESPONSE_CODE%",
		"upstream":    "%UPSTREAM_HOST%",
		"cluster":     "%UPSTREAM_CLUSTER%",
		"destination": "%DOWNSTREAM_LOCAL_ADDRESS%",
	})
}

// interceptRoutes adds (once) the route configuration of an intercepted
// host rule and names it: a virtual host for the rule's patterns with one
// route per request rule in the plan's order, then the policy's default
// (or, for a TLS redirect without request rules, the rule's redirect), and
// a catch-all that denies a Host outside the rule's patterns (domain
// fronting inside the TLS session).
func (b *sidecarBuilder) interceptRoutes(r *plan.Rule) string {
	name := interceptRoutePrefix + r.ID
	if _, ok := b.routes[name]; ok {
		return name
	}
	var routes []*routev3.Route
	if rp := r.Requests; rp != nil {
		routes = b.malformedPathRoutes(r)
		for i := range rp.Rules {
			routes = append(routes, b.requestRoute(r, &rp.Rules[i], false))
		}
		routes = append(routes, b.requestRoute(r, &rp.Default, true))
	} else {
		v := verdictOf(b.p, r)
		b.registerClusters(v)
		routes = append(routes, b.forwarding(httpRoute(v), v))
	}
	fronting := httpRoute(verdict{kind: vDeny, rule: &plan.Rule{ID: frontingRuleID, Action: plan.ActionDeny,
		Reason: "the request's Host is not a name of the intercepted rule " + r.ID + " (domain fronting)"}})
	b.routes[name] = &routev3.RouteConfiguration{
		Name:             name,
		ValidateClusters: wrapperspb.Bool(false),
		VirtualHosts: []*routev3.VirtualHost{
			{Name: name, Domains: slices.Sorted(slices.Values(r.Hosts)), Routes: routes},
			{Name: "fronting", Domains: []string{"*"}, Routes: []*routev3.Route{fronting}},
		},
	}
	return name
}

// requestVerdict is what one request rule does, report mode applied as
// plan.DecideRequest applies it (the plan's or the host rule's mode).
func (b *sidecarBuilder) requestVerdict(host *plan.Rule, rr *plan.RequestRule) verdict {
	as := &plan.Rule{ID: rr.ID, Action: rr.Action, Redirect: rr.Redirect, Reason: rr.Reason, Mode: host.Mode}
	return verdictOf(b.p, as)
}

// requestRoute is one request rule as an Envoy route. A default matches
// every request.
func (b *sidecarBuilder) requestRoute(host *plan.Rule, rr *plan.RequestRule, isDefault bool) *routev3.Route {
	v := b.requestVerdict(host, rr)
	b.registerClusters(v)
	route := b.forwarding(httpRoute(v), v)
	if !isDefault {
		route.Match = requestMatch(rr)
	}
	return route
}

// forwarding points a route that lets the request through (allow, report)
// at the intercept upstream instead of the plaintext passthrough.
func (b *sidecarBuilder) forwarding(r *routev3.Route, v verdict) *routev3.Route {
	if v.kind == vAllow || v.kind == vReport {
		b.addCluster(interceptUpstream())
		r.Action = clusterAction(InterceptUpstreamCluster)
	}
	return r
}

// interceptUpstream re-originates TLS to the connection's original
// destination, with the request's Host (held to the rule's names by the
// route configuration) as SNI and as the name the certificate must carry,
// verified against the sidecar image's system roots; HTTP/2 or HTTP/1.1
// as the server's ALPN says.
func interceptUpstream() *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 InterceptUpstreamCluster,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST},
		LbPolicy:             clusterv3.Cluster_CLUSTER_PROVIDED,
		ConnectTimeout:       durationpb.New(connectTimeout),
		TransportSocket: &corev3.TransportSocket{
			Name: "envoy.transport_sockets.tls",
			ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(&tlsv3.UpstreamTlsContext{
				CommonTlsContext: &tlsv3.CommonTlsContext{
					ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
						TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: systemCABundle}},
					}},
				},
			})},
		},
		TypedExtensionProtocolOptions: map[string]*anypb.Any{
			"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": mustAny(&upstreamhttpv3.HttpProtocolOptions{
				UpstreamHttpProtocolOptions: &corev3.UpstreamHttpProtocolOptions{AutoSni: true, AutoSanValidation: true},
				UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_AutoConfig{AutoConfig: &upstreamhttpv3.HttpProtocolOptions_AutoHttpConfig{
					HttpProtocolOptions:  &corev3.Http1ProtocolOptions{},
					Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
				}},
			}),
		},
	}
}

// requestMatch is a request rule's conditions as an Envoy route match:
// the path on the route's path specifier (Envoy matches it without the
// query), methods on ":method", and one header matcher per header
// condition; all must hold.
func requestMatch(rr *plan.RequestRule) *routev3.RouteMatch {
	m := &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}
	if sm := rr.Path; sm != nil {
		switch {
		case sm.Regex != "":
			m.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: sm.Regex}}
		case sm.Prefix != "":
			m.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: sm.Prefix}
			m.CaseSensitive = wrapperspb.Bool(!sm.IgnoreCase)
		default:
			m.PathSpecifier = &routev3.RouteMatch_Path{Path: sm.Exact}
			m.CaseSensitive = wrapperspb.Bool(!sm.IgnoreCase)
		}
	}
	if len(rr.Methods) > 0 {
		quoted := make([]string, len(rr.Methods))
		for i, meth := range rr.Methods {
			quoted[i] = regexp.QuoteMeta(meth)
		}
		m.Headers = append(m.Headers, &routev3.HeaderMatcher{Name: ":method",
			HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: regexMatcher(strings.Join(quoted, "|"))}})
	}
	for _, hm := range rr.Headers {
		h := &routev3.HeaderMatcher{Name: hm.Name}
		switch {
		case hm.Absent:
			h.HeaderMatchSpecifier = &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}
			h.InvertMatch = true
		case hm.BasicUser != nil:
			h.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: regexMatcher(basicUserRegex(hm.BasicUser))}
			// The plan reads at most maxBasicChars of base64.
			m.Headers = append(m.Headers, &routev3.HeaderMatcher{Name: hm.Name,
				HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: regexMatcher(basicLengthRE)}})
		case hm.Value != nil:
			h.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: stringMatcher(hm.Value)}
		default:
			h.HeaderMatchSpecifier = &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}
		}
		m.Headers = append(m.Headers, h)
	}
	return m
}

// stringMatcher is a plan.StringMatch as Envoy's StringMatcher (the same
// semantics by the contract: a regex is a full match).
func stringMatcher(sm *plan.StringMatch) *matcherv3.StringMatcher {
	switch {
	case sm.Regex != "":
		return regexMatcher(sm.Regex)
	case sm.Prefix != "":
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: sm.Prefix}, IgnoreCase: sm.IgnoreCase}
	}
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: sm.Exact}, IgnoreCase: sm.IgnoreCase}
}

// pathNormalisation sets an intercepting HCM to normalise the path before
// routing as plan.NormalizePath does (see there, and the table the two
// share in policy/plan/testdata/normalize_path.json): escaped slashes
// refused, RFC 3986 normalisation by Envoy's canonicaliser, then runs of
// slashes merged. What NormalizePath refuses beyond Envoy's own refusals
// is denied by the first routes (malformedPathRoutes).
func pathNormalisation(h *hcmv3.HttpConnectionManager) {
	h.NormalizePath = wrapperspb.Bool(true)
	h.MergeSlashes = true
	h.PathWithEscapedSlashesAction = hcmv3.HttpConnectionManager_REJECT_REQUEST
}

// malformedPathRoutes deny, before any request rule (a rule without
// request rules does not look at the path), the paths
// plan.NormalizePath refuses that Envoy passes on to routing: not in origin
// form (":path" not starting with "/", e.g. "*"), holding a "%" that does
// not begin a valid escape in the path part (Envoy's canonicaliser copies
// such a "%" through), or a dot segment with parameters ("/..;x/", which
// Envoy keeps as a plain segment unless a runtime flag strips the
// parameters, and servers such as Tomcat read as ".."). Envoy itself
// refuses the rest (a NUL, a fragment, an escaped slash).
func (b *sidecarBuilder) malformedPathRoutes(host *plan.Rule) []*routev3.Route {
	guard := func(re string) *routev3.Route {
		r := b.requestRoute(host, &plan.MalformedPathRequestRule, true)
		// Any :path, "*" included (a prefix "/" would let it fall through).
		r.Match.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: ".*"}}
		r.Match.Headers = []*routev3.HeaderMatcher{{Name: ":path",
			HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: regexMatcher(re)}}}
		return r
	}
	return []*routev3.Route{
		guard(`[^/].*|`), // not in origin form
		guard(`[^?]*%(?:[0-9A-Fa-f]?(?:\?.*)?|[0-9A-Fa-f]?[^0-9A-Fa-f?].*)`), // an invalid escape before the query
		guard(`[^?]*[/\\](?:\.|%2[eE]){1,2};.*`),                             // a dot segment with parameters ("/..;x/")
	}
}
