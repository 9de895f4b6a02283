package xds

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/egressguard/egressguard/internal/testcert"
)

// testPKI is a throwaway CA with a server and a client certificate.
type testPKI struct {
	caPool                *x509.CertPool
	caFile                string
	serverCert, serverKey string
	clientCert            tls.Certificate
	otherClient           tls.Certificate // signed by another CA
	dir                   string
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	ca, caKey := selfSigned(t, "egressguard test CA")
	other, otherKey := selfSigned(t, "someone else's CA")
	p := &testPKI{dir: dir, caPool: x509.NewCertPool()}
	p.caPool.AddCert(ca)
	p.caFile = writePEM(t, dir, "ca.pem", "CERTIFICATE", ca.Raw)
	srvDER, srvKey := issue(t, ca, caKey, "xds.egressguard.test", x509.ExtKeyUsageServerAuth)
	p.serverCert = writePEM(t, dir, "server.pem", "CERTIFICATE", srvDER)
	p.serverKey = writePEM(t, dir, "server-key.pem", "PRIVATE KEY", marshalKey(t, srvKey))
	cliDER, cliKey := issue(t, ca, caKey, "staging-checkout", x509.ExtKeyUsageClientAuth)
	p.clientCert = tls.Certificate{Certificate: [][]byte{cliDER}, PrivateKey: cliKey}
	othDER, othKey := issue(t, other, otherKey, "intruder", x509.ExtKeyUsageClientAuth)
	p.otherClient = tls.Certificate{Certificate: [][]byte{othDER}, PrivateKey: othKey}
	return p
}

func selfSigned(t *testing.T, cn string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return c, key
}

func issue(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, cn string, usage x509.ExtKeyUsage) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{cn}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	require.NoError(t, err)
	return der, key
}

func marshalKey(t *testing.T, k *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	require.NoError(t, err)
	return der
}

func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
	return path
}

// fetchListeners opens an ADS stream and returns the first response's
// error (nil when the server answered).
func fetchListeners(t *testing.T, addr string, opt grpc.DialOption) error {
	t.Helper()
	conn, err := grpc.NewClient(addr, opt)
	require.NoError(t, err)
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return err
	}
	_ = st.Send(&discoveryv3.DiscoveryRequest{Node: sidecarNode("node-a"), TypeUrl: resourcev3.ListenerType})
	resp, err := st.Recv()
	if err == nil && len(resp.Resources) != 1 {
		t.Fatalf("%d listeners", len(resp.Resources))
	}
	return err
}

func TestServerTLS(t *testing.T) {
	pki := newTestPKI(t)
	clientTLS := func(certs ...tls.Certificate) grpc.DialOption {
		return grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
			RootCAs: pki.caPool, ServerName: "xds.egressguard.test", Certificates: certs, MinVersion: tls.VersionTLS12,
		}))
	}

	t.Run("tls", func(t *testing.T) {
		cfg := Defaults()
		cfg.TLS = TLSConfig{CertFile: pki.serverCert, KeyFile: pki.serverKey}
		env := startADS(t, cfg, smallSpec, "node-a")
		assert.NoError(t, fetchListeners(t, env.addr, clientTLS()))
		assert.Error(t, fetchListeners(t, env.addr, grpc.WithTransportCredentials(insecure.NewCredentials())), "plaintext client")
	})
	t.Run("mtls", func(t *testing.T) {
		cfg := Defaults()
		cfg.TLS = TLSConfig{CertFile: pki.serverCert, KeyFile: pki.serverKey, ClientCAFile: pki.caFile}
		env := startADS(t, cfg, smallSpec, "node-a")
		assert.NoError(t, fetchListeners(t, env.addr, clientTLS(pki.clientCert)))
		assert.Error(t, fetchListeners(t, env.addr, clientTLS()), "client without a certificate")
		assert.Error(t, fetchListeners(t, env.addr, clientTLS(pki.otherClient)), "client certificate from another CA")
		assert.Error(t, fetchListeners(t, env.addr, grpc.WithTransportCredentials(insecure.NewCredentials())), "plaintext client")
	})
}

func TestServerTLSConfigErrors(t *testing.T) {
	pki := newTestPKI(t)
	notPEM := filepath.Join(pki.dir, "not.pem")
	require.NoError(t, os.WriteFile(notPEM, []byte("hello"), 0o600))
	for _, tc := range []struct {
		name string
		tls  TLSConfig
		want string
	}{
		{"missing cert file", TLSConfig{CertFile: filepath.Join(pki.dir, "nope.pem"), KeyFile: pki.serverKey}, "xds.tls"},
		{"key does not match", TLSConfig{CertFile: pki.serverCert, KeyFile: pki.caFile}, "xds.tls"},
		{"client CA missing", TLSConfig{CertFile: pki.serverCert, KeyFile: pki.serverKey, ClientCAFile: filepath.Join(pki.dir, "nope.pem")}, "xds.tls.client_ca_file"},
		{"client CA not PEM", TLSConfig{CertFile: pki.serverCert, KeyFile: pki.serverKey, ClientCAFile: notPEM}, "xds.tls.client_ca_file"},
		{"key without cert", TLSConfig{KeyFile: pki.serverKey}, "xds.tls: cert_file and key_file go together"},
		{"client CA without server cert", TLSConfig{ClientCAFile: pki.caFile}, "xds.tls.client_ca_file: needs cert_file and key_file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Defaults()
			cfg.TLS = tc.tls
			_, err := NewServer(context.Background(), cfg, &Enforcer{metrics: NewMetrics(nil)}, zaptest.NewLogger(t))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

// A renewed serving certificate (a Secret volume update, cert-manager) is
// served to the next connection without a restart; a broken pair keeps the
// last good one.
func TestServerTLSCertificateRotation(t *testing.T) {
	dir := t.TempDir()
	first := testcert.Write(t, dir, 1)
	cfg := Defaults()
	cfg.TLS = TLSConfig{CertFile: testcert.CertFile(dir), KeyFile: testcert.KeyFile(dir)}
	env := startADS(t, cfg, smallSpec, "node-a")
	served := func() *big.Int {
		t.Helper()
		conn, err := tls.Dial("tcp", env.addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}}) //nolint:gosec // the test reads the served certificate, it trusts nothing
		require.NoError(t, err)
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber
	}
	assert.Equal(t, first.SerialNumber, served())

	second := testcert.Write(t, dir, 2)
	assert.Equal(t, second.SerialNumber, served(), "the renewed certificate is served")

	testcert.Replace(t, testcert.KeyFile(dir), []byte("not a key"))
	assert.Equal(t, second.SerialNumber, served(), "a broken pair keeps the last good one")
	assert.InDelta(t, 1.0, testutil.ToFloat64(env.enf.metrics.certReloads.WithLabelValues("ok")), 0)
	assert.InDelta(t, 1.0, testutil.ToFloat64(env.enf.metrics.certReloads.WithLabelValues("error")), 0)
}
