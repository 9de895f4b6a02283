package xds

import (
	"fmt"
	"slices"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/egressguard/egressguard/policy/plan"
)

// HTTPRouteConfigName is the sidecar's one route configuration.
const HTTPRouteConfigName = "http"

// CellHeader carries a plaintext HTTP connection's destination cell,
// "port=<port|any>|ip=<CIDR group|other>", from its filter chain to the
// shared route configuration. The chain's HTTP connection manager sets it
// before routing (early header mutation, overwriting whatever the client
// sent) and the route configuration removes it before forwarding.
const CellHeader = "x-egressguard-cell"

// noCellRuleID names the fail-closed route of a cell-routed virtual host: a
// request that reaches it carries no known cell.
const noCellRuleID = "egressguard.no-cell"

func cellValue(port uint16, g ipGroup) string { return "port=" + portLabel(port) + "|ip=" + g.name }

// choice is what one destination port's host table answers for a host
// pattern of the merged route table: a rule's verdict, or no host rule at
// all (catchAll: the cell's CIDR rule or the default decides).
type choice struct {
	v        verdict
	catchAll bool
}

// routeLayout is how one route configuration covering some destination
// ports groups the host patterns of their tables: computed once, then
// counted (routeTables compares layouts) and built.
type routeLayout struct {
	ports []uint16
	// sameCatch: every cell of every port gives a name no rule lists the
	// same verdict (uniform); otherwise the catch-all routes on the cell.
	sameCatch bool
	uniform   verdict
	order     []*vgroup
	// size is the number of host routes the configuration will have.
	size int
}

// portChoice is what a pattern answers on one port, where that differs
// from the default port.
type portChoice struct {
	port uint16
	c    choice
}

// vgroup is a set of patterns that answer the same on every port: one
// virtual host.
type vgroup struct {
	base    choice
	diffs   []portChoice
	domains []string
}

// catchAllOf is what a name no host rule lists gets on a port in a cell.
func (b *sidecarBuilder) catchAllOf(tables map[uint16]table, port uint16, g ipGroup) verdict {
	if star, ok := tables[port].hosts["*"]; ok {
		return verdictOf(b.p, star)
	}
	return g.fallback
}

// layout groups the union of the ports' host patterns by what they answer
// on every port.
//
// Host rules beat CIDR rules, but Envoy picks the filter chain (and so the
// destination port and IP cell) before HTTP routing; and a virtual host,
// once picked, does not fall back to a less specific one. So a table
// covering several ports has the union of their host patterns, each
// virtual host answering what plan.Decide answers for its patterns on each
// port: one route when every port agrees (nearly always: a virtual host is
// then shared by every class using the rule), otherwise routes on the port
// part of CellHeader first and, where no host rule applies on a port, on
// the whole cell. The "*" catch-all does the same for names no rule lists.
// A cell-routed virtual host ends in a fail-closed deny.
func (b *sidecarBuilder) layout(ports []uint16, tables map[uint16]table, groups map[uint16][]ipGroup) *routeLayout {
	l := &routeLayout{ports: ports, sameCatch: true}
	first := true
	for _, port := range ports {
		for _, g := range groups[port] {
			v := b.catchAllOf(tables, port, g)
			if first {
				l.uniform, first = v, false
			}
			l.sameCatch = l.sameCatch && v == l.uniform
		}
	}

	// The union of host patterns, sorted.
	n := 0
	for _, port := range ports {
		n += len(tables[port].order)
	}
	union := make([]string, 0, n)
	for _, port := range ports {
		union = append(union, tables[port].order...)
	}
	slices.Sort(union)
	union = slices.Compact(union)

	choiceOf := func(port uint16, pattern string) choice {
		t := tables[port]
		if r, ok := t.hosts[pattern]; ok {
			return choice{v: verdictOf(b.p, r)}
		}
		if w, ok := t.enclosing(pattern); ok {
			return choice{v: verdictOf(b.p, t.hosts[w])}
		}
		if star, ok := t.hosts["*"]; ok {
			return choice{v: verdictOf(b.p, star)}
		}
		if l.sameCatch {
			return choice{v: l.uniform}
		}
		return choice{catchAll: true}
	}

	defaultPort := ports[len(ports)-1] // 0: every port no rule names
	// Patterns group by what they answer on every port; diffs (rare) are
	// keyed by their description, pointers included.
	type groupKey struct {
		base  choice
		diffs string
	}
	// Most patterns answer the same on every port: those group by choice
	// alone (a small key); the rest by choice and diffs.
	byChoice := make(map[choice]*vgroup, len(union))
	byKey := map[groupKey]*vgroup{}
	l.order = make([]*vgroup, 0, len(union))
	slab := make([]vgroup, 0, len(union)) // one allocation for the groups
	var key strings.Builder
	for _, pattern := range union {
		if pattern == "*" {
			continue
		}
		base := choiceOf(defaultPort, pattern)
		var diffs []portChoice
		for _, port := range ports[:len(ports)-1] {
			if c := choiceOf(port, pattern); c != base {
				diffs = append(diffs, portChoice{port, c})
			}
		}
		var g *vgroup
		if len(diffs) == 0 {
			g = byChoice[base]
		} else {
			key.Reset()
			for _, d := range diffs {
				fmt.Fprintf(&key, ";%d=%p|%d|%t", d.port, d.c.v.rule, d.c.v.kind, d.c.catchAll)
			}
			g = byKey[groupKey{base: base, diffs: key.String()}]
		}
		if g == nil {
			slab = append(slab, vgroup{base: base, diffs: diffs})
			g = &slab[len(slab)-1]
			if len(diffs) == 0 {
				byChoice[base] = g
			} else {
				byKey[groupKey{base: base, diffs: key.String()}] = g
			}
			l.order = append(l.order, g)
		}
		g.domains = append(g.domains, pattern)
	}
	for _, g := range l.order {
		for _, d := range g.diffs {
			if d.c.catchAll {
				l.size += len(groups[d.port])
			} else {
				l.size++
			}
		}
		if g.base.catchAll {
			l.size += len(groups[defaultPort]) + 1
		} else {
			l.size++
		}
	}
	return l
}

