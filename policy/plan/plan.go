package plan

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"unicode/utf8"
)

// Plan is the compiled, immutable rule set of one workload class: a shared
// base Layer plus a small per-class overlay. It is safe for concurrent use.
type Plan struct {
	base    *Layer
	overlay *Layer
	def     Rule
	mode    Mode
	fp      string
	// nat64 are the cluster's own NAT64 prefixes (see EmbeddedIPv4).
	nat64 []netip.Prefix
	// wildLabels is the union of both layers' wildcard suffix label counts.
	wildLabels uint64
	// unnamedTLS is set by WithUnnamedTLS (unnamed.go).
	unnamedTLS *Rule
}

// Compile builds a plan from a whole Spec, without a shared base.
func Compile(spec Spec) (*Plan, error) {
	var nat64 []netip.Prefix
	for i, s := range spec.NAT64 {
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("nat64[%d]: %w", i, err)
		}
		nat64 = append(nat64, pfx)
	}
	return New(nil, spec.Rules, spec.Default, spec.Mode, WithNAT64(nat64))
}

// Option configures a plan built by New.
type Option func(*Plan)

// WithNAT64 names the cluster's own NAT64 prefixes: an IPv6 destination in
// one of them is decided as the IPv4 address it embeds (EmbeddedIPv4). Each
// must pass ValidNAT64.
func WithNAT64(prefixes []netip.Prefix) Option {
	return func(p *Plan) { p.nat64 = slices.Clone(prefixes) }
}

// New builds one class's plan from a shared base (which may be nil) and the
// class's own overlay rules.
func New(base *Layer, overlay []Rule, def Action, mode Mode, opts ...Option) (*Plan, error) {
	if def > ActionDeny {
		return nil, fmt.Errorf("default: must be allow or deny, not %s", def)
	}
	if mode > ModeReport {
		return nil, fmt.Errorf("mode: unknown mode %d", mode)
	}
	p := &Plan{base: base, mode: mode}
	for _, o := range opts {
		o(p)
	}
	for i, pfx := range p.nat64 {
		if err := ValidNAT64(pfx); err != nil {
			return nil, fmt.Errorf("nat64[%d]: %w", i, err)
		}
	}
	if len(overlay) > 0 {
		l, err := CompileLayer(overlay)
		if err != nil {
			return nil, err
		}
		p.overlay = l
	}
	if base != nil {
		p.wildLabels |= base.wildLabels
	}
	if p.overlay != nil {
		p.wildLabels |= p.overlay.wildLabels
	}
	p.def = Rule{
		ID:     DefaultRuleID,
		Action: def,
		Reason: fmt.Sprintf("no rule matched; the plan's default is %s", def),
	}
	sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%s\x00%s\x00%s\x00%v", base.Fingerprint(), p.overlay.Fingerprint(), def, mode, p.nat64))
	p.fp = hex.EncodeToString(sum[:])
	return p, nil
}

// Default is the action applied when no rule matches.
func (p *Plan) Default() Action { return p.def.Action }

// Mode is the plan-wide mode; ModeReport turns every rule into report mode.
func (p *Plan) Mode() Mode { return p.mode }

// NAT64 returns the cluster's own NAT64 prefixes the plan decides with (the
// catalog's nat64 list); pass them to ParseAddr, CanonicalAddr,
// EmbeddedIPv4 and EmbeddingPrefixes. The slice must not be modified.
func (p *Plan) NAT64() []netip.Prefix { return p.nat64 }

// Fingerprint is a content hash: plans with the same rules, default and mode
// have the same fingerprint.
func (p *Plan) Fingerprint() string { return p.fp }

// Base is the shared layer the plan was built on (nil if none).
func (p *Plan) Base() *Layer { return p.base }

// Decide matches a destination against the plan (see the package comment for
// the semantics). It does not allocate for ASCII host names.
func (p *Plan) Decide(d Destination) Decision {
	dns := d.Port == 0 && d.Protocol == ProtocolDNS
	if d.Host != "" {
		if endsInNumber(d.Host) || strings.IndexByte(d.Host, ':') >= 0 {
			// A "name" that is an address (167772161, 10.0.0.1) is that
			// address; one that is neither address nor name is refused.
			// When the connection's own address is known it decides: text
			// cannot move a connection, and an address in an allowed hole
			// must not excuse a connection to production.
			a, err := ParseAddr(d.Host, p.nat64)
			if err != nil {
				return p.decision(&malformedAddress)
			}
			if !d.IP.IsValid() {
				d.IP = a
			}
		} else if r, ok := p.matchHost(d.Host, d.Port, dns); !ok {
			return p.decision(&malformedName)
		} else if r != nil {
			return p.decision(r)
		}
	}
	if d.IP.IsValid() {
		if r := p.matchAddr(d.IP, d.Port); r != nil {
			return p.decision(r)
		}
	}
	return p.decision(&p.def)
}

