package xds

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	mutationrulesv3 "github.com/envoyproxy/go-control-plane/envoy/config/common/mutation_rules/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	fileaccesslogv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	celfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/filters/cel/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	httpinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/http_inspector/v3"
	origdstv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	netrbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	earlyhmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/http/early_header_mutation/header_mutation/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/egressguard/egressguard/policy/plan"
)

// Resource names and wire constants. Golden files and the admin tooling rely
// on them.
const (
	// OutboundListenerName is the sidecar's one outbound listener.
	OutboundListenerName = "egressguard_outbound"
	// PassthroughCluster forwards to the connection's original destination.
	PassthroughCluster = "egressguard_passthrough"
	// BlackholeCluster has no endpoints: denied TCP/TLS chains end there.
	BlackholeCluster = "egressguard_blackhole"
	// DenyCluster is the proxyless-gRPC deny target (EDS, no endpoints); the
	// fault filter aborts every RPC routed to it before a pick happens.
	DenyCluster = "egressguard_deny"
	// RuleHeader names the deciding rule on denied and redirected responses.
	RuleHeader = "x-egressguard-rule"
	// WouldDenyHeader names the report-mode rule that would have decided.
	WouldDenyHeader = "x-egressguard-would-deny"
	// DefaultOutboundPort is the sidecar's outbound port unless the node's
	// metadata or the config says otherwise.
	DefaultOutboundPort = 15001
	// DefaultAccessLogPath is where sidecars write decision records.
	DefaultAccessLogPath = "/dev/stdout"

	faultFilterName  = "envoy.filters.http.fault"
	routerFilterName = "envoy.filters.http.router"
	connectTimeout   = 5 * time.Second
	systemCABundle   = "/etc/ssl/certs/ca-certificates.crt"
)

// NodeSettings are the per-node inputs of a translation that are not policy.
type NodeSettings struct {
	// OutboundPort is the port iptables redirects outbound traffic to.
	OutboundPort uint32
	// AccessLogPath is the sidecar's decision log file.
	AccessLogPath string
	// ListenerFiltersTimeout bounds how long the TLS/HTTP inspectors wait for
	// the first client bytes; server-first protocols (SMTP) continue as raw
	// TCP after it.
	ListenerFiltersTimeout time.Duration
	// Certificates is the staging CA whose leaves intercepted HTTPS is
	// terminated with; nil: interception is not configured (see
	// intercept.go).
	Certificates Certificates
}

func (s NodeSettings) withDefaults() NodeSettings {
	if s.OutboundPort == 0 {
		s.OutboundPort = DefaultOutboundPort
	}
	if s.AccessLogPath == "" {
		s.AccessLogPath = DefaultAccessLogPath
	}
	if s.ListenerFiltersTimeout == 0 {
		s.ListenerFiltersTimeout = time.Second
	}
	return s
}

// Resources is one translation's output, each kind sorted by name.
type Resources struct {
	Listeners []*listenerv3.Listener
	Routes    []*routev3.RouteConfiguration
	Clusters  []*clusterv3.Cluster
	Endpoints []*endpointv3.ClusterLoadAssignment
	// Secrets are the interception leaves (SDS), only in the resources of
	// a sidecar whose class intercepts their host.
	Secrets []*tlsv3.Secret
}

