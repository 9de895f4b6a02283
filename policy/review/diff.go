package review

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"strings"

	"github.com/egressguard/egressguard/internal/parallel"
	"github.com/egressguard/egressguard/inventory"
	"github.com/egressguard/egressguard/policy"
	"github.com/egressguard/egressguard/policy/plan"
)

// Inputs are the workloads and requests a diff covers beyond the catalogs.
type Inputs struct {
	// Inventory contributes every workload and its default workload (nil:
	// the default "staging" workload only).
	Inventory *inventory.Snapshot
	// Decisions are recorded requests (ReadDecisionFile).
	Decisions []Recorded

	// fullCompare decides every destination with every plan pair (no
	// shared-base shortcut): the reference the shortcut is tested against.
	fullCompare bool
}

// Outcome is one side of a decision.
type Outcome struct {
	Action    string `json:"action"`
	Rule      string `json:"rule"`
	Target    string `json:"target,omitempty"`
	WouldDeny bool   `json:"would_deny,omitempty"`
}

func outcome(d plan.Decision) Outcome {
	o := Outcome{Action: d.Action.String(), Rule: d.RuleID(), WouldDeny: d.WouldDeny}
	if t := d.Target(); t != nil {
		o.Target = policy.Target{Host: t.Host, Port: t.Port}.String()
	}
	return o
}

func (o Outcome) String() string {
	s := o.Action
	if o.Target != "" {
		s += " -> " + o.Target
	}
	if o.WouldDeny {
		s += " (report: would deny)"
	}
	return s + " [" + o.Rule + "]"
}

// DecisionChange is one destination whose decision differs for a set of
// workload classes that share the same pair of plans.
type DecisionChange struct {
	Classes []string `json:"classes"`
	// Destination is host, IP or "host (ip)", without the port.
	Destination string `json:"destination"`
	// Ports are the destination ports with this same change; 0 is a
	// lookup or request whose port is unknown (DNS).
	Ports []uint16 `json:"ports"`
	// Source says where the destination came from: catalog, scenario or
	// recorded.
	Source string  `json:"source"`
	Before Outcome `json:"before"`
	After  Outcome `json:"after"`
	// Widens is set when a guarded (non-production) class gains access:
	// the enforced action was deny or redirect and becomes allow.
	Widens bool `json:"widens,omitempty"`

	classKey string // Classes joined, for sorting
}

// RuleChange is a rule added, removed or changed (by id) in the plans of
// some classes.
type RuleChange struct {
	Kind    string     `json:"kind"` // added, removed, changed
	ID      string     `json:"id"`
	Fields  []string   `json:"fields,omitempty"`
	Before  *plan.Rule `json:"before,omitempty"`
	After   *plan.Rule `json:"after,omitempty"`
	Classes []string   `json:"classes"`
	// Widens is set when the head rule allows a production zone or CIDR
	// for a guarded class.
	Widens bool `json:"widens,omitempty"`

	classKey string
}

// Stats sizes a diff.
type Stats struct {
	Workloads        int `json:"workloads"`
	Classes          int `json:"classes"`
	PlanPairs        int `json:"plan_pairs"`
	ChangedPlanPairs int `json:"changed_plan_pairs"`
	Destinations     int `json:"destinations"`
	Recorded         int `json:"recorded_requests"`
	Compared         int `json:"decisions_compared"`
}

// Report is the result of Diff.
type Report struct {
	Base            string                    `json:"base"`
	Head            string                    `json:"head"`
	BaseVersion     string                    `json:"base_version"`
	HeadVersion     string                    `json:"head_version"`
	Stats           Stats                     `json:"stats"`
	Decisions       []DecisionChange          `json:"decisions"`
	Rules           []RuleChange              `json:"rules"`
	ExpiredBase     []policy.ExpiredException `json:"expired_exceptions_base,omitempty"`
	ExpiredHead     []policy.ExpiredException `json:"expired_exceptions_head,omitempty"`
	Widens          bool                      `json:"widens"`
	WideningReasons []string                  `json:"widening_reasons,omitempty"`
}

