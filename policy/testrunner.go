package policy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/cover"
	"github.com/open-policy-agent/opa/v1/tester"

	"github.com/egressguard/egressguard/policy/plan"
)

// TestOptions select what RunTestsWith runs.
type TestOptions struct {
	// Paths are files or directories: *_test.rego files are Rego unit tests,
	// *.yaml / *.yml files are scenario files.
	Paths []string
	// NoDefaults skips the embedded Rego unit tests and default scenarios.
	NoDefaults bool
	// RegoFilter is a regular expression selecting Rego tests by name.
	RegoFilter string
	// Coverage runs the Rego unit tests with OPA's coverage tracer and
	// fills TestReport.Coverage: which lines of the policy modules (the
	// embedded default policy and PolicyDir's *.rego, not the tests) the
	// tests evaluated.
	Coverage bool
}

// RegoTestResult is one Rego unit test.
type RegoTestResult struct {
	Package  string        `json:"package"`
	Name     string        `json:"name"`
	File     string        `json:"file"`
	Line     int           `json:"line"`
	Pass     bool          `json:"pass"`
	Error    string        `json:"error,omitempty"`
	Duration time.Duration `json:"duration_ns"`
}

// ScenarioResult is one scenario run through a compiled plan.
type ScenarioResult struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	Name    string `json:"name"`
	Pass    bool   `json:"pass"`
	Got     string `json:"got"`
	Want    string `json:"want"`
	Rule    string `json:"rule"`
	Message string `json:"message,omitempty"`
}

// TestReport is what `egressguard policy test` prints.
type TestReport struct {
	Version   string           `json:"policy_version"`
	Rego      []RegoTestResult `json:"rego"`
	Scenarios []ScenarioResult `json:"scenarios"`
	// Coverage is set when TestOptions.Coverage was.
	Coverage *CoverageReport `json:"coverage,omitempty"`
}

// Failed counts failing tests and scenarios.
func (r *TestReport) Failed() int {
	n := 0
	for _, t := range r.Rego {
		if !t.Pass {
			n++
		}
	}
	for _, s := range r.Scenarios {
		if !s.Pass {
			n++
		}
	}
	return n
}

// WriteText prints failures (and, if verbose, passes) and a summary line.
func (r *TestReport) WriteText(w io.Writer, verbose bool) error {
	var b strings.Builder
	for _, t := range r.Rego {
		if !t.Pass {
			fmt.Fprintf(&b, "FAIL rego %s.%s (%s:%d)", t.Package, t.Name, t.File, t.Line)
			if t.Error != "" {
				fmt.Fprintf(&b, ": %s", t.Error)
			}
			b.WriteByte('\n')
		} else if verbose {
			fmt.Fprintf(&b, "PASS rego %s.%s (%s)\n", t.Package, t.Name, t.Duration.Round(time.Microsecond))
		}
	}
	for _, s := range r.Scenarios {
		if !s.Pass {
			fmt.Fprintf(&b, "FAIL scenario %q (%s:%d): %s\n", s.Name, s.File, s.Line, s.Message)
		} else if verbose {
			fmt.Fprintf(&b, "PASS scenario %q: %s (%s)\n", s.Name, s.Got, s.Rule)
		}
	}
	fmt.Fprintf(&b, "policy %s: %d rego tests, %d scenarios, %d failed\n", r.Version, len(r.Rego), len(r.Scenarios), r.Failed())
	_, err := io.WriteString(w, b.String())
	return err
}

// RunTests runs the default tests plus those found under paths against the
// engine's serving policy. See RunTestsWith.
func RunTests(ctx context.Context, e *Engine, paths ...string) (*TestReport, error) {
	return RunTestsWith(ctx, e, TestOptions{Paths: paths})
}

