package plan

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// patternMatches is the documented matching of one pattern, read naively.
func patternMatches(kind EntryKind, pattern string, d Destination) bool {
	if kind == EntryCIDR {
		pfx, err := ParsePrefix(pattern)
		return err == nil && d.IP.IsValid() && pfx.Contains(d.IP.Unmap())
	}
	name, err := NormalizeHost(d.Host)
	if d.Host == "" || err != nil {
		return false
	}
	switch {
	case pattern == "*":
		return true
	case strings.HasPrefix(pattern, "*."):
		return strings.HasSuffix(name, pattern[1:])
	}
	return pattern == name
}

// slotKey is a (pattern, port filter) pair, the unit Candidates lists.
type slotKey struct {
	kind    EntryKind
	pattern string
	port    uint16
	overlay bool
}

// TestCandidatesAgreeWithDecide is the property test of Candidates: on
// random plans and destinations its winner is Decide's rule, every
// candidate's pattern matches the destination, every (pattern, port
// filter) of either layer that matches it is listed, and OverlayMatches is
// "some candidate comes from the overlay".
func TestCandidatesAgreeWithDecide(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for round := range 150 {
		baseRules := randRules(rng, "b", 1+rng.IntN(30))
		overRules := randRules(rng, "o", rng.IntN(5))
		base, err := CompileLayer(baseRules)
		require.NoError(t, err)
		p, err := New(base, overRules, Action(rng.IntN(2)), ModeEnforce)
		require.NoError(t, err)
		for range 150 {
			d := Destination{Port: uint16(rng.IntN(4))}
			if rng.IntN(4) != 0 {
				d.Host = randName(rng)
				if rng.IntN(5) == 0 {
					d.Host = strings.ToUpper(d.Host) + "."
				}
			}
			if rng.IntN(2) == 0 {
				d.IP = randAddr(rng)
				if rng.IntN(5) == 0 && d.IP.Is4() {
					d.IP = netip.AddrFrom16(d.IP.As16()) // IPv4-mapped
				}
			}
			cands := p.Candidates(d)
			dec := p.Decide(d)
			var won []Candidate
			listed := map[slotKey]bool{}
			overlay := false
			for _, c := range cands {
				require.True(t, patternMatches(c.Kind, c.Pattern, d), "round %d: %s does not match %+v", round, c.Pattern, d)
				require.NotEmpty(t, c.Why)
				listed[slotKey{c.Kind, c.Pattern, c.Port, c.Overlay}] = true
				overlay = overlay || c.Overlay
				if c.Won {
					won = append(won, c)
				}
			}
			if dec.RuleID() == DefaultRuleID {
				require.Empty(t, won, "round %d %+v", round, d)
			} else {
				require.Len(t, won, 1, "round %d %+v: %+v", round, d, cands)
				require.Same(t, dec.Rule, won[0].Rule, "round %d %+v", round, d)
			}
			for li, rules := range [][]Rule{p.Base().rules, overlayRules(p)} {
				for i := range rules {
					r := &rules[i]
					ports := r.Ports
					if len(ports) == 0 {
						ports = []uint16{0}
					}
					for _, port := range ports {
						for _, h := range r.Hosts {
							if patternMatches(EntryHost, h, d) {
								require.True(t, listed[slotKey{EntryHost, h, port, li == 1}], "round %d: %s port %d of %s not listed for %+v", round, h, port, r.ID, d)
							}
						}
						for _, c := range r.CIDRs {
							if patternMatches(EntryCIDR, c, d) {
								require.True(t, listed[slotKey{EntryCIDR, c, port, li == 1}], "round %d: %s port %d of %s not listed for %+v", round, c, port, r.ID, d)
							}
						}
					}
				}
			}
			require.Equal(t, overlay, p.OverlayMatches(d), "round %d %+v", round, d)
		}
	}
}

func overlayRules(p *Plan) []Rule {
	if p.overlay == nil {
		return nil
	}
	return p.overlay.rules
}

