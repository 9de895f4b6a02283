package admin

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/egressguard/egressguard/policy/plan"
)

func TestNewPlanView(t *testing.T) {
	p, err := plan.Compile(plan.Spec{Default: plan.ActionDeny, Rules: []plan.Rule{
		{ID: "paypal", Hosts: []string{"api-m.paypal.com"}, Ports: []uint16{443}, Action: plan.ActionRedirect,
			Redirect: &plan.Redirect{Host: "api-m.sandbox.paypal.com", Port: 443, TLS: true}, Reason: "sandbox"},
		{ID: "stripe", Hosts: []string{"*.stripe.com"}, Action: plan.ActionDeny, Reason: "production payments", Mode: plan.ModeReport},
		{ID: "cluster", CIDRs: []string{"10.0.0.0/8"}, Action: plan.ActionAllow},
	}})
	require.NoError(t, err)
	v := NewPlanView(map[string]string{"environment": "staging"}, "staging{}", "v1", p)
	assert.Equal(t, "staging{}", v.Class)
	assert.Equal(t, p.Fingerprint(), v.Fingerprint)
	assert.Equal(t, plan.ActionDeny, v.Default)
	assert.Equal(t, plan.ModeEnforce, v.Mode)
	assert.Equal(t, []PlanEntry{
		{Kind: "host", Pattern: "*.stripe.com", Rule: "stripe", Action: plan.ActionDeny, Mode: plan.ModeReport, Reason: "production payments"},
		{Kind: "host", Pattern: "api-m.paypal.com", Port: 443, Rule: "paypal", Action: plan.ActionRedirect, Reason: "sandbox",
			Redirect: &plan.Redirect{Host: "api-m.sandbox.paypal.com", Port: 443, TLS: true}},
		{Kind: "cidr", Pattern: "10.0.0.0/8", Rule: "cluster", Action: plan.ActionAllow},
	}, v.Entries)

	b, err := json.Marshal(v)
	require.NoError(t, err)
	assert.Contains(t, string(b), `"action":"redirect"`)
	assert.Contains(t, string(b), `"default":"deny"`)

	empty, err := plan.Compile(plan.Spec{Default: plan.ActionAllow})
	require.NoError(t, err)
	b, err = json.Marshal(NewPlanView(nil, "", "v1", empty))
	require.NoError(t, err)
	assert.Contains(t, string(b), `"entries":[]`, "an empty list, not null")
}

func TestHandlerPlanRoute(t *testing.T) {
	// The handler mounts Options.Plan at GET /api/plan and leaves it out
	// when nil; the guard's own handler is tested in cmd/egressguard.
	var got string
	srv := httptest.NewServer(Handler(Options{Plan: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.URL.Query().Get("workload")
		WriteJSON(w, http.StatusBadRequest, map[string]string{"error": "workload: nope"})
	})}, nil))
	defer srv.Close()
	code, _, body := get(t, srv.URL+"/api/plan?workload=env%3Dstaging%2Capp%3Dcheckout")
	assert.Equal(t, http.StatusBadRequest, code)
	assert.Contains(t, string(body), "workload: nope")
	assert.Equal(t, "env=staging,app=checkout", got)

	off := httptest.NewServer(Handler(Options{}, nil))
	defer off.Close()
	code, _, _ = get(t, off.URL+"/api/plan")
	assert.Equal(t, http.StatusNotFound, code)
}