func (r *Resources) sort() {
	slices.SortFunc(r.Listeners, func(a, b *listenerv3.Listener) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(r.Routes, func(a, b *routev3.RouteConfiguration) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(r.Clusters, func(a, b *clusterv3.Cluster) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(r.Endpoints, func(a, b *endpointv3.ClusterLoadAssignment) int {
		return strings.Compare(a.ClusterName, b.ClusterName)
	})
	slices.SortFunc(r.Secrets, func(a, b *tlsv3.Secret) int { return strings.Compare(a.Name, b.Name) })
}

// verdict is what an enforcer does for one rule, report mode applied.
type verdictKind uint8

const (
	vAllow verdictKind = iota
	vReport
	vDeny
	vRedirect
	// vIntercept marks an intercepted host pattern in the SNI tables: it
	// gets its own chain (interceptChain), decided per request.
	vIntercept
)

func (k verdictKind) String() string {
	return [...]string{"allow", "report", "deny", "redirect", "intercept"}[k]
}

type verdict struct {
	kind verdictKind
	rule *plan.Rule
	// note, when set, is the reason given instead of the rule's.
	note string
}

// reason is what a deny says.
func (v verdict) reason() string {
	if v.note != "" {
		return v.note
	}
	return v.rule.Reason
}

// verdictOf mirrors plan.(*Plan).decision: a report-mode rule (or plan)
// allows and records what it would have done. A rule with request-level
// rules is a deny (report: a would-deny) wherever requests cannot be seen
// (plaintext HTTP, proxyless gRPC); intercept chains decide it per request.
func verdictOf(p *plan.Plan, r *plan.Rule) verdict {
	report := p.Mode() == plan.ModeReport || r.Mode == plan.ModeReport
	switch {
	case r.Requests != nil && report:
		return verdict{kind: vReport, rule: r, note: noteNoRequests}
	case r.Requests != nil:
		return verdict{kind: vDeny, rule: r, note: noteNoRequests}
	case r.Action == plan.ActionAllow:
		return verdict{vAllow, r, ""}
	case report:
		return verdict{vReport, r, ""}
	case r.Action == plan.ActionRedirect && r.Redirect != nil && r.Redirect.Host != "":
		return verdict{vRedirect, r, ""}
	default:
		// A redirect without a target cannot be honoured: fail closed.
		return verdict{vDeny, r, ""}
	}
}

// strictness orders verdicts for the one place the sidecar cannot tell
// them apart (report and allow in one TLS fallback chain, see tlsFallback).
func (v verdict) strictness() int {
	switch v.kind {
	case vDeny, vRedirect:
		return 2
	case vReport:
		return 1
	}
	return 0
}

// table is a plan's effective match table for one destination port.
type table struct {
	hosts map[string]*plan.Rule
	cidrs map[netip.Prefix]*plan.Rule
	// wild maps the suffix of each "*.suffix" host pattern, dot included
	// (".paypal.com"), to the pattern, so a name's enclosing wildcards are
	// found by slicing it.
	wild map[string]string
	// order lists the host patterns ascending (Entries' order), so what is
	// built from them comes out sorted without sorting.
	order []string
}

// tableFor applies the port rule of plan.Decide: for one pattern, an entry
// whose port filter lists the port beats an any-port entry; entries for
// other ports do not apply. port 0 means "a port no entry names".
//
// IPv4 prefixes also cover the IPv6 addresses that embed them (mapped,
// compatible, NAT64 with the well-known, local-use and the plan's own
// prefixes, 6to4: plan.EmbeddingPrefixes), as Decide decides such an
// address as its IPv4 address before its IPv6 form (see embed).
func tableFor(p *plan.Plan, entries []plan.Entry, port uint16) (table, error) {
	t := table{hosts: map[string]*plan.Rule{}, cidrs: map[netip.Prefix]*plan.Rule{}, wild: map[string]string{}}
	specific := map[string]bool{}
	for _, e := range entries {
		if e.Port != 0 && e.Port != port {
			continue
		}
		key := e.Kind.String() + "|" + e.Pattern
		if specific[key] && e.Port == 0 {
			continue
		}
		if e.Port != 0 {
			specific[key] = true
		}
		switch e.Kind {
		case plan.EntryHost:
			if _, dup := t.hosts[e.Pattern]; !dup {
				t.order = append(t.order, e.Pattern)
			}
			t.hosts[e.Pattern] = e.Rule
			if strings.HasPrefix(e.Pattern, "*.") {
				t.wild[e.Pattern[1:]] = e.Pattern
			}
		case plan.EntryCIDR:
			pfx, err := netip.ParsePrefix(e.Pattern)
			if err != nil {
				return t, fmt.Errorf("rule %s: cidr %q: %w", e.Rule.ID, e.Pattern, err)
			}
			pfx = pfx.Masked()
			if pfx.Addr().Is4In6() {
				pfx = netip.PrefixFrom(pfx.Addr().Unmap(), pfx.Bits()-96).Masked()
			}
			t.cidrs[pfx] = e.Rule
		}
	}
	t.embed(p)
	return t, nil
}

// embed adds to the table, for every IPv4 prefix, the IPv6 prefixes whose
// addresses embed an address in it, decided by the same rule. Decide
// consults an embedding address's IPv4 form first and its IPv6 form only
// when no rule holds the IPv4 address, so a derived prefix replaces an
// equal explicit IPv6 prefix, and an explicit IPv6 prefix inside a derived
// one (every address of it embeds an IPv4 address some rule holds) is
// dropped. Where the derived prefixes of two IPv4 prefixes coincide (the
// RFC 6052 layouts that split an address around the "u" octet, see
// plan.EmbeddingPrefixes), the stricter verdict, then the longer IPv4
// prefix, decides: fail closed.
func (t *table) embed(p *plan.Plan) {
	type src struct {
		rule *plan.Rule
		v4   netip.Prefix
	}
	derived := map[netip.Prefix]src{}
	for pfx, r := range t.cidrs {
		if !pfx.Addr().Is4() {
			continue
		}
		for _, d := range plan.EmbeddingPrefixes(pfx, p.NAT64()) {
			old, dup := derived[d]
			if dup {
				ov, nv := verdictOf(p, old.rule).strictness(), verdictOf(p, r).strictness()
				if ov > nv || ov == nv && (old.v4.Bits() > pfx.Bits() || old.v4.Bits() == pfx.Bits() && old.rule.ID <= r.ID) {
					continue
				}
			}
			derived[d] = src{r, pfx}
		}
	}
	if len(derived) == 0 {
		return
	}
	for pfx := range t.cidrs {
		if pfx.Addr().Is4() || unembeddable.Contains(pfx.Addr()) && pfx.Bits() >= unembeddable.Bits() {
			continue
		}
		for bits := pfx.Bits() - 1; bits >= 0; bits-- {
			if _, ok := derived[netip.PrefixFrom(pfx.Addr(), bits).Masked()]; ok {
				delete(t.cidrs, pfx)
				break
			}
		}
	}
	for d, s := range derived {
		t.cidrs[d] = s.rule
	}
}

// unembeddable holds :: and ::1, which sit in the IPv4-compatible range
// but embed no IPv4 address (plan.EmbeddedIPv4).
var unembeddable = netip.MustParsePrefix("::/127")

// ipGroup is a set of destination prefixes decided by one CIDR rule; the
// group with no prefixes stands for every other address.
type ipGroup struct {
	name     string
	prefixes []netip.Prefix
	fallback verdict // what an unnamed destination in the group gets
	// other is the group of every address no CIDR rule names.
	other bool
}

func ipGroupsFor(p *plan.Plan, t table) []ipGroup {
	byRule := map[*plan.Rule][]netip.Prefix{}
	for pfx, r := range t.cidrs {
		byRule[r] = append(byRule[r], pfx)
	}
	groups := make([]ipGroup, 0, len(byRule)+1)
	for r, pfxs := range byRule {
		slices.SortFunc(pfxs, comparePrefix)
		groups = append(groups, ipGroup{name: "cidr:" + r.ID, prefixes: pfxs, fallback: verdictOf(p, r)})
	}
	slices.SortFunc(groups, func(a, b ipGroup) int { return strings.Compare(a.name, b.name) })
	other := ipGroup{name: "other", fallback: verdictOf(p, p.DefaultRule()), other: true}
	// Envoy keys a chain without prefix_ranges as 0.0.0.0/0 and ::/0
	// (filter_chain_manager_impl.cc, makeCidrListEntry): next to a CIDR
	// rule's 0.0.0.0/0 or ::/0 the two would share a trie node and Envoy
	// would pick one arbitrarily (envoyproxy/envoy issue 7341). Where a
	// rule claims a family's whole range, the other cell lists the
	// remaining family explicitly, or is left out.
	taken := [2]bool{}
	for pfx := range t.cidrs {
		if pfx.Bits() == 0 {
			taken[boolIndex(pfx.Addr().Is6())] = true
		}
	}
	if taken[0] || taken[1] {
		for i, all := range allAddresses {
			if !taken[i] {
				other.prefixes = append(other.prefixes, all)
			}
		}
		if len(other.prefixes) == 0 {
			return groups
		}
	}
	return append(groups, other)
}

// allAddresses are the IPv4 and IPv6 catch-all prefixes, in that order.
var allAddresses = [2]netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}

func boolIndex(b bool) int {
	if b {
		return 1
	}
	return 0
}

func comparePrefix(a, b netip.Prefix) int {
	return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
}

// portsOf lists the ports some entry names, ascending; 0 (every other port)
// comes last.
func portsOf(entries []plan.Entry) []uint16 {
	seen := map[uint16]bool{}
	var out []uint16
	for _, e := range entries {
		if e.Port != 0 && !seen[e.Port] {
			seen[e.Port] = true
			out = append(out, e.Port)
		}
	}
	slices.Sort(out)
	return append(out, 0)
}

// TranslateSidecar builds an Envoy sidecar's resources for one plan: the
// outbound listener, its route configurations and clusters. It is a pure
// function of its inputs; equal inputs give equal (proto.Equal) outputs.
//
// Layout of the listener's filter chains (Envoy matches destination port,
// then destination IP, then SNI, then transport and application protocol,
// most specific first at each step, without falling back to a less specific
// earlier step): for every port some rule names, and once for all other
// ports, and within that for every CIDR rule's prefixes and once for all
// other addresses:
//
//   - TLS, one chain per verdict class over the SNI names of the host table
//     (allow → original destination, report → original destination with
//     would-deny stats, deny and redirect → network RBAC deny; intercepted
//     hosts, TLS redirects included, get their own terminating chains when
//     a staging CA is configured, see intercept.go); CIDR cells leave out names their
//     no-SNI chain decides the same way (see chainsFor);
//   - TLS without a listed SNI: an unlisted name gets the "*" host rule,
//     the CIDR rule or the default, as plan.Decide; no usable name (no SNI,
//     or a trailing dot) gets the CIDR rule, or outside every CIDR rule the
//     plan's rule for unnamed TLS (plan.UnnamedTLS), split by an RBAC filter
//     on the requested server name where only one side denies (tlsGuard);
//   - plaintext HTTP (an HCM on the shared route table, told its cell
//     through CellHeader so host rules still beat CIDR rules, see
//     routeTable), and raw TCP (the CIDR rule or the plan default).
//
// A CIDR rule claiming a family's whole range (0.0.0.0/0, ::/0) takes that
// family from the "other" cell, which then lists the remaining family's
// range, so Envoy never holds a range-less chain and a catch-all chain in
// one trie node. Validate proves every listener free of such ties
// (CheckFilterChains).
func TranslateSidecar(p *plan.Plan, s NodeSettings) (*Resources, error) {
	return translateSidecar(p, s, newVHostCache(false))
}

// translateSidecar is TranslateSidecar with a virtual-host cache that may be
// shared across the classes of one policy version (the enforcer's path).
func translateSidecar(p *plan.Plan, s NodeSettings, vhc *vhostCache) (*Resources, error) {
	if p == nil {
		return nil, fmt.Errorf("xds: translate: nil plan")
	}
	s = s.withDefaults()
	b := &sidecarBuilder{
		p:        p,
		s:        s,
		clusters: map[string]*clusterv3.Cluster{},
		routes:   map[string]*routev3.RouteConfiguration{},
		vhc:      vhc,
		sni:      map[sniKey]map[verdictKind][]string{},
		secrets:  map[string]*tlsv3.Secret{},
		leafErr:  map[string]error{},
		unnamed:  verdictOf(p, p.UnnamedTLS()),
	}
	entries := p.Entries()
	if err := errors.Join(checkRuleIDs(entries), checkBasicUsers(p)); err != nil {
		return nil, fmt.Errorf("xds: translate: %w", err)
	}
	ports := portsOf(entries)
	tables := make(map[uint16]table, len(ports))
	groups := make(map[uint16][]ipGroup, len(ports))
	for _, port := range ports {
		t, err := tableFor(p, entries, port)
		if err != nil {
			return nil, fmt.Errorf("xds: translate: %w", err)
		}
		tables[port], groups[port] = t, ipGroupsFor(p, t)
	}
	rcs := b.routeTables(ports, tables, groups)
	var chains []*listenerv3.FilterChain
	for _, port := range ports {
		for _, g := range groups[port] {
			chains = append(chains, b.chainsFor(port, tables[port], g, rcs[port].name, rcs[port].cellRouted)...)
		}
	}
	b.addCluster(&clusterv3.Cluster{
		Name:                 PassthroughCluster,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST},
		LbPolicy:             clusterv3.Cluster_CLUSTER_PROVIDED,
		ConnectTimeout:       durationpb.New(connectTimeout),
	})
	b.addCluster(&clusterv3.Cluster{
		Name:                 BlackholeCluster,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:       durationpb.New(connectTimeout),
	})
	lis := &listenerv3.Listener{
		Name:             OutboundListenerName,
		Address:          socketAddress("0.0.0.0", s.OutboundPort),
		UseOriginalDst:   wrapperspb.Bool(true),
		TrafficDirection: corev3.TrafficDirection_OUTBOUND,
		ListenerFilters: []*listenerv3.ListenerFilter{
			listenerFilter("envoy.filters.listener.original_dst", &origdstv3.OriginalDst{}),
			listenerFilter("envoy.filters.listener.tls_inspector", &tlsinspectorv3.TlsInspector{}),
			listenerFilter("envoy.filters.listener.http_inspector", &httpinspectorv3.HttpInspector{}),
		},
		ListenerFiltersTimeout:           durationpb.New(s.ListenerFiltersTimeout),
		ContinueOnListenerFiltersTimeout: true,
		FilterChains:                     chains,
	}
	out := &Resources{Listeners: []*listenerv3.Listener{lis}}
	for _, r := range b.routes {
		out.Routes = append(out.Routes, r)
	}
	for _, c := range b.clusters {
		out.Clusters = append(out.Clusters, c)
	}
	for _, s := range b.secrets {
		out.Secrets = append(out.Secrets, s)
	}
	out.sort()
	return out, nil
}

// checkRuleIDs refuses rule IDs that cannot travel in an HTTP header
// (RuleHeader, CellHeader) or a log line: control characters.
func checkRuleIDs(entries []plan.Entry) error {
	var errs []error
	seen := map[*plan.Rule]bool{}
	for _, e := range entries {
		if seen[e.Rule] {
			continue
		}
		seen[e.Rule] = true
		if i := strings.IndexFunc(e.Rule.ID, func(r rune) bool { return r < 0x20 || r == 0x7f || r == utf8.RuneError }); i >= 0 {
			errs = append(errs, fmt.Errorf("rule %q: id has a control or invalid character at byte %d", e.Rule.ID, i))
		}
	}
	return errors.Join(errs...)
}

type sidecarBuilder struct {
	p        *plan.Plan
	s        NodeSettings
	clusters map[string]*clusterv3.Cluster
	routes   map[string]*routev3.RouteConfiguration
	vhc      *vhostCache
	sni      map[sniKey]map[verdictKind][]string
	// secrets are the SDS secrets of the intercepted patterns; leafErr
	// remembers each pattern's Leaf outcome.
	secrets map[string]*tlsv3.Secret
	leafErr map[string]error
	// unnamed decides TLS without a usable server name to an address no
	// CIDR rule names.
	unnamed verdict
}

// sniKey names one computation of sniNames: its result depends only on the
// port's host table, the cell's TLS fallback class and whether it prunes.
type sniKey struct {
	port     uint16
	fallback verdictKind
	prune    bool
}

func (b *sidecarBuilder) addCluster(c *clusterv3.Cluster) string {
	if _, ok := b.clusters[c.Name]; !ok {
		b.clusters[c.Name] = c
	}
	return c.Name
}

// virtualHost is a pure function of its arguments (it is shared across
// classes); the caller registers the sandbox cluster a redirect names.
func virtualHost(name string, domains []string, v verdict) *routev3.VirtualHost {
	return &routev3.VirtualHost{Name: name, Domains: domains, Routes: []*routev3.Route{httpRoute(v)}}
}

// routeName encodes the verdict for access logs: "<action>|<rule id>".
func routeName(v verdict) string {
	if v.kind == vAllow {
		return "allow|" + v.rule.ID
	}
	return v.kind.String() + "|" + v.rule.ID
}

// httpRoute is pure; for a redirect the caller registers the sandbox
// cluster (sidecarBuilder.sandboxCluster).
func httpRoute(v verdict) *routev3.Route {
	match := &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}
	r := &routev3.Route{Name: routeName(v), Match: match}
	switch v.kind {
	case vAllow:
		r.Action = clusterAction(PassthroughCluster)
	case vReport:
		r.Action = clusterAction(PassthroughCluster)
		r.ResponseHeadersToAdd = []*corev3.HeaderValueOption{header(WouldDenyHeader, v.rule.ID)}
	case vDeny:
		r.Action = &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{
			Status: 403,
			Body:   &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: DenyBody(v.rule.ID, v.reason())}},
		}}
		r.ResponseHeadersToAdd = []*corev3.HeaderValueOption{
			header(RuleHeader, v.rule.ID),
			header("content-type", "application/json"),
		}
	case vRedirect:
		rd := v.rule.Redirect
		port := redirectPort(rd)
		act := clusterAction(sandboxClusterName(rd))
		hostHdr := rd.Host
		if (rd.TLS && port != 443) || (!rd.TLS && port != 80) {
			hostHdr = joinHostPort(rd.Host, port)
		}
		act.Route.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: hostHdr}
		r.Action = act
		r.ResponseHeadersToAdd = []*corev3.HeaderValueOption{header(RuleHeader, v.rule.ID)}
	}
	return r
}

