package plan

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/gaissmai/bart"
)

// noRule marks an empty slot in a hostEntry.
const noRule = -1

// portRef is a rule that applies to one port only.
type portRef struct {
	port uint16
	rule int32
}

// hostEntry holds the rules attached to one host pattern: at most one per
// port and at most one for any port (the earliest rule wins).
type hostEntry struct {
	any   int32
	ports []portRef
	// dns is the first rule whose port filter names only NameBlindPorts:
	// DNS decides it (see DNSHeld).
	dns int32
}

// pick returns the rule for port: a port-specific rule first, then the
// any-port rule. Port 0 (unknown) sees the any-port rule, except for a DNS
// lookup (dns), which sees a DNS-held rule first, as a port-specific one.
func (e *hostEntry) pick(port uint16, dns bool) int32 {
	if port != 0 {
		for _, p := range e.ports {
			if p.port == port {
				return p.rule
			}
		}
	}
	if dns && e.dns != noRule {
		return e.dns
	}
	return e.any
}

// Layer is a compiled, immutable set of rules. A catalog-wide Layer is
// compiled once per policy version and shared by the plans of every
// workload class that includes it.
type Layer struct {
	rules []Rule
	// exact is keyed by the full canonical name, wild by the suffix after
	// "*." ("" for the pattern "*").
	exact map[string]hostEntry
	wild  map[string]hostEntry
	// wildLabels has bit n set when some wildcard suffix has n labels (0 for
	// "*", 63 for 63 or more), so lookups skip suffix lengths no pattern has.
	wildLabels uint64
	// ipAny holds CIDR rules without a port filter; ipPort those with one,
	// one table per port.
	ipAny       *bart.Table[int32]
	ipPort      map[uint16]*bart.Table[int32]
	fingerprint string
}