// Changed reports whether anything differs.
func (r *Report) Changed() bool { return len(r.Decisions) > 0 || len(r.Rules) > 0 }

// group is the set of workloads (and their classes) sharing one plan pair.
type group struct {
	before, after *plan.Plan
	classes       map[string]struct{}
	guarded       bool
	extra         map[plan.Destination]string // recorded/scenario destinations of these workloads
}

// Diff compiles nothing itself: it compares base's and head's plans over
// the workload classes and destinations described in the package
// documentation. Plans are compared with plan.Decide only, once per distinct
// pair of plan fingerprints. It is a pipeline of five stages, each a
// function of its own: collectWorkloads, planPairs, destinations,
// (*comparer).comparePair for every changed pair, and assemble.
func Diff(base, head *Side, in Inputs) (*Report, error) {
	inv := in.Inventory
	if inv == nil {
		inv = inventory.Empty(inventory.DefaultEnvironment)
	}
	wls, err := collectWorkloads(base, head, inv, in.Decisions)
	if err != nil {
		return nil, err
	}
	pairs, err := planPairs(base, head, wls)
	if err != nil {
		return nil, err
	}
	bcat, hcat := base.Engine.Catalog(), head.Engine.Catalog()
	dests := destinations(pairs.groups, bcat, hcat)
	changed := pairs.changed()
	c, err := newComparer(changed, dests, wls.scenarios, in.fullCompare, bcat, hcat)
	if err != nil {
		return nil, err
	}
	results := make([]pairResult, len(changed))
	if err := parallel.ForEach(len(changed), 0, func(i int) error {
		results[i] = c.comparePair(changed[i])
		return nil
	}); err != nil {
		return nil, err
	}
	rep := &Report{Base: base.Spec, Head: head.Spec,
		BaseVersion: base.Engine.Version(), HeadVersion: head.Engine.Version(),
		ExpiredBase: base.Engine.ExpiredExceptions(), ExpiredHead: head.Engine.ExpiredExceptions(),
		Stats: Stats{Workloads: len(wls.byKey), Recorded: len(in.Decisions), Classes: pairs.classes,
			PlanPairs: len(pairs.groups), ChangedPlanPairs: len(changed), Destinations: len(dests.list),
			Compared: c.baseCompared}}
	assemble(rep, results)
	return rep, nil
}

// workloadSet is what collectWorkloads finds: every workload a diff plans
// for, keyed by workloadKey, with the destinations recorded or scenario
// requests name for it.
type workloadSet struct {
	byKey map[string]*workloadDests
	// scenarios are the scenario destinations (a catalog destination that
	// is also one is reported with source "scenario").
	scenarios map[plan.Destination]struct{}
}

type workloadDests struct {
	w     *inventory.Workload
	dests []plan.Destination
	src   string
}

func (s *workloadSet) add(w *inventory.Workload, d *plan.Destination, src string) {
	k := workloadKey(w)
	e, ok := s.byKey[k]
	if !ok {
		e = &workloadDests{w: w}
		s.byKey[k] = e
	}
	if d != nil {
		e.dests = append(e.dests, *d)
		e.src = src
	}
}