// DenyBody is the JSON body of an HTTP deny, as DESIGN.md specifies.
func DenyBody(ruleID, reason string) string {
	b, _ := json.Marshal(struct {
		BlockedBy string `json:"blocked_by"`
		Rule      string `json:"rule"`
		Reason    string `json:"reason"`
	}{"egressguard", ruleID, reason})
	return string(b)
}

func redirectPort(rd *plan.Redirect) uint32 {
	switch {
	case rd.Port != 0:
		return uint32(rd.Port)
	case rd.TLS:
		return 443
	}
	return 80
}

// sandboxClusterName names the sidecar cluster of a redirect target.
func sandboxClusterName(rd *plan.Redirect) string {
	name := "sandbox|" + joinHostPort(rd.Host, redirectPort(rd))
	if rd.TLS {
		name += "|tls"
	}
	return name
}

// sandboxCluster adds (once) the cluster of a redirect target and names it.
func (b *sidecarBuilder) sandboxCluster(rd *plan.Redirect) string {
	port := redirectPort(rd)
	name := sandboxClusterName(rd)
	if _, ok := b.clusters[name]; ok {
		return name
	}
	c := &clusterv3.Cluster{
		Name:           name,
		ConnectTimeout: durationpb.New(connectTimeout),
		LoadAssignment: singleEndpoint(name, rd.Host, port, ""),
	}
	if _, err := netip.ParseAddr(rd.Host); err == nil {
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}
	} else {
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_LOGICAL_DNS}
		c.DnsLookupFamily = clusterv3.Cluster_V4_PREFERRED
	}
	if rd.TLS {
		c.TransportSocket = &corev3.TransportSocket{
			Name: "envoy.transport_sockets.tls",
			ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(&tlsv3.UpstreamTlsContext{
				Sni: rd.Host,
				CommonTlsContext: &tlsv3.CommonTlsContext{
					ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
						TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: systemCABundle}},
						MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
							SanType: tlsv3.SubjectAltNameMatcher_DNS,
							Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: rd.Host}},
						}},
					}},
				},
			})},
		}
	}
	b.addCluster(c)
	return name
}

