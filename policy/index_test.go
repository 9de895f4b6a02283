package policy

import (
	"context"
	"encoding/json"
	"sort"
	"testing"

	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCatalogIndexMatchesRego: the index the engine puts in
// data.catalog.index is exactly what the Rego computes when it is absent,
// so the reference decision means the same with and without it.
func TestCatalogIndexMatchesRego(t *testing.T) {
	e := sharedOperatorEngine(t)
	s := e.cur.Load()
	ctx := context.Background()
	eval := func(query string, out any) {
		t.Helper()
		q, err := s.prepare(ctx, query)
		require.NoError(t, err)
		rs, err := q.Eval(ctx, rego.EvalInput(map[string]any{}))
		require.NoError(t, err)
		require.Len(t, rs, 1, query)
		require.NoError(t, decodeValue(rs[0].Expressions[0].Value, out))
	}
	goIndex := catalogIndex(s.catalog)
	norm := func(v any) string {
		b, err := json.Marshal(v)
		require.NoError(t, err)
		return string(b)
	}

	// Rego's computed_host_index is a set per pattern; compare sorted.
	var regoHosts map[string][][3]int
	eval("data.egressguard.computed_host_index", &regoHosts)
	goHosts := map[string][][3]int{}
	require.NoError(t, json.Unmarshal([]byte(norm(goIndex["hosts"])), &goHosts))
	for _, m := range []map[string][][3]int{regoHosts, goHosts} {
		for _, refs := range m {
			sort.Slice(refs, func(i, j int) bool {
				return refs[i][0] < refs[j][0] || refs[i][0] == refs[j][0] && (refs[i][1] < refs[j][1] || refs[i][1] == refs[j][1] && refs[i][2] < refs[j][2])
			})
		}
	}
	assert.Equal(t, goHosts, regoHosts)
	assert.Greater(t, len(goHosts), 100)

	var regoPortsOnly [][3]int
	eval("data.egressguard.computed_ports_only", &regoPortsOnly)
	assert.JSONEq(t, norm(goIndex["ports_only"]), norm(regoPortsOnly))

	under := goIndex["hosts_under"].(map[string]any)
	assert.NotEmpty(t, under["paypal.com"])
	for _, suffix := range []string{"paypal.com", "com", "example.com", "prod.example.com", "nope.example"} {
		var got []string
		eval(`data.egressguard.computed_hosts_under("`+suffix+`")`, &got)
		sort.Strings(got)
		want := []string{}
		if l, ok := under[suffix].([]any); ok {
			for _, p := range l {
				want = append(want, p.(string))
			}
		}
		assert.Equal(t, want, append([]string{}, got...), suffix)
	}
}
