package plan

import (
	"encoding/json"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func mustCompile(t testing.TB, spec Spec) *Plan {
	t.Helper()
	p, err := Compile(spec)
	require.NoError(t, err)
	return p
}

var sample = Spec{
	Default: ActionAllow,
	Rules: []Rule{
		{ID: "zone-prod", Hosts: []string{"*.prod.example.com"}, Action: ActionDeny, Reason: "production zone"},
		{ID: "exact-allow", Hosts: []string{"status.prod.example.com"}, Action: ActionAllow, Reason: "public status page"},
		{ID: "deep", Hosts: []string{"*.db.prod.example.com"}, Action: ActionRedirect, Redirect: &Redirect{Host: "db.staging.example.com", Port: 5432}},
		{ID: "paypal", Hosts: []string{"api-m.paypal.com"}, Ports: []uint16{443}, Action: ActionRedirect, Redirect: &Redirect{Host: "api-m.sandbox.paypal.com", Port: 443, TLS: true}},
		{ID: "paypal-any", Hosts: []string{"api-m.paypal.com"}, Action: ActionDeny},
		{ID: "idn", Hosts: []string{"bücher.example"}, Action: ActionDeny},
		{ID: "cidr-prod", CIDRs: []string{"10.20.0.0/16", "2001:db8::/32"}, Action: ActionDeny},
		{ID: "cidr-hole", CIDRs: []string{"10.20.5.0/24"}, Action: ActionAllow},
		{ID: "smtp", CIDRs: []string{"0.0.0.0/0", "::/0"}, Ports: []uint16{25, 587}, Action: ActionDeny},
		{ID: "report", Hosts: []string{"hooks.slack.com"}, Action: ActionDeny, Mode: ModeReport},
	},
}

func TestDecide(t *testing.T) {
	p := mustCompile(t, sample)
	for _, tc := range []struct {
		name   string
		dest   Destination
		action Action
		rule   string
		would  bool
	}{
		{"wildcard subdomain", Destination{Host: "api.prod.example.com"}, ActionDeny, "zone-prod", false},
		{"wildcard does not match apex", Destination{Host: "prod.example.com"}, ActionAllow, DefaultRuleID, false},
		{"exact beats wildcard", Destination{Host: "status.prod.example.com"}, ActionAllow, "exact-allow", false},
		{"longer suffix beats shorter", Destination{Host: "a.db.prod.example.com"}, ActionRedirect, "deep", false},
		{"case and trailing dot", Destination{Host: "API.Prod.Example.COM."}, ActionDeny, "zone-prod", false},
		{"port-specific rule", Destination{Host: "api-m.paypal.com", Port: 443}, ActionRedirect, "paypal", false},
		{"other port falls to any-port rule", Destination{Host: "api-m.paypal.com", Port: 80}, ActionDeny, "paypal-any", false},
		{"unknown port sees any-port rule only", Destination{Host: "api-m.paypal.com"}, ActionDeny, "paypal-any", false},
		{"unicode name", Destination{Host: "BÜCHER.example"}, ActionDeny, "idn", false},
		{"punycode name", Destination{Host: "xn--bcher-kva.example"}, ActionDeny, "idn", false},
		{"ipv4 longest prefix", Destination{IP: netip.MustParseAddr("10.20.5.1")}, ActionAllow, "cidr-hole", false},
		{"ipv4 prefix", Destination{IP: netip.MustParseAddr("10.20.6.1")}, ActionDeny, "cidr-prod", false},
		{"ipv4-mapped ipv6", Destination{IP: netip.MustParseAddr("::ffff:10.20.6.1")}, ActionDeny, "cidr-prod", false},
		{"ipv6 prefix", Destination{IP: netip.MustParseAddr("2001:db8::1")}, ActionDeny, "cidr-prod", false},
		{"port-filtered cidr", Destination{IP: netip.MustParseAddr("192.0.2.1"), Port: 587}, ActionDeny, "smtp", false},
		{"port-filtered cidr other port", Destination{IP: netip.MustParseAddr("192.0.2.1"), Port: 443}, ActionAllow, DefaultRuleID, false},
		{"longer any-port prefix beats shorter port prefix", Destination{IP: netip.MustParseAddr("10.20.5.1"), Port: 25}, ActionAllow, "cidr-hole", false},
		{"host rule before ip rule", Destination{Host: "status.prod.example.com", IP: netip.MustParseAddr("10.20.6.1")}, ActionAllow, "exact-allow", false},
		{"unmatched host falls to ip", Destination{Host: "www.example.org", IP: netip.MustParseAddr("10.20.6.1")}, ActionDeny, "cidr-prod", false},
		{"report mode", Destination{Host: "hooks.slack.com"}, ActionAllow, "report", true},
		{"invalid host is refused, not defaulted", Destination{Host: "a..b"}, ActionDeny, MalformedRuleID, false},
		{"invalid host under a wildcard is decided by its suffix", Destination{Host: "a..x.prod.example.com"}, ActionDeny, "zone-prod", false},
		{"numeric host is an address", Destination{Host: "0xa.0x14.0x601"}, ActionDeny, "cidr-prod", false},
		{"malformed numeric host is refused", Destination{Host: "10.20.0.08"}, ActionDeny, MalformedRuleID, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := p.Decide(tc.dest)
			assert.Equal(t, tc.action, d.Action)
			assert.Equal(t, tc.rule, d.RuleID())
			assert.Equal(t, tc.would, d.WouldDeny)
		})
	}
}

