package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/egressguard/egressguard/internal/testcert"
	"github.com/egressguard/egressguard/internal/tlsprofile"
	"github.com/egressguard/egressguard/policy"
)

func getWith(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// Probes and metrics on admin.listen without authentication; the APIs and
// the page on admin.api_listen behind the bearer token, and never on the
// probe listener.
func TestAdminSplitAndTokenAuth(t *testing.T) {
	cfg := testServeConfig(t)
	cfg.DNS.Listen, cfg.XDS.Listen = "", ""
	cfg.Admin.APIListen = "127.0.0.1:0"
	const token = "0123456789abcdef-token"
	cfg.Admin.Auth.TokenFile = filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(cfg.Admin.Auth.TokenFile, []byte(token+"\n"), 0o600))
	a := startGuard(t, cfg)
	probes, api := "http://"+a.Admin.String(), "http://"+a.AdminAPI.String()

	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		code, _ := getWith(t, probes+p, "")
		assert.Equal(t, http.StatusOK, code, p)
	}
	for _, p := range []string{"/", "/api/policy", "/api/decisions", "/api/attempts", "/api/sidecars", "/api/decisionlog"} {
		code, _ := getWith(t, probes+p, token)
		assert.Equal(t, http.StatusNotFound, code, "probe listener serves %s", p)
		code, body := getWith(t, api+p, "")
		assert.Equal(t, http.StatusUnauthorized, code, "%s without a token: %s", p, body)
		code, _ = getWith(t, api+p, "wrong-token-wrong-token")
		assert.Equal(t, http.StatusUnauthorized, code, p)
		code, _ = getWith(t, api+p, token)
		assert.Equal(t, http.StatusOK, code, p)
	}
	// The page's sign-in sets a session cookie the page's own requests use.
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	c := &http.Client{Jar: jar}
	resp, err := c.PostForm(api+"/login", map[string][]string{"token": {token}})
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	resp, err = c.Get(api + "/api/policy")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)

	// A rotated Secret takes effect without a restart.
	require.NoError(t, os.WriteFile(cfg.Admin.Auth.TokenFile, []byte("a-new-token-after-rotation"), 0o600))
	future := time.Now().Add(time.Minute)
	require.NoError(t, os.Chtimes(cfg.Admin.Auth.TokenFile, future, future))
	code, _ := getWith(t, api+"/api/policy", token)
	assert.Equal(t, http.StatusUnauthorized, code)
	code, _ = getWith(t, api+"/api/policy", "a-new-token-after-rotation")
	assert.Equal(t, http.StatusOK, code)
}

// nonLoopbackAddr is an address of this host that is not loopback.
func nonLoopbackAddr(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	require.NoError(t, err)
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			return n.IP.String()
		}
	}
	t.Skip("no non-loopback IPv4 address on this host")
	return ""
}

// Bound beyond loopback with no admin.auth, the APIs answer loopback peers
// only (kubectl port-forward arrives on loopback); a neighbour gets 403
// naming the setting, while probes answer everyone.
func TestAdminWithoutAuthAnswersLoopbackPeersOnly(t *testing.T) {
	cfg := testServeConfig(t)
	cfg.DNS.Listen, cfg.XDS.Listen = "", ""
	cfg.Admin.Listen = "0.0.0.0:0"
	a := startGuard(t, cfg)
	_, port, err := net.SplitHostPort(a.Admin.String())
	require.NoError(t, err)
	neighbour := "http://" + net.JoinHostPort(nonLoopbackAddr(t), port)
	code, _ := getWith(t, neighbour+"/readyz", "")
	assert.Equal(t, http.StatusOK, code)
	for _, p := range []string{"/", "/api/policy", "/api/sidecars", "/debug/xds"} {
		code, body := getWith(t, neighbour+p, "")
		assert.Equal(t, http.StatusForbidden, code, p)
		assert.Contains(t, body, "admin.auth", p)
	}
	code, _ = getWith(t, "http://127.0.0.1:"+port+"/api/policy", "")
	assert.Equal(t, http.StatusOK, code, "a loopback peer (port-forward)")
}