// chainsFor builds the filter chains of one (port, IP group) cell. rc is
// the port's route configuration; cellRouted says whether its catch-all
// routes on the cell header (see routeConfig).
func (b *sidecarBuilder) chainsFor(port uint16, t table, g ipGroup, rc string, cellRouted bool) []*listenerv3.FilterChain {
	base := func() *listenerv3.FilterChainMatch {
		m := &listenerv3.FilterChainMatch{}
		if port != 0 {
			m.DestinationPort = wrapperspb.UInt32(uint32(port))
		}
		for _, pfx := range g.prefixes {
			m.PrefixRanges = append(m.PrefixRanges, &corev3.CidrRange{
				AddressPrefix: pfx.Addr().String(),
				PrefixLen:     wrapperspb.UInt32(uint32(pfx.Bits())),
			})
		}
		return m
	}
	cell := "port=" + portLabel(port) + "|ip=" + g.name
	var chains []*listenerv3.FilterChain

	// TLS without a listed server name lands in one chain, whether it
	// names an unlisted host (a "*" host rule decides, else the cell's CIDR
	// rule or the default, as plan.Decide) or carries no usable name: no
	// SNI, one with a trailing dot, which Envoy's server-name lookup never
	// matches to a listed name (findFilterChainForServerName), or an
	// address (a numeric last label, a colon). A server name no host name
	// could be is refused first (malformedGuard). A
	// connection without a usable name is decided on its destination
	// address: the cell's CIDR rule, and outside every CIDR rule the plan's
	// rule for unnamed TLS (b.unnamed). Where the two disagree on denying,
	// a network RBAC filter keyed on the requested server name denies the
	// one side (tlsGuard).
	named, unnamed := g.fallback, g.fallback
	if star, ok := t.hosts["*"]; ok {
		named = verdictOf(b.p, star)
	}
	if g.other {
		unnamed = b.unnamed
	}
	tlsVerdict, guard := tlsFallback(named, unnamed)

	// TLS with a listed SNI, one chain per verdict class. In a CIDR cell, a
	// name whose verdict class equals what the cell's no-SNI chain does is
	// left out (it lands there with the same action, logged under the CIDR
	// rule) unless a listed wildcard of another class encloses it: Envoy
	// would then pick that wildcard. This keeps the listener from repeating
	// the whole host table in every CIDR cell. The "other" cell lists every
	// name, so outside production CIDRs a TLS log line never names a rule
	// that did not decide. namedKind is what the fallback chain does to a
	// named connection: names of that class may be left out.
	namedKind := tlsVerdict.kind
	if guard.rule != nil && !guard.unnamed {
		namedKind = vDeny
	}
	sk := sniKey{port: port, fallback: namedKind, prune: !g.other}
	sni, ok := b.sni[sk]
	if !ok {
		sni = b.sniNames(t, port, sk.fallback, sk.prune)
		b.sni[sk] = sni
	}
	for _, k := range []verdictKind{vAllow, vReport, vDeny} {
		names := sni[k]
		if len(names) == 0 {
			continue
		}
		m := base()
		m.ServerNames = names
		m.TransportProtocol = "tls"
		name := cell + "|tls-sni|" + k.String()
		chains = append(chains, &listenerv3.FilterChain{
			Name:             name,
			FilterChainMatch: m,
			Filters:          b.tcpFilters(name, verdict{kind: k}, true),
			Metadata:         chainMetadata(k, ""),
		})
	}
	for _, pattern := range sni[vIntercept] {
		chains = append(chains, b.interceptChain(base(), cell, pattern, t.hosts[pattern]))
	}

	m := base()
	m.TransportProtocol = "tls"
	name := cell + "|tls"
	chains = append(chains, &listenerv3.FilterChain{Name: name, FilterChainMatch: m,
		Filters:  slices.Concat([]*listenerv3.Filter{malformedGuard(name)}, guard.filters(name), b.tcpFilters(name, tlsVerdict, false)),
		Metadata: chainMetadata(tlsVerdict.kind, tlsVerdict.rule.ID)})

	// Plaintext HTTP: the shared route configuration; the chain tells it
	// which cell (destination port and IP group) the connection is in.
	m = base()
	m.TransportProtocol = "raw_buffer"
	m.ApplicationProtocols = []string{"http/1.0", "http/1.1", "h2c"}
	name = cell + "|http"
	header := ""
	if cellRouted {
		header = cellValue(port, g)
	}
	chains = append(chains, &listenerv3.FilterChain{
		Name:             name,
		FilterChainMatch: m,
		Filters:          []*listenerv3.Filter{networkFilter("envoy.filters.network.http_connection_manager", b.hcm(name, rc, header))},
	})

	// Raw TCP (and IP literals): no host name, so the CIDR rule or default.
	m = base()
	m.TransportProtocol = "raw_buffer"
	name = cell + "|tcp"
	chains = append(chains, &listenerv3.FilterChain{Name: name, FilterChainMatch: m, Filters: b.tcpFilters(name, g.fallback, false),
		Metadata: chainMetadata(g.fallback.kind, g.fallback.rule.ID)})
	return chains
}

