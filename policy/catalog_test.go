package policy

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseCatalogInvalid(t *testing.T) {
	for _, tc := range []struct {
		file string
		want []string // substrings of the error, each naming file:line and field
	}{
		{"bad_cidr.yaml", []string{`bad_cidr.yaml:4: cidrs[1]: bad CIDR "10.300.0.0/16"`}},
		{"duplicate_provider.yaml", []string{`duplicate_provider.yaml:5: providers[1].name: duplicate provider "acme" (first defined at line 2)`}},
		{"unknown_field.yaml", []string{`unknown_field.yaml:5: providers[0].endpoints[0].sandbox_host: unknown field "sandbox_host"`}},
		{"bad_zone.yaml", []string{`bad_zone.yaml:3: zones[1]: bad pattern "api.*.example.com"`}},
		{"endpoint_empty.yaml", []string{`endpoint_empty.yaml:4: providers[0].endpoints[0]: endpoint has neither live nor ports`}},
		{"sandbox_no_host.yaml", []string{`sandbox_no_host.yaml:5: providers[0].endpoints[0].sandbox.host: host is required`}},
		{"exception_incomplete.yaml", []string{
			`exception_incomplete.yaml:2: exceptions[0].owner: owner is required`,
			`exception_incomplete.yaml:2: exceptions[0].ticket: ticket is required`,
		}},
		{"bad_date.yaml", []string{`bad_date.yaml:5: exceptions[0].expires: bad date "31/12/2026" (want YYYY-MM-DD)`}},
		{"bad_port.yaml", []string{`bad_port.yaml:5: providers[0].endpoints[0].ports[1]: cannot unmarshal !!int ` + "`70000`"}},
		{"syntax.yaml", []string{`syntax.yaml:2: did not find expected ',' or ']'`}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			p := filepath.Join("testdata", "invalid", tc.file)
			b, err := os.ReadFile(p)
			require.NoError(t, err)
			_, err = ParseCatalog(p, b)
			require.Error(t, err)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestParseCatalogAllErrorsAtOnce(t *testing.T) {
	src := []byte(`
zones: ["bad..zone", "*.ok.example"]
cidrs: [nope, 10.0.0.1/8]
providers:
  - name: Bad Name
    endpoints: []
exceptions:
  - id: x
    workload: {}
    expires: 2026-01-01
    owner: a
    ticket: b
`)
	_, err := ParseCatalog("c.yaml", src)
	require.Error(t, err)
	for _, w := range []string{
		`c.yaml:2: zones[0]: bad name "bad..zone"`,
		`c.yaml:3: cidrs[0]: bad CIDR "nope"`,
		`c.yaml:3: cidrs[1]: bad CIDR "10.0.0.1/8": host bits set (did you mean 10.0.0.0/8?)`,
		`c.yaml:5: providers[0].name: bad provider name "Bad Name"`,
		`c.yaml:6: providers[0].endpoints: provider "Bad Name" has no endpoints`,
		`c.yaml:9: exceptions[0].workload: workload selector is empty`,
		`c.yaml:8: exceptions[0]: exception "x" allows nothing`,
	} {
		assert.Contains(t, err.Error(), w)
	}
}

func TestParseCatalogNormalizes(t *testing.T) {
	c, err := ParseCatalog("c.yaml", []byte(`
zones: ["*.Prod.Example.COM.", "bücher.example"]
cidrs: ["10.20.0.0/16", "::ffff:10.30.0.0/112", 192.0.2.7]
exceptions:
  - id: e
    workload: {environment: Staging}
    hosts: [API.Stripe.com]
    expires: 2026-12-31
    owner: a
    ticket: b
`))
	require.NoError(t, err)
	assert.Equal(t, []string{"*.prod.example.com", "xn--bcher-kva.example"}, c.Zones)
	assert.Equal(t, []string{"10.20.0.0/16", "10.30.0.0/16", "192.0.2.7/32"}, c.CIDRs)
	assert.Equal(t, "staging", c.Exceptions[0].Workload.Environment)
	assert.Equal(t, []string{"api.stripe.com"}, c.Exceptions[0].Hosts)
}

func TestDefaultCatalogIsValid(t *testing.T) {
	f := DefaultCatalog()
	c, err := ParseCatalog(f.Name, f.Data)
	require.NoError(t, err)
	assert.NotEmpty(t, c.Providers)
}

func TestExceptionExpiry(t *testing.T) {
	d, err := ParseDate("2026-12-31")
	require.NoError(t, err)
	assert.False(t, d.ExpiredAt(time.Date(2026, 12, 31, 23, 59, 59, 0, time.UTC)), "the last day still applies")
	assert.True(t, d.ExpiredAt(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)))
}

func TestBuildCatalogMerge(t *testing.T) {
	base := CatalogFile{Name: "base.yaml", Data: []byte(`
environments: {production: [prod], non_production: [staging]}
zones: ["*.prod.example.com"]
providers:
  - name: a
    endpoints: [{live: a.example}]
  - name: b
    endpoints: [{live: b.example}]
  - name: c
    endpoints: [{live: c.example}]
exceptions:
  - {id: x1, workload: {environment: staging}, hosts: [a.example], expires: 2026-12-31, owner: o, ticket: t}
`)}
	op := CatalogFile{Name: "op.yaml", Data: []byte(`
zones: ["*.prod.example.com", "billing.example.com"]
providers:
  - name: b
    endpoints: [{live: b2.example}]
  - name: c
    disabled: true
    endpoints: [{live: c.example}]
  - name: d
    endpoints: [{live: d.example}]
exceptions:
  - {id: x2, workload: {environment: staging}, hosts: [b2.example], expires: 2026-01-31, owner: o, ticket: t}
`)}
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	c, expired, err := BuildCatalog([]CatalogFile{base, op}, now)
	require.NoError(t, err)
	assert.Equal(t, []string{"prod"}, c.Environments.Production, "environments: the only file that sets them")
	assert.Equal(t, []string{"*.prod.example.com", "billing.example.com"}, c.Zones, "zones append, deduplicated")
	var names []string
	for _, p := range c.Providers {
		names = append(names, p.Name)
	}
	assert.Equal(t, []string{"a", "b", "d"}, names, "b replaced in place, c disabled, d appended")
	assert.Equal(t, "b2.example", c.Providers[1].Endpoints[0].Live)
	require.Len(t, c.Exceptions, 1)
	assert.Equal(t, "x1", c.Exceptions[0].ID)
	assert.Equal(t, []ExpiredException{{ID: "x2", File: "op.yaml", Expires: "2026-01-31", Owner: "o", Ticket: "t"}}, expired)

	// The same exception id in two files is an error naming both.
	_, _, err = BuildCatalog([]CatalogFile{base, {Name: "dup.yaml", Data: base.Data}}, now)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `dup.yaml: exceptions: exception id "x1" is already defined in base.yaml`)
}

func TestBuildCatalogReportsEveryFile(t *testing.T) {
	_, _, err := BuildCatalog([]CatalogFile{
		{Name: "one.yaml", Data: []byte("zones: [\"a..b\"]\n")},
		{Name: "two.yaml", Data: []byte("cidrs: [x]\n")},
	}, time.Now())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "one.yaml:1: zones[0]")
	assert.Contains(t, err.Error(), "two.yaml:1: cidrs[0]")
}

