package review

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/egressguard/egressguard/inventory"
	"github.com/egressguard/egressguard/policy/plan"
)

// The stages of Diff, one at a time, on the widened-exception fixture.

func stageFixture(t *testing.T) (base, head *Side, inv *inventory.Snapshot, recs []Recorded) {
	t.Helper()
	inv, err := inventory.LoadFile("testdata/diff/inventory.yaml")
	require.NoError(t, err)
	recs, err = ReadDecisionFile("testdata/diff/decisions.jsonl")
	require.NoError(t, err)
	return loadSide(t, "testdata/diff/widened-exception/base"), loadSide(t, "testdata/diff/widened-exception/head"), inv, recs
}

func TestCollectWorkloads(t *testing.T) {
	base, head, inv, recs := stageFixture(t)
	wls, err := collectWorkloads(base, head, inv, recs)
	require.NoError(t, err)
	has := func(w inventory.Workload) *workloadDests {
		return wls.byKey[workloadKey(&w)]
	}
	for _, env := range []string{"production", "staging", "qa"} {
		assert.NotNil(t, has(inventory.Workload{Environment: env}), "one workload per environment: %s", env)
	}
	assert.NotNil(t, has(inventory.Workload{Environment: "staging", Labels: map[string]string{"app": "checkout"}}), "the exception's selector")
	checkout := has(inventory.Workload{Name: "checkout", Namespace: "payments", Environment: "staging", Labels: map[string]string{"app": "checkout", "team": "pay"}})
	require.NotNil(t, checkout, "an inventory workload")
	assert.Contains(t, checkout.dests, plan.Destination{Host: "files.stripe.com", Port: 443, Protocol: "tls"}, "its recorded request")
	assert.Equal(t, "recorded", checkout.src)
	unknown := has(inventory.Workload{Name: "unknown", Environment: "staging"})
	require.NotNil(t, unknown, "a recorded request from an unknown source is the default environment's")
	assert.Equal(t, []plan.Destination{{IP: netipMust("10.20.1.5"), Port: 5432, Protocol: "tcp"}}, unknown.dests)
	assert.Len(t, wls.byKey, 3+1+len(inv.Workloads())+1, "3 environments, the exception selector, the inventory (its default is the staging workload), the unknown source")
}

