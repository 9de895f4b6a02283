package review

import (
	"fmt"
	"io"
	"strings"

	"github.com/egressguard/egressguard/inventory"
	"github.com/egressguard/egressguard/policy"
	"github.com/egressguard/egressguard/policy/plan"
)

// Candidate is one pattern of the plan that matches the destination's name
// or address, and why it did or did not decide.
type Candidate struct {
	Kind    string `json:"kind"` // host or cidr
	Pattern string `json:"pattern"`
	Port    uint16 `json:"port,omitempty"`
	Rule    string `json:"rule"`
	Action  string `json:"action"`
	Won     bool   `json:"won"`
	Why     string `json:"why"`
}

// CatalogRef is the catalog entry behind a rule.
type CatalogRef struct {
	Kind      string            `json:"kind"` // provider, zone, cidr, exception
	Provider  *policy.Provider  `json:"provider,omitempty"`
	Exception *policy.Exception `json:"exception,omitempty"`
	Pattern   string            `json:"pattern,omitempty"`
}

// Explanation says why a class's plan decides a destination as it does.
type Explanation struct {
	Class       string      `json:"class"`
	Destination string      `json:"destination"`
	Decision    Outcome     `json:"decision"`
	Reason      string      `json:"reason"`
	Candidates  []Candidate `json:"candidates"`
	Catalog     *CatalogRef `json:"catalog,omitempty"`
	Notes       []string    `json:"notes,omitempty"`
	Rule        *plan.Rule  `json:"rule"`
}

