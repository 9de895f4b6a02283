package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/egressguard/egressguard/inject"
)

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

// newTestCA is a CA, limited to permitted names when any are given.
func newTestCA(t *testing.T, cn string, permitted ...string) testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		PermittedDNSDomains: permitted, PermittedDNSDomainsCritical: len(permitted) > 0}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return testCA{cert: c, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func (ca testCA) leaf(t *testing.T, host string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return c
}

// The bundle the trust container writes verifies the public web (system
// roots) and the staging CA's leaves for its permitted hosts, and nothing
// else from the staging CA.
func TestTrustBundle(t *testing.T) {
	dir := t.TempDir()
	public := newTestCA(t, "Public Root")
	staging := newTestCA(t, "egressguard staging CA", "api.stripe.com")
	roots := filepath.Join(dir, "roots.pem")
	require.NoError(t, os.WriteFile(roots, public.pem, 0o644))
	t.Setenv(inject.EnvTrustAnchors, string(staging.pem))
	bundle, anchors := filepath.Join(dir, inject.TrustBundleFile), filepath.Join(dir, inject.TrustAnchorsFile)

	args := append([]string{}, inject.TrustBundleArgs()...)
	for k, a := range args { // the injected arguments, pointed at dir
		switch a {
		case inject.TrustDir + "/" + inject.TrustBundleFile:
			args[k] = bundle
		case inject.TrustDir + "/" + inject.TrustAnchorsFile:
			args[k] = anchors
		}
	}
	out, err := runCLI(t, append(args, "--roots", roots)...)
	require.NoError(t, err, out)
	assert.Contains(t, out, "system roots from "+roots)

	b, err := os.ReadFile(bundle)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(b))
	verify := func(c *x509.Certificate, host string) error {
		_, err := c.Verify(x509.VerifyOptions{Roots: pool, DNSName: host})
		return err
	}
	require.NoError(t, verify(public.leaf(t, "example.com"), "example.com"), "system roots kept")
	require.NoError(t, verify(staging.leaf(t, "api.stripe.com"), "api.stripe.com"), "staging CA trusted for an intercepted host")
	require.Error(t, verify(staging.leaf(t, "bank.example.com"), "bank.example.com"), "and for nothing else")

	a, err := os.ReadFile(anchors)
	require.NoError(t, err)
	assert.Equal(t, string(staging.pem), string(a), "anchors alone for NODE_EXTRA_CA_CERTS")
	st, err := os.Stat(bundle)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o644), st.Mode().Perm(), "readable by the app's UID")
}

func TestTrustBundleErrors(t *testing.T) {
	dir := t.TempDir()
	roots := filepath.Join(dir, "roots.pem")
	require.NoError(t, os.WriteFile(roots, newTestCA(t, "Public Root").pem, 0o644))
	notPEM := filepath.Join(dir, "roots.txt")
	require.NoError(t, os.WriteFile(notPEM, []byte("not a bundle"), 0o644))
	leafPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: newTestCA(t, "x").leaf(t, "a.example").Raw})
	for name, tc := range map[string]struct{ anchors, roots, want string }{
		"no anchors":    {"", roots, "no PEM certificate"},
		"a key":         {"-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n", roots, `is "EC PRIVATE KEY"`},
		"not a CA":      {string(leafPEM), roots, "is not a CA"},
		"trailing text": {string(newTestCA(t, "s").pem) + "junk", roots, "text after the last PEM certificate"},
		"roots missing": {string(newTestCA(t, "s").pem), filepath.Join(dir, "none.pem"), "system roots"},
		"roots not PEM": {string(newTestCA(t, "s").pem), filepath.Join(dir, "out.crt"), "system roots"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Setenv(inject.EnvTrustAnchors, tc.anchors)
			out, err := runCLI(t, "trust-bundle", "--roots", tc.roots,
				"--out", filepath.Join(dir, "out.crt"), "--anchors-out", filepath.Join(dir, "a.crt"))
			require.Error(t, err, out)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}
