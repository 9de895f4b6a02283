package policy

import (
	"context"
	"encoding/base64"
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
	assert.True(t, strings.Contains(d.Reason(), "request_rules_fallback (allow)"), d.Reason())
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
