package policy

import (
	"context"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/egressguard/egressguard/inventory"
)

const badRequests = `providers:
  - name: acme
    accounts: [ACprod, "bad account"]
    endpoints:
      - live: api.acme.example
        requests:
          rules:
            - id: re
              path: {regex: "(unclosed"}
              action: deny
            - id: two
              path: {exact: /a, prefix: /b}
              action: deny
            - id: basic
              headers: [{name: x-api-key, basic_user: {prefix: k}}]
              action: deny
            - id: method
              methods: [FETCH]
              action: deny
            - id: acct
              path: {prefix: "/{account}"}
              action: deny
            - id: re
              action: maybe
      - live: api2.acme.example
        sandbox: {host: sandbox.acme.example}
        requests: {default: {action: redirect}}
request_rules_fallback: sometimes
`

func TestRequestRulesValidation(t *testing.T) {
	_, err := ParseCatalog("acme.yaml", []byte(badRequests))
	require.Error(t, err)
	for _, want := range []string{
		`acme.yaml:3: providers[0].accounts[1]: bad account "bad account"`,
		`acme.yaml:8: providers[0].endpoints[0].requests.rules[0]: path: regex "(unclosed": error parsing regexp`,
		`acme.yaml:11: providers[0].endpoints[0].requests.rules[1]: path: exactly one of exact, prefix and regex`,
		`acme.yaml:14: providers[0].endpoints[0].requests.rules[2]: headers[0].basic_user: only on the authorization header, not "x-api-key"`,
		`acme.yaml:17: providers[0].endpoints[0].requests.rules[3]: methods[0]: unknown method "FETCH"`,
		`acme.yaml:20: providers[0].endpoints[0].requests.rules[4]: "{account}" is replaced only in rules with for_each_account`,
		`acme.yaml:23: providers[0].endpoints[0].requests.rules[5].id: duplicate request rule id "re" (first at line 8)`,
		`acme.yaml:24: providers[0].endpoints[0].requests.rules[5].action: unknown action "maybe"`,
		`acme.yaml:27: providers[0].endpoints[1].requests: request rules need a live host and replace the endpoint's sandbox or sink`,
		`acme.yaml:27: providers[0].endpoints[1].requests.default.action: "redirect": want allow or deny`,
		`acme.yaml:28: request_rules_fallback: "sometimes": want allow or deny`,
	} {
		assert.Contains(t, err.Error(), want)
	}
}

