package policy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

	"github.com/egressguard/egressguard/internal/memo"
	"github.com/egressguard/egressguard/inventory"
	"github.com/egressguard/egressguard/policy/plan"
)

// Rego entry points (see rego/egressguard.rego and README.md).
const (
	queryPlan        = "data.egressguard.plan"
	queryRulesets    = "data.egressguard.rulesets"
	queryClassLabels = "data.egressguard.class_labels"
	queryClassFields = "data.egressguard.class_fields"
	queryDecision    = "data.egressguard.decision"
	queryRequest     = "data.egressguard.request_decision"
)

// state is one immutable policy version: the merged catalog, the compiled
// Rego, the shared rule sets and the per-class plan cache. A reload builds a
// new state and swaps a pointer, so lookups in flight are never stalled.
type state struct {
	version    string
	loadedAt   time.Time
	catalog    *Catalog
	catalogDoc map[string]any // the catalog as data.catalog (JSON shape)
	expired    []ExpiredException
	nextExpiry time.Time // zero when no active exception expires
	modules    map[string]*ast.Module
	sources    []regoFile
	compiler   *ast.Compiler
	store      storage.Store
	planQ      rego.PreparedEvalQuery
	decisionQ  *rego.PreparedEvalQuery // nil when the policy defines no decision
	requestQ   *rego.PreparedEvalQuery // nil when it defines no request_decision
	rulesets   map[string][]plan.Rule
	// interceptHosts is InterceptHosts' answer (see interceptHostsOf).
	interceptHosts []string
	class          classSpec
	metrics        *Metrics

	layers memo.Memo[string, *plan.Layer] // by include list
	plans  memo.Memo[string, *plan.Plan]  // by class key (classSpec.classKey)
}

// sourceSet is everything a state is built from.
type sourceSet struct {
	catalogFiles []CatalogFile
	rego         []regoFile
	regoTests    []regoFile
}

// readSources reads the embedded defaults and the operator's files.
func readSources(opts Options) (sourceSet, error) {
	var s sourceSet
	var errs []error
	if !opts.NoDefaultCatalog {
		s.catalogFiles = append(s.catalogFiles, DefaultCatalog())
	}
	files, err := LoadCatalogFiles(opts.CatalogFiles...)
	errs = append(errs, err)
	s.catalogFiles = append(s.catalogFiles, files...)
	if !opts.ReplaceDefaultPolicy {
		s.rego = append(s.rego, defaultRego(false)...)
		s.regoTests = append(s.regoTests, defaultRego(true)...)
	}
	if opts.PolicyDir != "" {
		mods, tests, err := readRegoDir(opts.PolicyDir)
		errs = append(errs, err)
		s.rego = append(s.rego, mods...)
		s.regoTests = append(s.regoTests, tests...)
	}
	if len(s.rego) == 0 {
		errs = append(errs, errors.New("policy: no Rego modules: ReplaceDefaultPolicy is set but the policy dir has no .rego files"))
	}
	return s, errors.Join(errs...)
}

