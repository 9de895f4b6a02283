package plan

import (
	"net/netip"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// normalFormSpec has a production wildcard, an exception inside it and a
// default allow: a name that escapes normalisation must not reach the
// default.
var normalFormSpec = Spec{
	Default: ActionAllow,
	Rules: []Rule{
		{ID: "zone", Hosts: []string{"*.prod.example.com"}, Action: ActionDeny},
		{ID: "hole", Hosts: []string{"*.public.prod.example.com"}, Action: ActionAllow},
		{ID: "net", CIDRs: []string{"10.20.0.0/16"}, Action: ActionDeny},
	},
}

func TestDecideNamesIDNARejects(t *testing.T) {
	p := mustCompile(t, normalFormSpec)
	for _, tc := range []struct{ host, rule string }{
		{"a\u200db.prod.example.com", "zone"},           // zero-width joiner
		{"\u0301api.prod.example.com", "zone"},          // leading combining mark
		{"api\u2028.prod.example.com", "zone"},          // disallowed code point
		{"x.\u200d.prod.example.com", "zone"},           // bad label deeper down
		{"api\u200d\u3002prod.example.com", "zone"},     // ideographic full stop separates labels
		{"a\u200d.public.prod.example.com", "hole"},     // the longest suffix decides
		{"api.prod.example.com\u200d", MalformedRuleID}, // the bad label is the last one
		{"a\u200d.example.org", MalformedRuleID},        // no wildcard holds example.org
		{"bad name.prod.example.com", "zone"},           // a space
		{"a..b.prod.example.com", "zone"},               // empty label
		{".prod.example.com", "zone"},
		{"prod.example.com..", MalformedRuleID},
		{strings.Repeat("a.", 130) + "prod.example.com", "zone"}, // too long as a whole
	} {
		d := p.Decide(Destination{Host: tc.host})
		assert.Equal(t, tc.rule, d.RuleID(), "%q", tc.host)
		if tc.rule != "hole" {
			assert.Equal(t, ActionDeny, d.Action, "%q", tc.host)
		}
	}
}

func TestDecideNumericHosts(t *testing.T) {
	p := mustCompile(t, normalFormSpec)
	for _, h := range []string{"10.20.1.5", "169083141", "012.024.1.5", "0xa.0x14.1.5", "10.20.261", "10.1310981", "::ffff:10.20.1.5", "64:ff9b::a14:105", "10.20.1.5."} {
		assert.Equal(t, "net", p.Decide(Destination{Host: h}).RuleID(), h)
		assert.Equal(t, DefaultRuleID, p.Decide(Destination{Host: h, IP: netip.MustParseAddr("192.0.2.1")}).RuleID(), "%s: the connection's address wins", h)
		a, err := ParseAddr(h, nil)
		require.NoError(t, err)
		assert.Equal(t, "net", p.Decide(Destination{Host: "192.0.2.1", IP: a}).RuleID(), h)
	}
	for _, h := range []string{"10.20.1.256", "1.2.3.08", "0x", "prod.example.123", "[::1]", "::g"} {
		assert.Equal(t, MalformedRuleID, p.Decide(Destination{Host: h}).RuleID(), h)
		assert.Equal(t, MalformedRuleID, p.Decide(Destination{Host: h, IP: netip.MustParseAddr("192.0.2.1")}).RuleID(), h)
	}
	assert.Equal(t, DefaultRuleID, p.Decide(Destination{Host: "192.0.2.1"}).RuleID())
	assert.Equal(t, "net", p.Decide(Destination{Host: "192.0.2.1", IP: netip.MustParseAddr("10.20.0.1")}).RuleID())
}

// FuzzDecideUnderWildcard: whatever bytes are put in front of a production
// suffix, the name never reaches the default allow.
func FuzzDecideUnderWildcard(f *testing.F) {
	for _, s := range []string{"api", "a\u200db", "\u0301x", "x\u3002y", "", ".", "a b", "xn--zz", "\xff"} {
		f.Add(s)
	}
	p := mustCompile(f, normalFormSpec)
	f.Fuzz(func(t *testing.T, label string) {
		host := label + ".prod.example.com"
		d := p.Decide(Destination{Host: host})
		require.NotEqual(t, DefaultRuleID, d.RuleID(), "%q", host)
		if d.Action == ActionAllow {
			// Only the hole may allow, and only for a name under it.
			require.Equal(t, "hole", d.RuleID(), "%q", host)
			require.Contains(t, strings.ToLower(host), "public", "%q", host)
		}
		if utf8.ValidString(label) && !strings.ContainsAny(label, ".\u3002\uff0e\uff61") {
			n, err := NormalizeHost(host)
			if err == nil && !strings.HasPrefix(n, "public.") {
				require.Equal(t, "zone", d.RuleID(), "%q", host)
			}
		}
	})
}