func TestDecideRedirectTarget(t *testing.T) {
	p := mustCompile(t, sample)
	d := p.Decide(Destination{Host: "x.db.prod.example.com"})
	require.Equal(t, ActionRedirect, d.Action)
	assert.Equal(t, &Redirect{Host: "db.staging.example.com", Port: 5432}, d.Target())
	assert.Nil(t, p.Decide(Destination{Host: "x.prod.example.com"}).Target())
}

func TestDefaultDeny(t *testing.T) {
	p := mustCompile(t, Spec{Default: ActionDeny, Rules: []Rule{{ID: "ok", Hosts: []string{"*"}, Ports: []uint16{443}, Action: ActionAllow}}})
	assert.Equal(t, ActionAllow, p.Decide(Destination{Host: "anything.example", Port: 443}).Action)
	d := p.Decide(Destination{Host: "anything.example", Port: 80})
	assert.Equal(t, ActionDeny, d.Action)
	assert.Equal(t, DefaultRuleID, d.RuleID())
	assert.Contains(t, d.Reason(), "default is deny")
}

func TestPlanReportMode(t *testing.T) {
	spec := sample
	spec.Mode = ModeReport
	p := mustCompile(t, spec)
	d := p.Decide(Destination{Host: "a.prod.example.com"})
	assert.Equal(t, ActionAllow, d.Action)
	assert.Equal(t, ActionDeny, d.Matched)
	assert.True(t, d.WouldDeny)
}

func TestOverlay(t *testing.T) {
	base, err := CompileLayer(sample.Rules)
	require.NoError(t, err)
	p, err := New(base, []Rule{
		{ID: "exc-zone", Hosts: []string{"*.prod.example.com"}, Action: ActionAllow, Reason: "exception"},
		{ID: "exc-ip", CIDRs: []string{"10.20.0.0/16"}, Action: ActionAllow},
		{ID: "exc-any-paypal", Hosts: []string{"api-m.paypal.com"}, Action: ActionAllow},
	}, ActionAllow, ModeEnforce)
	require.NoError(t, err)
	// Same pattern: the overlay wins.
	assert.Equal(t, "exc-zone", p.Decide(Destination{Host: "a.prod.example.com"}).RuleID())
	// More specific base pattern still wins over the overlay's wildcard.
	assert.Equal(t, "deep", p.Decide(Destination{Host: "a.db.prod.example.com"}).RuleID())
	assert.Equal(t, "exc-ip", p.Decide(Destination{IP: netip.MustParseAddr("10.20.9.9")}).RuleID())
	assert.Equal(t, "cidr-hole", p.Decide(Destination{IP: netip.MustParseAddr("10.20.5.9")}).RuleID())
	// A base port-specific rule beats an overlay any-port rule on the same pattern.
	assert.Equal(t, "paypal", p.Decide(Destination{Host: "api-m.paypal.com", Port: 443}).RuleID())
	assert.Equal(t, "exc-any-paypal", p.Decide(Destination{Host: "api-m.paypal.com", Port: 80}).RuleID())

	// Plans sharing a base and overlay have the same fingerprint; others differ.
	p2, err := New(base, nil, ActionAllow, ModeEnforce)
	require.NoError(t, err)
	p3, err := New(base, nil, ActionAllow, ModeEnforce)
	require.NoError(t, err)
	assert.Equal(t, p2.Fingerprint(), p3.Fingerprint())
	assert.NotEqual(t, p.Fingerprint(), p2.Fingerprint())
	p4, err := New(base, nil, ActionDeny, ModeEnforce)
	require.NoError(t, err)
	assert.NotEqual(t, p2.Fingerprint(), p4.Fingerprint())
}

