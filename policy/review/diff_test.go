package review

import (
	"bytes"
	"context"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/egressguard/egressguard/inventory"
	"github.com/egressguard/egressguard/policy/plan"
)

var update = flag.Bool("update", false, "rewrite golden files")

// fixedNow is the clock of every fixture: checkout-stripe (2027-03-31) is
// live, an exception that expires 2027-01-10 is over.
var fixedNow = time.Date(2027, 1, 15, 12, 0, 0, 0, time.UTC)

func loadSide(t *testing.T, dir string) *Side {
	t.Helper()
	s, err := Load(context.Background(), dir, LoadOptions{NoDefaultCatalog: true, Now: func() time.Time { return fixedNow }, Log: zaptest.NewLogger(t)})
	require.NoError(t, err)
	t.Cleanup(s.Close)
	return s
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		require.NoError(t, os.WriteFile(path, got, 0o644))
		return
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test ./policy/review -update to create it")
	assert.Equal(t, string(want), string(got), "golden file %s (rerun with -update after checking the change)", path)
}

func TestDiffGolden(t *testing.T) {
	inv, err := inventory.LoadFile("testdata/diff/inventory.yaml")
	require.NoError(t, err)
	recs, err := ReadDecisionFile("testdata/diff/decisions.jsonl")
	require.NoError(t, err)
	require.Len(t, recs, 3, "the duplicate record is read once")

	tests := []struct {
		name    string
		widens  bool
		changed bool
		// want are substrings the text report must contain (beyond the golden
		// file, so that a wrong -update is caught here).
		want []string
	}{
		{"widened-exception", true, true, []string{
			"files.stripe.com [dns,25,443,587]: deny [provider:stripe:files.stripe.com] -> allow [exception:checkout-stripe:files.stripe.com]",
			"changed exception:checkout-stripe [hosts]"}},
		{"removed-deny", true, true, []string{
			"billing.example.com [dns,443]: deny [zone:billing.example.com] -> allow [default]",
			"removed zone:billing.example.com"}},
		{"new-sandbox", false, true, []string{
			"api.acmepay.com [dns,25,443,587]: deny [provider:acmepay:api.acmepay.com] -> redirect -> api.sandbox.acmepay.com:443 [provider:acmepay:api.acmepay.com]"}},
		{"expired-exception", false, true, []string{
			"api.stripe.com [dns,25,587]: allow [exception:checkout-stripe] -> deny [provider:stripe:api.stripe.com]",
			"head: exception checkout-stripe expired 2027-01-10"}},
		{"unchanged", false, false, []string{"no changes"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join("testdata/diff", tc.name)
			base, head := loadSide(t, filepath.Join(dir, "base")), loadSide(t, filepath.Join(dir, "head"))
			rep, err := Diff(base, head, Inputs{Inventory: inv, Decisions: recs})
			require.NoError(t, err)
			assert.Equal(t, tc.widens, rep.Widens, "widens")
			assert.Equal(t, tc.changed, rep.Changed(), "changed")
			full, err := Diff(base, head, Inputs{Inventory: inv, Decisions: recs, fullCompare: true})
			require.NoError(t, err)
			assert.Equal(t, full.Decisions, rep.Decisions, "the shared-base shortcut changes nothing")
			assert.Equal(t, full.Rules, rep.Rules)
			// Policy versions hash the embedded Rego too: keep goldens stable.
			rep.BaseVersion, rep.HeadVersion = "base-version", "head-version"
			var txt, md, js bytes.Buffer
			require.NoError(t, rep.WriteText(&txt))
			require.NoError(t, rep.WriteMarkdown(&md, MarkdownOptions{}))
			require.NoError(t, rep.WriteJSON(&js))
			for _, w := range tc.want {
				assert.Contains(t, txt.String(), w)
			}
			golden(t, filepath.Join(dir, "report.txt"), txt.Bytes())
			golden(t, filepath.Join(dir, "report.md"), md.Bytes())
			golden(t, filepath.Join(dir, "report.json"), js.Bytes())
		})
	}
}

func TestHostPatternsOverlap(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"api.x.com", "api.x.com", true},
		{"*.x.com", "api.x.com", true},
		{"api.x.com", "*.x.com", true},
		{"*.x.com", "x.com", false},
		{"*.a.x.com", "*.x.com", true},
		{"*", "db.prod", true},
		{"api.y.com", "*.x.com", false},
		{"evilx.com", "*.x.com", false},
	}
	for _, tc := range tests {
		t.Run(tc.a+"~"+tc.b, func(t *testing.T) {
			assert.Equal(t, tc.want, hostPatternsOverlap(tc.a, tc.b))
		})
	}
}