func TestParseDestination(t *testing.T) {
	for _, tc := range []struct {
		in, host, ip string
		port         uint16
		err          bool
	}{
		{in: "api-m.paypal.com:443", host: "api-m.paypal.com", port: 443},
		{in: "API.Stripe.com.", host: "api.stripe.com"},
		{in: "10.20.0.1:5432", ip: "10.20.0.1", port: 5432},
		{in: "2001:db8::1", ip: "2001:db8::1"},
		{in: "[2001:db8::1]:443", ip: "2001:db8::1", port: 443},
		{in: "::ffff:10.0.0.1", ip: "10.0.0.1"},
		{in: "https://api.stripe.com/v1/charges", host: "api.stripe.com", port: 443},
		{in: "http://user@Api.Stripe.com:8080/x?y", host: "api.stripe.com", port: 8080},
		{in: "smtp://smtp.sendgrid.net", host: "smtp.sendgrid.net", port: 25},
		{in: "xds:///payments.prod.example.com:8443", host: "payments.prod.example.com", port: 8443},
		{in: "https://[::ffff:10.0.0.1]/", ip: "10.0.0.1", port: 443},
		{in: "167772161", ip: "10.0.0.1"},
		{in: "0xa.024.0.1:5432", ip: "10.20.0.1", port: 5432},
		{in: "10.1310981", ip: "10.20.1.5"},
		{in: "[64:ff9b::10.20.0.1]:443", ip: "10.20.0.1", port: 443},
		{in: "2002:a14:1::1", ip: "10.20.0.1"},
		{in: "10.20.0.08", err: true},
		{in: "api.example.123", err: true},
		{in: "ftp://api.stripe.com", err: true},
		{in: "https://", err: true},
		{in: "[10.0.0.1]:443", err: true},
		{in: "[::1]x", err: true},
		{in: "fe80::1%eth0", err: true},
		{in: "host:", err: true},
		{in: "host:0", err: true},
		{in: "host:http", err: true},
		{in: "*.example.com", err: true},
		{in: "", err: true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			d, err := ParseDestination(tc.in)
			if tc.err {
				assert.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.host, d.Host)
			assert.Equal(t, tc.port, d.Port)
			if tc.ip != "" {
				assert.Equal(t, tc.ip, d.IP.String())
			} else {
				assert.False(t, d.IP.IsValid())
			}
		})
	}
}

