package decisionlog

import (
	"bytes"
	"encoding/json"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/egressguard/egressguard/inventory"
	"github.com/egressguard/egressguard/policy/plan"
)

var update = flag.Bool("update", false, "rewrite golden files")

var (
	checkout = &inventory.Workload{
		Name: "checkout", Namespace: "payments", Environment: "staging",
		Labels:  map[string]string{"app": "checkout", "team": "pay"},
		IPs:     []netip.Prefix{netip.MustParsePrefix("10.1.2.3/32")},
		NodeIDs: []string{"sidecar~10.1.2.3~checkout-7d9.payments~payments.svc.cluster.local"},
	}
	paypalRule = &plan.Rule{
		ID: "provider.paypal.api-m.paypal.com", Hosts: []string{"api-m.paypal.com"}, Action: plan.ActionRedirect,
		Redirect: &plan.Redirect{Host: "api-m.sandbox.paypal.com", Port: 443, TLS: true},
		Reason:   "paypal live API from a non-production workload", Category: "payment",
	}
	prodRule = &plan.Rule{
		ID: "zone.*.prod.example.com", Hosts: []string{"*.prod.example.com"}, Action: plan.ActionDeny,
		Reason: "production zone", Category: "production-zone", Mode: plan.ModeReport,
	}
)

func fixed(r Record) Record {
	r.DecisionID = "0123456789abcdef0123456789abcdef"
	r.Timestamp = time.Date(2026, 11, 2, 10, 4, 5, 123456789, time.UTC)
	return r
}

func TestRecordGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		rec  Record
	}{
		{"redirect", fixed(NewRecord(PathXDS, checkout,
			plan.Destination{Host: "api-m.paypal.com", Port: 443, IP: netip.MustParseAddr("151.101.1.1"), Protocol: "tls"},
			plan.Decision{Action: plan.ActionRedirect, Matched: plan.ActionRedirect, Rule: paypalRule}))},
		{"report-mode-dns", fixed(NewRecord(PathDNS, checkout,
			plan.Destination{Host: "db.prod.example.com", Protocol: "dns"},
			plan.Decision{Action: plan.ActionAllow, Matched: plan.ActionDeny, Rule: prodRule, WouldDeny: true}))},
		{"unknown-ip-literal", func() Record {
			r := fixed(NewRecord(PathXDS, nil,
				plan.Destination{IP: netip.MustParseAddr("2001:db8::1"), Port: 5432, Protocol: "tcp"},
				plan.Decision{Action: plan.ActionDeny, Matched: plan.ActionDeny, Rule: &plan.Rule{ID: plan.DefaultRuleID, Action: plan.ActionDeny}}))
			r.Revision = "policy-7f3a"
			r.Labels = map[string]string{"id": "egressguard-0"}
			return r
		}()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			w := NewWriter(&buf, nil, nil)
			w.Log(tc.rec)
			require.Zero(t, w.Status().Errors, "%v", w.Status().LastError)
			golden := filepath.Join("testdata", tc.name+".golden.json")
			if *update {
				require.NoError(t, os.WriteFile(golden, buf.Bytes(), 0o644))
			}
			want, err := os.ReadFile(golden)
			require.NoError(t, err)
			assert.Equal(t, string(want), buf.String())
		})
	}
}

// The record has OPA's decision-log keys and nothing that says where a
// workload runs.
func TestRecordShape(t *testing.T) {
	r := NewRecord(PathDNS, checkout, plan.Destination{Host: "db.prod.example.com"},
		plan.Decision{Action: plan.ActionDeny, Matched: plan.ActionDeny, Rule: prodRule})
	assert.Regexp(t, `^[0-9a-f]{32}$`, r.DecisionID)
	assert.WithinDuration(t, time.Now(), r.Timestamp, time.Hour) // sanity, not speed
	assert.Equal(t, time.UTC, r.Timestamp.Location())
	assert.NotEqual(t, r.DecisionID, NewRecord(PathDNS, checkout, plan.Destination{}, r.Result).DecisionID)

	b, err := json.Marshal(r)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	assert.ElementsMatch(t, []string{"decision_id", "timestamp", "path", "input", "result"}, keys)
	input := m["input"].(map[string]any)
	assert.Equal(t, map[string]any{
		"name": "checkout", "namespace": "payments", "environment": "staging",
		"labels": map[string]any{"app": "checkout", "team": "pay"},
	}, input["workload"])
	assert.Equal(t, map[string]any{"host": "db.prod.example.com"}, input["destination"])
	assert.Equal(t, "deny", m["result"].(map[string]any)["action"])
	assert.Equal(t, "zone.*.prod.example.com", m["result"].(map[string]any)["rule"])
	assert.NotContains(t, string(b), "10.1.2.3")
	assert.NotContains(t, string(b), "sidecar~")
}

func TestRecordDefensive(t *testing.T) {
	r := NewRecord(PathEval, nil, plan.Destination{}, plan.Decision{})
	assert.Equal(t, WorkloadRef{Name: "unknown"}, r.Input.Workload)
	require.NotNil(t, r.Result.Rule)
	b, err := json.Marshal(r)
	require.NoError(t, err)
	assert.Contains(t, string(b), `"reason":"no rule in decision"`)

	// A hand-made record without a rule does not crash a writer or a
	// reader of the ring.
	var buf bytes.Buffer
	w := NewWriter(&buf, nil, nil)
	w.Log(Record{Path: PathEval})
	assert.Zero(t, w.Status().Errors)
	ring := NewRing(2)
	ring.Log(Record{Path: PathEval})
	_, err = json.Marshal(ring.Recent(1))
	require.NoError(t, err)
}

func TestNopAndMulti(t *testing.T) {
	var a, b bytes.Buffer
	wa, wb := NewWriter(&a, nil, nil), NewWriter(&b, nil, nil)
	ring := NewRing(4)
	s := Multi(wa, nil, Nop{}, wb, ring)
	s.Log(fixed(NewRecord(PathDNS, checkout, plan.Destination{Host: "x"}, plan.Decision{Rule: prodRule})))
	assert.Equal(t, a.String(), b.String())
	assert.Equal(t, uint64(1), wa.Status().Written)
	assert.Len(t, ring.Recent(0), 1)
	Nop{}.Log(Record{})
}