// sniNames groups a host table's names by TLS verdict class (redirect is a
// deny), sorted; with prune, it leaves out names that the cell's no-SNI
// chain (class fallback) already decides the same way. A name may be left out only when
// the most specific listed wildcard that still encloses it has the same
// class, or none does; Envoy picks the most specific listed server name
// (exact, then the longest "*." suffix).
func (b *sidecarBuilder) sniNames(t table, port uint16, fallback verdictKind, prune bool) map[verdictKind][]string {
	kindOf := func(pattern string) (verdictKind, bool) {
		r, ok := t.hosts[pattern]
		if !ok {
			return 0, false
		}
		if b.intercepting(r) && interceptPort(port) {
			return vIntercept, true
		}
		k := verdictOf(b.p, r).kind
		if k == vRedirect {
			k = vDeny
		}
		return k, true
	}
	kept := make(map[string]bool, len(t.hosts))
	decided := make(map[string]bool, len(t.hosts))
	var keep func(pattern string) bool
	// enclosing is the class a name gets when it is not listed itself.
	enclosing := func(pattern string) verdictKind {
		rest := pattern
		if strings.HasPrefix(rest, "*.") {
			rest = rest[1:] // ".b.c": its enclosing suffixes start after
		} else if i := strings.IndexByte(rest, '.'); i >= 0 {
			rest = rest[i:] // ".b.c" of "a.b.c" is itself enclosing
			if w, ok := t.wild[rest]; ok && keep(w) {
				k, _ := kindOf(w)
				return k
			}
		} else {
			return fallback
		}
		for {
			i := strings.IndexByte(rest[1:], '.')
			if i < 0 {
				return fallback
			}
			rest = rest[i+1:]
			if w, ok := t.wild[rest]; ok && keep(w) {
				k, _ := kindOf(w)
				return k
			}
		}
	}
	keep = func(pattern string) bool {
		if !prune {
			return true
		}
		if decided[pattern] {
			return kept[pattern]
		}
		k, _ := kindOf(pattern)
		if k == vIntercept {
			// Each intercepted pattern has its own chain, whatever
			// encloses it.
			decided[pattern], kept[pattern] = true, true
			return true
		}
		res := k != enclosing(pattern)
		decided[pattern], kept[pattern] = true, res
		return res
	}
	out := map[verdictKind][]string{}
	for _, pattern := range t.order { // ascending, so each list is sorted
		if pattern == "*" || !keep(pattern) {
			continue
		}
		k, _ := kindOf(pattern)
		out[k] = append(out[k], pattern)
	}
	return out
}

