package xds

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/egressguard/egressguard/inventory"
	"github.com/egressguard/egressguard/policy"
	"github.com/egressguard/egressguard/policy/plan"
)

// bypassCase is one adversarial connection and what the sidecar must do.
type bypassCase struct {
	name string
	conn simConn
	want string // action
	rule string // deciding rule ("" for grouped SNI chains)
}

func runBypass(t *testing.T, res *Resources, cases []bypassCase) {
	t.Helper()
	for _, tc := range cases {
		act, rule := simulate(t, res, tc.conn)
		assert.Equal(t, tc.want, act, tc.name)
		if tc.rule != "*" { // "*": the rule named in the log does not matter here
			assert.Equal(t, tc.rule, rule, tc.name)
		}
	}
}

// TestSidecarBypassClasses drives the generated configuration of
// testdata/in/bypass-classes.yaml through the Envoy model with the
// connections a staging workload would try (classes 2, 5 and 7 of the
// security model, sidecar side).
func TestSidecarBypassClasses(t *testing.T) {
	res := translateCase(t, "testdata/in/bypass-classes.yaml")
	public := netip.MustParseAddr("192.0.2.10") // a production name hosted outside every catalog CIDR
	prod := netip.MustParseAddr("10.20.3.4")
	prod6 := netip.MustParseAddr("2001:db8:20::7")
	google := netip.MustParseAddr("8.8.8.8")
	tls := func(ip netip.Addr, port uint16, sni string) simConn {
		return simConn{ip: ip, port: port, transport: "tls", sni: sni}
	}
	http := func(ip netip.Addr, port uint16, host string) simConn {
		return simConn{ip: ip, port: port, transport: "http", host: host}
	}
	tcp := func(ip netip.Addr, port uint16) simConn { return simConn{ip: ip, port: port, transport: "tcp"} }

	t.Run("zone apex", func(t *testing.T) {
		runBypass(t, res, []bypassCase{
			{"SNI of the apex", tls(public, 443, "prod.example.com"), "deny", ""},
			{"Host of the apex", http(public, 80, "prod.example.com"), "deny", "production-zone"},
			{"Host of the apex, upper case, trailing dot, port", http(public, 80, "PROD.Example.com.:80"), "deny", "production-zone"},
			{"a name under the zone", tls(public, 443, "db.prod.example.com"), "deny", ""},
			{"a sibling zone is not production", tls(public, 443, "staging.example.com"), "allow", "default"},
		})
	})

	t.Run("exception stays narrow", func(t *testing.T) {
		runBypass(t, res, []bypassCase{
			{"the excepted host by SNI", tls(prod, 443, "legacy-billing.prod.example.com"), "allow", ""},
			{"the excepted host by Host", http(prod, 80, "legacy-billing.prod.example.com"), "allow", "exception.legacy-billing"},
			{"same address, another production name", tls(prod, 443, "db.prod.example.com"), "deny", "production-network"},
			{"same address, an unlisted name", tls(prod, 443, "example.org"), "deny", "production-network"},
			{"same address, no SNI", tls(prod, 443, ""), "deny", "production-network"},
			{"same address, the excepted name with a trailing dot", tls(prod, 443, "legacy-billing.prod.example.com."), "deny", "production-network"},
			{"same address, another Host", http(prod, 80, "example.org"), "deny", "production-network"},
			{"same address, bare TCP", tcp(prod, 5432), "deny", "production-network"},
			{"IPv6 production address, no SNI", tls(prod6, 443, ""), "deny", "production-network"},
		})
	})

	t.Run("IPv6 forms of a production address", func(t *testing.T) {
		var cases []bypassCase
		for _, a := range []string{
			"::ffff:10.20.3.4",       // IPv4-mapped
			"::a14:304",              // IPv4-compatible
			"64:ff9b::a14:304",       // NAT64 well-known prefix
			"64:ff9b:1:a14:3:400::",  // NAT64 local-use, RFC 6052 /48 layout
			"2002:a14:304::1",        // 6to4
			"2001:db8:64::10.20.3.4", // the cluster's own NAT64 prefix
		} {
			ip := netip.MustParseAddr(a)
			cases = append(cases,
				bypassCase{a + ", no SNI", tls(ip, 443, ""), "deny", "production-network"},
				bypassCase{a + ", an unlisted SNI", tls(ip, 443, "example.org"), "deny", "production-network"},
				bypassCase{a + ", bare TCP", tcp(ip, 5432), "deny", "production-network"},
				bypassCase{a + ", another Host", http(ip, 80, "example.org"), "deny", "production-network"},
				bypassCase{a + ", the excepted host", tls(ip, 443, "legacy-billing.prod.example.com"), "allow", "*"},
			)
		}
		cases = append(cases, bypassCase{"outside the embedding", tcp(netip.MustParseAddr("2001:db8:65::a14:304"), 5432), "allow", "default"})
		runBypass(t, res, cases)
	})

	t.Run("dns bypass", func(t *testing.T) {
		runBypass(t, res, []bypassCase{
			{"DoT to a public resolver", tls(google, 853, "dns.google"), "deny", "dns-bypass.dot"},
			{"DoT to anywhere, no SNI", tls(public, 853, ""), "deny", "dns-bypass.dot"},
			{"DoT to anywhere, an unlisted SNI", tls(public, 853, "resolver.example.net"), "deny", "dns-bypass.dot"},
			{"DoT to anywhere over IPv6", tls(netip.MustParseAddr("2001:db8:ffff::53"), 853, ""), "deny", "dns-bypass.dot"},
			{"raw TCP to port 853", tcp(public, 853), "deny", "dns-bypass.dot"},
			{"DoH by name", tls(public, 443, "dns.google"), "deny", ""},
			{"DoH by wildcard name", tls(public, 443, "mozilla.cloudflare-dns.com"), "deny", ""},
			{"DoH by address, no SNI", tls(google, 443, ""), "deny", "dns-bypass.doh-addresses"},
			{"DoH by address, SNI with a trailing dot", tls(google, 443, "dns.google."), "deny", "dns-bypass.doh-addresses"},
			{"DoH by IPv6 address, no SNI", tls(netip.MustParseAddr("2606:4700:4700::1111"), 443, ""), "deny", "dns-bypass.doh-addresses"},
			{"plaintext DoH by Host", http(public, 80, "dns.google"), "deny", "dns-bypass.doh"},
			{"an ordinary HTTPS site", tls(public, 443, "github.com"), "allow", "default"},
		})
	})

	t.Run("names that are addresses or no names", func(t *testing.T) {
		runBypass(t, res, []bypassCase{
			{"a numeric SNI to production", tls(prod, 443, "167772161"), "deny", "production-network"},
			{"an IPv4 SNI to production", tls(prod, 443, "10.20.3.4"), "deny", "production-network"},
			{"an IPv6 SNI to production", tls(prod6, 443, "2001:db8:20::7"), "deny", "production-network"},
			{"a public address as SNI to production", tls(prod, 443, "192.0.2.10"), "deny", "production-network"},
			{"a production address as Host to a public address", http(public, 80, "10.20.3.4"), "allow", "default"},
			{"a hex-dotted Host to production", http(prod, 80, "0xa.0x14.3.4"), "deny", "production-network"},
			{"an ideographic full stop in the SNI", tls(public, 443, "dns.google\u3002"), "deny", plan.MalformedRuleID},
			{"an ideographic full stop inside the SNI", tls(public, 443, "dns\u3002google"), "deny", plan.MalformedRuleID},
			{"a zero-width joiner under a production wildcard", tls(public, 443, "db\u200d.prod.example.com"), "deny", ""},
			{"a zero-width joiner elsewhere", tls(public, 443, "git\u200dhub.com"), "deny", plan.MalformedRuleID},
		})
	})

	// Every case agrees with plan.Decide where Decide has an answer (the
	// destination as the sidecar knows it: the SNI or Host if any, the
	// address and the port).
	p := loadSpec(t, "testdata/in/bypass-classes.yaml")
	d := p.Decide(plan.Destination{IP: google, Port: 853})
	require.Equal(t, "dns-bypass.dot", d.RuleID())
}