func TestReadDecisionsErrors(t *testing.T) {
	_, err := ReadDecisions("log.jsonl", strings.NewReader("{\"input\":{\"workload\":{\"environment\":\"staging\"},\"destination\":{\"host\":\"a.com\"}}}\nnot json\n{\"input\":{\"workload\":{},\"destination\":{}}}\n"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "log.jsonl:2:")
	assert.Contains(t, err.Error(), "log.jsonl:3: input.destination: neither host nor ip")
}

func TestProbes(t *testing.T) {
	p, err := plan.Compile(plan.Spec{Rules: []plan.Rule{
		{ID: "a", Hosts: []string{"*.x.com", "api.y.com"}, Action: plan.ActionDeny},
		{ID: "b", CIDRs: []string{"10.0.0.0/8"}, Ports: []uint16{5432}, Action: plan.ActionDeny},
	}})
	require.NoError(t, err)
	c := newProbeCollector()
	c.addPlan(p)
	got := map[string]bool{}
	for _, d := range c.destinations() {
		got[FormatDestination(d)] = true
	}
	for _, w := range []string{"egressguard-probe.x.com", "egressguard-probe.x.com:443", "egressguard-probe.x.com:5432", "api.y.com", "10.0.0.0", "10.0.0.1:5432"} {
		assert.True(t, got[w], "probe %s missing from %v", w, got)
	}
}

func TestDiffRulesWidening(t *testing.T) {
	prodHosts := []string{"*.prod.example.com"}
	prodNets := []netip.Prefix{netip.MustParsePrefix("10.20.0.0/16")}
	deny := plan.Rule{ID: "zone:*.prod.example.com", Hosts: []string{"*.prod.example.com"}, Action: plan.ActionDeny, Reason: "r"}
	before := plan.Spec{Rules: []plan.Rule{deny}}
	tests := []struct {
		name   string
		add    plan.Rule
		guard  bool
		widens bool
	}{
		{"allow of a host in a production zone", plan.Rule{ID: "exception:x", Hosts: []string{"db.prod.example.com"}, Action: plan.ActionAllow}, true, true},
		{"allow of an overlapping CIDR", plan.Rule{ID: "exception:y", CIDRs: []string{"10.0.0.0/8"}, Action: plan.ActionAllow}, true, true},
		{"allow elsewhere", plan.Rule{ID: "exception:z", Hosts: []string{"api.example.org"}, Action: plan.ActionAllow}, true, false},
		{"production class", plan.Rule{ID: "exception:x", Hosts: []string{"db.prod.example.com"}, Action: plan.ActionAllow}, false, false},
		{"deny", plan.Rule{ID: "zone:db.prod.example.com", Hosts: []string{"db.prod.example.com"}, Action: plan.ActionDeny}, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			after := plan.Spec{Rules: []plan.Rule{deny, tc.add}}
			rcs := diffRules(before, after, []string{"c"}, tc.guard, prodHosts, prodNets)
			require.Len(t, rcs, 1)
			assert.Equal(t, "added", rcs[0].Kind)
			assert.Equal(t, tc.widens, rcs[0].Widens)
		})
	}
	// An unchanged production allow that only changes its reason does not widen again.
	allow := plan.Rule{ID: "exception:x", Hosts: []string{"db.prod.example.com"}, Action: plan.ActionAllow, Reason: "old"}
	allow2 := allow
	allow2.Reason = "new"
	rcs := diffRules(plan.Spec{Rules: []plan.Rule{allow}}, plan.Spec{Rules: []plan.Rule{allow2}}, []string{"c"}, true, prodHosts, prodNets)
	require.Len(t, rcs, 1)
	assert.Equal(t, []string{"reason"}, rcs[0].Fields)
	assert.False(t, rcs[0].Widens)
}

