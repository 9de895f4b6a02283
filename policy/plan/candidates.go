package plan

import (
	"bytes"
	"cmp"
	"fmt"
	"net/netip"
	"slices"
)

// Candidate is one pattern of a plan that matches a destination's name or
// address, with the rule attached to it and why it did or did not decide.
type Candidate struct {
	Kind EntryKind
	// Pattern is the rule's pattern in canonical form ("api.stripe.com",
	// "*.stripe.com", "*", "10.20.0.0/16").
	Pattern string
	// Port is the port filter this candidate stands for (0: any port).
	Port uint16
	Rule *Rule
	// Overlay is set when the rule comes from the class overlay rather
	// than the shared base layer.
	Overlay bool
	// Won is set on the one candidate that decides (none when the plan's
	// default applies): the rule Decide returns.
	Won bool
	// Why says, in words, why the candidate won or lost.
	Why string
}

// Candidates answers explain's question: which rules could match d, in
// precedence order, and why each lost. It walks the same tables Decide
// does, in the order Decide consults them (see the package comment):
// host patterns from the exact name through longer to shorter wildcard
// suffixes to "*", then CIDRs from the longest prefix down; on one pattern
// a matching port filter first, the overlay before the base. The first
// candidate whose port filter admits d wins. Rules that name the winning
// pattern but lost it to an earlier rule of the same layer come last.
//
// It allocates and is meant for explain and tests, not for a hot path.
func (p *Plan) Candidates(d Destination) []Candidate {
	var out []Candidate
	win := -1 // index of the winner in out
	add := func(s candidateSlot) bool {
		c := s.candidate()
		var w *Candidate
		if win >= 0 {
			w = &out[win]
		}
		c.Why = why(c, w, s.eligible, d.Port)
		if s.eligible && win < 0 {
			c.Won, win = true, len(out)
		}
		out = append(out, c)
		return true
	}
	p.walkHost(d.Host, d.Port, false, add)
	if win >= 0 {
		hostWin := out[win].Pattern
		p.walkIP(d.IP, d.Port, false, func(s candidateSlot) bool {
			c := s.candidate()
			c.Why = why(c, nil, s.eligible, d.Port)
			if s.eligible {
				c.Why = "CIDR rules apply only when no host rule matches, and " + hostWin + " did"
			}
			out = append(out, c)
			return true
		})
	} else {
		p.walkIP(d.IP, d.Port, false, add)
	}
	if win >= 0 {
		out = append(out, p.shadowed(out[win], out)...)
	}
	return out
}

// OverlayMatches reports whether some pattern of the class overlay matches
// d, whatever its port filter: whether any of d's Candidates has Overlay
// set, without building them. When it is false, d is decided by the shared
// base layer (and the plan's default and mode) alone, which is what lets a
// diff decide catalog destinations once per base instead of once per class.
func (p *Plan) OverlayMatches(d Destination) bool {
	if p.overlay == nil {
		return false
	}
	found := false
	stop := func(candidateSlot) bool {
		found = true
		return false
	}
	p.walkHost(d.Host, d.Port, true, stop)
	if !found {
		p.walkIP(d.IP, d.Port, true, stop)
	}
	return found
}

// candidateSlot is one filled slot of a layer's lookup tables.
type candidateSlot struct {
	kind     EntryKind
	layer    *Layer
	overlay  bool
	rule     int32
	port     uint16 // the slot's port filter, 0 for any port
	eligible bool   // the port filter admits the destination's port
	// wild and key name a host pattern (wild: the suffix after "*.", or ""
	// for "*"); pfx names a CIDR.
	wild bool
	key  string
	pfx  netip.Prefix
}

func (c candidateSlot) candidate() Candidate {
	pat := c.key
	switch {
	case c.kind == EntryCIDR:
		pat = c.pfx.String()
	case c.wild && c.key == "":
		pat = "*"
	case c.wild:
		pat = "*." + c.key
	}
	return Candidate{Kind: c.kind, Pattern: pat, Port: c.port, Rule: &c.layer.rules[c.rule], Overlay: c.overlay}
}

// layers are the plan's layers in precedence order on one pattern: the
// overlay, then the base.
func (p *Plan) layers(overlayOnly bool) [2]*Layer {
	if overlayOnly {
		return [2]*Layer{p.overlay, nil}
	}
	return [2]*Layer{p.overlay, p.base}
}