// CompileLayer validates rules and builds their lookup tables. The input is
// not modified; errors name the rule by index and ID and the offending field,
// and all problems are reported at once.
func CompileLayer(rules []Rule) (*Layer, error) {
	l := &Layer{
		rules: make([]Rule, len(rules)),
		exact: make(map[string]hostEntry),
		wild:  make(map[string]hostEntry),
		ipAny: new(bart.Table[int32]),
	}
	var errs []error
	ids := make(map[string]int, len(rules))
	for i := range rules {
		r, err := normalizeRule(&rules[i])
		if err != nil {
			errs = append(errs, fmt.Errorf("rules[%d] (id %q): %w", i, rules[i].ID, err))
			continue
		}
		if j, dup := ids[r.ID]; dup {
			errs = append(errs, fmt.Errorf("rules[%d]: id %q is already used by rules[%d]", i, r.ID, j))
			continue
		}
		ids[r.ID] = i
		l.rules[i] = r
		l.index(int32(i))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	sum := sha256.New()
	if err := json.NewEncoder(sum).Encode(l.rules); err != nil {
		return nil, fmt.Errorf("fingerprint rules: %w", err)
	}
	l.fingerprint = hex.EncodeToString(sum.Sum(nil))
	return l, nil
}

// Len is the number of rules in the layer.
func (l *Layer) Len() int {
	if l == nil {
		return 0
	}
	return len(l.rules)
}

// Fingerprint is a content hash of the layer's rules.
func (l *Layer) Fingerprint() string {
	if l == nil {
		return ""
	}
	return l.fingerprint
}

func (l *Layer) index(i int32) {
	r := &l.rules[i]
	for _, h := range r.Hosts {
		m, key := l.exact, h
		switch {
		case h == "*":
			m, key = l.wild, ""
			l.wildLabels |= 1
		case strings.HasPrefix(h, "*."):
			m, key = l.wild, h[2:]
			l.wildLabels |= labelBit(strings.Count(key, ".") + 1)
		}
		e, ok := m[key]
		if !ok {
			e = hostEntry{any: noRule, dns: noRule}
		}
		if e.dns == noRule && h != "*" && DNSHeld(r) {
			e.dns = i
		}
		if len(r.Ports) == 0 {
			if e.any == noRule {
				e.any = i
			}
		} else {
			for _, p := range r.Ports {
				if !slices.ContainsFunc(e.ports, func(x portRef) bool { return x.port == p }) {
					e.ports = append(e.ports, portRef{port: p, rule: i})
				}
			}
		}
		m[key] = e
	}
	for _, c := range r.CIDRs {
		pfx := netip.MustParsePrefix(c) // canonical: validated by normalizeRule
		tables := []*bart.Table[int32]{l.ipAny}
		if len(r.Ports) > 0 {
			tables = tables[:0]
			if l.ipPort == nil {
				l.ipPort = make(map[uint16]*bart.Table[int32])
			}
			for _, p := range r.Ports {
				t := l.ipPort[p]
				if t == nil {
					t = new(bart.Table[int32])
					l.ipPort[p] = t
				}
				tables = append(tables, t)
			}
		}
		for _, t := range tables {
			if _, exists := t.Get(pfx); !exists {
				t.Insert(pfx, i)
			}
		}
	}
}

// labelBit is the wildLabels bit of a suffix with n labels.
func labelBit(n int) uint64 { return 1 << min(n, 63) }

// normalizeRule returns a validated copy of r with canonical host patterns
// and CIDRs.
func normalizeRule(in *Rule) (Rule, error) {
	r := *in
	var errs []error
	if r.ID == "" {
		errs = append(errs, errors.New("id: must not be empty"))
	}
	if r.Action > ActionRedirect {
		errs = append(errs, fmt.Errorf("action: unknown action %d", r.Action))
	}
	if r.Mode > ModeReport {
		errs = append(errs, fmt.Errorf("mode: unknown mode %d", r.Mode))
	}
	if len(r.Hosts) == 0 && len(r.CIDRs) == 0 {
		errs = append(errs, errors.New("hosts, cidrs: a rule must match at least one host or CIDR"))
	}
	r.Hosts = make([]string, 0, len(in.Hosts))
	for j, h := range in.Hosts {
		n, err := NormalizeHost(h)
		if err != nil {
			errs = append(errs, fmt.Errorf("hosts[%d]: %w", j, err))
			continue
		}
		r.Hosts = append(r.Hosts, n)
	}
	r.CIDRs = make([]string, 0, len(in.CIDRs))
	for j, c := range in.CIDRs {
		pfx, err := ParsePrefix(c)
		if err != nil {
			errs = append(errs, fmt.Errorf("cidrs[%d]: %w", j, err))
			continue
		}
		r.CIDRs = append(r.CIDRs, pfx.String())
	}
	r.Ports = slices.Clone(in.Ports)
	for j, p := range r.Ports {
		if p == 0 {
			errs = append(errs, fmt.Errorf("ports[%d]: port 0 is not a port", j))
		}
	}
	if t, err := normalizeRedirect(r.Action, r.Redirect, true); err != nil {
		errs = append(errs, err)
	} else {
		r.Redirect = t
	}
	if in.Requests != nil {
		rp, err := normalizeRequests(r.ID, in.Requests)
		if err != nil {
			errs = append(errs, err)
		}
		r.Requests = rp
	}
	return r, errors.Join(errs...)
}

// normalizeRedirect checks a rule's redirect against its action and
// returns the target with its host in canonical form. allowIP admits a
// sandbox addressed by IP (host rules); a request rule's sandbox is
// re-originated over TLS with its own SNI, so it must be a name.
func normalizeRedirect(a Action, in *Redirect, allowIP bool) (*Redirect, error) {
	switch {
	case a == ActionRedirect && (in == nil || in.Host == ""):
		return in, errors.New("redirect.host: a redirect rule needs a target host")
	case a != ActionRedirect && in != nil:
		return in, fmt.Errorf("redirect: set on a rule whose action is %s", a)
	case a != ActionRedirect:
		return nil, nil
	}
	t := *in
	if ip, err := netip.ParseAddr(t.Host); err == nil && allowIP {
		t.Host = ip.Unmap().String()
		return &t, nil
	}
	h, err := NormalizeHost(t.Host)
	if err != nil || strings.HasPrefix(h, "*") {
		if allowIP {
			return in, fmt.Errorf("redirect.host: %q is neither a host name nor an IP address", t.Host)
		}
		return in, fmt.Errorf("redirect.host: %q is not a host name", t.Host)
	}
	t.Host = h
	return &t, nil
}

// ParsePrefix parses a CIDR or a bare IP address (as a full-length prefix)
// and returns it masked, with IPv4-mapped IPv6 addresses unmapped.
func ParsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is neither a CIDR nor an IP address", s)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR: %w", s, err)
	}
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// hostRule looks a name (or, when wild, a wildcard suffix) up without
// allocating: the compiler does not copy a []byte converted to string inside
// a map index expression.
func (l *Layer) hostRule(key []byte, port uint16, wild, dns bool) int32 {
	m := l.exact
	if wild {
		m = l.wild
	}
	if e, ok := m[string(key)]; ok {
		return e.pick(port, dns)
	}
	return noRule
}

// ipRule returns the longest-prefix rule for ip and port, and the prefix
// length it matched at (-1 when nothing matched). A port-specific prefix
// wins over an any-port prefix of the same length.
func (l *Layer) ipRule(ip netip.Addr, port uint16) (int32, int) {
	pfx := netip.PrefixFrom(ip, ip.BitLen())
	best, bits := int32(noRule), -1
	if port != 0 && l.ipPort != nil {
		if t := l.ipPort[port]; t != nil {
			if lpm, v, ok := t.LookupPrefixLPM(pfx); ok {
				best, bits = v, lpm.Bits()
			}
		}
	}
	if lpm, v, ok := l.ipAny.LookupPrefixLPM(pfx); ok && lpm.Bits() > bits {
		best, bits = v, lpm.Bits()
	}
	return best, bits
}