// RunTestsWith runs Rego unit tests (OPA's tester, against the engine's
// modules and data) and scenario files (through the engine's compiled
// plans; where the policy defines data.egressguard.decision, the Rego
// reference must agree too). A returned error means the tests could not run
// (unreadable file, bad scenario file, Rego that does not compile); failing
// tests are in the report.
func RunTestsWith(ctx context.Context, e *Engine, opts TestOptions) (*TestReport, error) {
	s := e.cur.Load()
	rep := &TestReport{Version: s.version, Rego: []RegoTestResult{}, Scenarios: []ScenarioResult{}}
	var tests []regoFile
	var scenarioFiles []CatalogFile
	if !opts.NoDefaults {
		if !e.opts.ReplaceDefaultPolicy {
			tests = append(tests, defaultRego(true)...)
		}
		if !e.opts.NoDefaultCatalog {
			scenarioFiles = append(scenarioFiles, CatalogFile{Name: DefaultScenariosName, Data: defaultScenarios()})
		}
	}
	if e.opts.PolicyDir != "" {
		_, t, err := readRegoDir(e.opts.PolicyDir)
		if err != nil {
			return nil, err
		}
		tests = append(tests, t...)
	}
	t, sc, err := collectTestFiles(opts.Paths)
	if err != nil {
		return nil, err
	}
	tests = append(tests, t...)
	scenarioFiles = append(scenarioFiles, sc...)

	if len(tests) > 0 {
		var cov *cover.Cover
		if opts.Coverage {
			cov = cover.New()
		}
		res, err := runRegoTests(ctx, s, tests, opts.RegoFilter, cov)
		if err != nil {
			return nil, err
		}
		rep.Rego = res
		if cov != nil {
			rep.Coverage = newCoverageReport(s.modules, cov)
		}
	}
	if opts.Coverage && rep.Coverage == nil {
		// No Rego tests ran: nothing of the policy is covered.
		rep.Coverage = newCoverageReport(s.modules, cover.New())
	}
	var errs []error
	for _, f := range scenarioFiles {
		scs, err := ParseScenarios(f.Name, f.Data)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for i := range scs {
			rep.Scenarios = append(rep.Scenarios, runScenario(ctx, s, &scs[i]))
		}
	}
	return rep, errors.Join(errs...)
}

func collectTestFiles(paths []string) (tests []regoFile, scenarios []CatalogFile, err error) {
	var errs []error
	addFile := func(p string) {
		switch {
		case strings.HasSuffix(p, "_test.rego"):
			b, err := os.ReadFile(p)
			if err != nil {
				errs = append(errs, fmt.Errorf("policy test: %w", err))
				return
			}
			tests = append(tests, regoFile{Name: p, Data: b})
		case strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml"):
			b, err := os.ReadFile(p)
			if err != nil {
				errs = append(errs, fmt.Errorf("policy test: %w", err))
				return
			}
			scenarios = append(scenarios, CatalogFile{Name: p, Data: b})
		}
	}
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("policy test: %w", err))
			continue
		}
		if !fi.IsDir() {
			if !strings.HasSuffix(p, "_test.rego") && !strings.HasSuffix(p, ".yaml") && !strings.HasSuffix(p, ".yml") {
				errs = append(errs, fmt.Errorf("policy test: %s: want a *_test.rego or a scenario .yaml file", p))
				continue
			}
			addFile(p)
			continue
		}
		ents, err := os.ReadDir(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("policy test: %w", err))
			continue
		}
		for _, e := range ents {
			if !e.IsDir() {
				addFile(filepath.Join(p, e.Name()))
			}
		}
	}
	return tests, scenarios, errors.Join(errs...)
}