// routeTable builds the route configuration (named name, not yet added to
// the builder) of a layout, and reports whether it routes on CellHeader.
func (b *sidecarBuilder) routeTable(name string, l *routeLayout, tables map[uint16]table, groups map[uint16][]ipGroup) (*routev3.RouteConfiguration, bool) {
	ports := l.ports
	defaultPort := ports[len(ports)-1]
	// cellRoutes routes every cell of a port to its catch-all verdict.
	cellRoutes := func(port uint16) []*routev3.Route {
		var out []*routev3.Route
		for _, g := range groups[port] {
			v := b.catchAllOf(tables, port, g)
			b.registerClusters(v)
			out = append(out, withHeader(httpRoute(v), exactMatch(cellValue(port, g))))
		}
		return out
	}
	failClosed := func() *routev3.Route {
		return httpRoute(verdict{kind: vDeny, rule: &plan.Rule{ID: noCellRuleID, Action: plan.ActionDeny,
			Reason: "the request carries no destination cell (" + CellHeader + "); failing closed"}})
	}

	type named struct {
		name string
		vh   *routev3.VirtualHost
	}
	vhosts := make([]named, 0, len(l.order)+1)
	used := make(map[string]bool, len(l.order))
	for _, g := range l.order {
		b.registerClusters(g.base.v)
		for _, d := range g.diffs {
			b.registerClusters(d.c.v)
		}
		if len(g.diffs) == 0 && !g.base.catchAll {
			// The common case: one rule decides on every port. Shared by
			// every class and port using the rule (vhostCache).
			name := routeName(g.base.v)
			if used[name] {
				name += "@" + g.domains[0] // two rules with one ID
			}
			used[name] = true
			vh := b.vhc.get(vhostKey{rule: g.base.v.rule, kind: g.base.v.kind, name: name, domains: strings.Join(g.domains, ",")},
				func() *routev3.VirtualHost { return virtualHost(name, g.domains, g.base.v) }).vh
			vhosts = append(vhosts, named{name, vh})
			continue
		}
		var routes []*routev3.Route
		var parts []string
		for _, d := range g.diffs {
			if d.c.catchAll {
				routes = append(routes, cellRoutes(d.port)...)
				parts = append(parts, "port="+portLabel(d.port)+":cell")
				continue
			}
			routes = append(routes, withHeader(httpRoute(d.c.v), prefixMatch("port="+portLabel(d.port)+"|")))
			parts = append(parts, "port="+portLabel(d.port)+":"+routeName(d.c.v))
		}
		if g.base.catchAll {
			routes = append(routes, cellRoutes(defaultPort)...)
			routes = append(routes, failClosed())
			parts = append(parts, "cell")
		} else {
			routes = append(routes, httpRoute(g.base.v))
			parts = append(parts, routeName(g.base.v))
		}
		name := strings.Join(parts, ";")
		if used[name] {
			name += "@" + g.domains[0]
		}
		used[name] = true
		vhosts = append(vhosts, named{name, &routev3.VirtualHost{Name: name, Domains: g.domains, Routes: routes}})
	}
	slices.SortFunc(vhosts, func(a, c named) int { return strings.Compare(a.name, c.name) })

	rc := &routev3.RouteConfiguration{Name: name, ValidateClusters: wrapperspb.Bool(false), VirtualHosts: make([]*routev3.VirtualHost, 0, len(vhosts)+1)}
	for _, v := range vhosts {
		rc.VirtualHosts = append(rc.VirtualHosts, v.vh)
	}
	// A Host that is an address (numericHost) is no name: a "*" host rule
	// does not hold it, its cell's CIDR rule or the default does, as
	// plan.Decide decides on the connection's address. Such Hosts only
	// reach the catch-all (no host pattern ends in a number).
	var numeric []*routev3.Route
	for _, port := range ports {
		if _, star := tables[port].hosts["*"]; !star {
			continue
		}
		for _, g := range groups[port] {
			if v := b.catchAllOf(tables, port, g); v != g.fallback {
				b.registerClusters(g.fallback)
				r := withHeader(httpRoute(g.fallback), exactMatch(cellValue(port, g)))
				r.Match.Headers = append(r.Match.Headers, &routev3.HeaderMatcher{
					Name:                 ":authority",
					HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: regexMatcher(numericHost)},
				})
				numeric = append(numeric, r)
			}
		}
	}
	switch {
	case l.sameCatch && numeric == nil:
		b.registerClusters(l.uniform)
		rc.VirtualHosts = append(rc.VirtualHosts, virtualHost("catch-all", []string{"*"}, l.uniform))
	case l.sameCatch:
		b.registerClusters(l.uniform)
		rc.VirtualHosts = append(rc.VirtualHosts, &routev3.VirtualHost{Name: "catch-all", Domains: []string{"*"},
			Routes: append(numeric, httpRoute(l.uniform))})
	default:
		routes := numeric
		for _, port := range ports {
			routes = append(routes, cellRoutes(port)...)
		}
		routes = append(routes, failClosed())
		rc.VirtualHosts = append(rc.VirtualHosts, &routev3.VirtualHost{Name: "catch-all", Domains: []string{"*"}, Routes: routes})
	}
	cellRouted := !l.sameCatch
	if cellRouted || hasPortRoutes(rc) {
		cellRouted = true
		rc.RequestHeadersToRemove = []string{CellHeader}
	}
	return rc, cellRouted
}

