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

// routeTable builds the one HTTP route configuration every plaintext HTTP
// filter chain uses, and reports whether its routes depend on CellHeader.
//
// Host rules beat CIDR rules, but Envoy picks the filter chain (and so the
// destination port and IP cell) before HTTP routing; and a virtual host,
// once picked, does not fall back to a less specific one. So the table is
// the union of every port's host patterns, each virtual host answering
// what plan.Decide answers for its patterns on each port: one route when
// every port agrees (nearly always: a virtual host is then shared by every
// class using the rule), otherwise routes on the port part of CellHeader
// first and, where no host rule applies on a port, on the whole cell. The
// "*" catch-all does the same for names no rule lists. A cell-routed
// virtual host ends in a fail-closed deny.
//
// It returns the route configuration (named name, not yet added to the
// builder), whether it routes on CellHeader, and its number of host routes
// (the size measure routeTables compares).
//
// With sizeOnly it only counts: it returns a nil configuration and the
// number of host routes it would have.
func (b *sidecarBuilder) routeTable(name string, ports []uint16, tables map[uint16]table, groups map[uint16][]ipGroup, sizeOnly bool) (*routev3.RouteConfiguration, bool, int) {
	// What a name no host rule lists gets, per port and cell.
	catchAllOf := func(port uint16, g ipGroup) verdict {
		if star, ok := tables[port].hosts["*"]; ok {
			return verdictOf(b.p, star)
		}
		return g.fallback
	}
	var uniform *verdict
	sameCatch := true
	for _, port := range ports {
		for _, g := range groups[port] {
			v := catchAllOf(port, g)
			if uniform == nil {
				uniform = &v
			}
			sameCatch = sameCatch && v == *uniform
		}
	}
	cellRouted := !sameCatch

	// The union of host patterns, sorted.
	var union []string
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
		if sameCatch {
			return choice{v: *uniform}
		}
		return choice{catchAll: true}
	}

	type portChoice struct {
		port uint16
		c    choice
	}
	type vgroup struct {
		base    choice
		diffs   []portChoice
		domains []string
	}
	defaultPort := ports[len(ports)-1] // 0: every port no rule names
	// Patterns group by what they answer on every port; diffs (rare) are
	// keyed by their description, pointers included.
	type groupKey struct {
		base  choice
		diffs string
	}
	byKey := map[groupKey]*vgroup{}
	var order []*vgroup
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
		k := groupKey{base: base}
		if len(diffs) > 0 {
			key.Reset()
			for _, d := range diffs {
				fmt.Fprintf(&key, ";%d=%p|%d|%t", d.port, d.c.v.rule, d.c.v.kind, d.c.catchAll)
			}
			k.diffs = key.String()
		}
		g, ok := byKey[k]
		if !ok {
			g = &vgroup{base: base, diffs: diffs}
			byKey[k] = g
			order = append(order, g)
		}
		g.domains = append(g.domains, pattern)
	}
	if sizeOnly {
		size := 0
		for _, g := range order {
			for _, d := range g.diffs {
				if d.c.catchAll {
					size += len(groups[d.port])
				} else {
					size++
				}
			}
			if g.base.catchAll {
				size += len(groups[defaultPort]) + 1
			} else {
				size++
			}
		}
		return nil, cellRouted, size
	}

	// cellRoutes routes every cell of a port to its catch-all verdict.
	cellRoutes := func(port uint16) []*routev3.Route {
		var out []*routev3.Route
		for _, g := range groups[port] {
			v := catchAllOf(port, g)
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
	vhosts := make([]named, 0, len(order)+1)
	used := map[string]bool{}
	for _, g := range order {
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

	rc := &routev3.RouteConfiguration{Name: name, ValidateClusters: wrapperspb.Bool(false)}
	size := 0
	for _, v := range vhosts {
		rc.VirtualHosts = append(rc.VirtualHosts, v.vh)
		size += len(v.vh.Routes)
	}
	if sameCatch {
		b.registerClusters(*uniform)
		rc.VirtualHosts = append(rc.VirtualHosts, virtualHost("catch-all", []string{"*"}, *uniform))
	} else {
		var routes []*routev3.Route
		for _, port := range ports {
			routes = append(routes, cellRoutes(port)...)
		}
		routes = append(routes, failClosed())
		rc.VirtualHosts = append(rc.VirtualHosts, &routev3.VirtualHost{Name: "catch-all", Domains: []string{"*"}, Routes: routes})
	}
	if cellRouted || hasPortRoutes(rc) {
		cellRouted = true
		rc.RequestHeadersToRemove = []string{CellHeader}
	}
	return rc, cellRouted, size
}

// routeTables adds the sidecar's HTTP route configurations to the builder
// and returns, per destination port, the one its chains use and whether it
// routes on CellHeader. One table for every port (routeTable) is usually
// smallest; but where port-specific host rules would fall through to many
// distinct CIDR cells on the other ports, one table per port is smaller,
// and the smaller layout (counted in routes) is served.
func (b *sidecarBuilder) routeTables(ports []uint16, tables map[uint16]table, groups map[uint16][]ipGroup) map[uint16]portRoutes {
	out := make(map[uint16]portRoutes, len(ports))
	if len(ports) > 1 {
		// Count both layouts, build the smaller.
		_, _, size := b.routeTable(HTTPRouteConfigName, ports, tables, groups, true)
		total := 0
		for _, port := range ports {
			_, _, n := b.routeTable("", []uint16{port}, tables, groups, true)
			total += n
		}
		if total < size {
			for _, port := range ports {
				rc, routed, _ := b.routeTable(HTTPRouteConfigName+"|port="+portLabel(port), []uint16{port}, tables, groups, false)
				b.routes[rc.Name] = rc
				out[port] = portRoutes{rc.Name, routed}
			}
			return out
		}
	}
	merged, routed, _ := b.routeTable(HTTPRouteConfigName, ports, tables, groups, false)
	b.routes[merged.Name] = merged
	for _, port := range ports {
		out[port] = portRoutes{merged.Name, routed}
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
