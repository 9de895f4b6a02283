package xds

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/egressguard/egressguard/policy/plan"
)

// FuzzParseTarget: no panic; an accepted target has a port and a
// normalised host or an IP, and its canonical "host:port" form parses to
// the same destination (a fixpoint).
func FuzzParseTarget(f *testing.F) {
	for _, s := range readTargets(f, "testdata/in/grpc-services.targets") {
		f.Add(s)
	}
	for _, s := range []string{"api.example.com", "API.Example.COM.:8443", "[2001:db8::1]:443", "10.0.0.1",
		"::ffff:10.0.0.1", "*.example.com", "a:0", "a:65536", "", ":443", "xn--bcher-kva.example", "bücher.example:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, target string) {
		d, err := ParseTarget(target)
		if err != nil {
			return
		}
		require.NotZero(t, d.Port)
		require.Equal(t, "grpc", d.Protocol)
		var host string
		if d.Host != "" {
			require.False(t, d.IP.IsValid(), "host and IP at once")
			norm, err := plan.NormalizeHost(d.Host)
			require.NoError(t, err)
			require.Equal(t, norm, d.Host, "host is normalised")
			host = d.Host
		} else {
			require.True(t, d.IP.IsValid())
			require.False(t, d.IP.Is4In6(), "mapped addresses are unmapped")
			host = d.IP.String()
		}
		again, err := ParseTarget(net.JoinHostPort(host, strconv.Itoa(int(d.Port))))
		require.NoError(t, err)
		require.Equal(t, d, again)
	})
}

// FuzzTranslate: any plan.Spec that compiles translates (sidecar, with and
// without a staging CA, and proxyless) into resources that pass Validate, and the simulated sidecar
// gives plan.Decide's answer on destinations drawn from the spec itself.
func FuzzTranslate(f *testing.F) {
	ins, err := filepath.Glob("testdata/in/*.yaml")
	require.NoError(f, err)
	for _, in := range ins {
		b, err := os.ReadFile(in)
		require.NoError(f, err)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var spec plan.Spec
		if len(in) > 4096 || yaml.UnmarshalStrict(in, &spec) != nil || len(spec.Rules) > 16 {
			return // bounded work per input
		}
		n := 0
		for _, r := range spec.Rules {
			n += len(r.Hosts) + len(r.CIDRs) + len(r.Ports)
		}
		if n > 64 {
			return
		}
		p, err := plan.Compile(spec)
		if err != nil {
			return
		}
		res, err := TranslateSidecar(p, NodeSettings{})
		if err != nil {
			return // refusing a plan is allowed; publishing a broken one is not
		}
		require.NoError(t, Validate(res))
		// With a staging CA the intercepted rules get their own chains,
		// which must leave the listener unambiguous too.
		ires, err := TranslateSidecar(p, NodeSettings{Certificates: &testCerts{}})
		require.NoError(t, err)
		require.NoError(t, Validate(ires))

		// Destinations: every host pattern (wildcards made concrete) on
		// every named port and 443, to the rules' CIDRs and elsewhere.
		hosts := []string{"unlisted.example"}
		ips := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8:ffff::1")}
		ports := []uint16{443}
		var targets []string
		for _, r := range p.Spec().Rules {
			for _, h := range r.Hosts {
				h = strings.TrimPrefix(strings.TrimPrefix(h, "*"), ".")
				if h == "" {
					continue
				}
				hosts = append(hosts, h, "sub."+h)
				targets = append(targets, h)
			}
			for _, c := range r.CIDRs {
				if pfx, err := netip.ParsePrefix(c); err == nil {
					ips = append(ips, pfx.Addr())
				}
			}
			ports = append(ports, r.Ports...)
		}
		for _, ip := range ips[:min(len(ips), 4)] {
			for _, port := range ports[:min(len(ports), 3)] {
				d := p.Decide(plan.Destination{IP: ip, Port: port})
				act, rule := simulate(t, res, simConn{ip: ip, port: port, transport: "tcp"})
				assert.Equal(t, want(d), act, "tcp %s:%d", ip, port)
				assert.Equal(t, d.RuleID(), rule, "tcp %s:%d", ip, port)
				for _, h := range hosts[:min(len(hosts), 12)] {
					if _, err := plan.NormalizeHost(h); err != nil {
						continue
					}
					d := outsideInterception(p, p.Decide(plan.Destination{Host: h, IP: ip, Port: port}))
					act, rule := simulate(t, res, simConn{ip: ip, port: port, transport: "http", host: h})
					assert.Equal(t, want(d), act, "http %s to %s:%d", h, ip, port)
					assert.Equal(t, d.RuleID(), rule, "http %s to %s:%d", h, ip, port)
				}
			}
		}

		pres, err := TranslateProxyless(p, targets[:min(len(targets), 8)])
		if err != nil {
			return
		}
		require.NoError(t, Validate(pres))
	})
}