func TestEntries(t *testing.T) {
	base, err := CompileLayer([]Rule{
		{ID: "a", Hosts: []string{"*.x.com", "y.com"}, Action: ActionDeny},
		{ID: "b", Hosts: []string{"y.com"}, Action: ActionAllow},
		{ID: "c", CIDRs: []string{"10.0.0.0/8"}, Ports: []uint16{25}, Action: ActionDeny},
	})
	require.NoError(t, err)
	p, err := New(base, []Rule{{ID: "o", Hosts: []string{"*.X.com."}, Action: ActionAllow}}, ActionAllow, ModeEnforce)
	require.NoError(t, err)
	var got []string
	for _, e := range p.Entries() {
		got = append(got, e.Kind.String()+" "+e.Pattern+" "+string(rune('0'+e.Port%10))+" "+e.Rule.ID)
	}
	assert.Equal(t, []string{"host *.x.com 0 o", "host y.com 0 a", "cidr 10.0.0.0/8 5 c"}, got)
}

func TestCompileErrors(t *testing.T) {
	_, err := Compile(Spec{Rules: []Rule{
		{ID: "", Hosts: []string{"a.com"}},
		{ID: "bad-cidr", CIDRs: []string{"10.0.0.0/33"}},
		{ID: "bad-host", Hosts: []string{"a.*.com"}},
		{ID: "nothing"},
		{ID: "redir", Hosts: []string{"a.com"}, Action: ActionRedirect},
		{ID: "dup", Hosts: []string{"a.com"}},
		{ID: "dup", Hosts: []string{"b.com"}},
		{ID: "zero-port", Hosts: []string{"a.com"}, Ports: []uint16{0}},
	}})
	require.Error(t, err)
	for _, want := range []string{
		`rules[0] (id ""): id: must not be empty`,
		`rules[1] (id "bad-cidr"): cidrs[0]: "10.0.0.0/33" is not a CIDR`,
		`rules[2] (id "bad-host"): hosts[0]: host "a.*.com"`,
		`rules[3] (id "nothing"): hosts, cidrs: a rule must match`,
		`rules[4] (id "redir"): redirect.host: a redirect rule needs a target host`,
		`rules[6]: id "dup" is already used by rules[5]`,
		`rules[7] (id "zero-port"): ports[0]: port 0 is not a port`,
	} {
		assert.Contains(t, err.Error(), want)
	}
	_, err = New(nil, nil, ActionRedirect, ModeEnforce)
	assert.ErrorContains(t, err, "default: must be allow or deny")
}

func TestCompileDoesNotModifyInput(t *testing.T) {
	rules := []Rule{{ID: "a", Hosts: []string{"A.COM."}, CIDRs: []string{"10.1.2.3"}, Action: ActionDeny}}
	p := mustCompile(t, Spec{Rules: rules})
	assert.Equal(t, "A.COM.", rules[0].Hosts[0])
	assert.Equal(t, []string{"a.com"}, p.Spec().Rules[0].Hosts)
	assert.Equal(t, []string{"10.1.2.3/32"}, p.Spec().Rules[0].CIDRs)
}

func TestSpecJSONRoundTrip(t *testing.T) {
	p := mustCompile(t, sample)
	b, err := json.Marshal(p)
	require.NoError(t, err)
	var s Spec
	require.NoError(t, json.Unmarshal(b, &s))
	p2 := mustCompile(t, s)
	assert.Equal(t, p.Fingerprint(), p2.Fingerprint())
	assert.Contains(t, string(b), `"action":"redirect"`)
}

func TestDecisionJSON(t *testing.T) {
	p := mustCompile(t, sample)
	b, err := json.Marshal(p.Decide(Destination{Host: "api-m.paypal.com", Port: 443}))
	require.NoError(t, err)
	assert.JSONEq(t, `{"action":"redirect","matched_action":"redirect","rule":"paypal","redirect":{"host":"api-m.sandbox.paypal.com","port":443,"tls":true}}`, string(b))
}

func TestNormalizeHost(t *testing.T) {
	for in, want := range map[string]string{
		"Example.COM.":   "example.com",
		"*.Example.com":  "*.example.com",
		"*":              "*",
		"bücher.example": "xn--bcher-kva.example",
		"_sip._tcp.x.io": "_sip._tcp.x.io",
	} {
		got, err := NormalizeHost(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, bad := range []string{"", ".", "0..", "*..", "a..b", "a.*.b", "*x.com", "a b.com", "host:443", "[0", "10.20.0.1.", "a/b"} {
		_, err := NormalizeHost(bad)
		assert.Error(t, err, bad)
	}
}
