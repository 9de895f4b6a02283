package review

import (
	"cmp"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v3"

	"github.com/egressguard/egressguard/inventory"
	"github.com/egressguard/egressguard/policy"
	"github.com/egressguard/egressguard/policy/plan"
)

// MaxExceptionDays is how far ahead an exception may expire.
const MaxExceptionDays = 90

// Finding is one lint problem.
type Finding struct {
	File     string `json:"file,omitempty"`
	Line     int    `json:"line,omitempty"`
	Check    string `json:"check"`
	Severity string `json:"severity"` // error, warning or info (a listing, not a problem)
	Message  string `json:"message"`
}

func (f Finding) String() string {
	loc := f.File
	if f.Line > 0 {
		loc = fmt.Sprintf("%s:%d", f.File, f.Line)
	}
	if loc != "" {
		loc += ": "
	}
	return fmt.Sprintf("%s%s: %s [%s]", loc, f.Severity, f.Message, f.Check)
}

// Lint checks the project's policy conventions on a compiled side:
//
//   - rule-id-reason: every rule of every class's plan has an id and a reason;
//   - exception-expiry: every exception has owner, ticket and an expiry no
//     more than MaxExceptionDays after now (expired ones are warnings: they
//     are ignored, and should be deleted);
//   - production-allow: no rule other than an exception's allows a
//     production zone or CIDR for a non-production class;
//   - host-network-opt-out: every host_network_opt_outs entry is listed
//     (info) and held to the exception-expiry rules.
//
// The classes are those Diff uses: each environment, the default workload,
// each exception's selector and the inventory's workloads.
func Lint(s *Side, inv *inventory.Snapshot, now time.Time) ([]Finding, error) {
	if inv == nil {
		inv = inventory.Empty(inventory.DefaultEnvironment)
	}
	var out []Finding
	// Exceptions, file by file (expired ones included).
	for _, f := range s.Layout.CatalogFiles {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("review: lint: %w", err)
		}
		c, err := policy.ParseCatalog(f, data)
		if err != nil {
			return nil, fmt.Errorf("review: lint: %w", err)
		}
		limit := now.UTC().Truncate(24*time.Hour).AddDate(0, 0, MaxExceptionDays)
		lines := sectionLines(data, "exceptions")
		for i, x := range c.Exceptions {
			add := func(sev, msg string) {
				out = append(out, Finding{File: f, Line: lines[i], Check: "exception-expiry", Severity: sev, Message: fmt.Sprintf("exceptions[%d] (%s): %s", i, x.ID, msg)})
			}
			timeBoxed(add, x.Owner, x.Ticket, x.Expires, now, limit)
		}
		out = append(out, lintOptOuts(f, data, c, now, limit)...)
	}
	// Rules of every class's plan.
	cat := s.Engine.Catalog()
	prodHosts, prodNets := productionPatterns(cat)
	ws := lintWorkloads(s, inv)
	seenPlan := map[string]bool{}
	seenFinding := map[string]bool{}
	for _, w := range ws {
		p, err := s.Engine.PlanFor(w)
		if err != nil {
			return nil, fmt.Errorf("review: lint: plan for %s: %w", s.Engine.ClassDescription(w), err)
		}
		if seenPlan[p.Fingerprint()] {
			continue
		}
		seenPlan[p.Fingerprint()] = true
		class := s.Engine.ClassDescription(w)
		guarded := !isProduction(cat, w.Environment)
		spec := p.Spec()
		for _, r := range spec.Rules {
			add := func(check, msg string) {
				k := check + "\x00" + r.ID + "\x00" + msg
				if seenFinding[k] {
					return
				}
				seenFinding[k] = true
				out = append(out, Finding{Check: check, Severity: "error", Message: fmt.Sprintf("rule %q (class %s): %s", r.ID, class, msg)})
			}
			if r.ID == "" {
				add("rule-id-reason", "rule has no id")
			}
			if strings.TrimSpace(r.Reason) == "" {
				add("rule-id-reason", "rule has no reason (the staging engineer who hits it needs one)")
			}
			if guarded && r.Action == plan.ActionAllow && !strings.HasPrefix(r.ID, "exception:") {
				if z := overlapsProduction(&r, prodHosts, prodNets); z != "" {
					add("production-allow", fmt.Sprintf("allows production %s to non-production environment %s without an exception (add a time-boxed exception with owner, ticket and expiry instead)", z, w.Environment))
				}
			}
		}
	}
	slices.SortStableFunc(out, func(a, b Finding) int {
		return cmp.Or(strings.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line), strings.Compare(a.Message, b.Message))
	})
	return out, nil
}

// lintWorkloads are one workload per environment, the default, one per
// exception selector and the inventory's.
func lintWorkloads(s *Side, inv *inventory.Snapshot) []*inventory.Workload {
	var ws []*inventory.Workload
	for _, env := range environments(s.Engine.Catalog()) {
		ws = append(ws, &inventory.Workload{Environment: env})
	}
	ws = append(ws, inv.Default())
	for _, x := range s.Engine.Catalog().Exceptions {
		env := x.Workload.Environment
		if env == "" {
			env = inv.DefaultEnvironment()
		}
		ws = append(ws, &inventory.Workload{Name: x.Workload.Name, Namespace: x.Workload.Namespace, Environment: env, Labels: x.Workload.Labels})
	}
	return append(ws, inv.Workloads()...)
}

// timeBoxed checks what exceptions and host-network opt-outs both need:
// an owner, a ticket and an expiry no later than limit (an expired one is a
// warning: it no longer applies, and should be deleted or renewed).
func timeBoxed(add func(sev, msg string), owner, ticket string, expires policy.Date, now, limit time.Time) {
	if strings.TrimSpace(owner) == "" {
		add("error", "owner is required")
	}
	if strings.TrimSpace(ticket) == "" {
		add("error", "ticket is required")
	}
	switch {
	case !expires.Valid():
		add("error", fmt.Sprintf("expires %q is not a YYYY-MM-DD date", expires.Raw))
	case expires.ExpiredAt(now):
		add("warning", fmt.Sprintf("expired %s and is ignored; delete it or renew it (owner %s, ticket %s)", expires, owner, ticket))
	case expires.Time().After(limit):
		add("error", fmt.Sprintf("expires %s, more than %d days ahead (latest allowed: %s)", expires, MaxExceptionDays, limit.Format("2006-01-02")))
	}
}

// sectionLines maps the index of each item of the top-level list key to
// its line.
func sectionLines(data []byte, key string) map[int]int {
	out := map[int]int{}
	var n yaml.Node
	if yaml.Unmarshal(data, &n) != nil || len(n.Content) == 0 {
		return out
	}
	m := n.Content[0]
	if m.Kind != yaml.MappingNode {
		return out
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key && m.Content[i+1].Kind == yaml.SequenceNode {
			for j, it := range m.Content[i+1].Content {
				out[j] = it.Line
			}
		}
	}
	return out
}

// Errors counts error findings.
func Errors(fs []Finding) int { return count(fs, "error") }

func count(fs []Finding, severity string) int {
	n := 0
	for _, f := range fs {
		if f.Severity == severity {
			n++
		}
	}
	return n
}

// WriteFindings writes one finding per line and a count.
func WriteFindings(w io.Writer, fs []Finding) error {
	var b strings.Builder
	for _, f := range fs {
		b.WriteString(f.String())
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "%d error(s), %d warning(s)\n", Errors(fs), count(fs, "warning"))
	_, err := io.WriteString(w, b.String())
	return err
}