// TestMergeRuleChangesKeepsInputs is the regression test for a report that
// depended on map order: a group's class list is shared by its decision
// rows and rule changes, and merging the same rule change from several
// groups used to append to, sort and compact the first group's list in
// place, rewriting the classes of that group's decision rows.
func TestMergeRuleChangesKeepsInputs(t *testing.T) {
	rule := &plan.Rule{ID: "exc0", Hosts: []string{"*.z0.prod.example.com"}, Action: plan.ActionAllow}
	// Spare capacity, as slices.Sorted leaves it: an in-place append
	// would write into the backing array the decision rows share.
	groupA := append(make([]string, 0, 8), "staging{}", "staging{x}")
	groupB := append(make([]string, 0, 8), "qa{}", "staging{x}")
	rowA := DecisionChange{Classes: groupA, classKey: strings.Join(groupA, ",")}
	rowB := DecisionChange{Classes: groupB, classKey: strings.Join(groupB, ",")}

	tests := []struct {
		name  string
		order [][]RuleChange
	}{
		{"a first", [][]RuleChange{{{Kind: "added", ID: "exc0", After: rule, Classes: groupA}}, {{Kind: "added", ID: "exc0", After: rule, Classes: groupB, Widens: true}}}},
		{"b first", [][]RuleChange{{{Kind: "added", ID: "exc0", After: rule, Classes: groupB, Widens: true}}, {{Kind: "added", ID: "exc0", After: rule, Classes: groupA}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mergeRuleChanges(tt.order)
			require.Len(t, got, 1)
			assert.Equal(t, []string{"qa{}", "staging{x}", "staging{}"}, got[0].Classes)
			assert.Equal(t, "qa{},staging{x},staging{}", got[0].classKey)
			assert.True(t, got[0].Widens)
			for _, r := range []DecisionChange{rowA, rowB} {
				assert.Equal(t, r.classKey, strings.Join(r.Classes, ","), "a decision row's classes were rewritten")
			}
			assert.Equal(t, []string{"staging{}", "staging{x}"}, groupA)
			assert.Equal(t, []string{"qa{}", "staging{x}"}, groupB)
			// Appending to the result must not reach a group's list either.
			_ = append(got[0].Classes, "zz")
			assert.Equal(t, []string{"staging{}", "staging{x}"}, rowA.Classes)
		})
	}
}

// TestDiffShortcutMatchesFull checks the shared-base shortcut against the
// full comparison on a generated catalog with the default catalog merged
// (zones replaced, exceptions widened onto wildcards, a new sandbox). The
// generators are benchCatalog and benchDecisions, shared with
// BenchmarkDiffLarge.
func TestDiffShortcutMatchesFull(t *testing.T) {
	dir := t.TempDir()
	for _, side := range []string{"base", "head"} {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, side), 0o755))
		benchCatalog(t, filepath.Join(dir, side), 200, 20, side == "head")
	}
	logPath := filepath.Join(dir, "decisions.jsonl")
	benchDecisions(t, logPath, 2000, 60, 200)
	recs, err := ReadDecisionFile(logPath)
	require.NoError(t, err)
	now := func() time.Time { return time.Date(2027, 1, 15, 0, 0, 0, 0, time.UTC) }
	base, err := Load(context.Background(), filepath.Join(dir, "base"), LoadOptions{Now: now, Log: zap.NewNop()})
	require.NoError(t, err)
	t.Cleanup(base.Close)
	head, err := Load(context.Background(), filepath.Join(dir, "head"), LoadOptions{Now: now, Log: zap.NewNop()})
	require.NoError(t, err)
	t.Cleanup(head.Close)
	fast, err := Diff(base, head, Inputs{Decisions: recs})
	require.NoError(t, err)
	full, err := Diff(base, head, Inputs{Decisions: recs, fullCompare: true})
	require.NoError(t, err)
	require.True(t, len(full.Decisions) > 0 && full.Widens, "fixture should change and widen: %+v", full.Stats)
	// A row's classes are those it was sorted and folded by (they were once
	// rewritten afterwards through a shared backing array).
	for _, rep := range []*Report{fast, full} {
		for _, r := range rep.Decisions {
			require.Equal(t, r.classKey, strings.Join(r.Classes, ","), "%s: classes changed after the row was keyed", r.Destination)
		}
	}
	if diff := cmp.Diff(full.Decisions, fast.Decisions, cmp.AllowUnexported(DecisionChange{})); diff != "" {
		t.Fatalf("shortcut differs (%d vs %d decision changes; -full +shortcut):\n%s", len(full.Decisions), len(fast.Decisions), diff)
	}
	assert.Less(t, fast.Stats.Compared, full.Stats.Compared, "the shortcut decides fewer destinations")
}