// collectWorkloads is stage 1: one workload per environment of either
// catalog, the inventory's default, every exception's selector (expired
// ones included, read from the raw catalog files), the inventory,
// scenarios and recorded requests.
func collectWorkloads(base, head *Side, inv *inventory.Snapshot, recorded []Recorded) (*workloadSet, error) {
	s := &workloadSet{byKey: map[string]*workloadDests{}, scenarios: map[plan.Destination]struct{}{}}
	for _, c := range []*policy.Catalog{base.Engine.Catalog(), head.Engine.Catalog()} {
		for _, env := range environments(c) {
			s.add(&inventory.Workload{Name: "", Environment: env}, nil, "")
		}
	}
	s.add(inv.Default(), nil, "")
	for _, side := range []*Side{base, head} {
		raws, err := rawCatalogs(side.Layout)
		if err != nil {
			return nil, fmt.Errorf("review: exceptions of %s: %w", side.Spec, err)
		}
		for _, c := range raws {
			for _, x := range c.Exceptions {
				env := x.Workload.Environment
				if env == "" {
					env = inv.DefaultEnvironment()
				}
				s.add(&inventory.Workload{Name: x.Workload.Name, Namespace: x.Workload.Namespace, Environment: env, Labels: x.Workload.Labels}, nil, "")
			}
		}
	}
	for _, w := range inv.Workloads() {
		s.add(w, nil, "")
	}
	for _, side := range []*Side{base, head} {
		for _, sc := range side.Scenarios {
			d, err := policy.ParseDestination(sc.Dest)
			if err != nil {
				continue // ParseScenarios already reported it
			}
			w := &inventory.Workload{Name: sc.Workload.Name, Namespace: sc.Workload.Namespace, Environment: sc.Workload.Environment, Labels: sc.Workload.Labels}
			s.add(w, &d, "scenario")
			s.scenarios[d] = struct{}{}
		}
	}
	for i := range recorded {
		r := &recorded[i]
		w := &r.Workload
		if w.Environment == "" { // an unknown source is the default workload
			c := *w
			c.Environment = inv.DefaultEnvironment()
			w = &c
		}
		s.add(w, &r.Destination, "recorded")
	}
	return s, nil
}

// pairSet is what planPairs builds: the workloads grouped by the pair of
// plans (base, head) they get, in a deterministic order.
type pairSet struct {
	groups  []*group
	classes int
}

// changed returns the groups whose two plans differ.
func (ps *pairSet) changed() []*group {
	out := make([]*group, 0, len(ps.groups))
	for _, g := range ps.groups {
		if g.before.Fingerprint() != g.after.Fingerprint() {
			out = append(out, g)
		}
	}
	return out
}

// planned is one workload's pair of plans and its class.
type planned struct {
	before, after *plan.Plan
	class         string
	err           error
}

// planPairs is stage 2: both plans of every workload (PlanFor evaluates
// Rego once per class, so the workloads are spread over the CPUs), grouped
// by their pair of fingerprints. Of several failures the first workload's
// (in key order) is returned.
func planPairs(base, head *Side, wls *workloadSet) (*pairSet, error) {
	keys := slices.Sorted(maps.Keys(wls.byKey))
	plans := make([]planned, len(keys))
	_ = parallel.ForEach(len(keys), 0, func(i int) error {
		plans[i] = planWorkload(base, head, wls.byKey[keys[i]].w)
		return nil
	})
	bcat, hcat := base.Engine.Catalog(), head.Engine.Catalog()
	ps := &pairSet{}
	byFP := make(map[[2]string]*group)
	classes := make(map[string]struct{})
	for i, k := range keys {
		pl := &plans[i]
		if pl.err != nil {
			return nil, pl.err
		}
		e := wls.byKey[k]
		gk := [2]string{pl.before.Fingerprint(), pl.after.Fingerprint()}
		g, ok := byFP[gk]
		if !ok {
			g = &group{before: pl.before, after: pl.after, classes: map[string]struct{}{}}
			byFP[gk] = g
			ps.groups = append(ps.groups, g)
		}
		g.classes[pl.class] = struct{}{}
		classes[pl.class] = struct{}{}
		g.guarded = g.guarded || !isProduction(bcat, e.w.Environment) || !isProduction(hcat, e.w.Environment)
		for _, d := range e.dests {
			if g.extra == nil {
				g.extra = make(map[plan.Destination]string)
			}
			if _, ok := g.extra[d]; !ok {
				g.extra[d] = e.src
			}
		}
	}
	ps.classes = len(classes)
	return ps, nil
}

