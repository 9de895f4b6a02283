package review

import (
	"cmp"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/egressguard/egressguard/policy/plan"
)

// probeLabel is the label prepended to a wildcard's suffix to get a name
// the wildcard matches ("*.x.com" -> "egressguard-probe.x.com").
const probeLabel = "egressguard-probe"

// probeCollector turns the patterns of plans into concrete destinations:
// exact hosts as they are, a representative subdomain for each wildcard, a
// name no pattern names for "*", the network address and one host inside
// each CIDR; each with no port (a DNS lookup) and with every port that
// appears in a rule.
type probeCollector struct {
	hosts map[string]struct{}
	ips   map[netip.Addr]struct{}
	ports map[uint16]struct{}
	out   map[plan.Destination]struct{}
	bases map[*plan.Layer]bool
}

func newProbeCollector() *probeCollector {
	return &probeCollector{hosts: map[string]struct{}{}, ips: map[netip.Addr]struct{}{}, ports: map[uint16]struct{}{}, bases: map[*plan.Layer]bool{}}
}

func (c *probeCollector) addPlan(p *plan.Plan) {
	spec := p.Spec()
	rules := spec.Rules
	if b := p.Base(); b != nil {
		// The shared base layer's rules come first; visit them once.
		if c.bases[b] {
			rules = rules[b.Len():]
		}
		c.bases[b] = true
	}
	for i := range rules {
		r := &rules[i]
		for _, h := range r.Hosts {
			c.addHost(h, r.Ports)
		}
		for _, n := range r.CIDRs {
			c.addCIDR(n, r.Ports)
		}
	}
}

func (c *probeCollector) addHost(pattern string, ports []uint16) {
	for _, p := range ports {
		c.ports[p] = struct{}{}
	}
	switch {
	case pattern == "*":
		c.hosts["egressguard-probe.invalid"] = struct{}{}
	case strings.HasPrefix(pattern, "*."):
		c.hosts[probeLabel+pattern[1:]] = struct{}{}
	default:
		c.hosts[pattern] = struct{}{}
	}
}

func (c *probeCollector) addCIDR(s string, ports []uint16) {
	p, err := plan.ParsePrefix(s)
	if err != nil {
		return
	}
	for _, port := range ports {
		c.ports[port] = struct{}{}
	}
	a := p.Masked().Addr()
	c.ips[a] = struct{}{}
	if n := a.Next(); n.IsValid() && p.Contains(n) {
		c.ips[n] = struct{}{}
	}
}

// destinations returns the probes, deduplicated, in a stable order.
func (c *probeCollector) destinations() []plan.Destination {
	ports := slices.Sorted(maps.Keys(c.ports))
	ports = append([]uint16{0}, ports...)
	if !slices.Contains(ports, 443) {
		ports = append(ports, 443)
	}
	c.out = make(map[plan.Destination]struct{}, (len(c.hosts)+len(c.ips))*len(ports))
	out := make([]plan.Destination, 0, (len(c.hosts)+len(c.ips))*len(ports))
	for h := range c.hosts {
		for _, p := range ports {
			out = append(out, plan.Destination{Host: h, Port: p})
		}
	}
	for a := range c.ips {
		for _, p := range ports {
			out = append(out, plan.Destination{IP: a, Port: p})
		}
	}
	slices.SortFunc(out, func(a, b plan.Destination) int {
		return cmp.Or(strings.Compare(a.Host, b.Host), a.IP.Compare(b.IP), cmp.Compare(a.Port, b.Port))
	})
	for _, d := range out {
		c.out[d] = struct{}{}
	}
	return out
}

func (c *probeCollector) has(d plan.Destination) bool {
	_, ok := c.out[d]
	return ok
}