// Explain decides d for w with e's plan and explains the decision.
func Explain(e *policy.Engine, w *inventory.Workload, d plan.Destination) (*Explanation, error) {
	p, err := e.PlanFor(w)
	if err != nil {
		return nil, fmt.Errorf("review: explain: %w", err)
	}
	dec := p.Decide(d)
	x := &Explanation{Class: e.ClassDescription(w), Destination: FormatDestination(d), Decision: outcome(dec), Reason: dec.Reason(), Rule: dec.Rule}
	host := ""
	if d.Host != "" {
		host, err = plan.NormalizeHost(d.Host)
		if err != nil {
			return nil, fmt.Errorf("review: explain: %w", err)
		}
	}
	spec := p.Spec()
	baseLen := p.Base().Len()
	entries := p.Entries()

	// Host candidates: the winner is the most specific pattern with an
	// eligible port filter; on the same pattern a matching port filter wins.
	var hostWin *plan.Entry
	var hostCands []plan.Entry
	if host != "" {
		for _, en := range entries {
			if en.Kind == plan.EntryHost && hostMatches(en.Pattern, host) {
				hostCands = append(hostCands, en)
				if portOK(en.Port, d.Port) && (hostWin == nil || moreSpecific(en, *hostWin)) {
					c := en
					hostWin = &c
				}
			}
		}
	}
	var ipWin *plan.Entry
	var ipCands []plan.Entry
	var ipBits int
	if d.IP.IsValid() {
		ip := d.IP.Unmap()
		for _, en := range entries {
			if en.Kind != plan.EntryCIDR {
				continue
			}
			pf, err := plan.ParsePrefix(en.Pattern)
			if err != nil || !pf.Contains(ip) {
				continue
			}
			ipCands = append(ipCands, en)
			if portOK(en.Port, d.Port) && (ipWin == nil || pf.Bits() > ipBits || (pf.Bits() == ipBits && en.Port != 0 && ipWin.Port == 0)) {
				c := en
				ipWin, ipBits = &c, pf.Bits()
			}
		}
	}
	for _, en := range hostCands {
		c := candidate(en)
		switch {
		case !portOK(en.Port, d.Port) && d.Port == 0:
			c.Why = fmt.Sprintf("port filter %d, but the port is unknown (a DNS lookup): enforced by the sidecar only", en.Port)
		case !portOK(en.Port, d.Port):
			c.Why = fmt.Sprintf("port filter %d does not include port %d", en.Port, d.Port)
		case hostWin != nil && en == *hostWin:
			c.Won, c.Why = en.Rule.ID == dec.RuleID(), "most specific matching pattern"
		case hostWin != nil && en.Pattern == hostWin.Pattern:
			c.Why = fmt.Sprintf("same pattern, but the rule filtered on port %d beats a rule without a port filter", hostWin.Port)
		default:
			c.Why = "less specific than " + hostWin.Pattern
		}
		x.Candidates = append(x.Candidates, c)
	}
	for _, en := range ipCands {
		c := candidate(en)
		switch {
		case !portOK(en.Port, d.Port) && d.Port == 0:
			c.Why = fmt.Sprintf("port filter %d, but the port is unknown", en.Port)
		case !portOK(en.Port, d.Port):
			c.Why = fmt.Sprintf("port filter %d does not include port %d", en.Port, d.Port)
		case hostWin != nil:
			c.Why = "CIDR rules apply only when no host rule matches, and " + hostWin.Pattern + " did"
		case ipWin != nil && en == *ipWin:
			c.Won, c.Why = en.Rule.ID == dec.RuleID(), "longest matching prefix"
		case ipWin != nil && en.Pattern == ipWin.Pattern:
			c.Why = fmt.Sprintf("same prefix, but the rule filtered on port %d beats a rule without a port filter", ipWin.Port)
		default:
			c.Why = "shorter prefix than " + ipWin.Pattern
		}
		x.Candidates = append(x.Candidates, c)
	}
	// Rules that name the winning pattern but lost it to another rule.
	win := hostWin
	if win == nil {
		win = ipWin
	}
	if win != nil {
		for i, r := range spec.Rules {
			if r.ID == win.Rule.ID || !namesPattern(r, win.Pattern, win.Port) {
				continue
			}
			why := "the earlier rule in the same layer wins"
			if i < baseLen && !isBase(spec.Rules, baseLen, win.Rule.ID) {
				why = "a class overlay rule on the same pattern beats the shared catalog rule"
			}
			x.Candidates = append(x.Candidates, Candidate{Kind: win.Kind.String(), Pattern: win.Pattern, Port: win.Port, Rule: r.ID, Action: r.Action.String(), Why: why})
		}
	}
	if dec.RuleID() == plan.DefaultRuleID {
		x.Notes = append(x.Notes, fmt.Sprintf("no pattern matched: the plan's default (%s) applies", p.Default()))
	}
	if dec.WouldDeny {
		x.Notes = append(x.Notes, fmt.Sprintf("report mode: the rule would %s; it is allowed and recorded", dec.Matched))
	}
	if t := dec.Target(); t != nil && (t.TLS || d.Port == 443 || d.Protocol == "tls") {
		x.Notes = append(x.Notes, "sidecar: a TLS connection cannot be redirected without terminating TLS, so it is denied there; dns: answered with a CNAME to "+t.Host)
	}
	x.Catalog = catalogRef(e.Catalog(), dec.RuleID())
	return x, nil
}

func candidate(en plan.Entry) Candidate {
	return Candidate{Kind: en.Kind.String(), Pattern: en.Pattern, Port: en.Port, Rule: en.Rule.ID, Action: en.Rule.Action.String()}
}

func isBase(rules []plan.Rule, baseLen int, id string) bool {
	for _, r := range rules[:baseLen] {
		if r.ID == id {
			return true
		}
	}
	return false
}

func namesPattern(r plan.Rule, pattern string, port uint16) bool {
	if (port == 0) != (len(r.Ports) == 0) {
		return false
	}
	if port != 0 && !containsPort(r.Ports, port) {
		return false
	}
	for _, h := range r.Hosts {
		if h == pattern {
			return true
		}
	}
	for _, c := range r.CIDRs {
		if c == pattern {
			return true
		}
	}
	return false
}

func containsPort(ps []uint16, p uint16) bool {
	for _, x := range ps {
		if x == p {
			return true
		}
	}
	return false
}

