package inject

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
	admissionv1 "k8s.io/api/admission/v1"

	"github.com/egressguard/egressguard/internal/testcert"
)

// serverCert dials addr with a new connection (no reuse) and returns the
// certificate the server presented.
func serverCert(t *testing.T, addr string) *x509.Certificate {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // we inspect the certificate ourselves
	require.NoError(t, err)
	defer conn.Close()
	certs := conn.ConnectionState().PeerCertificates
	require.NotEmpty(t, certs)
	return certs[0]
}

func TestServerHTTPSEndToEndWithRotation(t *testing.T) {
	dir := t.TempDir()
	first := testcert.Write(t, dir, 1, "egressguard-webhook.egressguard.svc")
	cfg := testConfig()
	cfg.CertFile = filepath.Join(dir, "tls.crt")
	cfg.KeyFile = filepath.Join(dir, "tls.key")

	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	log := zaptest.NewLogger(t)
	h, err := NewHandler(cfg, m, log)
	require.NoError(t, err)
	srv, err := NewServer(cfg, h, log)
	require.NoError(t, err)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := lis.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(ShutdownTimeout + 5*time.Second):
			t.Error("Serve did not return after its context ended")
		}
	})

	// /healthz and /mutate over verified TLS.
	c := testcert.Client(first)
	resp, err := c.Get("https://" + addr + "/healthz")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "ok\n", string(body))

	resp, err = c.Post("https://"+addr+"/mutate", "application/json", bytes.NewReader(podReview(t, samplePod(), admissionv1.Create)))
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var rev admissionv1.AdmissionReview
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&rev))
	resp.Body.Close()
	require.NotNil(t, rev.Response)
	assert.Equal(t, "uid-1", string(rev.Response.UID))
	assert.True(t, rev.Response.Allowed)
	assert.NotEmpty(t, rev.Response.Patch)

	resp, err = c.Get("https://" + addr + "/mutate")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)

	// Rotation: new connections see the new certificate.
	assert.Equal(t, int64(1), serverCert(t, addr).SerialNumber.Int64())
	second := testcert.Write(t, dir, 2, "egressguard-webhook.egressguard.svc")
	assert.Equal(t, int64(2), serverCert(t, addr).SerialNumber.Int64())
	resp, err = testcert.Client(second).Get("https://" + addr + "/healthz")
	require.NoError(t, err)
	resp.Body.Close()
	assert.InDelta(t, 1, testutil.ToFloat64(m.certs.WithLabelValues("ok")), 0)

	// A broken pair (key of another certificate) keeps the last good one.
	keep, err := os.ReadFile(cfg.KeyFile)
	require.NoError(t, err)
	testcert.Write(t, dir, 3, "egressguard-webhook.egressguard.svc")
	testcert.Replace(t, cfg.KeyFile, keep)
	assert.Equal(t, int64(2), serverCert(t, addr).SerialNumber.Int64())
	assert.InDelta(t, 1, testutil.ToFloat64(m.certs.WithLabelValues("error")), 0)
	// Garbage, then files missing for a moment: still the last good one.
	testcert.Replace(t, cfg.CertFile, []byte("not a certificate"))
	assert.Equal(t, int64(2), serverCert(t, addr).SerialNumber.Int64())
	require.NoError(t, os.Remove(cfg.CertFile))
	assert.Equal(t, int64(2), serverCert(t, addr).SerialNumber.Int64())
	// And a good pair again is picked up.
	testcert.Write(t, dir, 4, "egressguard-webhook.egressguard.svc")
	assert.Equal(t, int64(4), serverCert(t, addr).SerialNumber.Int64())
}

func TestNewServerNeedsAGoodPair(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig()
	cfg.CertFile = filepath.Join(dir, "tls.crt")
	cfg.KeyFile = filepath.Join(dir, "tls.key")
	h, err := NewHandler(cfg, nil, zaptest.NewLogger(t))
	require.NoError(t, err)
	_, err = NewServer(cfg, h, zaptest.NewLogger(t))
	require.Error(t, err, "missing files")
	testcert.Replace(t, cfg.CertFile, []byte("x"))
	testcert.Replace(t, cfg.KeyFile, []byte("y"))
	_, err = NewServer(cfg, h, zaptest.NewLogger(t))
	require.Error(t, err)
	assert.Contains(t, err.Error(), cfg.CertFile)
	_, err = NewServer(cfg, nil, nil)
	require.Error(t, err)
}

func TestServeReturnsWhenTheListenerFails(t *testing.T) {
	dir := t.TempDir()
	testcert.Write(t, dir, 1, "egressguard-webhook.egressguard.svc")
	cfg := testConfig()
	cfg.CertFile = filepath.Join(dir, "tls.crt")
	cfg.KeyFile = filepath.Join(dir, "tls.key")
	h, err := NewHandler(cfg, nil, zaptest.NewLogger(t))
	require.NoError(t, err)
	srv, err := NewServer(cfg, h, zaptest.NewLogger(t))
	require.NoError(t, err)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	require.NoError(t, lis.Close())
	err = srv.Serve(context.Background(), lis)
	require.Error(t, err)
}
