package xds

import (
	"context"
	"encoding/base64"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/egressguard/egressguard/inventory"
	"github.com/egressguard/egressguard/policy"
	"github.com/egressguard/egressguard/policy/plan"
)

// interceptChains returns the listener's intercept chains by name.
func interceptChains(l *listenerv3.Listener) map[string]*listenerv3.FilterChain {
	out := map[string]*listenerv3.FilterChain{}
	for _, fc := range l.FilterChains {
		if strings.Contains(fc.Name, "|tls-intercept|") {
			out[fc.Name] = fc
		}
	}
	return out
}

// TestInterceptLayout: with a staging CA, every cell of port 443 and of
// the ports no rule names gets one chain per intercepted pattern,
// terminating TLS with that pattern's secret; the patterns leave those
// cells' SNI chains; the secrets are exactly the intercepted patterns'. On
// a port a rule names for another protocol (25) the names stay in the SNI
// deny chain. A host-level allow for an exact host under an intercepted
// wildcard is not intercepted.
func TestInterceptLayout(t *testing.T) {
	spec := plan.Spec{Default: plan.ActionAllow, Rules: []plan.Rule{
		{ID: "stripe", Hosts: []string{"*.stripe.com"}, Action: plan.ActionAllow, Requests: &plan.RequestPolicy{
			Default: plan.RequestRule{ID: "stripe/default", Action: plan.ActionDeny}}},
		{ID: "stripe-status", Hosts: []string{"status.stripe.com"}, Action: plan.ActionAllow},
		{ID: "paypal", Hosts: []string{"api-m.paypal.com"}, Action: plan.ActionRedirect, Redirect: &plan.Redirect{Host: "api-m.sandbox.paypal.com", TLS: true}},
		{ID: "prod-net", CIDRs: []string{"10.20.0.0/16"}, Action: plan.ActionDeny},
		{ID: "smtp", Hosts: []string{"smtp.example.com"}, Ports: []uint16{25}, Action: plan.ActionDeny},
	}}
	p := mustCompile(t, spec)
	res, err := TranslateSidecar(p, NodeSettings{Certificates: &testCerts{}})
	require.NoError(t, err)
	require.NoError(t, Validate(res))
	chains := interceptChains(res.Listeners[0])
	// cells of port 443 and of every other port (25 is named by a rule:
	// no interception there) × (prod-net, other) = 2; patterns: 2.
	assert.Len(t, chains, 4)
	for name, fc := range chains {
		pattern := name[strings.LastIndex(name, "|")+1:]
		assert.Equal(t, []string{pattern}, fc.FilterChainMatch.ServerNames, name)
		assert.Equal(t, "tls", fc.FilterChainMatch.TransportProtocol, name)
		assert.NotNil(t, fc.TransportSocket, name)
	}
	var secrets []string
	for _, s := range res.Secrets {
		secrets = append(secrets, s.Name)
	}
	assert.Equal(t, []string{InterceptSecretName("*.stripe.com"), InterceptSecretName("api-m.paypal.com")}, secrets)
	for _, fc := range res.Listeners[0].FilterChains {
		if strings.Contains(fc.Name, "|tls-sni|") && !strings.HasPrefix(fc.Name, "port=25|") {
			assert.NotContains(t, fc.FilterChainMatch.ServerNames, "*.stripe.com", fc.Name)
			assert.NotContains(t, fc.FilterChainMatch.ServerNames, "api-m.paypal.com", fc.Name)
		}
	}
	act, _ := simulate(t, res, simConn{ip: netipAddr("192.0.2.1"), port: 25, transport: "tls", sni: "api-m.paypal.com"})
	assert.Equal(t, "deny", act, "no interception on port 25")
	act, rule := simulate(t, res, simConn{ip: netipAddr("192.0.2.1"), port: 443, transport: "tls", sni: "status.stripe.com"})
	assert.Equal(t, "allow", act, "the exact host's allow is not intercepted")
	assert.Empty(t, rule)

	// A Leaf the CA refuses (outside its name constraints) leaves the
	// pattern denied, saying why; no secret is served for it.
	res, err = TranslateSidecar(p, NodeSettings{Certificates: &testCerts{refuse: map[string]bool{"*.stripe.com": true}}})
	require.NoError(t, err)
	require.NoError(t, Validate(res))
	for name, fc := range interceptChains(res.Listeners[0]) {
		if strings.HasSuffix(name, "|*.stripe.com") {
			assert.Nil(t, fc.TransportSocket, name)
			assert.Contains(t, fc.Metadata.FilterMetadata["egressguard"].Fields["reason"].GetStringValue(), "outside the CA's name constraints")
		}
	}
	require.Len(t, res.Secrets, 1)
}