// TestUnnamedTLSDefault: where the plan's rule for unnamed TLS denies, TLS
// without a usable name (no SNI, or a trailing dot) to an address no CIDR
// rule names is denied, while a named connection still follows the host
// rules or the default; CIDR rules keep deciding their addresses.
func TestUnnamedTLSDefault(t *testing.T) {
	p, err := loadSpec(t, "testdata/in/bypass-classes.yaml").WithUnnamedTLS(plan.ActionDeny)
	require.NoError(t, err)
	res, err := TranslateSidecar(p, NodeSettings{})
	require.NoError(t, err)
	require.NoError(t, Validate(res))
	public := netip.MustParseAddr("192.0.2.10")
	runBypass(t, res, []bypassCase{
		{"no SNI", simConn{ip: public, port: 443, transport: "tls"}, "deny", plan.UnnamedTLSRuleID},
		{"trailing dot", simConn{ip: public, port: 443, transport: "tls", sni: "github.com."}, "deny", plan.UnnamedTLSRuleID},
		{"no SNI over IPv6", simConn{ip: netip.MustParseAddr("2001:db8:ffff::1"), port: 8443, transport: "tls"}, "deny", plan.UnnamedTLSRuleID},
		{"a name", simConn{ip: public, port: 443, transport: "tls", sni: "github.com"}, "allow", "*"},
		{"a production name", simConn{ip: public, port: 443, transport: "tls", sni: "prod.example.com"}, "deny", ""},
		{"raw TCP is not TLS", simConn{ip: public, port: 22, transport: "tcp"}, "allow", "default"},
		{"a production address, no SNI", simConn{ip: netip.MustParseAddr("10.20.3.4"), port: 443, transport: "tls"}, "deny", "production-network"},
	})
}