// A thousand idle keep-alive connections are closed by the server once
// admin.idle_timeout passes.
func TestAdminClosesIdleKeepAlives(t *testing.T) {
	const conns = 1000
	cfg := testServeConfig(t)
	cfg.DNS.Listen, cfg.XDS.Listen = "", ""
	cfg.Admin.IdleTimeout = 500 * time.Millisecond
	cfg.Admin.MaxConnections = conns + 10
	a := startGuard(t, cfg)
	open := make([]net.Conn, 0, conns)
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	for range conns {
		c, err := net.Dial("tcp", a.Admin.String())
		require.NoError(t, err)
		open = append(open, c)
		_, err = fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		require.NoError(t, err)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	start := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var slowest time.Duration
	stillOpen := 0
	for _, c := range open {
		wg.Go(func() {
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err := c.Read(make([]byte, 1))
			mu.Lock()
			defer mu.Unlock()
			if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
				stillOpen++
				return
			}
			slowest = max(slowest, time.Since(start))
		})
	}
	wg.Wait()
	assert.Zero(t, stillOpen, "connections the server left open")
	assert.Less(t, slowest, 5*time.Second, "closed within the idle timeout (0.5 s) plus scheduling slack")
}

// The connection cap: past admin.max_connections, a new connection waits
// until one closes.
func TestAdminConnectionCap(t *testing.T) {
	cfg := testServeConfig(t)
	cfg.DNS.Listen, cfg.XDS.Listen = "", ""
	cfg.Admin.MaxConnections = 2
	a := startGuard(t, cfg)
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", a.Admin.String())
		require.NoError(t, err)
		defer c.Close()
		held = append(held, c)
	}
	c, err := net.Dial("tcp", a.Admin.String())
	require.NoError(t, err) // the kernel's backlog accepts it
	defer c.Close()
	_, err = fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(300*time.Millisecond)))
	_, err = c.Read(make([]byte, 1))
	require.Error(t, err, "served past the cap")
	held[0].Close()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err, "served once a slot frees")
	resp.Body.Close()
}

// Every listener that cannot bind is reported at once, each with the flag
// that moves it.
func TestServeReportsEveryBindFailure(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	cfg := testServeConfig(t)
	cfg.DNS.Listen = "127.0.0.1:0"
	cfg.XDS.Listen = busy.Addr().String()
	cfg.Admin.Listen = busy.Addr().String()
	err = serve(context.Background(), zaptest.NewLogger(t), cfg, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "xds: listen "+busy.Addr().String())
	assert.Contains(t, err.Error(), "--xds-listen")
	assert.Contains(t, err.Error(), "admin: listen "+busy.Addr().String())
	assert.Contains(t, err.Error(), "--admin-listen")
}

// Lame duck: on SIGTERM (ctx ends) /readyz answers 503 at once while DNS
// keeps answering for shutdown.lame_duck; then serve drains and returns.
func TestLameDuckOrder(t *testing.T) {
	cfg := testServeConfig(t)
	cfg.Shutdown.LameDuck = 1500 * time.Millisecond
	a, cancel, done := runServe(t, cfg)
	ready := "http://" + a.Admin.String() + "/readyz"
	code, _ := getWith(t, ready, "")
	require.Equal(t, http.StatusOK, code)
	askDNS := func() error {
		m := new(dns.Msg)
		m.SetQuestion("db.prod.example.com.", dns.TypeA)
		_, _, err := (&dns.Client{Timeout: 300 * time.Millisecond}).Exchange(m, a.DNS.String())
		return err
	}
	require.NoError(t, askDNS())

	stopped := time.Now()
	cancel()
	require.Eventually(t, func() bool { code, _ := getWith(t, ready, ""); return code == http.StatusServiceUnavailable },
		time.Second, 10*time.Millisecond, "/readyz turns 503 at once")
	notReadyAfter := time.Since(stopped)
	require.NoError(t, askDNS(), "DNS still answers in lame duck")
	conn, err := net.DialTimeout("tcp", a.XDS.String(), time.Second)
	require.NoError(t, err, "xDS still accepts in lame duck")
	conn.Close()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop")
	}
	returned := time.Since(stopped)
	assert.Less(t, notReadyAfter, cfg.Shutdown.LameDuck)
	assert.GreaterOrEqual(t, returned, cfg.Shutdown.LameDuck, "serve kept serving for the lame-duck interval")
	assert.Error(t, askDNS(), "DNS is drained after the lame-duck interval")
}