// buildState loads one policy version. It fails (closed) unless the catalog
// validates, the Rego compiles, the rule sets compile and a canary plan for
// a guarded and a production workload can be built.
func buildState(ctx context.Context, src sourceSet, now time.Time, m *Metrics) (*state, error) {
	cat, expired, err := BuildCatalog(src.catalogFiles, now)
	if err != nil {
		return nil, err
	}
	mods, err := parseRego(src.rego)
	if err != nil {
		return nil, err
	}
	compiler, err := compileRego(mods)
	if err != nil {
		return nil, err
	}
	doc, err := catalogData(cat)
	if err != nil {
		return nil, err
	}
	s := &state{
		loadedAt:   now,
		catalog:    cat,
		catalogDoc: doc,
		expired:    expired,
		modules:    mods,
		sources:    src.rego,
		compiler:   compiler,
		metrics:    m,
	}
	for _, x := range cat.Exceptions {
		end := x.Expires.Time().AddDate(0, 0, 1)
		if s.nextExpiry.IsZero() || end.Before(s.nextExpiry) {
			s.nextExpiry = end
		}
	}
	s.store = newStore(doc)
	if !definesRule(compiler, queryPlan) {
		return nil, fmt.Errorf("policy: no module defines %s (the policy contract)", queryPlan)
	}
	if s.planQ, err = s.prepare(ctx, queryPlan); err != nil {
		return nil, err
	}
	if definesRule(compiler, queryDecision) {
		q, err := s.prepare(ctx, queryDecision)
		if err != nil {
			return nil, err
		}
		s.decisionQ = &q
	}
	if definesRule(compiler, queryRequest) {
		q, err := s.prepare(ctx, queryRequest)
		if err != nil {
			return nil, err
		}
		s.requestQ = &q
	}
	if err := s.loadRulesets(ctx); err != nil {
		return nil, err
	}
	s.interceptHosts = interceptHostsOf(s.rulesets)
	if err := s.loadClassSpec(ctx); err != nil {
		return nil, err
	}
	s.version = s.hash()
	// Canaries: fail closed now rather than on the first request.
	var errs []error
	for i, env := range canaryEnvironments(cat) {
		if _, err := s.planFor(ctx, &inventory.Workload{Name: "egressguard-canary", Environment: env}); err != nil {
			errs = append(errs, fmt.Errorf("canary workload in environment %q: %w", env, err))
		}
		if i == 0 { // a guarded class with the sidecar (request-level rules)
			if _, err := s.planFor(ctx, &inventory.Workload{Name: "egressguard-canary", Environment: env, Sidecar: true}); err != nil {
				errs = append(errs, fmt.Errorf("canary workload with the sidecar in environment %q: %w", env, err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

func canaryEnvironments(c *Catalog) []string {
	envs := []string{"egressguard-unlisted-environment"}
	if e := c.Environments; e != nil {
		if len(e.NonProduction) > 0 {
			envs = append(envs, e.NonProduction[0])
		}
		if len(e.Production) > 0 {
			envs = append(envs, e.Production[0])
		}
	}
	return envs
}

// interceptHostsOf is the sorted union of the host patterns of every
// intercepted rule (plan.Rule.Intercepted) in the shared rule sets: the
// names the staging CA may vouch for. "*" is never intercepted (see
// plan.Plan.Intercepts). Rules a custom policy adds to one class's plan
// ("rules" of data.egressguard.plan) are not seen here; an intercept chain
// for such a host finds no leaf and is denied.
func interceptHostsOf(rulesets map[string][]plan.Rule) []string {
	var out []string
	for _, rules := range rulesets {
		for i := range rules {
			if rules[i].Intercepted() {
				out = append(out, slices.DeleteFunc(slices.Clone(rules[i].Hosts), func(h string) bool { return h == "*" })...)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// newStore holds data.catalog as AST values, so that reads do not convert
// the catalog on every evaluation (inmem.OptReturnASTValuesOnRead).
func newStore(doc map[string]any) storage.Store {
	return inmem.NewFromObjectWithOpts(map[string]any{"catalog": doc},
		inmem.OptRoundTripOnWrite(false), inmem.OptReturnASTValuesOnRead(true))
}

// catalogData renders the catalog in its JSON shape (what Rego reads).
func catalogData(c *Catalog) (map[string]any, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("policy: catalog to data: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var out map[string]any
	if err := dec.Decode(&out); err != nil {
		return nil, fmt.Errorf("policy: catalog to data: %w", err)
	}
	out["index"] = catalogIndex(c)
	return out, nil
}

func definesRule(c *ast.Compiler, query string) bool {
	return len(c.GetRules(ast.MustParseRef(query))) > 0
}

func (s *state) prepare(ctx context.Context, query string) (rego.PreparedEvalQuery, error) {
	q, err := rego.New(
		rego.Query(query),
		rego.Compiler(s.compiler),
		rego.Store(s.store),
		rego.StrictBuiltinErrors(true),
	).PrepareForEval(ctx)
	if err != nil {
		return q, fmt.Errorf("policy: prepare %s: %w", query, regoErrors(err))
	}
	return q, nil
}

// evalOnce evaluates a data-only query (no input) and decodes its value into
// out. It reports whether the value was defined.
func (s *state) evalOnce(ctx context.Context, query string, out any) (bool, error) {
	if !definesRule(s.compiler, query) {
		return false, nil
	}
	q, err := s.prepare(ctx, query)
	if err != nil {
		return false, err
	}
	rs, err := q.Eval(ctx)
	if err != nil {
		return false, fmt.Errorf("policy: eval %s: %w", query, regoErrors(err))
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return false, nil
	}
	if err := decodeValue(rs[0].Expressions[0].Value, out); err != nil {
		return true, fmt.Errorf("policy: %s: %w", query, err)
	}
	return true, nil
}

// decodeValue converts a Rego result into a Go value, rejecting unknown
// fields (a typo like "host" for "hosts" in a custom policy is an error, not
// a silently empty rule).
func decodeValue(v any, out any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(out)
}

func (s *state) loadRulesets(ctx context.Context) error {
	var raw map[string]json.RawMessage
	if _, err := s.evalOnce(ctx, queryRulesets, &raw); err != nil {
		return err
	}
	s.rulesets = make(map[string][]plan.Rule, len(raw))
	var errs []error
	for name, b := range raw {
		var rules []plan.Rule
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rules); err != nil {
			errs = append(errs, fmt.Errorf("policy: %s[%q]: %w", queryRulesets, name, err))
			continue
		}
		s.rulesets[name] = rules
	}
	return errors.Join(errs...)
}

func (s *state) loadClassSpec(ctx context.Context) error {
	var labels []string
	ok, err := s.evalOnce(ctx, queryClassLabels, &labels)
	if err != nil {
		return err
	}
	if !ok {
		s.class = classSpec{all: true}
		return nil
	}
	var fields []string
	if _, err := s.evalOnce(ctx, queryClassFields, &fields); err != nil {
		return err
	}
	sort.Strings(labels)
	s.class = classSpec{labels: slices.Compact(labels)}
	for _, f := range fields {
		switch f {
		case "name":
			s.class.name = true
		case "namespace":
			s.class.namespace = true
		default:
			return fmt.Errorf("policy: %s: unknown field %q (want name or namespace)", queryClassFields, f)
		}
	}
	return nil
}

// hash is the policy version: a content hash of what the plans depend on
// (the merged catalog, which excludes expired exceptions, and the Rego).
func (s *state) hash() string {
	h := sha256.New()
	b, _ := json.Marshal(s.catalogDoc) // map keys are sorted: deterministic
	h.Write(b)
	for _, f := range s.sources {
		fmt.Fprintf(h, "\x00%s\x00%d\x00", f.Name, len(f.Data))
		h.Write(f.Data)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// planFor returns the cached plan of w's class, computing it once (a
// failed computation is retried by the next call: see package memo).
func (s *state) planFor(ctx context.Context, w *inventory.Workload) (*plan.Plan, error) {
	p, err := s.plans.Get(s.class.classKey(w), func() (*plan.Plan, error) {
		start := time.Now()
		_, in := s.class.classOf(w)
		p, err := s.compileClass(ctx, in)
		if s.metrics != nil {
			s.metrics.PlanCompile.Observe(time.Since(start).Seconds())
			if err != nil {
				s.metrics.PlanErrors.Inc()
			}
		}
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("policy: plan for workload %s/%s (environment %q): %w", w.Namespace, w.Name, w.Environment, err)
	}
	if s.metrics != nil {
		s.metrics.ClassesCached.Set(float64(s.plans.Len()))
	}
	return p, nil
}

// planResult is data.egressguard.plan's value.
type planResult struct {
	Default        plan.Action `json:"default"`
	Mode           plan.Mode   `json:"mode"`
	Include        []string    `json:"include"`
	OverlayInclude []string    `json:"overlay_include"`
	Rules          []plan.Rule `json:"rules"`
	// UnnamedTLS is the catalog's unnamed_tls for guarded classes ("" keeps
	// the plan's default).
	UnnamedTLS string `json:"unnamed_tls"`
}

func (s *state) evalPlan(ctx context.Context, in ast.Value) (*planResult, error) {
	rs, err := s.planQ.Eval(ctx, rego.EvalParsedInput(in))
	if err != nil {
		return nil, fmt.Errorf("eval %s: %w", queryPlan, regoErrors(err))
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return nil, fmt.Errorf("%s is undefined for this workload (fail closed)", queryPlan)
	}
	var pr planResult
	if err := decodeValue(rs[0].Expressions[0].Value, &pr); err != nil {
		return nil, fmt.Errorf("%s: %w", queryPlan, err)
	}
	return &pr, nil
}

func (s *state) compileClass(ctx context.Context, in ast.Value) (*plan.Plan, error) {
	pr, err := s.evalPlan(ctx, in)
	if err != nil {
		return nil, err
	}
	var base *plan.Layer
	if len(pr.Include) > 0 {
		if base, err = s.layer(pr.Include); err != nil {
			return nil, err
		}
	}
	overlay := pr.Rules
	if len(pr.OverlayInclude) > 0 {
		n := len(pr.Rules)
		for _, name := range pr.OverlayInclude {
			rs, ok := s.rulesets[name]
			if !ok {
				return nil, fmt.Errorf("%s: overlay_include names unknown rule set %q", queryPlan, name)
			}
			n += len(rs)
		}
		overlay = make([]plan.Rule, 0, n)
		for _, name := range pr.OverlayInclude {
			overlay = append(overlay, s.rulesets[name]...)
		}
		overlay = append(overlay, pr.Rules...)
	}
	p, err := plan.New(base, overlay, pr.Default, pr.Mode, plan.WithNAT64(s.catalog.NAT64Prefixes()))
	if err != nil {
		return nil, fmt.Errorf("%s: overlay: %w", queryPlan, err)
	}
	if pr.UnnamedTLS != "" {
		a, err := plan.ParseAction(pr.UnnamedTLS)
		if err != nil {
			return nil, fmt.Errorf("%s: unnamed_tls: %w", queryPlan, err)
		}
		if p, err = p.WithUnnamedTLS(a); err != nil {
			return nil, fmt.Errorf("%s: %w", queryPlan, err)
		}
	}
	return p, nil
}

// layer compiles each distinct include combination once per policy version.
func (s *state) layer(include []string) (*plan.Layer, error) {
	return s.layers.Get(strings.Join(include, "\x00"), func() (*plan.Layer, error) {
		var rules []plan.Rule
		for _, name := range include {
			rs, ok := s.rulesets[name]
			if !ok {
				return nil, fmt.Errorf("%s: include names unknown rule set %q", queryPlan, name)
			}
			rules = append(rules, rs...)
		}
		l, err := plan.CompileLayer(rules)
		if err != nil {
			return nil, fmt.Errorf("rule sets %q: %w", include, err)
		}
		return l, nil
	})
}
