package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/egressguard/egressguard/policy/plan"
)

// Keys long enough to look real; the tests prove they never appear in any
// output.
const (
	liveKey = "sk_live_0123456789abcdefFAKE"
	testKey = "sk_test_0123456789abcdefFAKE"
)

func TestPolicyEvalRequest(t *testing.T) {
	for _, c := range []struct {
		name, workload, header, want, enforced, key string
	}{
		{"live key at the sidecar", "env=staging,sidecar=true", "Authorization: Bearer " + liveKey, "decision     deny", "enforced by  sidecar (per request", liveKey},
		{"live key as Basic user", "env=staging,sidecar=true", "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(liveKey+":")), "rule         provider:stripe:api.stripe.com > live-secret-key-basic", "enforced by  sidecar (per request", liveKey},
		{"test key at the sidecar", "env=staging,sidecar=true", "Authorization: Bearer " + testKey, "decision     allow", "enforced by  sidecar (per request", testKey},
		{"no sidecar: the fallback", "env=staging", "Authorization: Bearer " + testKey, "decision     deny", "enforced by  dns and sidecar (connection level): the catalog's request_rules_fallback", testKey},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, format := range []string{"text", "json"} {
				out, err := runCLI(t, "policy", "eval", "--workload", c.workload, "--dest", "api.stripe.com:443",
					"--method", "POST", "--path", "/v1/charges?amount=100", "--header", c.header, "-o", format)
				require.NoError(t, err, out)
				assert.NotContains(t, out, c.key, "a credential value in the output")
				assert.NotContains(t, out, c.key[8:], "a credential value in the output")
				if format == "text" {
					assert.Contains(t, out, c.want)
					assert.Contains(t, out, c.enforced)
					assert.Contains(t, out, "request      POST /v1/charges\n")
				}
			}
		})
	}
	out, err := runCLI(t, "policy", "eval", "--workload", "env=staging,sidecar=true", "--dest", "api.stripe.com:443", "--header", "Authorization: Bearer "+liveKey)
	require.NoError(t, err)
	assert.Contains(t, out, "credential   stripe-live-secret-key (fingerprint "+plan.CredentialFingerprint(liveKey)+")")

	// A URL in --dest is the request's path too, unless --path says otherwise.
	out, err = runCLI(t, "policy", "eval", "--workload", "env=staging,sidecar=true",
		"--dest", "https://api.twilio.com/2010-04-01/Accounts/AC0123/Messages.json?x=1", "--method", "POST")
	require.NoError(t, err)
	assert.Contains(t, out, "request      POST /2010-04-01/Accounts/AC0123/Messages.json\n")
	out, err = runCLI(t, "policy", "eval", "--workload", "env=staging,sidecar=true",
		"--dest", "https://api.stripe.com/v1/charges", "--path", "/v1/refunds", "--header", "Authorization: Bearer "+testKey)
	require.NoError(t, err)
	assert.Contains(t, out, "request      GET /v1/refunds\n")

	_, err = runCLI(t, "policy", "eval", "--dest", "api.stripe.com:443", "--header", liveKey)
	require.Error(t, err)
	assert.NotContains(t, err.Error(), liveKey, "a malformed header line is not echoed")
	_, err = runCLI(t, "policy", "eval", "--workload", "env=staging,sidecar=maybe", "--dest", "api.stripe.com:443")
	require.ErrorContains(t, err, `sidecar="maybe"`)
}

func TestAdminDecideRequest(t *testing.T) {
	g, err := build(context.Background(), zaptest.NewLogger(t), testServeConfig(t))
	require.NoError(t, err)
	t.Cleanup(g.close)
	h, _ := g.adminHandlers()
	srv := httptest.NewServer(h)
	defer srv.Close()

	q := url.Values{"workload": {"env=staging,sidecar=true"}, "dest": {"api.stripe.com:443"}, "method": {"POST"},
		"path": {"/v1/charges"}, "header": {"Authorization: Bearer " + liveKey, "Stripe-Version: 2026-01-01"}}
	code, body := httpGet(t, srv.URL+"/api/decide?"+q.Encode())
	require.Equal(t, http.StatusOK, code, body)
	assert.NotContains(t, body, liveKey)
	var v struct {
		Request struct {
			Headers []string `json:"headers"`
		} `json:"request"`
		Decision struct {
			Action      string `json:"action"`
			Rule        string `json:"rule"`
			RequestRule string `json:"request_rule"`
		} `json:"decision"`
		Credential struct {
			Kind        string `json:"kind"`
			Fingerprint string `json:"fingerprint"`
		} `json:"credential"`
		EnforcedBy []string `json:"enforced_by"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &v))
	assert.Equal(t, "deny", v.Decision.Action)
	assert.Equal(t, "live-secret-key", v.Decision.RequestRule)
	assert.Equal(t, "stripe-live-secret-key", v.Credential.Kind)
	assert.Equal(t, plan.CredentialFingerprint(liveKey), v.Credential.Fingerprint)
	assert.Equal(t, []string{"authorization", "stripe-version"}, v.Request.Headers)
	require.NotEmpty(t, v.EnforcedBy)
	assert.Contains(t, v.EnforcedBy[0], "sidecar (per request")

	q.Set("header", "no colon "+liveKey)
	code, body = httpGet(t, srv.URL+"/api/decide?"+q.Encode())
	assert.Equal(t, http.StatusBadRequest, code)
	assert.NotContains(t, body, liveKey)
}