// walkHost yields the host slots matching host in precedence order. It
// stops early when yield returns false.
func (p *Plan) walkHost(host string, port uint16, overlayOnly bool, yield func(candidateSlot) bool) {
	if host == "" {
		return
	}
	var buf [maxNameLen]byte
	n, ok := lowerInto(&buf, host)
	if !ok {
		c, err := canonicalName(trimDot(host))
		if err != nil || len(c) > maxNameLen {
			return // Decide matches no host pattern either
		}
		n = copy(buf[:], c)
	}
	name := buf[:n] // stays on the stack: keys are copied only for Candidates
	ls := p.layers(overlayOnly)
	var wildLabels uint64 // skip suffix lengths no wildcard pattern has, as Decide does
	for _, l := range ls {
		if l != nil {
			wildLabels |= l.wildLabels
		}
	}
	if !p.yieldKey(ls, name, false, port, overlayOnly, yield) {
		return
	}
	labels := bytes.Count(name, []byte{'.'}) + 1
	for i := 0; i < len(name); i++ {
		if name[i] != '.' {
			continue
		}
		labels--
		if wildLabels&labelBit(labels) != 0 && !p.yieldKey(ls, name[i+1:], true, port, overlayOnly, yield) {
			return
		}
	}
	if wildLabels&1 != 0 {
		p.yieldKey(ls, name[:0], true, port, overlayOnly, yield)
	}
}

func trimDot(s string) string {
	if len(s) > 0 && s[len(s)-1] == '.' {
		return s[:len(s)-1]
	}
	return s
}

// yieldKey yields one pattern's slots: port-specific ones of each layer
// (overlay first, the one for port first), then the any-port ones. With
// bare set (OverlayMatches) slots carry no key and come in table order,
// so that nothing is allocated.
func (p *Plan) yieldKey(ls [2]*Layer, keyb []byte, wild bool, port uint16, bare bool, yield func(candidateSlot) bool) bool {
	var entries [2]hostEntry
	var found [2]bool
	for i, l := range ls {
		if l == nil {
			continue
		}
		m := l.exact
		if wild {
			m = l.wild
		}
		entries[i], found[i] = m[string(keyb)] // no copy inside a map index
	}
	if !found[0] && !found[1] {
		return true
	}
	key := ""
	if !bare {
		key = string(keyb)
	}
	for i, l := range ls {
		if !found[i] {
			continue
		}
		ports := entries[i].ports
		if !bare {
			ports = sortedPorts(ports, port)
		}
		for _, pr := range ports {
			s := candidateSlot{kind: EntryHost, layer: l, overlay: i == 0, rule: pr.rule, port: pr.port,
				eligible: port != 0 && pr.port == port, wild: wild, key: key}
			if !yield(s) {
				return false
			}
		}
	}
	for i, l := range ls {
		if found[i] && entries[i].any != noRule {
			s := candidateSlot{kind: EntryHost, layer: l, overlay: i == 0, rule: entries[i].any, eligible: true, wild: wild, key: key}
			if !yield(s) {
				return false
			}
		}
	}
	return true
}