func runRegoTests(ctx context.Context, s *state, tests []regoFile, filter string, cov *cover.Cover) ([]RegoTestResult, error) {
	testMods, err := parseRego(tests)
	if err != nil {
		return nil, err
	}
	mods := make(map[string]*ast.Module, len(s.modules)+len(testMods))
	for k, v := range s.modules {
		mods[k] = v.Copy()
	}
	for k, v := range testMods {
		mods[k] = v
	}
	r := tester.NewRunner().
		SetCompiler(ast.NewCompiler()).
		SetStore(newStore(s.catalogDoc)).
		SetModules(mods).
		SetTimeout(30 * time.Second).
		RaiseBuiltinErrors(true)
	if filter != "" {
		r = r.Filter(filter)
	}
	if cov != nil {
		// Only the baseline pass: the supplementary passes (rule indexing
		// and early exit disabled, which only annotate why a range was
		// missed) would run every test twice more.
		r = r.SetCoverageQueryTracer(cov).SetCoverageRuns(nil)
	}
	ch, err := r.RunTests(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("policy test: %w", regoErrors(err))
	}
	var out []RegoTestResult
	for res := range ch {
		tr := RegoTestResult{Package: strings.TrimPrefix(res.Package, "data."), Name: res.Name, Duration: res.Duration,
			Pass: !res.Fail && res.Error == nil}
		if res.Location != nil {
			tr.File, tr.Line = res.Location.File, res.Location.Row
		}
		switch {
		case res.Error != nil:
			tr.Error = res.Error.Error()
		case res.Fail && res.FailedAt != nil && res.FailedAt.Location != nil:
			tr.Error = fmt.Sprintf("failed at %s:%d: %s", res.FailedAt.Location.File, res.FailedAt.Location.Row, res.FailedAt.Location.Text)
		case res.Fail:
			tr.Error = "failed"
		}
		if res.Skip {
			continue
		}
		out = append(out, tr)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].File != out[j].File {
			return out[i].File < out[j].File
		}
		return out[i].Line < out[j].Line
	})
	return out, nil
}

func runScenario(ctx context.Context, s *state, sc *Scenario) ScenarioResult {
	res := ScenarioResult{File: sc.File, Line: sc.Line, Name: sc.Name, Want: sc.Want}
	p, err := s.planFor(ctx, &sc.wl)
	if err != nil {
		res.Message = err.Error()
		return res
	}
	if sc.Request != nil {
		return runRequestScenario(ctx, s, sc, p, res)
	}
	d := p.Decide(sc.dest)
	res.Got, res.Rule = d.Action.String(), d.RuleID()
	problems := outcomeProblems(sc, d.Action, d.RuleID(), d.Reason(), d.Target(), d.RuleID())
	if s.decisionQ != nil {
		ref, err := s.referenceDecision(ctx, &sc.wl, sc.dest)
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("Rego reference: %v", err))
		case !agrees(d, ref):
			problems = append(problems, fmt.Sprintf("the compiled plan (%s by %s) and the Rego reference (%s by %s) disagree", d.Action, d.RuleID(), ref.Action, ref.Rule))
		}
	}
	res.Pass = len(problems) == 0
	res.Message = strings.Join(problems, "; ")
	return res
}

// outcomeProblems checks what every scenario may state: the action (by
// the rule that decided it, with its reason), the redirect target and the
// deciding host rule.
func outcomeProblems(sc *Scenario, action plan.Action, by, reason string, t *plan.Redirect, hostRule string) []string {
	var problems []string
	if action != sc.want {
		problems = append(problems, fmt.Sprintf("got %s by rule %s (%s), want %s", action, by, reason, sc.Want))
	}
	if sc.Target != "" {
		got := ""
		if t != nil {
			got = Target{Host: t.Host, Port: t.Port}.String()
		}
		if got != sc.Target {
			problems = append(problems, fmt.Sprintf("redirect target %q, want %q", got, sc.Target))
		}
	}
	if sc.Rule != "" && hostRule != sc.Rule {
		problems = append(problems, fmt.Sprintf("rule %q, want %q", hostRule, sc.Rule))
	}
	return problems
}