// Every TLS listener (xDS with xds.tls, the webhook) speaks TLS 1.3, or
// TLS 1.2 with AEAD suites only: CBC suites and TLS 1.1 are refused.
func TestTLSListenersModernProfile(t *testing.T) {
	cfg := testServeConfig(t)
	cfg.DNS.Listen = ""
	dir := t.TempDir()
	testcert.Write(t, dir, 1)
	cfg.XDS.TLS.CertFile, cfg.XDS.TLS.KeyFile = testcert.CertFile(dir), testcert.KeyFile(dir)
	cfg.Webhook.Listen = "127.0.0.1:0"
	cfg.Webhook.CertFile, cfg.Webhook.KeyFile = testcert.CertFile(dir), testcert.KeyFile(dir)
	cfg.Webhook.DNSServer = "10.96.0.53"
	cfg.Webhook.XDSAddress = "egressguard.egressguard.svc:18000"
	require.NoError(t, cfg.validate())
	a := startGuard(t, cfg)

	for name, addr := range map[string]string{"xds": a.XDS.String(), "webhook": a.Webhook.String()} {
		for _, tc := range []struct {
			name     string
			min, max uint16
			suites   []uint16
			ok       bool
		}{
			{"TLS 1.3", tls.VersionTLS13, tls.VersionTLS13, nil, true},
			{"TLS 1.2 GCM", tls.VersionTLS12, tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}, true},
			{"TLS 1.2 ChaCha20", tls.VersionTLS12, tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}, true},
			{"TLS 1.2 CBC", tls.VersionTLS12, tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA}, false},
			{"TLS 1.1", tls.VersionTLS11, tls.VersionTLS11, nil, false},
		} {
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{
				InsecureSkipVerify: true, //nolint:gosec // the profile is under test, not the certificate
				MinVersion:         tc.min, MaxVersion: tc.max, CipherSuites: tc.suites,
			})
			if tc.ok {
				if assert.NoError(t, err, "%s %s", name, tc.name) {
					st := conn.ConnectionState()
					assert.Contains(t, append([]uint16{tls.TLS_AES_128_GCM_SHA256, tls.TLS_AES_256_GCM_SHA384, tls.TLS_CHACHA20_POLY1305_SHA256}, tlsprofile.CipherSuites...), st.CipherSuite)
					conn.Close()
				}
			} else {
				assert.Error(t, err, "%s %s", name, tc.name)
			}
		}
	}
}

// validate --previous-catalog shows the change a reload would make and
// fails when serve's max_shrink guard would refuse it.
func TestValidateShowsTheReloadChange(t *testing.T) {
	dir := t.TempDir()
	cut := filepath.Join(dir, "cut.yaml")
	require.NoError(t, os.WriteFile(cut, []byte("zones: [\"*.prod.example.com\"]\n"), 0o600))
	args := []string{"validate", "--set", "dns.listen=", "--set", "xds.listen=", "--previous-catalog", "../../deploy/examples/catalog.yaml"}

	out, err := runCLI(t, append(args, "--catalog", cut)...)
	require.Error(t, err)
	assert.Contains(t, out, "a running serve would refuse this reload (policy.max_shrink 25%)")
	assert.Contains(t, err.Error(), "-> 1 (")

	out, err = runCLI(t, append(args, "--catalog", "../../deploy/examples/catalog.yaml")...)
	require.NoError(t, err)
	assert.Contains(t, out, "(0% removed): a running serve would reload it")
}

// validate checks admin.auth.kubernetes as configuration only: no cluster,
// no kubeconfig needed.
func TestValidateKubernetesAdminAuthOffline(t *testing.T) {
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "missing"))
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	out, err := runCLI(t, "validate", "--set", "dns.listen=", "--set", "xds.listen=", "--set", "admin.auth.kubernetes=true")
	require.NoError(t, err)
	assert.Contains(t, out, "ok: policy")
	_, err = runCLI(t, "validate", "--set", "admin.auth.kubernetes=true", "--set", "admin.auth.token_file=/x")
	assert.ErrorContains(t, err, "admin.auth: token_file and kubernetes are both set")
}