// sortedPorts puts the slot for port first, then the others by port.
func sortedPorts(ps []portRef, port uint16) []portRef {
	if len(ps) < 2 {
		return ps
	}
	out := slices.Clone(ps)
	slices.SortFunc(out, func(a, b portRef) int {
		return cmp.Or(-cmpBool(a.port == port, b.port == port), cmp.Compare(a.port, b.port))
	})
	return out
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// walkIP yields the CIDR slots holding ip: longest prefix first; on one
// prefix a matching port filter first, the overlay before the base.
func (p *Plan) walkIP(ip netip.Addr, port uint16, overlayOnly bool, yield func(candidateSlot) bool) {
	if !ip.IsValid() {
		return
	}
	ip = ip.Unmap()
	host := netip.PrefixFrom(ip, ip.BitLen())
	if overlayOnly {
		p.anyIP(host, yield)
		return
	}
	var slots []candidateSlot
	for i, l := range p.layers(overlayOnly) {
		if l == nil {
			continue
		}
		for pfx, r := range l.ipAny.Supernets(host) {
			slots = append(slots, candidateSlot{kind: EntryCIDR, layer: l, overlay: i == 0, rule: r, eligible: true, pfx: pfx})
		}
		for pt, t := range l.ipPort {
			for pfx, r := range t.Supernets(host) {
				slots = append(slots, candidateSlot{kind: EntryCIDR, layer: l, overlay: i == 0, rule: r, port: pt,
					eligible: port != 0 && pt == port, pfx: pfx})
			}
		}
	}
	slices.SortFunc(slots, func(a, b candidateSlot) int {
		return cmp.Or(-cmp.Compare(a.pfx.Bits(), b.pfx.Bits()),
			-cmpBool(a.port != 0 && a.eligible, b.port != 0 && b.eligible), // a matching port filter first
			-cmpBool(a.port != 0, b.port != 0),                             // then other port filters, then any port
			-cmpBool(a.overlay, b.overlay), cmp.Compare(a.port, b.port))
	})
	for _, s := range slots {
		if !yield(s) {
			return
		}
	}
}

// anyIP yields one overlay CIDR slot holding the address host, if there is one, without
// collecting or ordering the others (OverlayMatches asks only whether one
// exists).
func (p *Plan) anyIP(host netip.Prefix, yield func(candidateSlot) bool) {
	l := p.overlay
	if pfx, r, ok := l.ipAny.LookupPrefixLPM(host); ok {
		yield(candidateSlot{kind: EntryCIDR, layer: l, overlay: true, rule: r, eligible: true, pfx: pfx})
		return
	}
	for pt, t := range l.ipPort {
		if pfx, r, ok := t.LookupPrefixLPM(host); ok {
			yield(candidateSlot{kind: EntryCIDR, layer: l, overlay: true, rule: r, port: pt, pfx: pfx})
			return
		}
	}
}

// why words a candidate's fate given the winner so far (nil: none yet).
func why(c Candidate, win *Candidate, eligible bool, port uint16) string {
	switch {
	case !eligible && port == 0 && c.Kind == EntryHost:
		return fmt.Sprintf("port filter %d, but the port is unknown (a DNS lookup): enforced by the sidecar only", c.Port)
	case !eligible && port == 0:
		return fmt.Sprintf("port filter %d, but the port is unknown", c.Port)
	case !eligible:
		return fmt.Sprintf("port filter %d does not include port %d", c.Port, port)
	case win == nil && c.Kind == EntryHost:
		return "most specific matching pattern"
	case win == nil:
		return "longest matching prefix"
	case win.Pattern == c.Pattern && win.Port != 0 && c.Port == 0:
		what := "pattern"
		if c.Kind == EntryCIDR {
			what = "prefix"
		}
		return fmt.Sprintf("same %s, but the rule filtered on port %d beats a rule without a port filter", what, win.Port)
	case win.Pattern == c.Pattern:
		return "a class overlay rule on the same pattern beats the shared catalog rule"
	case c.Kind == EntryHost:
		return "less specific than " + win.Pattern
	}
	return "shorter prefix than " + win.Pattern
}

// shadowed lists the rules that name the winner's pattern with the same
// port filter but are not in the lookup tables, because an earlier rule of
// the same layer took the slot (seen are the candidates already listed).
func (p *Plan) shadowed(win Candidate, seen []Candidate) []Candidate {
	var out []Candidate
	for i, l := range p.layers(false) {
		if l == nil {
			continue
		}
		for j := range l.rules {
			r := &l.rules[j]
			if !namesSlot(r, win.Kind, win.Pattern, win.Port) || slices.ContainsFunc(seen, func(c Candidate) bool { return c.Rule == r }) {
				continue
			}
			why := "the earlier rule in the same layer wins"
			if win.Overlay && i == 1 {
				why = "a class overlay rule on the same pattern beats the shared catalog rule"
			}
			out = append(out, Candidate{Kind: win.Kind, Pattern: win.Pattern, Port: win.Port, Rule: r, Overlay: i == 0, Why: why})
		}
	}
	return out
}

// namesSlot reports whether r lists pattern with exactly the port filter
// slot port (0: no port filter).
func namesSlot(r *Rule, kind EntryKind, pattern string, port uint16) bool {
	if (port == 0) != (len(r.Ports) == 0) || port != 0 && !slices.Contains(r.Ports, port) {
		return false
	}
	if kind == EntryCIDR {
		return slices.Contains(r.CIDRs, pattern)
	}
	return slices.Contains(r.Hosts, pattern)
}