func TestDisableDefaultProviderByName(t *testing.T) {
	op := CatalogFile{Name: "op.yaml", Data: []byte("providers:\n  - name: stripe\n    disabled: true\n")}
	c, _, err := BuildCatalog([]CatalogFile{DefaultCatalog(), op}, time.Now())
	require.NoError(t, err)
	for _, p := range c.Providers {
		assert.NotEqual(t, "stripe", p.Name)
	}
	assert.NotEmpty(t, c.Providers)
}

func TestCatalogIdentitiesMerge(t *testing.T) {
	a := CatalogFile{Name: "a.yaml", Data: []byte("jwt:\n  issuers: [https://auth.prod.example.com]\nproviders:\n  - name: twilio\n    accounts: [AC0123]\n    endpoints:\n      - live: api.twilio.com\n")}
	b := CatalogFile{Name: "b.yaml", Data: []byte("jwt:\n  issuers: [https://auth.prod.example.com, https://login.prod.example.com]\n  audiences: [prod-api]\n")}
	c, _, err := BuildCatalog([]CatalogFile{a, b}, time.Now())
	require.NoError(t, err)
	require.NotNil(t, c.JWT)
	assert.Equal(t, []string{"https://auth.prod.example.com", "https://login.prod.example.com"}, c.JWT.Issuers)
	assert.Equal(t, []string{"prod-api"}, c.JWT.Audiences)
	require.Len(t, c.Providers, 1)
	assert.Equal(t, []string{"AC0123"}, c.Providers[0].Accounts)

	_, err = ParseCatalog("c.yaml", []byte("jwt:\n  issuer: x\n"))
	require.ErrorContains(t, err, "c.yaml:2")
}

func TestCatalogNAT64(t *testing.T) {
	c, err := ParseCatalog("c.yaml", []byte("nat64: [\"2001:DB8:64::/96\", \"2001:db8:100::/40\"]\n"))
	require.NoError(t, err)
	assert.Equal(t, []string{"2001:db8:64::/96", "2001:db8:100::/40"}, c.NAT64)
	assert.Len(t, c.NAT64Prefixes(), 2)

	_, err = ParseCatalog("c.yaml", []byte("zones: [a.example]\nnat64:\n  - 2001:db8::/33\n  - 10.0.0.0/8\n  - 2001:db8::1/96\n  - nope\n"))
	require.Error(t, err)
	for _, w := range []string{
		`c.yaml:3: nat64[0]: NAT64 prefix 2001:db8::/33: length /33 has no RFC 6052 layout`,
		`c.yaml:4: nat64[1]: NAT64 prefix 10.0.0.0/8 is not an IPv6 prefix`,
		`c.yaml:5: nat64[2]: NAT64 prefix 2001:db8::1/96 has host bits set (did you mean 2001:db8::/96?)`,
		`c.yaml:6: nat64[3]: netip.ParsePrefix("nope")`,
	} {
		assert.Contains(t, err.Error(), w)
	}
}
