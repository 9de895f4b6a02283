package plan

import (
	"encoding/json"
	"net/netip"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzNormalizeHost: normalisation never panics and is idempotent, and a
// normalised name matches itself as an exact rule.
func FuzzNormalizeHost(f *testing.F) {
	for _, s := range []string{"example.com", "Example.COM.", "*.x.io", "bücher.example", "xn--bcher-kva.example", "a..b", "", "*", "_srv._tcp.x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		n, err := NormalizeHost(h)
		if err != nil {
			return
		}
		again, err := NormalizeHost(n)
		require.NoError(t, err)
		require.Equal(t, n, again)
		if n == "*" || n[0] == '*' {
			return
		}
		p, err := Compile(Spec{Rules: []Rule{{ID: "r", Hosts: []string{n}, Action: ActionDeny}}})
		require.NoError(t, err)
		require.Equal(t, "r", p.Decide(Destination{Host: h}).RuleID())
	})
}

// FuzzSpec: a JSON plan either fails to compile or compiles to a plan whose
// canonical Spec compiles to the same plan (a fixpoint); Decide never panics.
func FuzzSpec(f *testing.F) {
	seed, _ := json.Marshal(sample)
	f.Add(seed, "api.prod.example.com", "10.20.1.1", uint16(443))
	f.Add([]byte(`{"default":"deny","rules":[{"id":"x","hosts":["*"],"action":"allow","ports":[80]}]}`), "a.b", "::1", uint16(80))
	f.Fuzz(func(t *testing.T, b []byte, host, ip string, port uint16) {
		var s Spec
		if json.Unmarshal(b, &s) != nil {
			return
		}
		p, err := Compile(s)
		if err != nil {
			return
		}
		out, err := json.Marshal(p)
		require.NoError(t, err)
		var s2 Spec
		require.NoError(t, json.Unmarshal(out, &s2))
		p2, err := Compile(s2)
		require.NoError(t, err)
		require.Equal(t, p.Fingerprint(), p2.Fingerprint())
		d := Destination{Host: host, Port: port}
		d.IP, _ = netip.ParseAddr(ip)
		require.Equal(t, p.Decide(d).RuleID(), p2.Decide(d).RuleID())
	})
}

// FuzzParseDestination: no panic; an accepted destination is in normal form
// (a canonical address or a normalised name, never both) and its rendering
// parses back to the same host, address and port.
func FuzzParseDestination(f *testing.F) {
	for _, s := range []string{"https://api.stripe.com/v1/charges", "167772161:25", "[64:ff9b::a00:1]:443", "xds:///svc.prod:8443",
		"dns://x.example", "0xa.024.1", "1.2.3.08", "a\u200db.example", "[::1", "host:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDestination(s)
		if err != nil {
			return
		}
		require.NotEqual(t, d.Host == "", !d.IP.IsValid(), "%q: %+v", s, d)
		again := d.Host
		if d.IP.IsValid() {
			require.Equal(t, CanonicalAddr(d.IP, nil), d.IP, "%q", s)
			again = d.IP.String()
			if d.IP.Is6() {
				again = "[" + again + "]"
			}
		} else {
			n, err := NormalizeHost(d.Host)
			require.NoError(t, err)
			require.Equal(t, n, d.Host)
		}
		if d.Port != 0 {
			again += ":" + strconv.Itoa(int(d.Port))
		}
		d2, err := ParseAuthority(again)
		require.NoError(t, err, "re-parse %q (from %q)", again, s)
		d.Protocol = ""
		require.Equal(t, d, d2)
	})
}
