package plan

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// stripeLike is an interception rule shaped like the default catalog's
// Stripe entry: live keys denied by kind, test keys allowed (whole-value
// regexes), everything else denied by the default.
func stripeLike() Rule {
	return Rule{
		ID: "stripe", Hosts: []string{"api.stripe.com"}, Action: ActionAllow, Category: "payment",
		Requests: &RequestPolicy{
			Rules: []RequestRule{
				{ID: "live-bearer", Action: ActionDeny, Credential: "stripe-live-secret-key", Reason: "live key",
					Headers: []HeaderMatch{{Name: "authorization", Value: &StringMatch{Regex: `(?i:bearer) +sk_live_.*`}}}},
				{ID: "live-basic", Action: ActionDeny, Credential: "stripe-live-secret-key", Reason: "live key as Basic user",
					Headers: []HeaderMatch{{Name: "authorization", BasicUser: &StringMatch{Prefix: "sk_live_"}}}},
				{ID: "test-bearer", Action: ActionAllow, Credential: "stripe-test-secret-key",
					Headers: []HeaderMatch{{Name: "authorization", Value: &StringMatch{Regex: `(?i:bearer) sk_test_[0-9A-Za-z]+`}}}},
				{ID: "test-basic", Action: ActionAllow, Credential: "stripe-test-secret-key",
					Headers: []HeaderMatch{{Name: "authorization", BasicUser: &StringMatch{Regex: `sk_test_[0-9A-Za-z]+`}}}},
			},
			Default: RequestRule{Action: ActionDeny, Reason: "not a recognised test-mode credential"},
		},
	}
}

func hdr(kv ...string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		for i := 0; i < len(kv); i += 2 {
			if strings.ToLower(kv[i]) == name {
				return kv[i+1], true
			}
		}
		return "", false
	}
}

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

func TestDecideRequestStripe(t *testing.T) {
	p, err := Compile(Spec{Default: ActionAllow, Rules: []Rule{stripeLike(), {ID: "other", Hosts: []string{"example.com"}, Action: ActionDeny}}})
	require.NoError(t, err)
	dest := Destination{Host: "API.Stripe.com.", Port: 443}
	for _, c := range []struct {
		name, path string
		headers    []string
		action     Action
		rule       string
	}{
		{"test key", "/v1/charges", []string{"Authorization", "Bearer sk_test_abc123"}, ActionAllow, "test-bearer"},
		{"scheme case", "/v1/charges", []string{"authorization", "bEaReR sk_test_abc123"}, ActionAllow, "test-bearer"},
		{"live key", "/v1/charges", []string{"authorization", "Bearer sk_live_abc"}, ActionDeny, "live-bearer"},
		{"live key scheme case, two spaces", "/v1/charges", []string{"authorization", "BEARER  sk_live_abc"}, ActionDeny, "live-bearer"},
		{"live key as Basic user", "/v1/charges", []string{"authorization", basic("sk_live_abc", "")}, ActionDeny, "live-basic"},
		{"live key as Basic user, unpadded", "/v1/charges", []string{"authorization", "basic " + base64.RawStdEncoding.EncodeToString([]byte("sk_live_abcd:"))}, ActionDeny, "live-basic"},
		{"test key as Basic user", "/v1/charges", []string{"authorization", basic("sk_test_abc", "")}, ActionAllow, "test-basic"},
		{"repeated header joined", "/v1/charges", []string{"authorization", "Bearer sk_test_abc,Bearer sk_live_x"}, ActionDeny, "stripe/default"},
		{"test key with junk after", "/v1/charges", []string{"authorization", "Bearer sk_test_abc;sk_live_x"}, ActionDeny, "stripe/default"},
		{"upper-case key prefix", "/v1/charges", []string{"authorization", "Bearer SK_TEST_abc"}, ActionDeny, "stripe/default"},
		{"no credential", "/v1/charges", nil, ActionDeny, "stripe/default"},
		{"Basic without colon", "/v1/charges", []string{"authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte("sk_live_abc"))}, ActionDeny, "live-basic"},
		{"Basic with bad padding", "/v1/charges", []string{"authorization", "Basic " + base64.RawStdEncoding.EncodeToString([]byte("sk_test_abc:")) + "==="}, ActionDeny, "stripe/default"},
		{"escaped slash", "/v1/a%2F..%2Fcharges", []string{"authorization", "Bearer sk_test_abc"}, ActionDeny, MalformedPathRuleID},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := p.DecideRequest(dest, Request{Method: "POST", Path: c.path, Header: hdr(c.headers...)})
			require.Equal(t, "stripe", d.Rule.ID)
			require.NotNil(t, d.Request)
			require.Equal(t, c.rule, d.Request.ID)
			require.Equal(t, c.action, d.Action)
			require.Equal(t, c.action, d.Matched)
		})
	}
	// A host without request rules: the request decision is the host one.
	d := p.DecideRequest(Destination{Host: "example.com"}, Request{Path: "/"})
	require.Nil(t, d.Request)
	require.Equal(t, "other", d.RuleID())
	require.Equal(t, ActionDeny, d.Action)
}