// planWorkload returns w's two plans and its class as the policy that
// distinguishes more sees it (an exception removed in head also removes its
// class labels).
func planWorkload(base, head *Side, w *inventory.Workload) planned {
	var pl planned
	if pl.before, pl.err = base.Engine.PlanFor(w); pl.err != nil {
		pl.err = fmt.Errorf("review: base plan for %s: %w", base.Engine.ClassDescription(w), pl.err)
		return pl
	}
	if pl.after, pl.err = head.Engine.PlanFor(w); pl.err != nil {
		pl.err = fmt.Errorf("review: head plan for %s: %w", head.Engine.ClassDescription(w), pl.err)
		return pl
	}
	pl.class = head.Engine.ClassDescription(w)
	if bk := base.Engine.ClassDescription(w); len(bk) > len(pl.class) {
		pl.class = bk
	}
	return pl
}

// destSet is what destinations builds.
type destSet struct {
	list   []plan.Destination
	probes *probeCollector
}

// destinations is stage 3: probes for every pattern of every distinct plan
// and every production zone and CIDR of both catalogs.
func destinations(groups []*group, cats ...*policy.Catalog) destSet {
	pc := newProbeCollector()
	seenPlan := make(map[string]bool)
	for _, g := range groups {
		for _, p := range []*plan.Plan{g.before, g.after} {
			if !seenPlan[p.Fingerprint()] {
				seenPlan[p.Fingerprint()] = true
				pc.addPlan(p)
			}
		}
	}
	for _, c := range cats {
		for _, z := range c.Zones {
			pc.addHost(z, nil)
		}
		for _, z := range c.CIDRs {
			pc.addCIDR(z, nil)
		}
	}
	return destSet{list: pc.destinations(), probes: pc}
}

// comparer holds what comparing one plan pair reads; it is immutable once
// built, so pairs are compared in parallel.
type comparer struct {
	dests     destSet
	scenarios map[plan.Destination]struct{}
	// baseDiffs are the catalog destinations whose decision differs
	// between the shared base layers of a pair (nil: compare in full).
	baseDiffs    map[baseKey][]baseChange
	baseCompared int
	prodHosts    []string
	prodNets     []netip.Prefix
}