func TestCandidatesExplainEachLoss(t *testing.T) {
	base, err := CompileLayer([]Rule{
		{ID: "zone", Hosts: []string{"*.stripe.com"}, Action: ActionDeny},
		{ID: "files", Hosts: []string{"files.stripe.com"}, Action: ActionDeny},
		{ID: "files-again", Hosts: []string{"files.stripe.com"}, Action: ActionAllow},
		{ID: "zone-again", Hosts: []string{"*.stripe.com"}, Action: ActionAllow},
		{ID: "smtp", Hosts: []string{"*"}, Ports: []uint16{25, 587}, Action: ActionRedirect, Redirect: &Redirect{Host: "mailpit"}},
		{ID: "net", CIDRs: []string{"10.20.0.0/16"}, Action: ActionDeny},
	})
	require.NoError(t, err)
	p, err := New(base, []Rule{{ID: "exception", Hosts: []string{"files.stripe.com"}, Action: ActionAllow}}, ActionAllow, ModeEnforce)
	require.NoError(t, err)

	why := func(cs []Candidate) map[string]string {
		m := map[string]string{}
		for _, c := range cs {
			k := c.Rule.ID + " " + c.Pattern
			if c.Port != 0 {
				k += fmt.Sprintf(" %d", c.Port)
			}
			if c.Won {
				k = "*" + k
			}
			m[k] = c.Why
		}
		return m
	}
	cs := p.Candidates(Destination{Host: "FILES.stripe.com.", Port: 25, IP: netip.MustParseAddr("10.20.1.1")})
	assert.Equal(t, map[string]string{
		"*exception files.stripe.com":  "most specific matching pattern",
		"files files.stripe.com":       "a class overlay rule on the same pattern beats the shared catalog rule",
		"files-again files.stripe.com": "a class overlay rule on the same pattern beats the shared catalog rule",
		"zone *.stripe.com":            "less specific than files.stripe.com",
		"smtp * 25":                    "less specific than files.stripe.com",
		"smtp * 587":                   "port filter 587 does not include port 25",
		"net 10.20.0.0/16":             "CIDR rules apply only when no host rule matches, and files.stripe.com did",
	}, why(cs))
	assert.Equal(t, "exception", cs[0].Rule.ID, "precedence order: the winner first here")
	assert.True(t, cs[0].Overlay)

	cs = p.Candidates(Destination{Host: "mail.example.org"})
	assert.Equal(t, map[string]string{
		"smtp * 25":  "port filter 25, but the port is unknown (a DNS lookup): enforced by the sidecar only",
		"smtp * 587": "port filter 587, but the port is unknown (a DNS lookup): enforced by the sidecar only",
	}, why(cs))

	cs = p.Candidates(Destination{IP: netip.MustParseAddr("::ffff:10.20.3.4"), Port: 5432})
	assert.Equal(t, map[string]string{"*net 10.20.0.0/16": "longest matching prefix"}, why(cs))
	assert.False(t, p.OverlayMatches(Destination{IP: netip.MustParseAddr("10.20.3.4")}))
	assert.True(t, p.OverlayMatches(Destination{Host: "files.stripe.com", Port: 443}))
	assert.False(t, p.OverlayMatches(Destination{Host: "api.stripe.com", Port: 443}))

	cs = p.Candidates(Destination{Host: "api.stripe.com", Port: 443})
	assert.Equal(t, map[string]string{
		"*zone *.stripe.com":      "most specific matching pattern",
		"zone-again *.stripe.com": "the earlier rule in the same layer wins",
		"smtp * 25":               "port filter 25 does not include port 443",
		"smtp * 587":              "port filter 587 does not include port 443",
	}, why(cs))
}

// OverlayMatches runs once per catalog destination per changed class in a
// diff: it must not allocate.
func TestOverlayMatchesDoesNotAllocate(t *testing.T) {
	base, err := CompileLayer([]Rule{{ID: "zone", Hosts: []string{"*.prod.example.com"}, CIDRs: []string{"10.0.0.0/8"}, Action: ActionDeny}})
	require.NoError(t, err)
	p, err := New(base, []Rule{
		{ID: "x", Hosts: []string{"*.example.com", "api.prod.example.com"}, Ports: []uint16{443, 8443}, Action: ActionAllow},
		{ID: "y", CIDRs: []string{"10.1.0.0/16"}, Ports: []uint16{5432}, Action: ActionAllow},
	}, ActionAllow, ModeEnforce)
	require.NoError(t, err)
	for _, d := range []Destination{
		{Host: "db.prod.example.com", Port: 443},
		{Host: "API.prod.example.com."},
		{IP: netip.MustParseAddr("10.1.2.3"), Port: 5432},
		{IP: netip.MustParseAddr("10.2.2.3")},
	} {
		want := slices.ContainsFunc(p.Candidates(d), func(c Candidate) bool { return c.Overlay })
		assert.Equal(t, want, p.OverlayMatches(d), "%+v", d)
		assert.Zero(t, testing.AllocsPerRun(50, func() { p.OverlayMatches(d) }), "%+v", d)
	}
}