func TestDecideRequestConditions(t *testing.T) {
	r := Rule{ID: "twilio", Hosts: []string{"api.twilio.com"}, Action: ActionAllow, Requests: &RequestPolicy{
		Rules: []RequestRule{
			{ID: "prod-path", Action: ActionDeny, Path: &StringMatch{Prefix: "/2010-04-01/Accounts/ACprod", IgnoreCase: true}},
			{ID: "prod-user", Action: ActionDeny, Headers: []HeaderMatch{{Name: "authorization", BasicUser: &StringMatch{Exact: "ACprod", IgnoreCase: true}}}},
			{ID: "get-only", Methods: []string{"GET"}, Path: &StringMatch{Exact: "/ro"}, Action: ActionRedirect, Redirect: &Redirect{Host: "Sandbox.Example", TLS: true}},
			{ID: "no-token", Action: ActionDeny, Headers: []HeaderMatch{{Name: "x-token", Absent: true}, {Name: "x-other"}}},
		},
		Default: RequestRule{Action: ActionAllow},
	}}
	p, err := Compile(Spec{Default: ActionDeny, Rules: []Rule{r}})
	require.NoError(t, err)
	dest := Destination{Host: "api.twilio.com"}
	decide := func(method, path string, h ...string) RequestDecision {
		return p.DecideRequest(dest, Request{Method: method, Path: path, Header: hdr(h...)})
	}
	require.Equal(t, "prod-path", decide("GET", "/2010-04-01/accounts/ACPROD/Messages.json").Request.ID)
	require.Equal(t, "prod-path", decide("GET", "/2010-04-01/Accounts/ACtest/../ACprod").Request.ID)
	require.Equal(t, "prod-path", decide("GET", "//2010-04-01/%41ccounts/ACprod").Request.ID)
	require.Equal(t, "prod-user", decide("GET", "/x", "authorization", basic("acPROD", "secret")).Request.ID)
	require.Equal(t, "twilio/default", decide("GET", "/x", "authorization", basic("ACtest", "secret")).Request.ID)
	d := decide("GET", "/ro")
	require.Equal(t, ActionRedirect, d.Action)
	require.Equal(t, "sandbox.example", d.Target().Host)
	require.Equal(t, "twilio > get-only", d.RuleID())
	require.Equal(t, "twilio/default", decide("POST", "/ro").Request.ID, "method filter")
	require.Equal(t, "no-token", decide("GET", "/y", "x-other", "1").Request.ID)
	require.Equal(t, "twilio/default", decide("GET", "/y", "x-other", "1", "x-token", "t").Request.ID)
	require.Equal(t, "twilio/default", decide("GET", "/y").Request.ID)
}

func TestDecideRequestReportMode(t *testing.T) {
	r := stripeLike()
	r.Mode = ModeReport
	p, err := Compile(Spec{Rules: []Rule{r}})
	require.NoError(t, err)
	d := p.DecideRequest(Destination{Host: "api.stripe.com"}, Request{Path: "/v1/charges", Header: hdr("authorization", "Bearer sk_live_x")})
	require.Equal(t, ActionAllow, d.Action)
	require.Equal(t, ActionDeny, d.Matched)
	require.True(t, d.WouldDeny)
	require.Equal(t, "live-bearer", d.Request.ID)
}

func TestDecideRequestOverlayException(t *testing.T) {
	base, err := CompileLayer([]Rule{stripeLike()})
	require.NoError(t, err)
	p, err := New(base, []Rule{{ID: "exception", Hosts: []string{"api.stripe.com"}, Action: ActionAllow}}, ActionDeny, ModeEnforce)
	require.NoError(t, err)
	d := p.DecideRequest(Destination{Host: "api.stripe.com"}, Request{Path: "/", Header: hdr("authorization", "Bearer sk_live_x")})
	require.Nil(t, d.Request, "an exact-host exception is not intercepted")
	require.Equal(t, "exception", d.RuleID())
	require.Empty(t, p.Intercepts())

	plain, err := New(base, nil, ActionDeny, ModeEnforce)
	require.NoError(t, err)
	ic := plain.Intercepts()
	require.Len(t, ic, 1)
	require.Equal(t, "stripe", ic[0].ID)
}

func TestIntercepts(t *testing.T) {
	stripe := stripeLike()
	stripe.Hosts = []string{"api.stripe.com", "files.stripe.com"}
	base, err := CompileLayer([]Rule{
		{ID: "paypal", Hosts: []string{"api-m.paypal.com"}, Action: ActionRedirect, Redirect: &Redirect{Host: "api-m.sandbox.paypal.com", Port: 443, TLS: true}},
		stripe,
		{ID: "plain-redirect", Hosts: []string{"smtp.example.com"}, Action: ActionRedirect, Redirect: &Redirect{Host: "sink"}},
		{ID: "deny", Hosts: []string{"prod.example.com"}, Action: ActionDeny},
	})
	require.NoError(t, err)
	p, err := New(base, []Rule{{ID: "files-ok", Hosts: []string{"files.stripe.com"}, Action: ActionAllow}}, ActionDeny, ModeEnforce)
	require.NoError(t, err)
	ic := p.Intercepts()
	require.Len(t, ic, 2)
	require.Equal(t, "paypal", ic[0].ID)
	require.Equal(t, "stripe", ic[1].ID)
	require.Equal(t, []string{"api.stripe.com"}, ic[1].Hosts, "files.stripe.com is won by the overlay")
	require.True(t, ic[1].Intercepted())
}

