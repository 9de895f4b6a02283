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
	if d.Host != "" {
		// Decide matches no host pattern for a name that cannot be put in
		// canonical form; explain says why instead of listing nothing.
		if _, err := plan.NormalizeHost(d.Host); err != nil {
			return nil, fmt.Errorf("review: explain: %w", err)
		}
	}
	for _, c := range p.Candidates(d) {
		x.Candidates = append(x.Candidates, Candidate{Kind: c.Kind.String(), Pattern: c.Pattern, Port: c.Port,
			Rule: c.Rule.ID, Action: c.Rule.Action.String(), Won: c.Won, Why: c.Why})
	}
	if dec.RuleID() == plan.DefaultRuleID {
		x.Notes = append(x.Notes, fmt.Sprintf("no pattern matched: the plan's default (%s) applies", p.Default()))
	}
	if dec.WouldDeny {
		x.Notes = append(x.Notes, fmt.Sprintf("report mode: the rule would %s; it is allowed and recorded", dec.Matched))
	}
	if n, ok := plan.NoteTLSRedirect(dec, d); ok {
		x.Notes = append(x.Notes, n.Lines()...)
	}
	x.Catalog = catalogRef(e.Catalog(), dec.RuleID())
	return x, nil
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
