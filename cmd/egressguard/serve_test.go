package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
)

// startUpstream runs an authoritative DNS server on 127.0.0.1 that answers
// every A query with 192.0.2.10.
func startUpstream(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Authoritative = true
		if q := r.Question[0]; q.Qtype == dns.TypeA {
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, 10)})
		}
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String()
}

func testServeConfig(t *testing.T) serveConfig {
	cfg := defaultServeConfig()
	cfg.DNS.Listen = "127.0.0.1:0"
	cfg.DNS.Upstreams = []string{startUpstream(t)}
	cfg.XDS.Listen = "127.0.0.1:0"
	cfg.Admin.Listen = "127.0.0.1:0"
	cfg.Decisions.File = filepath.Join(t.TempDir(), "decisions.jsonl")
	require.NoError(t, cfg.validate())
	return cfg
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	return getWith(t, url, "")
}

// TestServeEndToEnd runs the whole guard on loopback ports it picks and
// checks each component through its real socket.
func TestServeEndToEnd(t *testing.T) {
	cfg := testServeConfig(t)
	addrs, cancel, done := runServe(t, cfg)
	admin := "http://" + addrs.Admin.String()

	code, body := httpGet(t, admin+"/readyz")
	assert.Equal(t, http.StatusOK, code, body)

	c := &dns.Client{Timeout: 5 * time.Second}
	m := new(dns.Msg)
	m.SetQuestion("api.stripe.com.", dns.TypeA)
	m.SetEdns0(1232, false)
	r, _, err := c.Exchange(m, addrs.DNS.String())
	require.NoError(t, err)
	assert.Equal(t, dns.RcodeNameError, r.Rcode)
	require.NotNil(t, r.IsEdns0())
	var ede *dns.EDNS0_EDE
	for _, o := range r.IsEdns0().Option {
		if e, ok := o.(*dns.EDNS0_EDE); ok {
			ede = e
		}
	}
	require.NotNil(t, ede, "deny answers carry an Extended DNS Error")
	assert.Equal(t, dns.ExtendedErrorCodeBlocked, ede.InfoCode)
	assert.Contains(t, ede.ExtraText, "provider:stripe:api.stripe.com")

	m.SetQuestion("www.example.org.", dns.TypeA)
	r, _, err = c.Exchange(m, addrs.DNS.String())
	require.NoError(t, err)
	require.Equal(t, dns.RcodeSuccess, r.Rcode)
	require.Len(t, r.Answer, 1)
	assert.Equal(t, "192.0.2.10", r.Answer[0].(*dns.A).A.String())

	code, body = httpGet(t, admin+"/api/decisions")
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, `"rule": "provider:stripe:api.stripe.com"`)
	assert.NotContains(t, body, "www.example.org", "allowed answers are not decision records")

	code, body = httpGet(t, admin+"/api/decide?workload=env=production&dest=api.stripe.com:443")
	require.Equal(t, http.StatusOK, code, body)
	var dec struct {
		Decision struct {
			Action string `json:"action"`
		} `json:"decision"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &dec))
	assert.Equal(t, "allow", dec.Decision.Action)

	code, body = httpGet(t, admin+"/api/decide?dest=api-m.paypal.com:443")
	require.Equal(t, http.StatusOK, code, body)
	assert.Contains(t, body, `"action": "redirect"`)
	assert.Contains(t, body, "terminates TLS with a staging-CA leaf")

	code, _ = httpGet(t, admin+"/api/decide?dest=")
	assert.Equal(t, http.StatusBadRequest, code)

	code, body = httpGet(t, admin+"/metrics")
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, "egressguard_dnsguard_")

	code, body = httpGet(t, admin+"/api/policy")
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, `"version"`)

	// The xDS port accepts connections.
	conn, err := net.DialTimeout("tcp", addrs.XDS.String(), 5*time.Second)
	require.NoError(t, err)
	_ = conn.Close()

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop within 30s of cancellation")
	}
	b, err := os.ReadFile(cfg.Decisions.File)
	require.NoError(t, err)
	assert.Contains(t, string(b), `"decision_id"`)
	assert.Contains(t, string(b), "api.stripe.com")
}

func TestServePortInUse(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer lis.Close()
	cfg := testServeConfig(t)
	cfg.Admin.Listen = lis.Addr().String()
	err = serve(context.Background(), zaptest.NewLogger(t), cfg, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "admin: listen "+lis.Addr().String())
}

// runCLI runs the root command with args and returns what it printed and
// its error.
func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return runCLIWithInput(t, "", args...)
}

// runCLIWithInput is runCLI with stdin.
func runCLIWithInput(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

// exitCode is the process exit code main would use for err.
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ec interface{ ExitCode() int }
	if errors.As(err, &ec) {
		return ec.ExitCode()
	}
	return 1
}

// startGuard runs serve in-process from cfg until the test ends and returns
// the addresses it bound; the cleanup waits (bounded) for it to stop.
func startGuard(t *testing.T, cfg serveConfig) listeners {
	t.Helper()
	cfg.Shutdown.LameDuck = 0 // tests stop at once; TestLameDuckOrder covers it
	a, cancel, done := runServe(t, cfg)
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("serve did not stop within 30s")
		}
	})
	return a
}

// runServe starts serve with cfg and returns its bound listeners once it has
// bound them, the function that stops it (as SIGTERM does) and where its
// result arrives. The caller stops it.
func runServe(t *testing.T, cfg serveConfig) (listeners, context.CancelFunc, <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	bound := make(chan listeners, 1)
	done := make(chan error, 1)
	go func() { done <- serve(ctx, zaptest.NewLogger(t), cfg, bound) }()
	select {
	case a := <-bound:
		return a, cancel, done
	case err := <-done:
		cancel()
		t.Fatalf("serve stopped early: %v", err)
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatal("serve did not bind within 60s")
	}
	return listeners{}, cancel, done
}

func TestPolicyEvalCLI(t *testing.T) {
	out, err := runCLI(t, "policy", "eval", "--workload", "env=staging,app=checkout", "--dest", "api-m.paypal.com:443")
	require.NoError(t, err)
	assert.Contains(t, out, "decision     redirect -> api-m.sandbox.paypal.com:443 (tls)")
	assert.Contains(t, out, "rule         provider:paypal:api-m.paypal.com")

	out, err = runCLI(t, "policy", "eval", "--workload", "env=production", "--dest", "api.stripe.com", "-o", "json")
	require.NoError(t, err)
	assert.Contains(t, out, `"action": "allow"`)

	_, err = runCLI(t, "policy", "eval", "--workload", "nosuch", "--dest", "api.stripe.com")
	require.ErrorContains(t, err, `no workload named "nosuch"`)
}

func TestPolicyTestCLI(t *testing.T) {
	out, err := runCLI(t, "policy", "test")
	require.NoError(t, err, out)
	assert.Contains(t, out, "0 failed")

	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte(`scenarios:
  - name: stripe is allowed (wrong on purpose)
    workload: {environment: staging}
    dest: api.stripe.com:443
    want: allow
`), 0o600))
	out, err = runCLI(t, "policy", "test", bad)
	require.Error(t, err)
	assert.Contains(t, out, "stripe is allowed (wrong on purpose)")
}

func TestValidateCLI(t *testing.T) {
	dir := t.TempDir()
	cat := filepath.Join(dir, "catalog.yaml")
	require.NoError(t, os.WriteFile(cat, []byte("cidrs:\n  - 10.0.0.0/8\n  - 10.0.0.0/33\n"), 0o600))
	cfgFile := filepath.Join(dir, "config.yaml")
	require.NoError(t, os.WriteFile(cfgFile, []byte("policy:\n  catalogs: ["+cat+"]\ndns:\n  listen: 127.0.0.1:0\n  upstreams: [127.0.0.1:53]\n"), 0o600))
	_, err := runCLI(t, "validate", "--config", cfgFile)
	require.Error(t, err)
	assert.Contains(t, err.Error(), cat+":3")

	// A bad section and a bad catalog are both reported.
	require.NoError(t, os.WriteFile(cfgFile, []byte("policy:\n  catalogs: ["+cat+"]\ndns:\n  listen: 127.0.0.1:0\n  upstreams: [not-an-address]\n"), 0o600))
	_, err = runCLI(t, "validate", "--config", cfgFile)
	require.Error(t, err)
	assert.Contains(t, err.Error(), cat+":3")
	assert.Contains(t, err.Error(), "not-an-address")

	require.NoError(t, os.WriteFile(cfgFile, []byte("dns:\n  listen: 127.0.0.1:0\n  upstreams: [127.0.0.1:53]\n  bogus: 1\n"), 0o600))
	_, err = runCLI(t, "validate", "--config", cfgFile)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "bogus")

	require.NoError(t, os.WriteFile(cfgFile, []byte("dns:\n  listen: 127.0.0.1:0\n  upstreams: [127.0.0.1:53]\nxds:\n  listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\n"), 0o600))
	out, err := runCLI(t, "validate", "--config", cfgFile)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(out, "ok: policy "), out)
}

func TestBootstrapCLI(t *testing.T) {
	out, err := runCLI(t, "bootstrap", "--node-id", "sidecar~10.1.2.3~checkout.payments~payments.svc.cluster.local", "--xds-address", "egressguard.egressguard.svc:18000")
	require.NoError(t, err)
	assert.Contains(t, out, "egressguard.egressguard.svc")
	_, err = runCLI(t, "bootstrap")
	require.Error(t, err)
}

// TestExamplesValidate keeps the README's example configuration true.
func TestExamplesValidate(t *testing.T) {
	t.Chdir("../..")
	out, err := runCLI(t, "validate", "--config", "deploy/examples/config.yaml")
	require.NoError(t, err)
	assert.Contains(t, out, "2 workloads")

	out, err = runCLI(t, "policy", "eval", "--catalog", "deploy/examples/catalog.yaml",
		"--inventory", "deploy/examples/inventory.yaml", "--workload", "checkout", "--dest", "status.prod.example.com:443")
	require.NoError(t, err)
	// The example's exception is time-boxed (TestDogfoodExampleCatalogLints);
	// once expired it is ignored and the production zone decides.
	if time.Now().UTC().Before(time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC)) {
		assert.Contains(t, out, "exception:checkout-reads-prod-status")
	} else {
		assert.Contains(t, out, "zone:*.prod.example.com")
	}
}

func TestConfigSet(t *testing.T) {
	cfg, err := loadServeConfig("", "dns.cache_size=5", "dns.upstreams=[10.0.0.2, 10.0.0.3]", "dns.upstream_timeout=2s", "log.format=json")
	require.NoError(t, err)
	assert.Equal(t, 5, cfg.DNS.CacheSize)
	assert.Equal(t, []string{"10.0.0.2", "10.0.0.3"}, cfg.DNS.Upstreams)
	assert.Equal(t, 2*time.Second, cfg.DNS.UpstreamTimeout)
	assert.Equal(t, "json", cfg.Log.Format)
	assert.Equal(t, "127.0.0.1:5353", cfg.DNS.Listen, "other keys keep their values")

	for _, bad := range []string{"dns.cache_sizee=1", "dns=1", "cache_size", "dns..x=1"} {
		_, err := loadServeConfig("", bad)
		assert.ErrorContains(t, err, "--set "+bad, bad)
	}
	_, err = loadServeConfig("", "dns.cache_sizee=1")
	assert.ErrorContains(t, err, "cache_sizee")
}

// TestServeFlagsOverride: each serve flag (and root's persistent flags)
// overrides its config key; shown through the validation errors serve
// reports, all at once, before it binds anything.
func TestServeFlagsOverride(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.yaml")
	out, err := runCLI(t, "serve",
		"--dns-listen", "dns-nope", "--xds-listen", "xds-nope", "--admin-listen", "admin-nope",
		"--webhook-listen", "webhook-nope", "--inventory-source", "consul",
		"--set", "decisions.max_files=0", "--decisions-file", filepath.Join(t.TempDir(), "d.jsonl"))
	require.Error(t, err, out)
	for _, want := range []string{`"dns-nope"`, "xds-nope", "admin.listen", `"webhook-nope"`, `inventory.source: "consul"`, "decisions.max_files"} {
		assert.ErrorContains(t, err, want)
	}

	out, err = runCLI(t, "serve", "--catalog", missing, "--set", "dns.listen=", "--set", "xds.listen=", "--set", "admin.listen=")
	require.Error(t, err, out)
	assert.ErrorContains(t, err, missing, "--catalog reaches the policy section")
}