// chainMetadata records a TCP/TLS chain's decision for config dumps and
// tooling: filter_metadata["egressguard"] = {action, rule}. SNI-grouped
// chains name no single rule.
func chainMetadata(k verdictKind, rule string) *corev3.Metadata {
	fields := map[string]*structpb.Value{"action": structpb.NewStringValue(k.String())}
	if rule != "" {
		fields["rule"] = structpb.NewStringValue(rule)
	}
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"egressguard": {Fields: fields}}}
}

func portLabel(port uint16) string {
	if port == 0 {
		return "any"
	}
	return strconv.Itoa(int(port))
}

// registerClusters adds the cluster a verdict's HTTP route names.
func (b *sidecarBuilder) registerClusters(v verdict) {
	if v.kind == vRedirect {
		b.sandboxCluster(v.rule.Redirect)
	}
}

// hcm is a filter chain's HTTP connection manager. A non-empty cell is
// written into CellHeader before routing.
func (b *sidecarBuilder) hcm(statName, routeName, cell string) *hcmv3.HttpConnectionManager {
	h := routedHCM(statPrefix("egressguard_http", statName), routeName, b.httpAccessLog())
	if cell != "" {
		h.EarlyHeaderMutationExtensions = []*corev3.TypedExtensionConfig{{
			Name: "envoy.http.early_header_mutation.header_mutation",
			TypedConfig: mustAny(&earlyhmv3.HeaderMutation{Mutations: []*mutationrulesv3.HeaderMutation{{
				Action: &mutationrulesv3.HeaderMutation_Append{Append: header(CellHeader, cell)},
			}}}),
		}}
	}
	return h
}

