package plan

import (
	"fmt"
	"net/netip"
	"testing"
)

// largeSpec is the benchmark plan of the foundation issue: 10,000 host rules
// and 1,000 CIDR rules.
func largeSpec() Spec {
	s := Spec{Default: ActionAllow}
	for i := range 10000 {
		r := Rule{ID: fmt.Sprintf("h%d", i), Action: ActionDeny, Reason: "production"}
		switch i % 3 {
		case 0:
			r.Hosts = []string{fmt.Sprintf("*.zone%d.prod.example.com", i)}
		case 1:
			r.Hosts = []string{fmt.Sprintf("api%d.provider%d.com", i, i%97)}
		default:
			r.Hosts = []string{fmt.Sprintf("svc%d.internal.example.net", i)}
			r.Action = ActionRedirect
			r.Redirect = &Redirect{Host: "sandbox.example.net", Port: 443, TLS: true}
		}
		s.Rules = append(s.Rules, r)
	}
	for i := range 1000 {
		var p string
		if i%2 == 0 {
			p = fmt.Sprintf("10.%d.%d.0/24", i/256, i%256)
		} else {
			p = fmt.Sprintf("2001:db8:%x::/48", i)
		}
		s.Rules = append(s.Rules, Rule{ID: fmt.Sprintf("c%d", i), CIDRs: []string{p}, Action: ActionDeny})
	}
	return s
}

func BenchmarkDecide(b *testing.B) {
	p, err := Compile(largeSpec())
	if err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		name string
		dest Destination
	}{
		{"exact", Destination{Host: "api4.provider4.com", Port: 443}},
		{"wildcard-deep", Destination{Host: "a.b.c.zone3.prod.example.com"}},
		{"miss-long-name", Destination{Host: "very.long.name.that.matches.nothing.example.org"}},
		{"uppercase-trailing-dot", Destination{Host: "API4.Provider4.COM."}},
		{"ipv4", Destination{IP: netip.MustParseAddr("10.1.4.7")}},
		{"ipv6", Destination{IP: netip.MustParseAddr("2001:db8:3::1")}},
		{"host-miss-then-ip", Destination{Host: "www.example.org", IP: netip.MustParseAddr("10.1.4.7"), Port: 443}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = p.Decide(c.dest)
			}
		})
	}
}

func BenchmarkCompileLayer(b *testing.B) {
	s := largeSpec()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := CompileLayer(s.Rules); err != nil {
			b.Fatal(err)
		}
	}
}

func TestDecideDoesNotAllocate(t *testing.T) {
	p, err := Compile(largeSpec())
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []Destination{
		{Host: "API4.Provider4.COM.", Port: 443},
		{Host: "x.y.zone3.prod.example.com"},
		{IP: netip.MustParseAddr("2001:db8:3::1"), Port: 25},
	} {
		if n := testing.AllocsPerRun(100, func() { _ = p.Decide(d) }); n != 0 {
			t.Errorf("Decide(%+v) allocates %v times", d, n)
		}
	}
}

// BenchmarkDecideLinear is the in-run peer of BenchmarkDecide: the naive
// linear reading of the same semantics (reference_test.go) on the same plan.
func BenchmarkDecideLinear(b *testing.B) {
	s := largeSpec()
	layers := [][]Rule{s.Rules}
	d := Destination{Host: "a.b.c.zone3.prod.example.com"}
	b.ReportAllocs()
	for b.Loop() {
		_, _ = referenceDecide(layers, s.Default, d)
	}
}

// BenchmarkDecideRequest decides one request to an intercepted host in the
// large plan plus the request rules, against Decide of the same host (the
// peer): header-prefix rules (target: under 500 ns, 0 allocations), the
// default catalog's whole-value regexes, and a path that needs normalising.
func BenchmarkDecideRequest(b *testing.B) {
	spec := largeSpec()
	spec.Rules = append(spec.Rules, prefixRule())
	regexRule := stripeLike()
	regexRule.ID, regexRule.Hosts = "stripe-regex", []string{"regex.stripe.com"}
	spec.Rules = append(spec.Rules, regexRule)
	p, err := Compile(spec)
	if err != nil {
		b.Fatal(err)
	}
	h := map[string]string{"authorization": "Bearer sk_test_4eC39HqLyjWDarjt", "content-type": "application/x-www-form-urlencoded"}
	header := func(name string) (string, bool) { v, ok := h[name]; return v, ok }
	dest := Destination{Host: "api.stripe.com", Port: 443}
	for _, c := range []struct {
		name string
		dest Destination
		path string
	}{
		{"header-prefix", dest, "/v1/charges?limit=3"},
		{"header-prefix/unnormalised-path", dest, "/v1//x/../charges?limit=3"},
		{"regex", Destination{Host: "regex.stripe.com", Port: 443}, "/v1/charges"},
	} {
		r := Request{Method: "POST", Path: c.path, Header: header}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if p.DecideRequest(c.dest, r).Action != ActionAllow {
					b.Fatal("not allowed")
				}
			}
		})
	}
	b.Run("peer/Decide", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			p.Decide(dest)
		}
	})
}