func TestRequestRuleValidation(t *testing.T) {
	bad := Rule{ID: "h", Hosts: []string{"a.example"}, Requests: &RequestPolicy{Rules: []RequestRule{
		{ID: "re", Path: &StringMatch{Regex: "(unclosed"}},
		{ID: "two", Path: &StringMatch{Exact: "/a", Prefix: "/b"}},
		{ID: "basic", Headers: []HeaderMatch{{Name: "x-api-key", BasicUser: &StringMatch{Prefix: "k"}}}},
		{ID: "method", Methods: []string{"post", "FETCH"}},
		{ID: "case", Headers: []HeaderMatch{{Name: "Authorization"}}},
		{ID: "icase", Headers: []HeaderMatch{{Name: "a", Value: &StringMatch{Regex: "x", IgnoreCase: true}}}},
		{ID: "re"},
		{ID: "redir", Action: ActionRedirect},
	}}}
	_, err := Compile(Spec{Rules: []Rule{bad}})
	require.Error(t, err)
	for _, want := range []string{
		`rules[0] (id "h"): requests.rules[0] (id "re"): path: regex "(unclosed"`,
		`requests.rules[1] (id "two"): path: exactly one of exact, prefix and regex`,
		`requests.rules[2] (id "basic"): headers[0].basic_user: only on the authorization header, not "x-api-key"`,
		`requests.rules[3] (id "method"): methods[0]: unknown method "post"`,
		`methods[1]: unknown method "FETCH"`,
		`requests.rules[4] (id "case"): headers[0].name: "Authorization" must be a lower-case header name`,
		`headers[0].value: ignore_case: not with regex`,
		`requests.rules[6]: id "re" is already used by requests.rules[0]`,
		`requests.rules[7] (id "redir"): redirect.host: a redirect rule needs a target host`,
	} {
		require.Contains(t, err.Error(), want)
	}
}

func TestCredentialFingerprintAndValue(t *testing.T) {
	require.Equal(t, "bda8047787d3", CredentialFingerprint("sk_live_x"))
	require.Len(t, CredentialFingerprint(""), 12)
	p, err := Compile(Spec{Rules: []Rule{stripeLike()}})
	require.NoError(t, err)
	for _, c := range []struct{ header, want string }{
		{"Bearer  sk_live_abc", "sk_live_abc"},
		{basic("sk_live_abc", "pw"), "sk_live_abc"},
	} {
		r := Request{Path: "/", Header: hdr("authorization", c.header)}
		d := p.DecideRequest(Destination{Host: "api.stripe.com"}, r)
		require.Equal(t, "stripe-live-secret-key", d.Request.Credential)
		v, ok := d.CredentialValue(r)
		require.True(t, ok)
		require.Equal(t, c.want, v)
		b, err := d.MarshalJSON()
		require.NoError(t, err)
		require.NotContains(t, string(b), "sk_live_abc")
		require.Contains(t, string(b), `"credential":"stripe-live-secret-key"`)
		require.Contains(t, string(b), `"request_rule":"live-`)
	}
}

func TestDecideRequestNoAlloc(t *testing.T) {
	p, err := Compile(Spec{Rules: []Rule{prefixRule()}})
	require.NoError(t, err)
	r := Request{Method: "POST", Path: "/v1/charges?x=1", Header: hdr("authorization", "Bearer sk_test_123")}
	allocs := testing.AllocsPerRun(200, func() {
		if p.DecideRequest(Destination{Host: "api.stripe.com", Port: 443}, r).Action != ActionAllow {
			t.Fatal("not allowed")
		}
	})
	require.Zero(t, allocs)
}

// prefixRule is stripeLike with header-prefix conditions only.
func prefixRule() Rule {
	return Rule{ID: "stripe", Hosts: []string{"api.stripe.com"}, Requests: &RequestPolicy{
		Rules: []RequestRule{
			{ID: "live", Action: ActionDeny, Headers: []HeaderMatch{{Name: "authorization", Value: &StringMatch{Prefix: "bearer sk_live_", IgnoreCase: true}}}},
			{ID: "live-basic", Action: ActionDeny, Headers: []HeaderMatch{{Name: "authorization", BasicUser: &StringMatch{Prefix: "sk_live_"}}}},
			{ID: "test", Action: ActionAllow, Headers: []HeaderMatch{{Name: "authorization", Value: &StringMatch{Prefix: "Bearer sk_test_"}}}},
		},
		Default: RequestRule{Action: ActionDeny},
	}}
}