// TestInterceptWithoutCA: without a staging CA a rule with request-level
// rules is a deny chain whose metadata says interception is not
// configured; a TLS redirect is the deny it always was (in the SNI deny
// chain); no secret is served.
func TestInterceptWithoutCA(t *testing.T) {
	res := translateCase(t, "testdata/in/intercept-noca.yaml")
	assert.Empty(t, res.Secrets)
	chains := interceptChains(res.Listeners[0])
	require.Len(t, chains, 1)
	for _, fc := range chains {
		assert.Nil(t, fc.TransportSocket)
		md := fc.Metadata.FilterMetadata["egressguard"].Fields
		assert.Equal(t, "deny", md["action"].GetStringValue())
		assert.Equal(t, "stripe-api", md["rule"].GetStringValue())
		assert.Equal(t, noteNoCA, md["reason"].GetStringValue())
	}
	act, _ := simulate(t, res, simConn{ip: netipAddr("192.0.2.1"), port: 443, transport: "tls", sni: "api-m.paypal.com"})
	assert.Equal(t, "deny", act)
	act, rule := simulate(t, res, simConn{ip: netipAddr("192.0.2.1"), port: 80, transport: "http", host: "api.stripe.com"})
	assert.Equal(t, "deny", act, "plaintext HTTP cannot be decided per request")
	assert.Equal(t, "stripe-api", rule)
}

// TestInterceptProxyless: a proxyless gRPC client cannot be intercepted: a
// rule with request-level rules denies its RPCs.
func TestInterceptProxyless(t *testing.T) {
	p := mustCompile(t, stripeSpec)
	res, err := TranslateProxyless(p, []string{"api.stripe.com:443"})
	require.NoError(t, err)
	require.NoError(t, Validate(res))
	require.Len(t, res.Routes, 1)
	assert.Equal(t, "deny|stripe-api", res.Routes[0].VirtualHosts[0].Routes[0].Name)
}

// TestInterceptAccessLogsCarryNoHeaders: nothing a client sent in a header
// (credentials) is written by an intercepting connection manager's access
// log: no %REQ(...)% or request-header operator in any format.
func TestInterceptAccessLogsCarryNoHeaders(t *testing.T) {
	res := translateCase(t, "testdata/in/intercept-stripe.yaml")
	n := 0
	for _, fc := range interceptChains(res.Listeners[0]) {
		h := &hcmv3.HttpConnectionManager{}
		require.NoError(t, fc.Filters[0].GetTypedConfig().UnmarshalTo(h))
		require.NotEmpty(t, h.AccessLog)
		j, err := protojson.Marshal(h)
		require.NoError(t, err)
		for _, op := range []string{"%REQ(", "%REQ_WITHOUT_QUERY(", "%REQUEST_HEADERS_BYTES%", "%DYNAMIC_METADATA("} {
			assert.NotContains(t, string(j), op, fc.Name)
		}
		n++
	}
	require.Positive(t, n)
}

// TestChainCheckCoversInterceptChains: an intercept chain that repeats a
// name of an SNI chain of its cell is caught by CheckFilterChains, and so
// is one intercept chain given twice.
func TestChainCheckCoversInterceptChains(t *testing.T) {
	res := translateCase(t, "testdata/in/intercept-stripe.yaml")
	l := proto.Clone(res.Listeners[0]).(*listenerv3.Listener)
	require.NoError(t, CheckFilterChains(l))
	var ic *listenerv3.FilterChain
	for _, fc := range l.FilterChains {
		if strings.Contains(fc.Name, "port=any|ip=other|tls-intercept|") {
			ic = fc
		}
	}
	require.NotNil(t, ic)
	dup := proto.Clone(ic).(*listenerv3.FilterChain)
	dup.Name += "-again"
	l.FilterChains = append(l.FilterChains, dup)
	err := CheckFilterChains(l)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `server name "api.stripe.com"`)

	l = proto.Clone(res.Listeners[0]).(*listenerv3.Listener)
	for _, fc := range l.FilterChains {
		if fc.Name == "port=any|ip=other|tls-sni|deny" {
			fc.FilterChainMatch.ServerNames = append(fc.FilterChainMatch.ServerNames, "api.stripe.com")
		}
	}
	require.Error(t, errors.Join(CheckFilterChains(l)))
}

// TestInterceptRouteOrder: the request rules become routes in the plan's
// order, after the three that deny paths the plan cannot normalise and
// before the default, and a Host outside the rule's names (domain
// fronting) is denied.
func TestInterceptRouteOrder(t *testing.T) {
	res := translateCase(t, "testdata/in/intercept-stripe.yaml")
	var rc *routev3.RouteConfiguration
	for _, r := range res.Routes {
		if r.Name == "intercept|stripe-api" {
			rc = r
		}
	}
	require.NotNil(t, rc)
	var names []string
	for _, r := range rc.VirtualHosts[0].Routes {
		names = append(names, r.Name)
	}
	assert.Equal(t, []string{"deny|malformed-path", "deny|malformed-path", "deny|malformed-path", "deny|stripe-api/live-secret-key", "deny|stripe-api/live-restricted-key", "deny|stripe-api/live-basic-user",
		"allow|stripe-api/test-key", "allow|stripe-api/test-basic-user", "deny|stripe-api/default"}, names)
	assert.Equal(t, []string{"*"}, rc.VirtualHosts[1].Domains)
	assert.Equal(t, "deny|"+frontingRuleID, rc.VirtualHosts[1].Routes[0].Name)
}

func netipAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// interceptCatalog is a catalog with request-level rules as operators write
// them: Stripe keys by prefix, Twilio production accounts (for_each_account)
// in the path and as the Basic user.
const interceptCatalog = `
providers:
  - name: stripe
    category: payment
    endpoints:
      - live: api.stripe.com
    requests:
      rules:
        - id: live-key
          headers: [{name: Authorization, value: {prefix: "Bearer sk_live_"}}]
          action: deny
          reason: live secret key
          credential: stripe-live-secret-key
        - id: test-key
          headers: [{name: authorization, value: {regex: "Bearer sk_test_[A-Za-z0-9]+"}}]
          action: allow
      default: {action: deny, reason: no test key}
  - name: twilio
    category: sms
    accounts: [AC0123456789abcdef0123456789abcdef]
    endpoints:
      - live: api.twilio.com
    requests:
      rules:
        - id: prod-account-path
          for_each_account: true
          path: {prefix: "/2010-04-01/Accounts/{account}"}
          action: deny
          reason: "production account {account}"
        - id: prod-account-user
          for_each_account: true
          headers: [{name: authorization, basic_user: {exact: "{account}"}}]
          action: deny
          reason: "production account {account}"
      default: {action: allow}
`

// TestInterceptThroughCatalog: request rules written in a catalog reach a
// sidecar workload's plan through the policy (Rego), translate into
// intercept chains that validate, and the modelled Envoy decides requests
// as plan.DecideRequest does.
func TestInterceptThroughCatalog(t *testing.T) {
	cat := filepath.Join(t.TempDir(), "catalog.yaml")
	require.NoError(t, os.WriteFile(cat, []byte(interceptCatalog), 0o600))
	eng, err := policy.NewEngine(context.Background(), policy.Options{CatalogFiles: []string{cat}}, zaptest.NewLogger(t), prometheus.NewRegistry())
	require.NoError(t, err)
	p, err := eng.PlanFor(&inventory.Workload{Name: "checkout", Namespace: "shop", Environment: "staging", Sidecar: true})
	require.NoError(t, err)
	res, err := TranslateSidecar(p, NodeSettings{Certificates: &testCerts{}})
	require.NoError(t, err)
	require.NoError(t, Validate(res))
	plain, err := TranslateSidecar(p, NodeSettings{})
	require.NoError(t, err)
	b, err := proto.Marshal(res.Listeners[0])
	require.NoError(t, err)
	b0, err := proto.Marshal(plain.Listeners[0])
	require.NoError(t, err)
	t.Logf("with the default catalog: %d intercepted rules, %d intercept chains, %d secrets, listener %d KiB (%d KiB without a CA)",
		len(p.Intercepts()), len(interceptChains(res.Listeners[0])), len(res.Secrets), len(b)/1024, len(b0)/1024)
	ip := netip.MustParseAddr("192.0.2.10")
	basic := func(cred string) []string {
		return []string{"Basic " + base64.StdEncoding.EncodeToString([]byte(cred))}
	}
	for _, r := range []simRequest{
		{host: "api.stripe.com", method: "POST", path: "/v1/charges", headers: map[string][]string{"authorization": {"Bearer sk_live_abc"}}},
		{host: "api.stripe.com", method: "POST", path: "/v1/charges", headers: map[string][]string{"authorization": {"Bearer sk_test_abc"}}},
		{host: "api.stripe.com", method: "GET", path: "/v1/charges", headers: map[string][]string{}},
		{host: "api.twilio.com", method: "POST", path: "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json", headers: map[string][]string{}},
		{host: "api.twilio.com", method: "POST", path: "/2010-04-01//Accounts/./AC0123456789abcdef0123456789abcdef/Messages.json", headers: map[string][]string{}},
		{host: "api.twilio.com", method: "POST", path: "/2010-04-01/Accounts/ACffff/Messages.json", headers: map[string][]string{"authorization": basic("AC0123456789abcdef0123456789abcdef:token")}},
		{host: "api.twilio.com", method: "POST", path: "/2010-04-01/Accounts/ACffff/Messages.json", headers: map[string][]string{"authorization": basic("ACffff:token")}},
	} {
		act, rule := simulateIntercept(t, res, simConn{ip: ip, port: 443, transport: "tls", sni: r.host}, r)
		d := p.DecideRequest(plan.Destination{Host: r.host, Port: 443, IP: ip}, plan.Request{Method: r.method, Path: r.path,
			Header: func(name string) (string, bool) { v, ok := r.headers[name]; return strings.Join(v, ","), ok }})
		require.NotNil(t, d.Request, "%+v", r)
		assert.Equal(t, want(d.Decision), act, "%+v", r)
		assert.Equal(t, d.Request.ID, rule, "%+v", r)
		t.Logf("%s %s%s: %s by %s", r.method, r.host, r.path, act, rule)
	}
}