// runRequestScenario runs a scenario with a request through
// plan.DecideRequest and the Rego reference request_decision.
func runRequestScenario(ctx context.Context, s *state, sc *Scenario, p *plan.Plan, res ScenarioResult) ScenarioResult {
	r := sc.req.Plan()
	d := p.DecideRequest(sc.dest, r)
	res.Got, res.Rule = d.Action.String(), d.RuleID()
	problems := outcomeProblems(sc, d.Action, d.RuleID(), d.Reason(), d.Target(), d.Rule.ID)
	var reqID, cred string
	if d.Request != nil {
		reqID, cred = d.Request.ID, d.Request.Credential
	}
	if sc.RequestRule != "" && reqID != sc.RequestRule {
		problems = append(problems, fmt.Sprintf("request rule %q, want %q", reqID, sc.RequestRule))
	}
	if sc.Credential != "" && cred != sc.Credential {
		problems = append(problems, fmt.Sprintf("credential kind %q, want %q", cred, sc.Credential))
	}
	if s.requestQ != nil {
		ref, err := s.referenceRequestDecision(ctx, &sc.wl, sc.dest, sc.req)
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("Rego reference: %v", err))
		case !agreesRequest(d, ref):
			problems = append(problems, fmt.Sprintf("the compiled plan (%s by %s) and the Rego reference (%s by %s > %s) disagree", d.Action, d.RuleID(), ref.Action, ref.Rule, ref.RequestRule))
		}
	}
	res.Pass = len(problems) == 0
	res.Message = strings.Join(problems, "; ")
	return res
}

// agreesRequest is agrees for request decisions: the request rule and its
// credential kind must match too.
func agreesRequest(d plan.RequestDecision, ref RegoDecision) bool {
	var reqID, cred string
	if d.Request != nil {
		reqID, cred = d.Request.ID, d.Request.Credential
	}
	if reqID != ref.RequestRule || cred != ref.Credential {
		return false
	}
	if d.Request == nil {
		return agrees(d.Decision, ref)
	}
	if d.Action != ref.Action || d.Matched != ref.Matched || d.Rule.ID != ref.Rule || d.WouldDeny != ref.WouldDeny {
		return false
	}
	t := d.Target()
	if (t == nil) != (ref.Redirect == nil) {
		return false
	}
	return t == nil || *t == *ref.Redirect
}

// agrees reports whether a plan decision and the Rego reference match in
// everything an enforcer acts on.
func agrees(d plan.Decision, ref RegoDecision) bool {
	if d.Action != ref.Action || d.Matched != ref.Matched || d.RuleID() != ref.Rule || d.WouldDeny != ref.WouldDeny {
		return false
	}
	t := d.Target()
	if (t == nil) != (ref.Redirect == nil) {
		return false
	}
	return t == nil || *t == *ref.Redirect
}

// CoverageReport is OPA's Rego coverage of the policy modules (the embedded
// default policy and PolicyDir's *.rego; test modules are not counted),
// sorted by file. Percentages are rounded to two decimals.
type CoverageReport struct {
	Files           []FileCoverage `json:"files"`
	CoveredLines    int            `json:"covered_lines"`
	NotCoveredLines int            `json:"not_covered_lines"`
	Coverage        float64        `json:"coverage"`
}

// FileCoverage is the coverage of one Rego module.
type FileCoverage struct {
	File            string      `json:"file"`
	CoveredLines    int         `json:"covered_lines"`
	NotCoveredLines int         `json:"not_covered_lines"`
	Coverage        float64     `json:"coverage"`
	NotCovered      []LineRange `json:"not_covered,omitempty"`
}

// LineRange is an inclusive range of lines.
type LineRange struct {
	Start int `json:"start"`
	End   int `json:"end"`
}

func (r LineRange) String() string {
	if r.Start == r.End {
		return strconv.Itoa(r.Start)
	}
	return fmt.Sprintf("%d-%d", r.Start, r.End)
}