// matchAddr matches an address that embeds IPv4 as that IPv4 address, and
// its IPv6 form only when no rule holds the IPv4 address.
func (p *Plan) matchAddr(a netip.Addr, port uint16) *Rule {
	if v4, ok := EmbeddedIPv4(a, p.nat64); ok {
		if r := p.matchIP(v4, port); r != nil {
			return r
		}
	}
	return p.matchIP(a.WithZone(""), port)
}

func (p *Plan) decision(r *Rule) Decision {
	d := Decision{Action: r.Action, Matched: r.Action, Rule: r}
	if r.Action != ActionAllow && (p.mode == ModeReport || r.Mode == ModeReport) {
		d.Action = ActionAllow
		d.WouldDeny = true
	}
	return d
}

// matchHost returns the rule for a name, nil when none matches. ok is false
// when the name cannot be put in canonical form and no wildcard holds its
// longest canonical suffix: such a name is refused, never defaulted.
func (p *Plan) matchHost(host string, port uint16, dns bool) (r *Rule, ok bool) {
	var buf [maxNameLen]byte
	n, ascii := lowerInto(&buf, host)
	if ascii {
		for i := 0; i < n && ascii; i++ {
			ascii = isNameByte(buf[i]) && (buf[i] != '.' || i > 0 && buf[i-1] != '.')
		}
		ascii = ascii && buf[0] != '.' && buf[n-1] != '.'
	}
	if !ascii {
		// Non-ASCII (or invalid) name: the slow path converts it once.
		c, err := canonicalName(strings.TrimSuffix(host, "."))
		if err != nil {
			return p.matchSuffix(host, port, dns)
		}
		n = copy(buf[:], c)
	}
	return p.matchName(buf[:n], port, dns), true
}

// matchName matches a canonical name: exact first, then wildcard suffixes
// from the longest to the shortest.
func (p *Plan) matchName(name []byte, port uint16, dns bool) *Rule {
	if r := p.pick(name, port, false, dns); r != nil {
		return r
	}
	return p.matchWild(name, port, dns, false)
}

// matchWild tries the wildcard patterns that hold name: the suffixes after
// each dot (and, when self is set, name itself as a suffix), then "*".
func (p *Plan) matchWild(name []byte, port uint16, dns, self bool) *Rule {
	if p.wildLabels == 0 {
		return nil
	}
	n := len(name)
	// Skip label counts no wildcard pattern has.
	labels := 1
	for i := 0; i < n; i++ {
		if name[i] == '.' {
			labels++
		}
	}
	if self && n > 0 && p.wildLabels&labelBit(labels) != 0 {
		if r := p.pick(name, port, true, dns); r != nil {
			return r
		}
	}
	for i := 0; i < n; i++ {
		if name[i] == '.' {
			labels--
			if p.wildLabels&labelBit(labels) == 0 {
				continue
			}
			if r := p.pick(name[i+1:], port, true, dns); r != nil {
				return r
			}
		}
	}
	if p.wildLabels&1 == 0 {
		return nil
	}
	return p.pick(name[:0], port, true, dns)
}

// matchSuffix decides a name that cannot be put in canonical form (IDNA
// rejects a label, a label is empty or holds a character no host name has)
// by its longest suffix of labels that can: the name is a strict subdomain
// of that suffix, so only wildcard patterns can hold it. ok is false when
// none does.
func (p *Plan) matchSuffix(host string, port uint16, dns bool) (*Rule, bool) {
	labels := splitLabels(strings.TrimSuffix(host, "."))
	var suffix string
	for i := len(labels) - 1; i >= 0; i-- {
		try := labels[i]
		if suffix != "" {
			try += "." + suffix
		}
		c, err := canonicalName(try)
		if err != nil || len(labels[i]) == 0 {
			break
		}
		suffix = c
	}
	if r := p.matchWild([]byte(suffix), port, dns, true); r != nil {
		return r, true
	}
	return nil, false
}

// splitLabels splits a name at every separator IDNA maps to a dot (U+002E,
// U+3002, U+FF0E, U+FF61), so that a name IDNA rejects is split where a
// resolver that maps it would split it.
func splitLabels(s string) []string {
	var out []string
	start := 0
	for i, r := range s {
		if r == '.' || r == '\u3002' || r == '\uff0e' || r == '\uff61' {
			out = append(out, s[start:i])
			start = i + utf8.RuneLen(r)
		}
	}
	return append(out, s[start:])
}

func isNameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.'
}

// Synthetic rules for destinations that cannot be put in normal form.
var (
	malformedName = Rule{
		ID:       MalformedRuleID,
		Action:   ActionDeny,
		Category: "malformed",
		Reason:   "the name cannot be put in canonical form (IDNA rejects it, or it has an empty label or a character no host name has) and no wildcard rule holds its suffix: refused (fail closed)",
	}
	malformedAddress = Rule{
		ID:       MalformedRuleID,
		Action:   ActionDeny,
		Category: "malformed",
		Reason:   "the destination ends in a number but is not an address in any form inet_aton accepts: refused (fail closed)",
	}
)