// newComparer decides catalog destinations once per distinct pair of
// shared base layers (plus default and mode) unless full is set: a class
// then only re-decides the destinations its own overlay patterns (before or
// after) can match.
func newComparer(changed []*group, dests destSet, scenarios map[plan.Destination]struct{}, full bool, cats ...*policy.Catalog) (*comparer, error) {
	c := &comparer{dests: dests, scenarios: scenarios}
	c.prodHosts, c.prodNets = productionPatterns(cats...)
	if !full {
		var err error
		if c.baseDiffs, c.baseCompared, err = compareBases(changed, dests.list); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// pairResult is one changed plan pair's contribution to the report.
type pairResult struct {
	decisions []DecisionChange
	rules     []RuleChange
	compared  int
}

// comparePair is stage 4: the decision and rule changes of one plan pair.
func (c *comparer) comparePair(g *group) pairResult {
	// cls is shared by every row and rule change of this group: clip it so
	// an append elsewhere can never write into it.
	cls := slices.Clip(slices.Sorted(maps.Keys(g.classes)))
	rows := &pairRows{g: g, cls: cls, clsKey: strings.Join(cls, ","), scenarios: c.scenarios, index: map[rowKey]int{}}
	dests := c.dests.list
	if bd, ok := c.baseDiffs[baseKeyOf(g)]; ok {
		matched := make([]bool, len(dests))
		for i, d := range dests {
			matched[i] = g.before.OverlayMatches(d) || g.after.OverlayMatches(d)
		}
		for _, ch := range bd {
			if !matched[ch.i] {
				rows.record(dests[ch.i], "catalog", ch.before, ch.after)
			}
		}
		for i, m := range matched {
			if m {
				rows.compare(dests[i], "catalog")
			}
		}
	} else {
		for _, d := range dests {
			rows.compare(d, "catalog")
		}
	}
	for d, src := range g.extra {
		if !c.dests.probes.has(d) {
			rows.compare(d, src)
		}
	}
	for i := range rows.res.decisions {
		slices.Sort(rows.res.decisions[i].Ports)
		rows.res.decisions[i].Ports = slices.Compact(rows.res.decisions[i].Ports)
	}
	rows.res.rules = diffRules(g.before.Spec(), g.after.Spec(), cls, g.guarded, c.prodHosts, c.prodNets)
	return rows.res
}

// rowKey is one decision row: the same destination (without its port),
// source and change; the ports it holds for are gathered into one row.
type rowKey struct {
	d             plan.Destination
	src           string
	before, after Outcome
}

// pairRows gathers one pair's decision rows.
type pairRows struct {
	g         *group
	cls       []string
	clsKey    string
	scenarios map[plan.Destination]struct{}
	index     map[rowKey]int
	res       pairResult
}

// compare decides d with both plans and records a row when they differ.
func (r *pairRows) compare(d plan.Destination, src string) {
	r.res.compared++
	b, a := r.g.before.Decide(d), r.g.after.Decide(d)
	if !sameDecision(b, a) {
		r.record(d, src, b, a)
	}
}

func (r *pairRows) record(d plan.Destination, src string, b, a plan.Decision) {
	if _, ok := r.scenarios[d]; ok && src == "catalog" {
		src = "scenario"
	}
	port := d.Port
	d.Port = 0
	k := rowKey{d, src, outcome(b), outcome(a)}
	if i, ok := r.index[k]; ok {
		r.res.decisions[i].Ports = append(r.res.decisions[i].Ports, port)
		return
	}
	r.index[k] = len(r.res.decisions)
	r.res.decisions = append(r.res.decisions, DecisionChange{
		Classes: r.cls, classKey: r.clsKey, Destination: FormatDestination(d), Ports: []uint16{port}, Source: src,
		Before: k.before, After: k.after,
		Widens: r.g.guarded && b.Action != plan.ActionAllow && a.Action == plan.ActionAllow,
	})
}

// assemble is stage 5: the pairs' results merged, sorted (widening first)
// and summed up in the report.
func assemble(rep *Report, results []pairResult) {
	rules := make([][]RuleChange, len(results))
	for i, r := range results {
		rep.Stats.Compared += r.compared
		rep.Decisions = append(rep.Decisions, r.decisions...)
		rules[i] = r.rules
	}
	rep.Rules = mergeRuleChanges(rules)
	slices.SortFunc(rep.Decisions, func(a, b DecisionChange) int {
		return cmp.Or(-cmpBool(a.Widens, b.Widens), strings.Compare(a.Destination, b.Destination),
			strings.Compare(a.classKey, b.classKey), strings.Compare(a.Source, b.Source),
			slices.Compare(a.Ports, b.Ports), strings.Compare(a.Before.String(), b.Before.String()),
			strings.Compare(a.After.String(), b.After.String()))
	})
	slices.SortFunc(rep.Rules, func(a, b RuleChange) int {
		return cmp.Or(-cmpBool(a.Widens, b.Widens), strings.Compare(a.ID, b.ID), strings.Compare(a.Kind, b.Kind),
			strings.Compare(a.classKey, b.classKey), strings.Compare(ruleChangeKey(a), ruleChangeKey(b)))
	})
	seenReason := make(map[string]bool)
	addReason := func(s string) {
		if !seenReason[s] {
			seenReason[s] = true
			rep.WideningReasons = append(rep.WideningReasons, s)
		}
	}
	for _, d := range rep.Decisions {
		if d.Widens {
			rep.Widens = true
			addReason(fmt.Sprintf("%s%s: %s becomes %s for %s", d.Destination, PortList(d.Ports), d.Before.Action, d.After.Action, summarizeClasses(d.Classes, 3)))
		}
	}
	for _, r := range rep.Rules {
		if r.Widens {
			rep.Widens = true
			addReason(fmt.Sprintf("rule %s (%s) allows production for %s", r.ID, r.Kind, summarizeClasses(r.Classes, 3)))
		}
	}
}

// mergeRuleChanges folds the same rule change made in several plan pairs
// into one entry whose classes are the sorted union. The inputs' Classes
// slices are shared with the decision rows of their group (same backing
// array), so the union is built in a fresh slice: appending to, sorting or
// compacting an input's Classes in place would silently rewrite the classes
// of those rows after they were keyed and make the report depend on the
// (map-ordered) order of the groups.
func mergeRuleChanges(perGroup [][]RuleChange) []RuleChange {
	agg := make(map[string]*RuleChange)
	var order []string
	for _, rcs := range perGroup {
		for _, rc := range rcs {
			k := ruleChangeKey(rc)
			if e, ok := agg[k]; ok {
				e.Classes = append(e.Classes, rc.Classes...)
				e.Widens = e.Widens || rc.Widens
				continue
			}
			c := rc
			c.Classes = slices.Clone(rc.Classes)
			agg[k] = &c
			order = append(order, k)
		}
	}
	var out []RuleChange // nil when nothing changed: the report's "rules": null
	for _, k := range order {
		rc := agg[k]
		slices.Sort(rc.Classes)
		rc.Classes = slices.Clip(slices.Compact(rc.Classes))
		rc.classKey = strings.Join(rc.Classes, ",")
		out = append(out, *rc)
	}
	return out
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

func summarizeClasses(cls []string, n int) string {
	if len(cls) <= n {
		return strings.Join(cls, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(cls[:n], ", "), len(cls)-n)
}

func sameDecision(a, b plan.Decision) bool {
	if a.Action != b.Action || a.Matched != b.Matched || a.WouldDeny != b.WouldDeny || a.Rule.ID != b.Rule.ID {
		return false
	}
	ta, tb := a.Target(), b.Target()
	if (ta == nil) != (tb == nil) {
		return false
	}
	return ta == nil || *ta == *tb
}

func isProduction(c *policy.Catalog, env string) bool {
	envs := c.Environments
	if envs == nil {
		envs = policy.DefaultEnvironments()
	}
	return slices.Contains(envs.Production, env)
}

func environments(c *policy.Catalog) []string {
	envs := c.Environments
	if envs == nil {
		envs = policy.DefaultEnvironments()
	}
	out := slices.Concat(envs.Production, envs.NonProduction, envs.Report)
	slices.Sort(out)
	return slices.Compact(out)
}

// diffRules compares two plan specs rule by rule (by id).
func diffRules(before, after plan.Spec, classes []string, guarded bool, prodHosts []string, prodNets []netip.Prefix) []RuleChange {
	var out []RuleChange
	if before.Default != after.Default || before.Mode != after.Mode {
		b := plan.Rule{ID: plan.DefaultRuleID, Action: before.Default, Mode: before.Mode}
		a := plan.Rule{ID: plan.DefaultRuleID, Action: after.Default, Mode: after.Mode}
		out = append(out, RuleChange{Kind: "changed", ID: "(plan default/mode)", Fields: ruleFields(&b, &a), Before: &b, After: &a, Classes: classes,
			Widens: guarded && before.Default != plan.ActionAllow && after.Default == plan.ActionAllow})
	}
	bi := make(map[string]*plan.Rule, len(before.Rules))
	for i := range before.Rules {
		if _, ok := bi[before.Rules[i].ID]; !ok {
			bi[before.Rules[i].ID] = &before.Rules[i]
		}
	}
	seen := make(map[string]bool, len(after.Rules))
	for i := range after.Rules {
		a := &after.Rules[i]
		if seen[a.ID] {
			continue
		}
		seen[a.ID] = true
		b, ok := bi[a.ID]
		switch {
		case !ok:
			ac := *a
			out = append(out, RuleChange{Kind: "added", ID: a.ID, After: &ac, Classes: classes,
				Widens: guarded && allowsProduction(a, after.Mode, prodHosts, prodNets)})
		case !ruleEqual(a, b):
			ac, bc := *a, *b
			out = append(out, RuleChange{Kind: "changed", ID: a.ID, Fields: ruleFields(b, a), Before: &bc, After: &ac, Classes: classes,
				Widens: guarded && allowsProduction(a, after.Mode, prodHosts, prodNets) &&
					!(allowsProduction(b, before.Mode, prodHosts, prodNets) && coversSame(a, b))})
		}
	}
	for i := range before.Rules {
		b := &before.Rules[i]
		if !seen[b.ID] {
			seen[b.ID] = true
			bc := *b
			out = append(out, RuleChange{Kind: "removed", ID: b.ID, Before: &bc, Classes: classes})
		}
	}
	return out
}

func ruleEqual(a, b *plan.Rule) bool {
	if a.ID != b.ID || a.Action != b.Action || a.Mode != b.Mode || a.Reason != b.Reason || a.Category != b.Category ||
		!slices.Equal(a.Hosts, b.Hosts) || !slices.Equal(a.CIDRs, b.CIDRs) || !slices.Equal(a.Ports, b.Ports) {
		return false
	}
	if (a.Redirect == nil) != (b.Redirect == nil) {
		return false
	}
	return a.Redirect == nil || *a.Redirect == *b.Redirect
}

func coversSame(a, b *plan.Rule) bool {
	return slices.Equal(a.Hosts, b.Hosts) && slices.Equal(a.CIDRs, b.CIDRs) && slices.Equal(a.Ports, b.Ports)
}

func ruleFields(b, a *plan.Rule) []string {
	var f []string
	if !slices.Equal(b.Hosts, a.Hosts) {
		f = append(f, "hosts")
	}
	if !slices.Equal(b.CIDRs, a.CIDRs) {
		f = append(f, "cidrs")
	}
	if !slices.Equal(b.Ports, a.Ports) {
		f = append(f, "ports")
	}
	if b.Action != a.Action {
		f = append(f, "action")
	}
	if !reflect.DeepEqual(b.Redirect, a.Redirect) {
		f = append(f, "redirect")
	}
	if b.Reason != a.Reason {
		f = append(f, "reason")
	}
	if b.Mode != a.Mode {
		f = append(f, "mode")
	}
	if b.Category != a.Category {
		f = append(f, "category")
	}
	return f
}

func ruleChangeKey(rc RuleChange) string {
	return fmt.Sprintf("%s\x00%s\x00%v\x00%v", rc.Kind, rc.ID, ruleString(rc.Before), ruleString(rc.After))
}

func ruleString(r *plan.Rule) string {
	if r == nil {
		return ""
	}
	rd := ""
	if r.Redirect != nil {
		rd = fmt.Sprint(*r.Redirect)
	}
	return fmt.Sprintf("%v|%v|%v|%s|%s|%s|%s|%s", r.Hosts, r.CIDRs, r.Ports, r.Action, rd, r.Reason, r.Mode, r.Category)
}

// productionPatterns are the production zones and CIDRs of both catalogs.
func productionPatterns(cats ...*policy.Catalog) ([]string, []netip.Prefix) {
	var hosts []string
	var nets []netip.Prefix
	for _, c := range cats {
		hosts = append(hosts, c.Zones...)
		for _, s := range c.CIDRs {
			if p, err := plan.ParsePrefix(s); err == nil {
				nets = append(nets, p)
			}
		}
	}
	slices.Sort(hosts)
	return slices.Compact(hosts), nets
}

// allowsProduction reports whether an enforced allow rule overlaps a
// production zone or CIDR.
func allowsProduction(r *plan.Rule, planMode plan.Mode, prodHosts []string, prodNets []netip.Prefix) bool {
	if r.Action != plan.ActionAllow {
		return false
	}
	return overlapsProduction(r, prodHosts, prodNets) != ""
}

// overlapsProduction returns the first production zone or CIDR the rule's
// patterns overlap ("" when none).
func overlapsProduction(r *plan.Rule, prodHosts []string, prodNets []netip.Prefix) string {
	for _, h := range r.Hosts {
		for _, z := range prodHosts {
			if hostPatternsOverlap(h, z) {
				return z
			}
		}
	}
	for _, c := range r.CIDRs {
		p, err := plan.ParsePrefix(c)
		if err != nil {
			continue
		}
		for _, n := range prodNets {
			if p.Overlaps(n) {
				return n.String()
			}
		}
	}
	return ""
}

// hostPatternsOverlap reports whether some name matches both patterns
// (exact names, "*.suffix" strict-subdomain wildcards, "*").
func hostPatternsOverlap(a, b string) bool {
	if a == b || a == "*" || b == "*" {
		return true
	}
	aw, bw := strings.HasPrefix(a, "*."), strings.HasPrefix(b, "*.")
	switch {
	case !aw && !bw:
		return false
	case aw && !bw:
		return strings.HasSuffix(b, a[1:])
	case !aw && bw:
		return strings.HasSuffix(a, b[1:])
	}
	// both wildcards: one suffix contains the other
	return strings.HasSuffix(a[1:], b[1:]) || strings.HasSuffix(b[1:], a[1:])
}

// PortList renders ports as " [dns,25,443]" (0 is "dns": port unknown).
func PortList(ports []uint16) string {
	if len(ports) == 0 {
		return ""
	}
	parts := make([]string, len(ports))
	for i, p := range ports {
		if p == 0 {
			parts[i] = "dns"
		} else {
			parts[i] = fmt.Sprint(p)
		}
	}
	return " [" + strings.Join(parts, ",") + "]"
}

// baseKey identifies the base-only part of a plan pair.
type baseKey struct {
	before, after string // base layer fingerprints
	bdef, adef    plan.Action
	bmode, amode  plan.Mode
}

func baseKeyOf(g *group) baseKey {
	return baseKey{g.before.Base().Fingerprint(), g.after.Base().Fingerprint(),
		g.before.Default(), g.after.Default(), g.before.Mode(), g.after.Mode()}
}

type baseChange struct {
	i             int
	before, after plan.Decision
}

// compareBases decides every destination once per distinct base pair, with
// plans made of the shared base layer alone. Groups whose plans have no
// base layer are compared in full by the caller.
func compareBases(groups []*group, dests []plan.Destination) (map[baseKey][]baseChange, int, error) {
	type job struct {
		key  baseKey
		b, a *plan.Plan
	}
	var jobs []job
	seen := map[baseKey]bool{}
	for _, g := range groups {
		if g.before.Base() == nil || g.after.Base() == nil {
			continue
		}
		k := baseKeyOf(g)
		if seen[k] {
			continue
		}
		seen[k] = true
		b, err := plan.New(g.before.Base(), nil, g.before.Default(), g.before.Mode())
		if err != nil {
			return nil, 0, fmt.Errorf("review: base plan: %w", err)
		}
		a, err := plan.New(g.after.Base(), nil, g.after.Default(), g.after.Mode())
		if err != nil {
			return nil, 0, fmt.Errorf("review: base plan: %w", err)
		}
		jobs = append(jobs, job{k, b, a})
	}
	out := make(map[baseKey][]baseChange, len(jobs))
	compared := 0
	for _, j := range jobs {
		ranges := parallel.Ranges(len(dests), 0)
		parts := make([][]baseChange, len(ranges))
		_ = parallel.ForEach(len(ranges), 0, func(r int) error {
			for i := ranges[r][0]; i < ranges[r][1]; i++ {
				b, a := j.b.Decide(dests[i]), j.a.Decide(dests[i])
				if !sameDecision(b, a) {
					parts[r] = append(parts[r], baseChange{i, b, a})
				}
			}
			return nil
		})
		compared += len(dests)
		out[j.key] = slices.Concat(parts...)
	}
	return out, compared, nil
}