// newCoverageReport converts OPA's report on the policy modules. OPA's
// report also lists every file the tracer saw (the test modules): those
// are dropped and the totals recomputed.
func newCoverageReport(modules map[string]*ast.Module, cov *cover.Cover) *CoverageReport {
	r := cov.Report(modules)
	out := &CoverageReport{Files: []FileCoverage{}}
	for name, fr := range r.Files {
		if _, ok := modules[name]; !ok {
			continue
		}
		fc := FileCoverage{File: name, CoveredLines: fr.CoveredLines, NotCoveredLines: fr.NotCoveredLines}
		if total := fc.CoveredLines + fc.NotCoveredLines; total > 0 {
			fc.Coverage = round2(100 * float64(fc.CoveredLines) / float64(total))
		}
		for _, rng := range fr.NotCovered {
			lr := LineRange{Start: rng.Start.Row, End: rng.End.Row}
			if n := len(fc.NotCovered); n > 0 && fc.NotCovered[n-1].End+1 >= lr.Start {
				fc.NotCovered[n-1].End = max(fc.NotCovered[n-1].End, lr.End)
				continue
			}
			fc.NotCovered = append(fc.NotCovered, lr)
		}
		out.Files = append(out.Files, fc)
		out.CoveredLines += fc.CoveredLines
		out.NotCoveredLines += fc.NotCoveredLines
	}
	sort.Slice(out.Files, func(i, j int) bool { return out.Files[i].File < out.Files[j].File })
	if total := out.CoveredLines + out.NotCoveredLines; total > 0 {
		out.Coverage = round2(100 * float64(out.CoveredLines) / float64(total))
	}
	return out
}

func round2(f float64) float64 { return math.Round(f*100) / 100 }

// WriteText prints one line per file (percentage, covered/total lines and
// the line ranges no test evaluated) and a total line.
func (c *CoverageReport) WriteText(w io.Writer) error {
	var b strings.Builder
	for _, f := range c.Files {
		fmt.Fprintf(&b, "coverage %6.2f%%  %s (%d/%d lines)", f.Coverage, f.File, f.CoveredLines, f.CoveredLines+f.NotCoveredLines)
		if len(f.NotCovered) > 0 {
			rs := make([]string, len(f.NotCovered))
			for i, r := range f.NotCovered {
				rs[i] = r.String()
			}
			fmt.Fprintf(&b, " not covered: %s", strings.Join(rs, ","))
		}
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "coverage %6.2f%%  total (%d/%d lines)\n", c.Coverage, c.CoveredLines, c.CoveredLines+c.NotCoveredLines)
	_, err := io.WriteString(w, b.String())
	return err
}

// CheckThreshold returns an error naming the threshold and the actual
// figure when total coverage (rounded to two decimals, as printed) is below
// threshold (a percentage).
func (c *CoverageReport) CheckThreshold(threshold float64) error {
	if c.Coverage < threshold {
		return fmt.Errorf("policy test: Rego coverage %.2f%% is below the threshold %s%%", c.Coverage, strconv.FormatFloat(threshold, 'f', -1, 64))
	}
	return nil
}

// CoverageThresholdFile is the file in a policy directory that sets the
// repository's minimum Rego coverage: a single number, a percentage.
const CoverageThresholdFile = ".egressguard-coverage"

// ReadCoverageThreshold reads dir/.egressguard-coverage. ok is false when
// the file does not exist; anything but a single number in [0, 100] is an
// error naming the file.
func ReadCoverageThreshold(dir string) (threshold float64, ok bool, err error) {
	p := filepath.Join(dir, CoverageThresholdFile)
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("policy test: %w", err)
	}
	f, err := ParseCoverageThreshold(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, false, fmt.Errorf("policy test: %s: %w", p, err)
	}
	return f, true, nil
}

// ParseCoverageThreshold parses a coverage percentage (a number in [0, 100],
// an optional trailing "%" allowed).
func ParseCoverageThreshold(s string) (float64, error) {
	f, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
	if err != nil || math.IsNaN(f) || f < 0 || f > 100 {
		return 0, fmt.Errorf("coverage threshold %q: want a single number between 0 and 100", s)
	}
	return f, nil
}
