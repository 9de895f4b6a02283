package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/egressguard/egressguard/internal/admin"
)

// TestAdminPlanAPI asks the real guard's admin handler for plans: the
// staging plan redirects PayPal's API, bad workloads answer 400.
func TestAdminPlanAPI(t *testing.T) {
	g, err := build(context.Background(), zaptest.NewLogger(t), testServeConfig(t))
	require.NoError(t, err)
	t.Cleanup(g.close)
	h, _ := g.adminHandlers()
	srv := httptest.NewServer(h)
	defer srv.Close()

	t.Run("staging", func(t *testing.T) {
		code, body := httpGet(t, srv.URL+"/api/plan?workload=env=staging,app=checkout")
		require.Equal(t, http.StatusOK, code, body)
		var v admin.PlanView
		require.NoError(t, json.Unmarshal([]byte(body), &v))
		assert.Contains(t, v.Class, "staging")
		assert.NotEmpty(t, v.Fingerprint)
		assert.Equal(t, g.engine.Version(), v.PolicyVersion)
		require.NotEmpty(t, v.Entries)
		var paypal *admin.PlanEntry
		for i, e := range v.Entries {
			if e.Pattern == "api-m.paypal.com" {
				paypal = &v.Entries[i]
			}
		}
		require.NotNil(t, paypal, "api-m.paypal.com is in the staging plan")
		assert.Equal(t, "redirect", paypal.Action.String())
		require.NotNil(t, paypal.Redirect)
		assert.NotEmpty(t, paypal.Redirect.Host)

		// Same workload class as /api/decide sees.
		code, dbody := httpGet(t, srv.URL+"/api/decide?workload=env=staging,app=checkout&dest=api-m.paypal.com:443")
		require.Equal(t, http.StatusOK, code, dbody)
		var d struct {
			Class    string `json:"class"`
			Decision struct {
				Rule string `json:"rule"`
			} `json:"decision"`
		}
		require.NoError(t, json.Unmarshal([]byte(dbody), &d))
		assert.Equal(t, d.Class, v.Class)
		assert.Equal(t, d.Decision.Rule, paypal.Rule)
	})
	t.Run("default environment", func(t *testing.T) {
		code, body := httpGet(t, srv.URL+"/api/plan")
		require.Equal(t, http.StatusOK, code, body)
		assert.Contains(t, body, `"entries"`)
	})
	for _, bad := range []string{"no-such-workload", "env=staging,=x", "env=staging,app"} {
		t.Run("bad "+bad, func(t *testing.T) {
			code, body := httpGet(t, srv.URL+"/api/plan?workload="+bad)
			assert.Equal(t, http.StatusBadRequest, code, body)
			var e map[string]string
			require.NoError(t, json.Unmarshal([]byte(body), &e))
			assert.Contains(t, e["error"], "workload: ")
		})
	}
}
