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
	Severity string `json:"severity"` // error or warning
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
//     production zone or CIDR for a non-production class.
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
		lines := exceptionLines(data)
		limit := now.UTC().Truncate(24*time.Hour).AddDate(0, 0, MaxExceptionDays)
		for i, x := range c.Exceptions {
			ln := lines[i]
			add := func(sev, msg string) {
				out = append(out, Finding{File: f, Line: ln, Check: "exception-expiry", Severity: sev, Message: fmt.Sprintf("exceptions[%d] (%s): %s", i, x.ID, msg)})
			}
			if strings.TrimSpace(x.Owner) == "" {
				add("error", "owner is required")
			}
			if strings.TrimSpace(x.Ticket) == "" {
				add("error", "ticket is required")
			}
			switch {
			case !x.Expires.Valid():
				add("error", fmt.Sprintf("expires %q is not a YYYY-MM-DD date", x.Expires.Raw))
			case x.Expires.ExpiredAt(now):
				add("warning", fmt.Sprintf("expired %s and is ignored; delete it or renew it (owner %s, ticket %s)", x.Expires, x.Owner, x.Ticket))
			case x.Expires.Time().After(limit):
				add("error", fmt.Sprintf("expires %s, more than %d days ahead (latest allowed: %s)", x.Expires, MaxExceptionDays, limit.Format("2006-01-02")))
			}
		}
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

// exceptionLines maps the index of each item of the top-level exceptions
// list to its line.
func exceptionLines(data []byte) map[int]int {
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
		if m.Content[i].Value == "exceptions" && m.Content[i+1].Kind == yaml.SequenceNode {
			for j, it := range m.Content[i+1].Content {
				out[j] = it.Line
			}
		}
	}
	return out
}

// Errors counts error findings.
func Errors(fs []Finding) int {
	n := 0
	for _, f := range fs {
		if f.Severity == "error" {
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
	fmt.Fprintf(&b, "%d error(s), %d warning(s)\n", Errors(fs), len(fs)-Errors(fs))
	_, err := io.WriteString(w, b.String())
	return err
}
