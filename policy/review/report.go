package review

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/egressguard/egressguard/policy"
	"github.com/egressguard/egressguard/policy/plan"
)

// WriteJSON writes the whole report, indented.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes every change, one per line, for a terminal.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "policy diff %s (%s) -> %s (%s)\n", r.Base, short(r.BaseVersion), r.Head, short(r.HeadVersion))
	s := r.Stats
	fmt.Fprintf(&b, "compared %d classes (%d workloads, %d plan pairs, %d changed) over %d destinations and %d recorded requests: %d decisions\n",
		s.Classes, s.Workloads, s.PlanPairs, s.ChangedPlanPairs, s.Destinations, s.Recorded, s.Compared)
	if !r.Changed() {
		b.WriteString("no changes\n")
	}
	if len(r.Decisions) > 0 {
		fmt.Fprintf(&b, "\ndecisions changed (%d):\n", len(r.Decisions))
		for _, d := range r.Decisions {
			mark := " "
			if d.Widens {
				mark = "!"
			}
			fmt.Fprintf(&b, "%s %s%s: %s -> %s  (%s; %s)\n", mark, d.Destination, PortList(d.Ports), d.Before, d.After, summarizeClasses(d.Classes, 3), d.Source)
		}
	}
	if len(r.Rules) > 0 {
		fmt.Fprintf(&b, "\nrules changed (%d):\n", len(r.Rules))
		for _, c := range r.Rules {
			mark := " "
			if c.Widens {
				mark = "!"
			}
			fmt.Fprintf(&b, "%s %-7s %s%s  (%s)\n", mark, c.Kind, c.ID, ruleDetail(c), summarizeClasses(c.Classes, 3))
		}
	}
	writeExpired(&b, "base", r)
	if r.Widens {
		b.WriteString("\nWIDENS non-production access to production:\n")
		for _, s := range r.WideningReasons {
			fmt.Fprintf(&b, "  - %s\n", s)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeExpired(b *strings.Builder, _ string, r *Report) {
	for _, side := range []struct {
		name string
		xs   []policy.ExpiredException
	}{{"base", r.ExpiredBase}, {"head", r.ExpiredHead}} {
		for _, x := range side.xs {
			fmt.Fprintf(b, "\nnote: %s: exception %s expired %s and is ignored (owner %s, ticket %s, %s)", side.name, x.ID, x.Expires, x.Owner, x.Ticket, x.File)
		}
	}
	if len(r.ExpiredBase)+len(r.ExpiredHead) > 0 {
		b.WriteString("\n")
	}
}

func ruleDetail(c RuleChange) string {
	switch c.Kind {
	case "added":
		return ": " + ruleSummary(c.After)
	case "removed":
		return ": was " + ruleSummary(c.Before)
	}
	return fmt.Sprintf(" [%s]: %s => %s", strings.Join(c.Fields, ","), ruleSummary(c.Before), ruleSummary(c.After))
}

func ruleSummary(v *plan.Rule) string {
	{
		if v == nil {
			return ""
		}
		var parts []string
		parts = append(parts, v.Action.String())
		if v.Redirect != nil {
			parts[0] += " -> " + v.Redirect.Host
			if v.Redirect.Port != 0 {
				parts[0] += fmt.Sprintf(":%d", v.Redirect.Port)
			}
		}
		if v.Mode != 0 {
			parts = append(parts, "mode "+v.Mode.String())
		}
		if len(v.Hosts) > 0 {
			parts = append(parts, "hosts "+capList(v.Hosts, 4))
		}
		if len(v.CIDRs) > 0 {
			parts = append(parts, "cidrs "+capList(v.CIDRs, 4))
		}
		if len(v.Ports) > 0 {
			parts = append(parts, fmt.Sprintf("ports %v", v.Ports))
		}
		return strings.Join(parts, " ")
	}
}

func capList(xs []string, n int) string {
	if len(xs) <= n {
		return "[" + strings.Join(xs, " ") + "]"
	}
	return fmt.Sprintf("[%s +%d]", strings.Join(xs[:n], " "), len(xs)-n)
}

func short(v string) string {
	if len(v) > 12 {
		return v[:12]
	}
	return v
}

// MarkdownOptions size the Markdown summary.
type MarkdownOptions struct {
	// MaxRows caps each table (default 30); the rest are counted.
	MaxRows int
}

// WriteMarkdown writes a summary sized for a pull-request comment.
func (r *Report) WriteMarkdown(w io.Writer, o MarkdownOptions) error {
	if o.MaxRows <= 0 {
		o.MaxRows = 30
	}
	var b strings.Builder
	b.WriteString("### egressguard policy diff\n\n")
	if r.Widens {
		b.WriteString("> [!WARNING]\n> **This change widens access from non-production to production.** It needs an extra approval.\n")
		for _, s := range capStrings(r.WideningReasons, 10) {
			fmt.Fprintf(&b, "> - %s\n", mdEscape(s))
		}
		b.WriteString("\n")
	}
	s := r.Stats
	widening := 0
	for _, d := range r.Decisions {
		if d.Widens {
			widening++
		}
	}
	fmt.Fprintf(&b, "`%s` → `%s`: **%d decision change(s)** (%d widening), **%d rule change(s)**; compared %d classes over %d destinations and %d recorded requests.\n\n",
		short(r.BaseVersion), short(r.HeadVersion), len(r.Decisions), widening, len(r.Rules), s.Classes, s.Destinations, s.Recorded)
	if !r.Changed() {
		b.WriteString("No decision or rule changes.\n")
	}
	if len(r.Decisions) > 0 {
		b.WriteString("| | destination | classes | before | after |\n|---|---|---|---|---|\n")
		for i, d := range r.Decisions {
			if i == o.MaxRows {
				fmt.Fprintf(&b, "\n… and %d more decision change(s) (run `egressguard policy diff` for all).\n", len(r.Decisions)-i)
				break
			}
			mark := ""
			if d.Widens {
				mark = "⚠️"
			}
			fmt.Fprintf(&b, "| %s | `%s`%s | %s | %s | %s |\n", mark, mdEscape(d.Destination), mdEscape(PortList(d.Ports)), mdEscape(summarizeClasses(d.Classes, 2)), mdOutcome(d.Before), mdOutcome(d.After))
		}
		b.WriteString("\n")
	}
	if len(r.Rules) > 0 {
		b.WriteString("<details><summary>Rule changes (" + fmt.Sprint(len(r.Rules)) + ")</summary>\n\n| | change | rule | detail | classes |\n|---|---|---|---|---|\n")
		for i, c := range r.Rules {
			if i == o.MaxRows {
				fmt.Fprintf(&b, "\n… and %d more rule change(s).\n", len(r.Rules)-i)
				break
			}
			mark := ""
			if c.Widens {
				mark = "⚠️"
			}
			fmt.Fprintf(&b, "| %s | %s | `%s` | %s | %s |\n", mark, c.Kind, mdEscape(c.ID), mdEscape(strings.TrimLeft(ruleDetail(c), ": ")), mdEscape(summarizeClasses(c.Classes, 2)))
		}
		b.WriteString("\n</details>\n")
	}
	for _, side := range []struct {
		name string
		xs   []policy.ExpiredException
	}{{"base", r.ExpiredBase}, {"head", r.ExpiredHead}} {
		for _, x := range side.xs {
			fmt.Fprintf(&b, "\n- %s: exception `%s` expired %s and is ignored (owner %s, ticket %s)", side.name, x.ID, x.Expires, mdEscape(x.Owner), mdEscape(x.Ticket))
		}
	}
	if len(r.ExpiredBase)+len(r.ExpiredHead) > 0 {
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func mdOutcome(o Outcome) string {
	s := "**" + o.Action + "**"
	if o.Target != "" {
		s += " → " + mdEscape(o.Target)
	}
	if o.WouldDeny {
		s += " (report)"
	}
	return s + " `" + mdEscape(o.Rule) + "`"
}

func mdEscape(s string) string {
	return strings.NewReplacer("|", "\\|", "\n", " ", "`", "'").Replace(s)
}

func capStrings(xs []string, n int) []string {
	if len(xs) <= n {
		return xs
	}
	return append(xs[:n:n], fmt.Sprintf("… and %d more", len(xs)-n))
}