// pick consults the overlay, then the base, for one pattern key. Within one
// layer a port-specific rule beats an any-port one; across layers the
// overlay's port-specific rule, then the base's, then the overlay's any-port
// rule, then the base's.
//
// wild selects the wildcard table (key is the suffix after "*.") instead of
// the exact one. It is a flag, not a function value, so that key (a slice of
// the caller's stack buffer) does not escape to the heap.
func (p *Plan) pick(key []byte, port uint16, wild, dns bool) *Rule {
	var oRule, bRule *Rule
	if p.overlay != nil {
		if i := p.overlay.hostRule(key, port, wild, dns); i != noRule {
			oRule = &p.overlay.rules[i]
			if len(oRule.Ports) > 0 {
				return oRule
			}
		}
	}
	if p.base != nil {
		if i := p.base.hostRule(key, port, wild, dns); i != noRule {
			bRule = &p.base.rules[i]
			if len(bRule.Ports) > 0 || oRule == nil {
				return bRule
			}
		}
	}
	return oRule
}

func (p *Plan) matchIP(ip netip.Addr, port uint16) *Rule {
	oi, obits, bi, bbits := int32(noRule), -1, int32(noRule), -1
	if p.overlay != nil {
		oi, obits = p.overlay.ipRule(ip, port)
	}
	if p.base != nil {
		bi, bbits = p.base.ipRule(ip, port)
	}
	switch {
	case oi == noRule && bi == noRule:
		return nil
	case bi == noRule, obits > bbits:
		return &p.overlay.rules[oi]
	case oi == noRule, bbits > obits:
		return &p.base.rules[bi]
	}
	// Same prefix length: port-specific beats any-port, then overlay wins.
	o, b := &p.overlay.rules[oi], &p.base.rules[bi]
	if len(b.Ports) > 0 && len(o.Ports) == 0 {
		return b
	}
	return o
}

// EntryKind says what an Entry's pattern is.
type EntryKind uint8

const (
	// EntryHost is a host pattern: an exact name, "*.suffix" or "*".
	EntryHost EntryKind = iota
	// EntryCIDR is an IP prefix.
	EntryCIDR
)

func (k EntryKind) String() string {
	if k == EntryCIDR {
		return "cidr"
	}
	return "host"
}

// Entry is one line of a plan's effective match table: for this pattern and
// port (0 = any port), this rule decides. Translators (Envoy config) turn
// entries into their own matching structures.
type Entry struct {
	Kind    EntryKind
	Pattern string
	Port    uint16
	Rule    *Rule
}

// Entries returns the effective match table: every pattern of the base and
// the overlay with the rule that wins it (the overlay on a tie), sorted by
// kind, pattern and port. Decide on a destination that matches a pattern
// gives that pattern's rule when no more specific pattern matches.
func (p *Plan) Entries() []Entry {
	type key struct {
		kind    EntryKind
		pattern string
		port    uint16
	}
	won := make(map[key]*Rule)
	// Base first, then overlay overwriting: the overlay wins ties. Within a
	// layer the earliest rule wins, so do not overwrite within a layer.
	for _, l := range []*Layer{p.base, p.overlay} {
		if l == nil {
			continue
		}
		seen := make(map[key]bool)
		for i := range l.rules {
			r := &l.rules[i]
			ports := r.Ports
			if len(ports) == 0 {
				ports = []uint16{0}
			}
			add := func(k key) {
				if !seen[k] {
					seen[k] = true
					won[k] = r
				}
			}
			for _, port := range ports {
				for _, h := range r.Hosts {
					add(key{EntryHost, h, port})
				}
				for _, c := range r.CIDRs {
					add(key{EntryCIDR, c, port})
				}
			}
		}
	}
	out := make([]Entry, 0, len(won))
	for k, r := range won {
		out = append(out, Entry{Kind: k.kind, Pattern: k.pattern, Port: k.port, Rule: r})
	}
	slices.SortFunc(out, func(a, b Entry) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), strings.Compare(a.Pattern, b.Pattern), cmp.Compare(a.Port, b.Port))
	})
	return out
}

// DefaultRule is the synthetic rule that decides when nothing matches.
func (p *Plan) DefaultRule() *Rule { return &p.def }

// Spec returns the whole effective rule list, base rules then overlay rules,
// in canonical form (normalised host names and CIDRs).
func (p *Plan) Spec() Spec {
	s := Spec{Default: p.def.Action, Mode: p.mode, Rules: []Rule{}}
	for _, pfx := range p.nat64 {
		s.NAT64 = append(s.NAT64, pfx.String())
	}
	for _, l := range []*Layer{p.base, p.overlay} {
		if l != nil {
			s.Rules = append(s.Rules, l.rules...)
		}
	}
	return s
}

// MarshalJSON renders the plan's Spec.
func (p *Plan) MarshalJSON() ([]byte, error) { return json.Marshal(p.Spec()) }
