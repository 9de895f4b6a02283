package plan

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// referenceDecide is a naive linear reading of the documented semantics,
// written independently of the indexed matcher: score every rule of every
// layer, keep the best.
func referenceDecide(layers [][]Rule, def Action, d Destination) (string, Action) {
	type cand struct {
		spec  int // pattern specificity: exact > longer suffix > shorter > "*"
		port  int // 1 when the rule's port filter matched
		layer int // overlay (1) beats base (0)
		index int // earlier rule wins
		rule  *Rule
	}
	better := func(a, b cand) bool { // is a better than b?
		if a.spec != b.spec {
			return a.spec > b.spec
		}
		if a.port != b.port {
			return a.port > b.port
		}
		if a.layer != b.layer {
			return a.layer > b.layer
		}
		return a.index < b.index
	}
	dnsLookup := d.Port == 0 && d.Protocol == ProtocolDNS
	portOK := func(r *Rule, byName bool) (int, bool) {
		if len(r.Ports) == 0 {
			return 0, true
		}
		if dnsLookup && DNSHeld(r) && byName {
			return 1, true // as if on its port; CIDRs are not DNS-held
		}
		for _, p := range r.Ports {
			if d.Port != 0 && p == d.Port {
				return 1, true
			}
		}
		return 0, false
	}
	search := func(byName bool, score func(r *Rule) int) *Rule {
		var best *cand
		for li, rules := range layers {
			for i := range rules {
				r := &rules[i]
				s := score(r)
				if s < 0 {
					continue
				}
				pm, ok := portOK(r, byName)
				if !ok {
					continue
				}
				c := cand{s, pm, li, i, r}
				if best == nil || better(c, *best) {
					best = &c
				}
			}
		}
		if best == nil {
			return nil
		}
		return best.rule
	}
	if name, err := NormalizeHost(d.Host); err == nil && d.Host != "" && !strings.HasPrefix(name, "*") {
		r := search(true, func(r *Rule) int {
			best := -1
			for _, h := range r.Hosts {
				h, _ = NormalizeHost(h)
				switch {
				case h == name:
					best = max(best, 10000)
				case h == "*" && dnsLookup && DNSHeld(r):
					// "*" on name-blind ports stays with the sidecar.
				case h == "*":
					best = max(best, 0)
				case strings.HasPrefix(h, "*.") && strings.HasSuffix(name, h[1:]):
					best = max(best, len(h))
				}
			}
			return best
		})
		if r != nil {
			return r.ID, r.Action
		}
	}
	if d.IP.IsValid() {
		ip := d.IP.Unmap()
		r := search(false, func(r *Rule) int {
			best := -1
			for _, c := range r.CIDRs {
				p, _ := ParsePrefix(c)
				if p.Contains(ip) {
					best = max(best, p.Bits())
				}
			}
			return best
		})
		if r != nil {
			return r.ID, r.Action
		}
	}
	return DefaultRuleID, def
}

var labels = []string{"a", "b", "prod", "api", "x", "db"}

func randName(rng *rand.Rand) string {
	n := 1 + rng.IntN(4)
	parts := make([]string, n)
	for i := range parts {
		parts[i] = labels[rng.IntN(len(labels))]
	}
	return strings.Join(parts, ".")
}

func randAddr(rng *rand.Rand) netip.Addr {
	if rng.IntN(2) == 0 {
		return netip.AddrFrom4([4]byte{10, byte(rng.IntN(3)), byte(rng.IntN(3)), byte(rng.IntN(256))})
	}
	var b [16]byte
	b[0], b[1], b[2] = 0x20, 0x01, byte(rng.IntN(3))
	b[15] = byte(rng.IntN(256))
	return netip.AddrFrom16(b)
}

func randRules(rng *rand.Rand, prefix string, n int) []Rule {
	rules := make([]Rule, n)
	for i := range rules {
		r := Rule{ID: fmt.Sprintf("%s%d", prefix, i), Action: Action(rng.IntN(2))}
		for range rng.IntN(3) {
			switch rng.IntN(4) {
			case 0:
				r.Hosts = append(r.Hosts, "*."+randName(rng))
			case 1:
				if rng.IntN(8) == 0 {
					r.Hosts = append(r.Hosts, "*")
				}
			default:
				r.Hosts = append(r.Hosts, randName(rng))
			}
		}
		for range rng.IntN(2) {
			a := randAddr(rng)
			bits := []int{8, 16, 24, 32}[rng.IntN(4)]
			if a.Is6() {
				bits = []int{16, 24, 120, 128}[rng.IntN(4)]
			}
			r.CIDRs = append(r.CIDRs, netip.PrefixFrom(a, bits).Masked().String())
		}
		if len(r.Hosts)+len(r.CIDRs) == 0 {
			r.Hosts = []string{randName(rng)}
		}
		switch rng.IntN(8) {
		case 0, 1:
			r.Ports = []uint16{uint16(1 + rng.IntN(3))}
		case 2:
			r.Ports = []uint16{25, 587}
		case 3:
			r.Ports = []uint16{587, 443}
		case 4:
			r.Ports = []uint16{25, 465}
		}
		rules[i] = r
	}
	return rules
}

// TestMatcherAgreesWithReference is the property test: on random rule sets
// and random destinations the indexed matcher and the naive reading agree.
func TestMatcherAgreesWithReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		baseRules := randRules(rng, "b", 1+rng.IntN(30))
		overRules := randRules(rng, "o", rng.IntN(5))
		def := Action(rng.IntN(2))
		base, err := CompileLayer(baseRules)
		require.NoError(t, err)
		p, err := New(base, overRules, def, ModeEnforce)
		require.NoError(t, err)
		for range 200 {
			d := Destination{Port: []uint16{0, 0, 1, 2, 3, 25, 443}[rng.IntN(7)]}
			if rng.IntN(3) == 0 {
				d.Protocol = ProtocolDNS
			}
			if rng.IntN(4) != 0 {
				d.Host = randName(rng)
				if rng.IntN(5) == 0 {
					d.Host = strings.ToUpper(d.Host) + "."
				}
			}
			if rng.IntN(2) == 0 {
				d.IP = randAddr(rng)
			}
			wantID, wantAction := referenceDecide([][]Rule{baseRules, overRules}, def, d)
			got := p.Decide(d)
			require.Equal(t, wantID, got.RuleID(), "round %d dest %+v\nbase %+v\noverlay %+v", round, d, baseRules, overRules)
			require.Equal(t, wantAction, got.Action, "round %d dest %+v", round, d)
		}
	}
}