// TestZoneApexThroughCatalog (class 2, sidecar side): a catalog zone
// written "*.prod.example.com" reaches the sidecar with its apex, by SNI
// and by Host in every spelling; provider wildcards stay strict.
func TestZoneApexThroughCatalog(t *testing.T) {
	cat := filepath.Join(t.TempDir(), "catalog.yaml")
	require.NoError(t, os.WriteFile(cat, []byte("zones: [\"*.prod.example.com\"]\ncidrs: [10.20.0.0/16]\n"), 0o600))
	eng, err := policy.NewEngine(context.Background(), policy.Options{CatalogFiles: []string{cat}}, zaptest.NewLogger(t), prometheus.NewRegistry())
	require.NoError(t, err)
	p, err := eng.PlanFor(&inventory.Workload{Name: "checkout", Namespace: "shop", Environment: "staging"})
	require.NoError(t, err)
	res, err := TranslateSidecar(p, NodeSettings{})
	require.NoError(t, err)
	require.NoError(t, Validate(res))
	public := netip.MustParseAddr("192.0.2.10")
	for _, h := range []string{"prod.example.com", "PROD.example.com.", "db.prod.example.com"} {
		act, _ := simulate(t, res, simConn{ip: public, port: 80, transport: "http", host: h})
		assert.Equal(t, "deny", act, "Host %s", h)
		d := p.Decide(plan.Destination{Host: h, IP: public, Port: 80})
		assert.Equal(t, want(d), act, "Host %s agrees with Decide", h)
	}
	for _, sni := range []string{"prod.example.com", "db.prod.example.com"} {
		act, _ := simulate(t, res, simConn{ip: public, port: 443, transport: "tls", sni: sni})
		assert.Equal(t, "deny", act, "SNI %s", sni)
	}
	act, _ := simulate(t, res, simConn{ip: public, port: 443, transport: "tls", sni: "example.com"})
	assert.Equal(t, "allow", act, "the parent of the zone is not production")
}
