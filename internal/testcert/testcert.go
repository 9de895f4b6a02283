// Package testcert writes throw-away TLS server certificates for tests of
// the HTTPS servers (the injection webhook), the way a Kubernetes Secret
// volume presents them: tls.crt and tls.key in one directory.
package testcert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Write writes a fresh self-signed server certificate for 127.0.0.1 and
// dnsNames, valid for an hour, with the given serial, to dir/tls.crt and
// dir/tls.key. Each file is written beside and renamed into place (a new
// inode, as the kubelet updates a Secret volume), so a server watching the
// files sees a rotation. It returns the certificate.
func Write(t testing.TB, dir string, serial int64, dnsNames ...string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	cn := "127.0.0.1"
	if len(dnsNames) > 0 {
		cn = dnsNames[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     dnsNames,
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	Replace(t, CertFile(dir), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	Replace(t, KeyFile(dir), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return c
}

// CertFile and KeyFile are the paths Write writes in dir.
func CertFile(dir string) string { return filepath.Join(dir, "tls.crt") }

// KeyFile: see CertFile.
func KeyFile(dir string) string { return filepath.Join(dir, "tls.key") }

// Client returns an HTTP client that trusts only cert, opens a new
// connection per request (so each sees the server's current certificate)
// and gives up after 10 s.
func Client(cert *x509.Certificate) *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
			DisableKeepAlives: true,
		},
	}
}

// Replace writes b to path through a temporary file renamed into place.
func Replace(t testing.TB, path string, b []byte) {
	t.Helper()
	tmp := path + ".tmp"
	require.NoError(t, os.WriteFile(tmp, b, 0o600))
	require.NoError(t, os.Rename(tmp, path))
}