// routeTables adds the sidecar's HTTP route configurations to the builder
// and returns, per destination port, the one its chains use and whether it
// routes on CellHeader. One table for every port is usually smallest; but
// where port-specific host rules would fall through to many distinct CIDR
// cells on the other ports, one table per port is smaller, and the smaller
// layout (counted in routes) is served.
func (b *sidecarBuilder) routeTables(ports []uint16, tables map[uint16]table, groups map[uint16][]ipGroup) map[uint16]portRoutes {
	out := make(map[uint16]portRoutes, len(ports))
	merged := b.layout(ports, tables, groups)
	if len(ports) > 1 {
		// Lay out both, build the smaller.
		perPort := make([]*routeLayout, len(ports))
		total := 0
		for i, port := range ports {
			perPort[i] = b.layout([]uint16{port}, tables, groups)
			total += perPort[i].size
		}
		if total < merged.size {
			for i, port := range ports {
				rc, routed := b.routeTable(HTTPRouteConfigName+"|port="+portLabel(port), perPort[i], tables, groups)
				b.routes[rc.Name] = rc
				out[port] = portRoutes{rc.Name, routed}
			}
			return out
		}
	}
	rc, routed := b.routeTable(HTTPRouteConfigName, merged, tables, groups)
	b.routes[rc.Name] = rc
	for _, port := range ports {
		out[port] = portRoutes{rc.Name, routed}
	}
	return out
}

// portRoutes is the route configuration of one destination port's chains.
type portRoutes struct {
	name       string
	cellRouted bool
}

func hasPortRoutes(rc *routev3.RouteConfiguration) bool {
	for _, vh := range rc.VirtualHosts {
		for _, r := range vh.Routes {
			if len(r.GetMatch().GetHeaders()) > 0 {
				return true
			}
		}
	}
	return false
}

func withHeader(r *routev3.Route, m *matcherv3.StringMatcher) *routev3.Route {
	r.Match.Headers = []*routev3.HeaderMatcher{{
		Name:                 CellHeader,
		HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: m},
	}}
	return r
}

func exactMatch(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}
}

func prefixMatch(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: s}}
}

// enclosing returns the most specific "*.suffix" pattern of the table that
// matches every name pattern matches (exact names: their parent wildcards;
// wildcards: shorter wildcards), as Envoy's domain and server-name matching
// and plan.Decide pick it.
func (t table) enclosing(pattern string) (string, bool) {
	rest := pattern
	if strings.HasPrefix(rest, "*.") {
		rest = rest[1:]
	} else if i := strings.IndexByte(rest, '.'); i >= 0 {
		rest = rest[i:]
		if w, ok := t.wild[rest]; ok {
			return w, true
		}
	} else {
		return "", false
	}
	for {
		i := strings.IndexByte(rest[1:], '.')
		if i < 0 {
			return "", false
		}
		rest = rest[i+1:]
		if w, ok := t.wild[rest]; ok {
			return w, true
		}
	}
}
