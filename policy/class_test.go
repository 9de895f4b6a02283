package policy

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/egressguard/egressguard/inventory"
	"github.com/egressguard/egressguard/policy/plan"
)

// fuzzLabels turns "k=v\nk2=v2" into a label set (a line without "=" is a
// key with an empty value).
func fuzzLabels(s string) map[string]string {
	if s == "" {
		return nil
	}
	m := make(map[string]string)
	for _, line := range strings.Split(s, "\n") {
		k, v, _ := strings.Cut(line, "=")
		m[k] = v
	}
	return m
}

// fuzzSpec builds a class spec from a flags byte and a comma-separated list
// of declared label keys.
func fuzzSpec(flags byte, labels string) classSpec {
	c := classSpec{all: flags&1 != 0, name: flags&2 != 0, namespace: flags&4 != 0}
	if !c.all && labels != "" {
		c.labels = strings.Split(labels, ",")
		slices.Sort(c.labels)
		c.labels = slices.Compact(c.labels)
	}
	return c
}

// FuzzClassKey proves the three encodings of a workload class agree: the
// fast key (the plan-cache lookup) equals the key built with the Rego input,
// and two workloads share a key exactly when the policy sees the same input
// for them and explain shows the same description. A disagreement would
// cache one class's plan under another class's key.
func FuzzClassKey(f *testing.F) {
	f.Add(byte(0), "app", "staging", "web", "shop", "app=web\npod-template-hash=1", "staging", "web", "shop", "app=web\npod-template-hash=2")
	f.Add(byte(1), "", "staging", "a", "", "x=1", "staging", "a", "", "x=1\ny=2")
	f.Add(byte(6), "app,team", "", "", "", "", "", "", "", "app=")
	// Collisions of the former separator encoding ("\x00l=k\x01v"): a label
	// value spelling a second label, an environment spelling a name.
	f.Add(byte(0), "a,c", "staging", "", "", "a=b\x00l=c\x01d", "staging", "", "", "a=b\nc=d")
	f.Add(byte(2), "", "staging\x00n=web", "", "", "", "staging", "web", "", "")
	f.Add(byte(1), "", "prod", "", "", "a=1\", label:b=\"2", "prod", "", "", "a=1\nb=2")
	f.Add(byte(8), "", "staging", "", "", "", "staging", "", "", "") // sidecar or not
	f.Fuzz(func(t *testing.T, flags byte, declared, env1, name1, ns1, labels1, env2, name2, ns2, labels2 string) {
		c := fuzzSpec(flags, declared)
		w1 := &inventory.Workload{Environment: env1, Name: name1, Namespace: ns1, Labels: fuzzLabels(labels1), Sidecar: flags&8 != 0}
		w2 := &inventory.Workload{Environment: env2, Name: name2, Namespace: ns2, Labels: fuzzLabels(labels2), Sidecar: flags&16 != 0}
		k1, in1 := c.classOf(w1)
		k2, in2 := c.classOf(w2)
		require.Equal(t, k1, c.classKey(w1), "fast key differs from the full one")
		require.Equal(t, k2, c.classKey(w2), "fast key differs from the full one")
		sameInput := in1.Compare(in2) == 0
		require.Equal(t, k1 == k2, sameInput, "key equality must be input equality:\n%q\n%q\n%v\n%v", k1, k2, in1, in2)
		d1, d2 := c.classDescription(w1), c.classDescription(w2)
		require.Equal(t, k1 == k2, d1 == d2, "key equality must be description equality:\n%s\n%s", d1, d2)
	})
}

func TestClassInputIsWhatThePolicyReads(t *testing.T) {
	w := &inventory.Workload{Name: "web", Namespace: "shop", Environment: "staging",
		Labels: map[string]string{"app": "web", "pod-template-hash": "aaaa"}}
	c := classSpec{labels: []string{"app", "team"}, namespace: true}
	_, in := c.classOf(w)
	want := ast.MustParseTerm(`{"workload": {"environment": "staging", "namespace": "shop", "labels": {"app": "web"}}}`)
	assert.Equal(t, 0, want.Value.Compare(in), "got %v", in)
	assert.Equal(t, `staging{namespace="shop", label:app="web"}`, c.classDescription(w))

	all := classSpec{all: true}
	_, in = all.classOf(w)
	want = ast.MustParseTerm(`{"workload": {"environment": "staging", "name": "web", "namespace": "shop", "labels": {"app": "web", "pod-template-hash": "aaaa"}}}`)
	assert.Equal(t, 0, want.Value.Compare(in), "got %v", in)
	assert.Equal(t, `staging{name="web", namespace="shop", label:app="web", label:pod-template-hash="aaaa"}`, all.classDescription(w))
	assert.Equal(t, `""{name="", namespace=""}`, all.classDescription(&inventory.Workload{}))

	w.Sidecar = true
	_, in = c.classOf(w)
	want = ast.MustParseTerm(`{"workload": {"environment": "staging", "sidecar": true, "namespace": "shop", "labels": {"app": "web"}}}`)
	assert.Equal(t, 0, want.Value.Compare(in), "got %v", in)
	assert.Equal(t, `staging{sidecar, namespace="shop", label:app="web"}`, c.classDescription(w))
}

// A label value that spells another label used to produce the same cache
// key as a workload that really has both labels (and would have been served
// that workload's plan).
func TestClassKeyCannotBeForged(t *testing.T) {
	c := classSpec{labels: []string{"a", "c"}}
	forged := &inventory.Workload{Environment: "staging", Labels: map[string]string{"a": "b\x00l=c\x01d"}}
	real := &inventory.Workload{Environment: "staging", Labels: map[string]string{"a": "b", "c": "d"}}
	assert.NotEqual(t, c.classKey(forged), c.classKey(real))
	assert.NotEqual(t, c.classDescription(forged), c.classDescription(real))
}

func TestEngineClassKeyIsTheCacheKey(t *testing.T) {
	e := operatorEngine(t)
	w := &inventory.Workload{Name: "web", Namespace: "shop", Environment: "staging", Labels: map[string]string{"app": "web"}}
	s := e.cur.Load()
	assert.Equal(t, s.class.classKey(w), e.ClassKey(w))
	assert.NotEqual(t, e.ClassDescription(w), e.ClassKey(w))
	_, err := e.PlanFor(w)
	require.NoError(t, err)
	n := s.plans.Len()
	_, err = s.plans.Get(e.ClassKey(w), func() (*plan.Plan, error) { return nil, errors.New("not cached under ClassKey") })
	require.NoError(t, err, "the plan is cached under ClassKey")
	assert.Equal(t, n, s.plans.Len())
}

// BenchmarkClassKey is the plan-cache lookup key (every DNS query and xDS
// refresh computes it) against classOf, which also builds the Rego input.
//
//	go test ./policy -run '^$' -bench BenchmarkClassKey -benchtime 200000x
func BenchmarkClassKey(b *testing.B) {
	c := classSpec{labels: []string{"app", "team"}, name: true, namespace: true}
	w := &inventory.Workload{Name: "checkout", Namespace: "payments", Environment: "staging",
		Labels: map[string]string{"app": "web", "team": "pay", "pod-template-hash": "abc123", "version": "7"}}
	b.Run("key", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = c.classKey(w)
		}
	})
	b.Run("key+input", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = c.classOf(w)
		}
	})
}