// routedHCM is an HTTP connection manager routing with the route
// configuration routeName (over ADS), the port and a trailing dot stripped
// from the Host first, logging with log.
func routedHCM(stat, routeName string, log *accesslogv3.AccessLog) *hcmv3.HttpConnectionManager {
	return &hcmv3.HttpConnectionManager{
		StatPrefix: stat,
		CodecType:  hcmv3.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource:    adsConfigSource(),
			RouteConfigName: routeName,
		}},
		HttpFilters:          []*hcmv3.HttpFilter{httpFilter(routerFilterName, &routerv3.Router{})},
		StripPortMode:        &hcmv3.HttpConnectionManager_StripAnyHostPort{StripAnyHostPort: true},
		StripTrailingHostDot: true,
		AccessLog:            []*accesslogv3.AccessLog{log},
	}
}

// httpAccessLog writes one JSON line per request whose route is not a plain
// allow: the route name carries "<action>|<rule id>".
func (b *sidecarBuilder) httpAccessLog() *accesslogv3.AccessLog {
	return b.routeAccessLog(map[string]string{
		"decision":    "%ROUTE_NAME%",
		"authority":   "%REQ(:AUTHORITY)%",
		"method":      "%REQ(:METHOD)%",
		"status":      "%RESPONSE_CODE%",
		"upstream":    "%UPSTREAM_HOST%",
		"cluster":     "%UPSTREAM_CLUSTER%",
		"destination": "%DOWNSTREAM_LOCAL_ADDRESS%",
	})
}

// routeAccessLog is an HTTP connection manager's access log of the given
// fields, for requests whose route name does not start with "allow|".
func (b *sidecarBuilder) routeAccessLog(fields map[string]string) *accesslogv3.AccessLog {
	return &accesslogv3.AccessLog{
		Name: "envoy.access_loggers.file",
		Filter: &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_ExtensionFilter{
			ExtensionFilter: &accesslogv3.ExtensionFilter{
				Name: "envoy.access_loggers.extension_filters.cel",
				ConfigType: &accesslogv3.ExtensionFilter_TypedConfig{TypedConfig: mustAny(&celfilterv3.ExpressionFilter{
					Expression: `!xds.route_name.startsWith("allow|")`,
				})},
			},
		}},
		ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: mustAny(fileLog(b.s.AccessLogPath, fields))},
	}
}

