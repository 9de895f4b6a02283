package secretscan

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/owenrumney/go-sarif/v3/pkg/report/v210/sarif"
)

// JSONReport is the --format json document. Baselines are JSON reports.
type JSONReport struct {
	Version  int       `json:"version"`
	Findings []Finding `json:"findings"`
	Notices  []Notice  `json:"notices"`
	Summary  Summary   `json:"summary"`
}

// Summary counts what a scan saw.
type Summary struct {
	Files    int   `json:"files"`
	Bytes    int64 `json:"bytes"`
	Findings int   `json:"findings"`
	Secrets  int   `json:"secrets"`
	Skipped  int   `json:"skipped"`
	Ignored  int   `json:"ignored"`
	Allowed  int   `json:"allowed"`
}

func summarize(res *Result) Summary {
	s := Summary{Files: res.Files, Bytes: res.Bytes, Findings: len(res.Findings), Ignored: res.Ignored, Allowed: res.Allowed}
	for _, f := range res.Findings {
		if f.Kind == KindSecret {
			s.Secrets++
		}
	}
	for _, n := range res.Notices {
		if n.Skipped {
			s.Skipped++
		}
	}
	return s
}

// WriteJSON writes the JSON report.
func WriteJSON(w io.Writer, res *Result) error {
	rep := JSONReport{Version: 1, Findings: res.Findings, Notices: res.Notices, Summary: summarize(res)}
	if rep.Findings == nil {
		rep.Findings = []Finding{}
	}
	if rep.Notices == nil {
		rep.Notices = []Notice{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// TextDetail says how much of a scan WriteTextDetail writes beside the
// findings.
type TextDetail int

// Text report details.
const (
	// TextSummary lists notes one per line but counts skipped files by
	// reason, with one example each (a tree with a thousand binaries
	// would otherwise bury its findings), then the summary line.
	TextSummary TextDetail = iota
	// TextVerbose writes every notice on its own line, then the summary.
	TextVerbose
	// TextQuiet writes the findings only.
	TextQuiet
)

// WriteText writes one line per finding, then every notice and a summary.
func WriteText(w io.Writer, res *Result) error { return WriteTextDetail(w, res, TextVerbose) }

// WriteTextDetail writes one line per finding, then as much about the
// notices as detail says, then (unless quiet) a summary.
func WriteTextDetail(w io.Writer, res *Result, detail TextDetail) error {
	bw := bufio.NewWriter(w)
	for _, f := range res.Findings {
		loc := fmt.Sprintf("%s:%d:%d", f.File, f.Line, f.Column)
		if f.Commit != "" {
			loc = f.Commit[:min(12, len(f.Commit))] + ":" + loc
		}
		fmt.Fprintf(bw, "%s: %s %s [%s] %s: %s", loc, f.Severity, f.Kind, f.Rule, f.Message, f.Redacted)
		if f.Key != "" {
			fmt.Fprintf(bw, " (key %s)", f.Key)
		}
		if f.Decoded != "" {
			fmt.Fprintf(bw, " (decoded: %s)", f.Decoded)
		}
		if f.Allowed != "" {
			fmt.Fprintf(bw, " (allowed: %s)", f.Allowed)
		}
		fmt.Fprintf(bw, " fingerprint=%s\n", f.Fingerprint)
	}
	if detail == TextQuiet {
		return bw.Flush()
	}
	type group struct {
		n       int
		example Notice
	}
	var order []string
	groups := map[string]*group{}
	for _, n := range res.Notices {
		if detail == TextVerbose || !n.Skipped {
			fmt.Fprintln(bw, n.String())
			continue
		}
		c := skipClass(n.Reason)
		if groups[c] == nil {
			groups[c] = &group{example: n}
			order = append(order, c)
		}
		groups[c].n++
	}
	for _, c := range order {
		g := groups[c]
		fmt.Fprintf(bw, "skipped %d %s: %s, e.g. %s\n", g.n, plural(g.n, "file", "files"), c, g.example.String())
	}
	if len(order) > 0 {
		fmt.Fprintln(bw, "(-v lists every skipped file)")
	}
	s := summarize(res)
	fmt.Fprintf(bw, "%d findings (%d secrets) in %d files (%s); %d skipped, %d ignored, %d allowed\n",
		s.Findings, s.Secrets, s.Files, humanSize(s.Bytes), s.Skipped, s.Ignored, s.Allowed)
	return bw.Flush()
}

// skipClass groups the reasons a file was skipped: the reason without
// what varies per file (the commit, the size, the system error).
func skipClass(reason string) string {
	if rest, ok := strings.CutPrefix(reason, "commit "); ok {
		if _, after, ok := strings.Cut(rest, ": "); ok {
			reason = after
		}
	}
	switch {
	case strings.Contains(reason, "exceeds the") || strings.Contains(reason, "larger than the"):
		return "larger than the size limit (--max-file-size)"
	case strings.HasPrefix(reason, "not a regular file"):
		return "not a regular file"
	}
	if head, _, ok := strings.Cut(reason, ": "); ok {
		return head
	}
	return reason
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// securitySeverity maps to GitHub's security-severity scale.
var securitySeverity = map[Severity]string{
	SeverityCritical: "9.5", SeverityHigh: "8.0", SeverityMedium: "5.5", SeverityLow: "3.0",
}

func sarifLevel(s Severity) string {
	switch s {
	case SeverityCritical, SeverityHigh:
		return "error"
	case SeverityMedium:
		return "warning"
	}
	return "note"
}

// sarifURI makes a relative, slash-separated artifact URI.
func sarifURI(p string) string {
	p = filepath.ToSlash(filepath.Clean(p))
	return strings.TrimPrefix(p, "./")
}

// BuildSARIF builds a SARIF 2.1.0 log that GitHub code scanning accepts:
// every rule with its security-severity, one result per finding with a
// partial fingerprint, notices as tool execution notifications.
func BuildSARIF(res *Result, rules []*Rule, version string) *sarif.Report {
	rep := sarif.NewReport()
	run := sarif.NewRunWithInformationURI("egressguard", "https://github.com/egressguard/egressguard")
	run.Tool.Driver.WithVersion(version).WithSemanticVersion(strings.TrimPrefix(version, "v"))
	for _, r := range rules {
		pb := sarif.NewPropertyBag()
		pb.Add("security-severity", securitySeverity[r.Severity])
		pb.AddTag("security")
		pb.AddTag("secret")
		pb.Add("kind", string(r.Kind))
		pb.Add("environment", r.Env.String())
		run.AddRule(r.ID).
			WithName(sarifRuleName(r.ID)).
			WithShortDescription(sarif.NewMultiformatMessageString().WithText(r.Title)).
			WithFullDescription(sarif.NewMultiformatMessageString().WithText(r.Title + ". Format: " + r.Format)).
			WithHelp(sarif.NewMultiformatMessageString().WithText("Move the value to the production secret store and give staging its own test credential or sandbox endpoint; " +
				"if this is intended, add `egressguard:allow <reason>` on the line or the line above.")).
			WithDefaultConfiguration(sarif.NewReportingConfiguration().WithLevel(sarifLevel(r.Severity))).
			WithProperties(pb)
	}
	for _, f := range res.Findings {
		uri := sarifURI(f.File)
		run.AddDistinctArtifact(uri)
		region := sarif.NewRegion().WithStartLine(max(f.Line, 1)).WithStartColumn(max(f.Column, 1))
		msg := fmt.Sprintf("%s: %s (%s)", f.Message, f.Redacted, f.Kind)
		result := run.CreateResultForRule(f.Rule).
			WithLevel(sarifLevel(f.Severity)).
			WithMessage(sarif.NewTextMessage(msg)).
			WithPartialFingerprints(map[string]string{"egressguard/v1": f.Fingerprint}).
			AddLocation(sarif.NewLocationWithPhysicalLocation(
				sarif.NewPhysicalLocation().
					WithArtifactLocation(sarif.NewSimpleArtifactLocation(uri)).
					WithRegion(region)))
		pb := sarif.NewPropertyBag()
		pb.Add("kind", string(f.Kind))
		pb.Add("environment", string(f.Environment))
		pb.Add("severity", string(f.Severity))
		if f.Commit != "" {
			pb.Add("commit", f.Commit)
		}
		result.WithProperties(pb)
		if i := run.GetRuleIndex(f.Rule); i >= 0 {
			result.WithRuleIndex(i)
		}
		if f.Allowed != "" {
			result.AddSuppression(sarif.NewSuppression().WithKind("inSource").WithJustification(f.Allowed))
		}
	}
	inv := sarif.NewInvocation().WithExecutionSuccessful(true)
	for _, n := range res.Notices {
		note := sarif.NewNotification().WithLevel("note").WithMessage(sarif.NewTextMessage(n.Reason))
		region := sarif.NewRegion().WithStartLine(max(n.Line, 1))
		note.AddLocation(sarif.NewLocationWithPhysicalLocation(sarif.NewPhysicalLocation().
			WithArtifactLocation(sarif.NewSimpleArtifactLocation(sarifURI(n.File))).WithRegion(region)))
		if n.Skipped {
			note.WithLevel("warning")
		}
		inv.AddToolExecutionNotification(note)
	}
	run.AddInvocation(inv)
	rep.AddRun(run)
	return rep
}

// sarifRuleName turns a rule id into the PascalCase name SARIF viewers show.
func sarifRuleName(id string) string {
	var b strings.Builder
	for _, part := range strings.Split(id, "-") {
		if part == "" {
			continue
		}
		b.WriteString(strings.ToUpper(part[:1]) + part[1:])
	}
	return b.String()
}

// WriteSARIF writes the SARIF log.
func WriteSARIF(w io.Writer, res *Result, rules []*Rule, version string) error {
	return BuildSARIF(res, rules, version).PrettyWrite(w)
}

// LoadBaseline reads the fingerprints of a baseline: a JSON report written
// by --format json, or a list with one fingerprint per line.
func LoadBaseline(r io.Reader) (map[string]bool, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("secretscan: baseline: %w", err)
	}
	set := map[string]bool{}
	if t := bytes.TrimSpace(data); len(t) > 0 && t[0] == '{' {
		var rep JSONReport
		if err := json.Unmarshal(t, &rep); err != nil {
			return nil, fmt.Errorf("secretscan: baseline: not a JSON report: %w", err)
		}
		for _, f := range rep.Findings {
			set[f.Fingerprint] = true
		}
		return set, nil
	}
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if !isFingerprint(line) {
			return nil, fmt.Errorf("secretscan: baseline line %d: %q is not a finding fingerprint", i+1, line)
		}
		set[line] = true
	}
	return set, nil
}

// ApplyBaseline drops findings whose fingerprint is in the baseline.
func (r *Result) ApplyBaseline(baseline map[string]bool) {
	out := r.Findings[:0]
	for _, f := range r.Findings {
		if baseline[f.Fingerprint] {
			r.Ignored++
			continue
		}
		out = append(out, f)
	}
	r.Findings = out
}