func portOK(filter, port uint16) bool { return filter == 0 || filter == port }

func hostMatches(pattern, host string) bool {
	switch {
	case pattern == "*":
		return true
	case strings.HasPrefix(pattern, "*."):
		return strings.HasSuffix(host, pattern[1:]) && len(host) > len(pattern)-1
	}
	return pattern == host
}

// moreSpecific: exact beats wildcard, longer suffix beats shorter, "*"
// last; on the same pattern a port filter beats none.
func moreSpecific(a, b plan.Entry) bool {
	ra, rb := specificity(a.Pattern), specificity(b.Pattern)
	if ra != rb {
		return ra > rb
	}
	return a.Port != 0 && b.Port == 0
}

func specificity(p string) int {
	switch {
	case p == "*":
		return 0
	case strings.HasPrefix(p, "*."):
		return len(p)
	}
	return 1 << 20
}

// catalogRef finds the catalog entry a rule id comes from (README: rule ids).
func catalogRef(c *policy.Catalog, id string) *CatalogRef {
	kind, rest, ok := strings.Cut(id, ":")
	if !ok {
		return nil
	}
	switch kind {
	case "provider":
		name, _, _ := strings.Cut(rest, ":")
		for i := range c.Providers {
			if c.Providers[i].Name == name {
				return &CatalogRef{Kind: kind, Provider: &c.Providers[i]}
			}
		}
	case "zone", "cidr":
		return &CatalogRef{Kind: kind, Pattern: rest}
	case "exception":
		xid, _, _ := strings.Cut(rest, ":")
		for i := range c.Exceptions {
			if c.Exceptions[i].ID == xid {
				return &CatalogRef{Kind: kind, Exception: &c.Exceptions[i]}
			}
		}
	}
	return nil
}

// WriteText renders an explanation for a terminal.
func (x *Explanation) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "class        %s\ndestination  %s\ndecision     %s\nreason       %s\n", x.Class, x.Destination, x.Decision, x.Reason)
	if len(x.Candidates) > 0 {
		b.WriteString("\ncandidates:\n")
		for _, c := range x.Candidates {
			mark := " "
			if c.Won {
				mark = "*"
			}
			pat := c.Pattern
			if c.Port != 0 {
				pat = fmt.Sprintf("%s port %d", pat, c.Port)
			}
			fmt.Fprintf(&b, "%s %-4s %-32s %-8s %s: %s\n", mark, c.Kind, pat, c.Action, c.Rule, c.Why)
		}
	}
	if r := x.Catalog; r != nil {
		b.WriteString("\ncatalog entry:\n")
		switch {
		case r.Provider != nil:
			p := r.Provider
			fmt.Fprintf(&b, "  provider %s (category %s)\n", p.Name, p.Category)
			if p.Docs != "" {
				fmt.Fprintf(&b, "  docs: %s\n", p.Docs)
			}
			if p.Note != "" {
				fmt.Fprintf(&b, "  note: %s\n", p.Note)
			}
			for _, ep := range p.Endpoints {
				live := ep.Live
				if live == "" {
					live = "*"
				}
				line := "  - " + live
				if len(ep.Ports) > 0 {
					line += fmt.Sprintf(" ports %v", ep.Ports)
				}
				if ep.Sandbox != nil {
					line += " -> sandbox " + ep.Sandbox.String()
				}
				if ep.Sink {
					line += " -> mail sink"
				}
				b.WriteString(line + "\n")
			}
		case r.Exception != nil:
			ex := r.Exception
			fmt.Fprintf(&b, "  exception %s: owner %s, ticket %s, expires %s\n  hosts %v cidrs %v ports %v\n  reason: %s\n", ex.ID, ex.Owner, ex.Ticket, ex.Expires, ex.Hosts, ex.CIDRs, ex.Ports, ex.Reason)
		default:
			fmt.Fprintf(&b, "  production %s %s\n", r.Kind, r.Pattern)
		}
	}
	for _, n := range x.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