// rawCatalogs' error used to be dropped: a catalog file that cannot be
// read when the diff looks for expired exceptions now fails the diff.
func TestCollectWorkloadsReturnsCatalogErrors(t *testing.T) {
	base, head, inv, _ := stageFixture(t)
	bad := filepath.Join(t.TempDir(), "catalog.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("zones: [\n"), 0o644))
	broken := *head
	broken.Layout.CatalogFiles = append([]string{bad}, head.Layout.CatalogFiles...)
	_, err := collectWorkloads(base, &broken, inv, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), bad)
	_, err = Diff(base, &broken, Inputs{Inventory: inv})
	require.Error(t, err, "Diff returns it too")
}

func TestPlanPairs(t *testing.T) {
	base, head, inv, recs := stageFixture(t)
	wls, err := collectWorkloads(base, head, inv, recs)
	require.NoError(t, err)
	pairs, err := planPairs(base, head, wls)
	require.NoError(t, err)
	seen := map[[2]string]bool{}
	classes := 0
	for _, g := range pairs.groups {
		k := [2]string{g.before.Fingerprint(), g.after.Fingerprint()}
		assert.False(t, seen[k], "one group per pair of plans")
		seen[k] = true
		classes += len(g.classes)
	}
	assert.Equal(t, pairs.classes, classes, "every class is in exactly one group")
	changed := pairs.changed()
	require.NotEmpty(t, changed, "the widened exception changes the checkout class's plan")
	for _, g := range changed {
		assert.NotEqual(t, g.before.Fingerprint(), g.after.Fingerprint())
		assert.True(t, g.guarded, "only staging classes change here")
	}
	again, err := planPairs(base, head, wls)
	require.NoError(t, err)
	for i := range pairs.groups {
		assert.Equal(t, pairs.groups[i].before.Fingerprint(), again.groups[i].before.Fingerprint(), "deterministic order")
	}
}

func TestDestinations(t *testing.T) {
	base, head, inv, recs := stageFixture(t)
	wls, err := collectWorkloads(base, head, inv, recs)
	require.NoError(t, err)
	pairs, err := planPairs(base, head, wls)
	require.NoError(t, err)
	ds := destinations(pairs.groups, base.Engine.Catalog(), head.Engine.Catalog())
	assert.Contains(t, ds.list, plan.Destination{Host: "egressguard-probe.prod.example.com"}, "a probe under the production wildcard zone, as a DNS lookup")
	assert.Contains(t, ds.list, plan.Destination{Host: "files.stripe.com", Port: 587}, "every rule port is probed")
	assert.True(t, ds.probes.has(plan.Destination{Host: "files.stripe.com", Port: 443}))
}

func TestComparePair(t *testing.T) {
	before, err := plan.Compile(plan.Spec{Default: plan.ActionAllow, Rules: []plan.Rule{
		{ID: "zone", Hosts: []string{"*.prod.example.com"}, Action: plan.ActionDeny},
	}})
	require.NoError(t, err)
	after, err := plan.Compile(plan.Spec{Default: plan.ActionAllow, Rules: []plan.Rule{
		{ID: "zone", Hosts: []string{"*.prod.example.com"}, Action: plan.ActionDeny},
		{ID: "exception", Hosts: []string{"db.prod.example.com"}, Action: plan.ActionAllow},
	}})
	require.NoError(t, err)
	g := &group{before: before, after: after, classes: map[string]struct{}{"staging{}": {}}, guarded: true,
		extra: map[plan.Destination]string{{Host: "db.prod.example.com", Port: 5432}: "recorded"}}
	pc := newProbeCollector()
	pc.addPlan(before)
	pc.addPlan(after)
	ds := destSet{list: pc.destinations(), probes: pc}
	c, err := newComparer([]*group{g}, ds, map[plan.Destination]struct{}{}, false)
	require.NoError(t, err)
	res := c.comparePair(g)
	require.Len(t, res.decisions, 2, "%+v", res.decisions)
	byPorts := map[string]DecisionChange{}
	for _, d := range res.decisions {
		byPorts[d.Source+PortList(d.Ports)] = d
	}
	cat := byPorts["catalog [dns,443]"]
	assert.Equal(t, "db.prod.example.com", cat.Destination, "one row for every port with the same change")
	assert.True(t, cat.Widens)
	assert.Equal(t, "deny", cat.Before.Action)
	assert.Equal(t, "allow", cat.After.Action)
	assert.Contains(t, byPorts, "recorded [5432]", "a recorded destination the probes do not cover")
	require.Len(t, res.rules, 1)
	assert.Equal(t, "added", res.rules[0].Kind)
	assert.Equal(t, res.compared, len(ds.list)+1)
}

func TestAssembleSortsWideningFirst(t *testing.T) {
	narrow := DecisionChange{Destination: "a.example.com", Classes: []string{"staging{}"}, Before: Outcome{Action: "allow"}, After: Outcome{Action: "deny"}}
	wide := DecisionChange{Destination: "z.example.com", Classes: []string{"staging{}"}, Ports: []uint16{443}, Before: Outcome{Action: "deny"}, After: Outcome{Action: "allow"}, Widens: true}
	rep := &Report{}
	assemble(rep, []pairResult{{decisions: []DecisionChange{narrow}, compared: 3}, {decisions: []DecisionChange{wide, wide}, compared: 4}})
	require.Len(t, rep.Decisions, 3)
	assert.True(t, rep.Decisions[0].Widens)
	assert.Equal(t, "a.example.com", rep.Decisions[2].Destination)
	assert.True(t, rep.Widens)
	assert.Equal(t, []string{"z.example.com [443]: deny becomes allow for staging{}"}, rep.WideningReasons, "one reason per distinct change")
	assert.Equal(t, 7, rep.Stats.Compared)
}