// An operator's Twilio entry with a production account: the account is
// denied in the path and as the Basic user, other accounts pass; classes
// without the sidecar get the fallback.
func TestRequestRulesForEachAccount(t *testing.T) {
	cat := filepath.Join(t.TempDir(), "twilio.yaml")
	writeFile(t, cat, `providers:
  - name: twilio
    category: sms
    accounts: [AC0123456789abcdef0123456789abcdef]
    requests:
      rules:
        - id: production-account-path
          for_each_account: true
          credential: twilio-production-account
          path: {regex: '(?i).*{account}.*'}
          action: deny
          reason: names production account {account}
        - id: production-account-user
          for_each_account: true
          credential: twilio-production-account
          headers: [{name: authorization, basic_user: {exact: '{account}', ignore_case: true}}]
          action: deny
      default: {action: allow}
    endpoints:
      - live: api.twilio.com
request_rules_fallback: allow
`)
	e := newTestEngine(t, Options{CatalogFiles: []string{cat}})
	assert.Contains(t, e.InterceptHosts(), "api.twilio.com")
	assert.Contains(t, e.InterceptHosts(), "api-m.paypal.com", "TLS sandbox redirects are intercepted too")
	assert.NotContains(t, e.InterceptHosts(), "api.sendgrid.com")
	sidecar := &inventory.Workload{Name: "sms", Environment: "staging", Sidecar: true}
	dest, err := ParseDestination("api.twilio.com:443")
	require.NoError(t, err)
	p, err := e.PlanFor(sidecar)
	require.NoError(t, err)
	for _, c := range []struct {
		path, header, rule string
		deny               bool
	}{
		{"/2010-04-01/Accounts/AC0123456789ABCDEF0123456789ABCDEF/Messages.json", "", "production-account-path#0", true},
		{"/2010-04-01/Accounts/ACtest/../AC0123456789abcdef0123456789abcdef/Calls", "", "production-account-path#0", true},
		{"/2010-04-01/Accounts/ACffff/Messages.json", "Authorization: Basic " + b64("ac0123456789abcdef0123456789abcdef:tok"), "production-account-user#0", true},
		{"/2010-04-01/Accounts/ACffff/Messages.json", "Authorization: Basic " + b64("ACffff:tok"), "provider:twilio:api.twilio.com/default", false},
	} {
		r := HTTPRequest{Method: "POST", Path: c.path}
		if c.header != "" {
			require.NoError(t, r.AddHeader(c.header))
		}
		d := p.DecideRequest(dest, r.Plan())
		require.NotNil(t, d.Request, c.path)
		assert.Equal(t, c.rule, d.Request.ID, c.path)
		assert.Equal(t, c.deny, d.Action.String() == "deny", c.path)
		ref, err := e.ReferenceRequestDecision(context.Background(), sidecar, dest, r)
		require.NoError(t, err)
		assert.True(t, agreesRequest(d, ref), "%s: plan %v, reference %+v", c.path, d, ref)
		if c.deny {
			assert.Equal(t, "twilio-production-account", d.Request.Credential)
		}
	}
	d, err := e.Decide(&inventory.Workload{Name: "sms", Environment: "staging"}, dest)
	require.NoError(t, err)
	assert.Equal(t, "allow", d.Action.String(), "request_rules_fallback: allow")
	assert.Contains(t, d.Reason(), "request_rules_fallback (allow)")
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// requestFromParts builds a request from fuzzer-chosen parts: a path made of
// segments and a few header variants that exercise each kind of condition.
func requestFromParts(method byte, segs string, auth byte, key string, extra byte) HTTPRequest {
	methods := []string{"GET", "POST", "DELETE", "post", "PATCH"}
	pieces := []string{"/v1", "/charges", "/..", "/.", "//", "/%2e%2E", "/v3", "/sandbox0a1b.mailgun.org", "/mg.example.com",
		"/2010-04-01", "/Accounts", "/AC0123456789abcdef0123456789abcdef", "/messages", "%2F", "/%41", "?q=1", "/x;y", "\\", "/%zz"}
	bases := []string{"/v1/charges", "/v3/sandbox0a1b.mailgun.org/messages", "/v3/mg.example.com/messages",
		"/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json", "/email"}
	path := ""
	for i := 0; i < len(segs) && i < 8; i++ {
		if i == 0 {
			path = bases[int(segs[0])%len(bases)]
			continue
		}
		path += pieces[int(segs[i])%len(pieces)]
	}
	if path == "" || path[0] != '/' {
		path = "/" + path
	}
	r := HTTPRequest{Method: methods[int(method)%len(methods)], Path: path}
	keys := []string{"sk_test_" + key, "sk_live_" + key, "rk_live_" + key, "rk_test_" + key, "pk_live_" + key, key, "ac0123456789ABCDEF0123456789abcdef"}
	k := keys[int(auth>>4)%len(keys)]
	switch auth % 6 {
	case 1:
		r.SetHeader("authorization", "Bearer "+k)
	case 2:
		r.SetHeader("authorization", "bearer  "+k)
	case 3:
		r.SetHeader("authorization", "Basic "+b64(k+":pw"))
	case 4:
		r.SetHeader("authorization", "BASIC "+base64.RawURLEncoding.EncodeToString([]byte(k+":")))
	case 5:
		r.SetHeader("authorization", "Bearer sk_test_a")
		r.SetHeader("authorization", "Bearer "+k)
	}
	switch extra % 4 {
	case 1:
		r.SetHeader("x-postmark-server-token", "POSTMARK_API_TEST")
	case 2:
		r.SetHeader("x-postmark-server-token", k)
	case 3:
		r.SetHeader("x-postmark-server-token", "POSTMARK_API_TEST")
		r.SetHeader("x-postmark-account-token", k)
	}
	return r
}

var requestHosts = []string{"api.stripe.com", "files.stripe.com", "api.mailgun.net", "api.eu.mailgun.net", "api.postmarkapp.com",
	"api.twilio.com", "verify.twilio.com", "api-m.paypal.com", "api.sendgrid.com", "example.com"}

const twilioAccountCatalog = `providers:
  - name: twilio
    category: sms
    accounts: [AC0123456789abcdef0123456789abcdef]
    requests:
      rules:
        - id: production-account-path
          for_each_account: true
          credential: twilio-production-account
          path: {regex: '(?i).*{account}.*'}
          action: deny
        - id: production-account-user
          for_each_account: true
          credential: twilio-production-account
          headers: [{name: authorization, basic_user: {exact: '{account}', ignore_case: true}}]
          action: deny
      default: {action: allow}
    endpoints:
      - live: api.twilio.com
      - live: "*.twilio.com"
`

// FuzzRequestDecision is the property test of the request decision: for
// random requests (method, path, headers) to the default catalog's hosts
// (plus a Twilio production account), the compiled plan's DecideRequest and
// the Rego reference request_decision agree on the action, the host rule,
// the request rule and the credential kind, with and without the sidecar.
func FuzzRequestDecision(f *testing.F) {
	cat := filepath.Join(f.TempDir(), "twilio.yaml")
	require.NoError(f, os.WriteFile(cat, []byte(twilioAccountCatalog), 0o600))
	e := newTestEngine(f, Options{CatalogFiles: []string{cat}})
	f.Add(byte(0), byte(1), "\x00\x01", byte(0x11), "abc", byte(0), true)
	f.Add(byte(1), byte(5), "\x06\x07\x0c", byte(0x03), "k1", byte(1), true)
	f.Add(byte(3), byte(4), "\x09\x0a\x0b\x0c", byte(0x63), "x", byte(3), false)
	f.Add(byte(2), byte(2), "\x06\x08\x02\x0e", byte(0x25), "", byte(2), true)
	f.Fuzz(func(t *testing.T, host, method byte, segs string, auth byte, key string, extra byte, sidecar bool) {
		if strings.ContainsAny(key, ":,") || len(key) > 40 {
			return // ":" ends a Basic user, "," joins header values: not keys
		}
		for i := 0; i < len(key); i++ {
			if key[i] < '0' || key[i] > 'z' {
				return // the reference folds case with Unicode lower(): ASCII keys only
			}
		}
		w := &inventory.Workload{Name: "fuzz", Environment: "staging", Sidecar: sidecar}
		dest, err := ParseDestination(requestHosts[int(host)%len(requestHosts)] + ":443")
		require.NoError(t, err)
		r := requestFromParts(method, segs, auth, key, extra)
		p, err := e.PlanFor(w)
		require.NoError(t, err)
		d := p.DecideRequest(dest, r.Plan())
		ref, err := e.ReferenceRequestDecision(context.Background(), w, dest, r)
		require.NoError(t, err)
		require.True(t, agreesRequest(d, ref), "%s %s %v: plan %s by %s, reference %+v", r.Method, r.Path, r.Headers, d.Action, d.RuleID(), ref)
	})
}

// TestRequestDecisionMatchesReference runs the property on a bounded
// pseudo-random sample on every `go test` (the fuzzer explores further).
func TestRequestDecisionMatchesReference(t *testing.T) {
	cat := filepath.Join(t.TempDir(), "twilio.yaml")
	require.NoError(t, os.WriteFile(cat, []byte(twilioAccountCatalog), 0o600))
	e := newTestEngine(t, Options{CatalogFiles: []string{cat}})
	rng := rand.New(rand.NewPCG(18, 18))
	counts := map[string]int{}
	for range 600 {
		w := &inventory.Workload{Name: "prop", Environment: "staging", Sidecar: rng.IntN(5) != 0}
		dest, err := ParseDestination(requestHosts[rng.IntN(len(requestHosts))] + ":443")
		require.NoError(t, err)
		segs := make([]byte, rng.IntN(4))
		for i := range segs {
			segs[i] = byte(rng.IntN(256))
		}
		r := requestFromParts(byte(rng.IntN(256)), string(segs), byte(rng.IntN(256)), fmt.Sprintf("K%dx", rng.IntN(1000)), byte(rng.IntN(256)))
		p, err := e.PlanFor(w)
		require.NoError(t, err)
		d := p.DecideRequest(dest, r.Plan())
		ref, err := e.ReferenceRequestDecision(context.Background(), w, dest, r)
		require.NoError(t, err)
		require.True(t, agreesRequest(d, ref), "%s %s %v: plan %s by %s, reference %+v", r.Method, r.Path, r.Headers, d.Action, d.RuleID(), ref)
		counts[d.Action.String()]++
		if d.Request != nil {
			counts["request:"+d.Request.ID]++
		}
	}
	// The sample reaches allow, deny and redirect and the rules that matter.
	for _, k := range []string{"allow", "deny", "redirect", "request:test-key", "request:live-secret-key-basic", "request:test-key-basic", "request:malformed-path", "request:sandbox-domain", "request:production-account-path#0", "request:production-account-user#0"} {
		assert.Positive(t, counts[k], "%s never decided: %v", k, counts)
	}
}