// tcpFilters ends a TCP/TLS chain: allow and report pass through to the
// original destination, redirect goes to the sandbox, deny is a network RBAC
// deny (counted in <stat_prefix>rbac.denied) in front of the blackhole.
// Chains grouped by SNI carry no single rule: grouped is true there.
func (b *sidecarBuilder) tcpFilters(chain string, v verdict, grouped bool) []*listenerv3.Filter {
	action, rule := v.kind.String(), ""
	if !grouped {
		rule = v.rule.ID
	}
	prefix := statPrefix("egressguard_"+action, chain)
	var filters []*listenerv3.Filter
	cluster := PassthroughCluster
	switch v.kind {
	case vDeny:
		policy := "deny-sni"
		if !grouped {
			policy = rule
		}
		filters = append(filters, networkFilter("envoy.filters.network.rbac", &netrbacv3.RBAC{
			StatPrefix: prefix + ".",
			Rules: &rbacv3.RBAC{Action: rbacv3.RBAC_DENY, Policies: map[string]*rbacv3.Policy{policy: {
				Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_Any{Any: true}}},
				Principals:  []*rbacv3.Principal{{Identifier: &rbacv3.Principal_Any{Any: true}}},
			}}},
		}))
		cluster = BlackholeCluster
	case vRedirect:
		cluster = b.sandboxCluster(v.rule.Redirect)
	}
	tp := &tcpproxyv3.TcpProxy{
		StatPrefix:       prefix,
		ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: cluster},
	}
	if v.kind != vAllow {
		tp.AccessLog = []*accesslogv3.AccessLog{{
			Name: "envoy.access_loggers.file",
			ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: mustAny(fileLog(b.s.AccessLogPath, map[string]string{
				"decision":    action + "|" + rule,
				"chain":       chain,
				"sni":         "%REQUESTED_SERVER_NAME%",
				"destination": "%DOWNSTREAM_LOCAL_ADDRESS%",
				"upstream":    "%UPSTREAM_HOST%",
				"bytes_sent":  "%BYTES_SENT%",
			}))},
		}}
	}
	return append(filters, networkFilter("envoy.filters.network.tcp_proxy", tp))
}

var statUnsafe = regexp.MustCompile(`[^a-zA-Z0-9_.-]+`)

func statPrefix(kind, chain string) string {
	return kind + "." + strings.Trim(statUnsafe.ReplaceAllString(chain, "_"), "_")
}

func fileLog(path string, fields map[string]string) *fileaccesslogv3.FileAccessLog {
	st := &structpb.Struct{Fields: map[string]*structpb.Value{
		"egressguard": structpb.NewStringValue("sidecar"),
		"time":        structpb.NewStringValue("%START_TIME%"),
		"source":      structpb.NewStringValue("%DOWNSTREAM_REMOTE_ADDRESS%"),
	}}
	for k, v := range fields {
		st.Fields[k] = structpb.NewStringValue(v)
	}
	return &fileaccesslogv3.FileAccessLog{
		Path: path,
		AccessLogFormat: &fileaccesslogv3.FileAccessLog_LogFormat{LogFormat: &corev3.SubstitutionFormatString{
			Format: &corev3.SubstitutionFormatString_JsonFormat{JsonFormat: st},
		}},
	}
}

// Helpers shared by both translations.

// mustAny packs m deterministically (map fields in key order), so equal
// translations give equal bytes and equal resource versions, on every run
// and every replica.
func mustAny(m proto.Message) *anypb.Any {
	a := &anypb.Any{}
	if err := anypb.MarshalFrom(a, m, proto.MarshalOptions{Deterministic: true}); err != nil {
		// Only reachable with a nil or unregistered message: a programming error.
		panic(fmt.Sprintf("xds: pack %T: %v", m, err))
	}
	return a
}

func adsConfigSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}

func socketAddress(host string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       host,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

func singleEndpoint(cluster, host string, port uint32, hostname string) *endpointv3.ClusterLoadAssignment {
	return &endpointv3.ClusterLoadAssignment{
		ClusterName: cluster,
		Endpoints: []*endpointv3.LocalityLbEndpoints{{
			// grpc-go rejects a locality without an ID and ignores one
			// without a weight.
			Locality:            &corev3.Locality{Region: "egressguard"},
			LoadBalancingWeight: wrapperspb.UInt32(1),
			LbEndpoints: []*endpointv3.LbEndpoint{{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
					Address:  socketAddress(host, port),
					Hostname: hostname,
				}},
			}},
		}},
	}
}

func listenerFilter(name string, m proto.Message) *listenerv3.ListenerFilter {
	return &listenerv3.ListenerFilter{Name: name, ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(m)}}
}

func networkFilter(name string, m proto.Message) *listenerv3.Filter {
	return &listenerv3.Filter{Name: name, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(m)}}
}

func httpFilter(name string, m proto.Message) *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{Name: name, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(m)}}
}

func clusterAction(cluster string) *routev3.Route_Route {
	return &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}}}
}

func header(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: k, Value: v},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

func joinHostPort(host string, port uint32) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]:" + strconv.Itoa(int(port))
	}
	return host + ":" + strconv.Itoa(int(port))
}