// A tampered catalog under policy.signature_key_file keeps the last good
// policy, and /api/policy and /metrics say so.
func TestServeSignedCatalogTampered(t *testing.T) {
	dir := t.TempDir()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	der, err := x509.MarshalPKIXPublicKey(pub)
	require.NoError(t, err)
	keyFile := filepath.Join(dir, "policy.pub")
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600))
	cat := filepath.Join(dir, "catalog.yaml")
	writeSigned := func(content string, key ed25519.PrivateKey) {
		require.NoError(t, os.WriteFile(cat, []byte(content), 0o600))
		sig := base64.StdEncoding.EncodeToString(ed25519.Sign(key, []byte(content)))
		require.NoError(t, os.WriteFile(cat+policy.SignatureSuffix, []byte(sig), 0o600))
	}
	writeSigned("zones: [\"*.prod.example.com\", \"billing.example.com\"]\n", priv)

	cfg := testServeConfig(t)
	cfg.DNS.Listen, cfg.XDS.Listen = "", ""
	cfg.Policy.Catalogs = []string{cat}
	cfg.Policy.SignatureKeyFile = keyFile
	cfg.Policy.Settle = 10 * time.Millisecond
	a := startGuard(t, cfg)
	base := "http://" + a.Admin.String()
	var st policy.Status
	readStatus := func() policy.Status {
		code, body := getWith(t, base+"/api/policy", "")
		require.Equal(t, http.StatusOK, code)
		var s policy.Status
		require.NoError(t, json.Unmarshal([]byte(body), &s))
		return s
	}
	st = readStatus()
	require.Equal(t, policy.SignatureVerified, st.Signature)
	v1 := st.Version

	// Signed by someone else: refused once the watcher sees it.
	_, other, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	writeSigned("zones: [\"*.prod.example.com\", \"billing.example.com\", \"x.example.com\"]\n", other)
	require.Eventually(t, func() bool { st = readStatus(); return st.Signature == policy.SignatureFailed },
		20*time.Second, 50*time.Millisecond)
	assert.Equal(t, v1, st.Version, "the last good policy keeps serving")
	assert.Contains(t, st.LastError, "does not verify")
	_, metrics := getWith(t, base+"/metrics", "")
	assert.Contains(t, metrics, "egressguard_policy_signature_valid 0")
	assert.Contains(t, metrics, `egressguard_policy_integrity_refusals_total{check="signature"}`)
}

// A decision record that cannot be written is counted and shown by
// /api/decisionlog (the page reads it), not only counted in a metric.
func TestServeDecisionLogFailureVisible(t *testing.T) {
	cfg := testServeConfig(t)
	cfg.XDS.Listen = ""
	cfg.Decisions.File = "/dev/full"
	a := startGuard(t, cfg)
	m := new(dns.Msg)
	m.SetQuestion("api.stripe.com.", dns.TypeA) // denied in staging
	_, _, err := (&dns.Client{Timeout: 5 * time.Second}).Exchange(m, a.DNS.String())
	require.NoError(t, err)
	var got struct {
		File   bool `json:"file"`
		Status struct {
			Errors    uint64 `json:"errors"`
			LastError string `json:"last_error"`
		} `json:"status"`
	}
	require.Eventually(t, func() bool {
		_, body := getWith(t, "http://"+a.Admin.String()+"/api/decisionlog", "")
		require.NoError(t, json.Unmarshal([]byte(body), &got))
		return got.Status.Errors > 0
	}, 10*time.Second, 20*time.Millisecond)
	assert.True(t, got.File)
	assert.Contains(t, got.Status.LastError, "no space left on device")
}

// A second SIGTERM during the lame duck drains at once.
func TestLameDuckSecondSignal(t *testing.T) {
	cfg := testServeConfig(t)
	cfg.DNS.Listen, cfg.XDS.Listen = "", ""
	cfg.Shutdown.LameDuck = time.Minute
	a, cancel, done := runServe(t, cfg)
	cancel() // the first signal
	require.Eventually(t, func() bool {
		code, _ := getWith(t, "http://"+a.Admin.String()+"/readyz", "")
		return code == http.StatusServiceUnavailable
	}, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGTERM))
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("a second SIGTERM did not cut the lame duck short")
	}
}
