package stagingca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
)

func newAuthority(t testing.TB, cfg Config, hosts ...string) *Authority {
	t.Helper()
	a, err := New(cfg, zaptest.NewLogger(t))
	require.NoError(t, err)
	if hosts != nil {
		require.NoError(t, a.SetPermitted(hosts))
	}
	return a
}

// parseCerts parses every CERTIFICATE block of a PEM bundle.
func parseCerts(t testing.TB, b []byte) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return out
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		require.NoError(t, err)
		out = append(out, c)
	}
}

// podBundle is exactly what the webhook mounts into application containers:
// the system roots plus AnchorsPEM.
func podBundle(t testing.TB, a *Authority) *x509.CertPool {
	t.Helper()
	pool, err := x509.SystemCertPool()
	if err != nil {
		t.Logf("no system cert pool (%v): anchors only", err)
		pool = x509.NewCertPool()
	}
	require.True(t, pool.AppendCertsFromPEM(a.AnchorsPEM()))
	return pool
}

func verify(t testing.TB, roots *x509.CertPool, certPEM []byte, name string) error {
	t.Helper()
	certs := parseCerts(t, certPEM)
	require.NotEmpty(t, certs)
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: name})
	return err
}

// forge signs a leaf with the CA's current key for any names, as someone
// holding the key would: the name constraints are what stops it.
func forge(t testing.TB, a *Authority, dns []string, ips []net.IP) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	a.mu.RLock()
	parent, signer := a.st.anchor, a.keys.current.key
	a.mu.RUnlock()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42), Subject: pkix.Name{CommonName: "forged"},
		DNSNames: dns, IPAddresses: ips,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, k.Public(), signer)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func requireNameRefused(t *testing.T, err error) {
	t.Helper()
	var inv x509.CertificateInvalidError
	require.ErrorAs(t, err, &inv, "want a constraint violation")
	require.Equal(t, x509.CANotAuthorizedForThisName, inv.Reason, "%v", err)
}

var testHosts = []string{"api.stripe.com", "*.sandbox.example.com", "api.twilio.com", "v2.api.twilio.com"}

func TestLeafVerifiesWithPodBundle(t *testing.T) {
	for _, key := range []string{"testdata/ca1.key", "testdata/ec.key"} {
		t.Run(filepath.Base(key), func(t *testing.T) {
			a := newAuthority(t, Config{KeyFile: key}, testHosts...)
			roots := podBundle(t, a)
			for host, names := range map[string][]string{
				"api.stripe.com":          {"api.stripe.com"},
				"*.sandbox.example.com":   {"a.sandbox.example.com"},
				"x.y.sandbox.example.com": {"x.y.sandbox.example.com"},
				"v2.api.twilio.com":       {"v2.api.twilio.com"},
			} {
				l, err := a.Leaf(host)
				require.NoError(t, err, host)
				for _, n := range names {
					require.NoError(t, verify(t, roots, l.CertPEM, n), "%s as %s", host, n)
				}
				// A leaf is for its host only.
				require.Error(t, verify(t, roots, l.CertPEM, "api.paypal.com"))
			}
		})
	}
}

func TestForgedLeavesFailNameConstraints(t *testing.T) {
	a := newAuthority(t, Config{KeyFile: "testdata/ca1.key"}, testHosts...)
	roots := podBundle(t, a)
	for name, c := range map[string]struct {
		dns []string
		ips []net.IP
		as  string
	}{
		"unrelated host":              {dns: []string{"www.google.com"}, as: "www.google.com"},
		"sibling of an exact host":    {dns: []string{"dashboard.stripe.com"}, as: "dashboard.stripe.com"},
		"parent of an exact host":     {dns: []string{"stripe.com"}, as: "stripe.com"},
		"subdomain of an exact host":  {dns: []string{"x.api.stripe.com"}, as: "x.api.stripe.com"},
		"wildcard over an exact host": {dns: []string{"*.stripe.com"}, as: "api.stripe.com"},
		"apex of a wildcard":          {dns: []string{"sandbox.example.com"}, as: "sandbox.example.com"},
		"permitted name plus another": {dns: []string{"api.stripe.com", "evil.com"}, as: "api.stripe.com"},
		"IP address":                  {ips: []net.IP{net.ParseIP("203.0.113.7")}, as: "203.0.113.7"},
		"IPv6 address":                {ips: []net.IP{net.ParseIP("2001:db8::1")}, as: "2001:db8::1"},
		"suffix lookalike":            {dns: []string{"evilapi.stripe.com"}, as: "evilapi.stripe.com"},
		"below the nested exact host": {dns: []string{"x.v2.api.twilio.com"}, as: "x.v2.api.twilio.com"},
	} {
		t.Run(name, func(t *testing.T) {
			requireNameRefused(t, verify(t, roots, forge(t, a, c.dns, c.ips), c.as))
		})
	}
	// The forging itself works: a forged leaf for a permitted name verifies.
	require.NoError(t, verify(t, roots, forge(t, a, []string{"api.stripe.com"}, nil), "api.stripe.com"))
	// v2.api.twilio.com lies under the exact api.twilio.com, so that one
	// keeps its subdomains (no exclusion), and a forged leaf for one of them
	// is admitted: documented in constraintsFor.
	require.NoError(t, verify(t, roots, forge(t, a, []string{"x.api.twilio.com"}, nil), "x.api.twilio.com"))
}

func TestNoHostsPermitsNothing(t *testing.T) {
	a := newAuthority(t, Config{KeyFile: "testdata/ca1.key"})
	roots := podBundle(t, a)
	anchor := parseCerts(t, a.AnchorsPEM())[0]
	require.Equal(t, []string{"invalid"}, anchor.PermittedDNSDomains)
	requireNameRefused(t, verify(t, roots, forge(t, a, []string{"api.stripe.com"}, nil), "api.stripe.com"))
	_, err := a.Leaf("api.stripe.com")
	require.ErrorContains(t, err, "permit no host")
	require.NoError(t, a.SetPermitted(nil))
	require.NoError(t, a.SetPermitted([]string{"api.stripe.com"}))
	require.NoError(t, a.SetPermitted([]string{}))
	require.Equal(t, []string{"invalid"}, parseCerts(t, a.AnchorsPEM())[0].PermittedDNSDomains)
}

func TestAnchorShape(t *testing.T) {
	a := newAuthority(t, Config{KeyFile: "testdata/ca1.key"}, testHosts...)
	c := parseCerts(t, a.AnchorsPEM())
	require.Len(t, c, 1)
	anchor := c[0]
	assert.True(t, anchor.IsCA)
	assert.True(t, anchor.MaxPathLenZero)
	assert.Equal(t, 0, anchor.MaxPathLen)
	assert.Equal(t, x509.KeyUsageCertSign|x509.KeyUsageCRLSign, anchor.KeyUsage)
	assert.Equal(t, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, anchor.ExtKeyUsage)
	assert.NoError(t, anchor.CheckSignatureFrom(anchor))
	assert.True(t, anchor.PermittedDNSDomainsCritical)
	assert.Equal(t, []string{".sandbox.example.com", "api.stripe.com", "api.twilio.com", "v2.api.twilio.com"}, anchor.PermittedDNSDomains)
	assert.Equal(t, []string{".api.stripe.com", ".v2.api.twilio.com"}, anchor.ExcludedDNSDomains)
	assert.Len(t, anchor.ExcludedIPRanges, 2)
	nc := false
	for _, e := range anchor.Extensions {
		if e.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 30}) {
			nc = true
			assert.True(t, e.Critical, "name constraints must be critical")
		}
	}
	assert.True(t, nc)
	assert.Equal(t, anchorNotAfter, anchor.NotAfter.UTC())
}

func TestConstraintsFor(t *testing.T) {
	for _, c := range []struct {
		hosts               []string
		permitted, excluded []string
	}{
		{nil, []string{"invalid"}, nil},
		{[]string{"api.stripe.com"}, []string{"api.stripe.com"}, []string{".api.stripe.com"}},
		{[]string{"*.stripe.com"}, []string{".stripe.com"}, nil},
		{[]string{"*.stripe.com", "stripe.com"}, []string{".stripe.com", "stripe.com"}, nil},
		{[]string{"*.a.example", "a.example"}, []string{".a.example", "a.example"}, nil},
		{[]string{"a.example", "b.a.example"}, []string{"a.example", "b.a.example"}, []string{".b.a.example"}},
		// The default catalog's Twilio: a wildcard and an exact host under it.
		{[]string{"*.twilio.com", "api.twilio.com"}, []string{".twilio.com", "api.twilio.com"}, []string{".api.twilio.com"}},
	} {
		p, e := constraintsFor(c.hosts)
		assert.Equal(t, c.permitted, p, "%v", c.hosts)
		assert.Equal(t, c.excluded, e, "%v", c.hosts)
	}
}

func TestAnchorDeterministic(t *testing.T) {
	for _, key := range []string{"testdata/ca1.key", "testdata/ca2.key", "testdata/ec.key"} {
		t.Run(filepath.Base(key), func(t *testing.T) {
			// Two replicas (or a restart) from the same key and host set,
			// the hosts in another order and case.
			a := newAuthority(t, Config{KeyFile: key}, testHosts...)
			b := newAuthority(t, Config{KeyFile: key}, "V2.api.twilio.com", "api.twilio.com.", "*.sandbox.example.com", "API.stripe.com")
			require.Equal(t, a.AnchorsPEM(), b.AnchorsPEM())
			m, err := loadKeyFile(key)
			require.NoError(t, err)
			x, err := generateAnchor(m.key, []string{"api.stripe.com"})
			require.NoError(t, err)
			y, err := generateAnchor(m.key, []string{"api.stripe.com"})
			require.NoError(t, err)
			require.Equal(t, x.Raw, y.Raw)
			// Another host set: another anchor, same subject and key, so a
			// pod that mounted x still chains a's leaf for a common host.
			ax := parseCerts(t, a.AnchorsPEM())[0]
			require.NotEqual(t, x.Raw, ax.Raw)
			require.Equal(t, x.RawSubject, ax.RawSubject)
			require.Equal(t, x.SubjectKeyId, ax.SubjectKeyId)
			old := x509.NewCertPool()
			old.AddCert(x)
			l, err := a.Leaf("api.stripe.com")
			require.NoError(t, err)
			require.NoError(t, verify(t, old, l.CertPEM, "api.stripe.com"))
			// A host the old anchor does not permit fails closed there.
			l, err = a.Leaf("api.twilio.com")
			require.NoError(t, err)
			requireNameRefused(t, verify(t, old, l.CertPEM, "api.twilio.com"))
		})
	}
	// Another key: another anchor.
	a := newAuthority(t, Config{KeyFile: "testdata/ca1.key"}, testHosts...)
	b := newAuthority(t, Config{KeyFile: "testdata/ca2.key"}, testHosts...)
	require.NotEqual(t, a.AnchorsPEM(), b.AnchorsPEM())
}

func TestEphemeral(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	a, err := New(Config{}, zap.New(core))
	require.NoError(t, err)
	require.Equal(t, 1, logs.FilterMessage("stagingca.ephemeral").Len())
	require.NoError(t, a.SetPermitted([]string{"api.stripe.com"}))
	l, err := a.Leaf("api.stripe.com")
	require.NoError(t, err)
	require.NoError(t, verify(t, podBundle(t, a), l.CertPEM, "api.stripe.com"))
	b := newAuthority(t, Config{}, "api.stripe.com")
	require.NotEqual(t, a.AnchorsPEM(), b.AnchorsPEM(), "each ephemeral CA has its own key")
}

func TestLeafRefusals(t *testing.T) {
	a := newAuthority(t, Config{KeyFile: "testdata/ec.key"}, testHosts...)
	for _, h := range []string{"api.paypal.com", "stripe.com", "x.api.stripe.com", "sandbox.example.com", "*.stripe.com", "*.example.com", "", "*"} {
		_, err := a.Leaf(h)
		assert.ErrorContains(t, err, "not intercepted", h)
	}
	for _, h := range []string{"API.Stripe.com.", "*.sandbox.example.com", "a.sandbox.example.com", "*.a.sandbox.example.com"} {
		_, err := a.Leaf(h)
		assert.NoError(t, err, h)
	}
	assert.InDelta(t, 8.0, testutil.ToFloat64(a.m.refused), 0)
}

// TestExactHostUnderWildcard: an exact host's subdomains stay excluded even
// when a wildcard covers them; Leaf refuses them through its self-check
// rather than hand out a certificate clients would reject.
func TestExactHostUnderWildcard(t *testing.T) {
	a := newAuthority(t, Config{KeyFile: "testdata/ec.key"}, "*.twilio.com", "api.twilio.com")
	roots := podBundle(t, a)
	for _, h := range []string{"*.twilio.com", "api.twilio.com", "video.twilio.com", "a.b.twilio.com"} {
		l, err := a.Leaf(h)
		require.NoError(t, err, h)
		require.NoError(t, verify(t, roots, l.CertPEM, strings.Replace(h, "*", "x", 1)), h)
	}
	_, err := a.Leaf("x.api.twilio.com")
	require.ErrorContains(t, err, "self-check")
	require.InDelta(t, 1.0, testutil.ToFloat64(a.m.mintErrors), 0)
}

func TestSetPermittedRejectsBadHosts(t *testing.T) {
	a := newAuthority(t, Config{KeyFile: "testdata/ec.key"}, "api.stripe.com")
	before := a.AnchorsPEM()
	for _, hosts := range [][]string{
		{"api.stripe.com", "*.com"},
		{"10.0.0.1"},
		{"2001:db8::1"},
		{"bad..name"},
		{"*"},
		{"a.*.example.com"},
		{"-lead.example.com"},
		{strings.Repeat("a", 64) + ".example.com"},
		{""},
	} {
		err := a.SetPermitted(hosts)
		require.Error(t, err, "%q", hosts)
		require.Contains(t, err.Error(), "hosts[")
	}
	require.Equal(t, before, a.AnchorsPEM(), "a refused host set changes nothing")
	require.InDelta(t, 9.0, testutil.ToFloat64(a.m.permitErrs), 0)
}

func TestCacheRenewalAndChanges(t *testing.T) {
	a := newAuthority(t, Config{KeyFile: "testdata/ec.key", LeafTTL: 3 * time.Hour}, testHosts...)
	drain(a)
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	a.now = func() time.Time { return now }
	l1, err := a.Leaf("api.stripe.com")
	require.NoError(t, err)
	require.Equal(t, now.Add(3*time.Hour), l1.NotAfter)
	leaf := parseCerts(t, l1.CertPEM)[0]
	require.Equal(t, now.Add(-backdate), leaf.NotBefore)
	require.Equal(t, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, leaf.ExtKeyUsage)
	require.False(t, leaf.IsCA)
	l2, err := a.Leaf("api.stripe.com")
	require.NoError(t, err)
	require.Equal(t, l1.Serial, l2.Serial)
	require.InDelta(t, 1.0, testutil.ToFloat64(a.m.minted), 0)
	require.InDelta(t, 1.0, testutil.ToFloat64(a.m.hits), 0)

	// Just before two thirds: still cached, nothing to renew.
	now = now.Add(2*time.Hour - time.Second)
	a.renew()
	requireNoTick(t, a)
	// At two thirds: renewal drops it and ticks; the next Leaf is new.
	now = now.Add(time.Second)
	a.renew()
	requireTick(t, a)
	l3, err := a.Leaf("api.stripe.com")
	require.NoError(t, err)
	require.NotEqual(t, l1.Serial, l3.Serial)
	require.InDelta(t, 2.0, testutil.ToFloat64(a.m.minted), 0)
	// Leaf itself never serves a stale one, even before Run's next pass.
	now = now.Add(2 * time.Hour)
	l4, err := a.Leaf("api.stripe.com")
	require.NoError(t, err)
	require.NotEqual(t, l3.Serial, l4.Serial)
}

func TestSetPermittedKeepsLeavesOfKeptHosts(t *testing.T) {
	a := newAuthority(t, Config{KeyFile: "testdata/ca2.key"}, "api.stripe.com", "api.twilio.com")
	drain(a)
	s, err := a.Leaf("api.stripe.com")
	require.NoError(t, err)
	_, err = a.Leaf("api.twilio.com")
	require.NoError(t, err)

	require.NoError(t, a.SetPermitted([]string{"api.twilio.com", "api.stripe.com"}))
	requireNoTick(t, a) // same set
	require.NoError(t, a.SetPermitted([]string{"api.stripe.com", "api.mailgun.net"}))
	requireTick(t, a)
	s2, err := a.Leaf("api.stripe.com")
	require.NoError(t, err)
	require.Equal(t, s.Serial, s2.Serial)
	require.NoError(t, verify(t, podBundle(t, a), s2.CertPEM, "api.stripe.com"))
	_, err = a.Leaf("api.twilio.com")
	require.ErrorContains(t, err, "not intercepted")
	a.mu.RLock()
	require.Len(t, a.leaves, 1)
	a.mu.RUnlock()
}

func drain(a *Authority) {
	select {
	case <-a.Changes():
	default:
	}
}

func requireTick(t *testing.T, a *Authority) {
	t.Helper()
	select {
	case <-a.Changes():
	case <-time.After(5 * time.Second):
		t.Fatal("no tick on Changes")
	}
}

func requireNoTick(t *testing.T, a *Authority) {
	t.Helper()
	select {
	case <-a.Changes():
		t.Fatal("unexpected tick on Changes")
	default:
	}
}

func TestConfigValidate(t *testing.T) {
	require.NoError(t, Config{}.Validate())
	require.NoError(t, Config{KeyFile: "k", CertFile: "c", PreviousKeyFiles: []string{"p"}, LeafTTL: time.Hour}.Validate())
	require.ErrorContains(t, Config{LeafTTL: time.Minute}.Validate(), "leaf_ttl")
	require.ErrorContains(t, Config{CertFile: "c"}.Validate(), "cert_file")
	require.ErrorContains(t, Config{PreviousKeyFiles: []string{"p"}}.Validate(), "previous_key_files")
	_, err := New(Config{KeyFile: "testdata/missing.key"}, zap.NewNop())
	require.ErrorContains(t, err, "key_file")
}

func TestMetricsLint(t *testing.T) {
	a := newAuthority(t, Config{KeyFile: "testdata/ca1.key"}, "api.stripe.com")
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(a))
	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	require.Empty(t, problems)
	require.InDelta(t, float64(anchorNotAfter.Unix()), testutil.ToFloat64(a.m.notAfter), 0)
	require.InDelta(t, 1.0, testutil.ToFloat64(a.m.hosts), 0)
}

// writeFile writes b to dir/name atomically (rename), as the kubelet's
// Secret volume update does.
func writeFile(t testing.TB, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	tmp := p + ".tmp"
	require.NoError(t, os.WriteFile(tmp, b, 0o600))
	require.NoError(t, os.Rename(tmp, p))
	return p
}

func readFile(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return b
}

func TestRotationWithOverlap(t *testing.T) {
	dir := t.TempDir()
	key := writeFile(t, dir, "ca.key", readFile(t, "testdata/ca1.key"))
	core, logs := observer.New(zap.InfoLevel)
	a, err := New(Config{KeyFile: key}, zap.New(core))
	require.NoError(t, err)
	require.NoError(t, a.SetPermitted(testHosts))
	drain(a)
	old, err := a.Leaf("api.stripe.com")
	require.NoError(t, err)
	oldBundle := podBundle(t, a)

	// Unchanged files: no rotation.
	a.reload()
	requireNoTick(t, a)

	// Rotate: the new key signs, the old one stays trusted.
	a.cfg.PreviousKeyFiles = []string{writeFile(t, dir, "old.key", readFile(t, "testdata/ca1.key"))}
	writeFile(t, dir, "ca.key", readFile(t, "testdata/ca2.key"))
	a.reload()
	requireTick(t, a)
	require.InDelta(t, 1.0, testutil.ToFloat64(a.m.reloads.WithLabelValues("ok")), 0)
	anchors := parseCerts(t, a.AnchorsPEM())
	require.Len(t, anchors, 2)
	ca2, err := loadKeyFile("testdata/ca2.key")
	require.NoError(t, err)
	require.True(t, samePublicKey(anchors[0].PublicKey, ca2.key.Public()), "current anchor first")

	newBundle := podBundle(t, a)
	// A leaf of the old key (still in a sidecar until SDS re-pushes)
	// verifies with the new bundle during the overlap.
	require.NoError(t, verify(t, newBundle, old.CertPEM, "api.stripe.com"))
	fresh, err := a.Leaf("api.stripe.com")
	require.NoError(t, err)
	require.NotEqual(t, old.Serial, fresh.Serial, "rotation drops cached leaves")
	require.Equal(t, anchors[0].Subject.String(), parseCerts(t, fresh.CertPEM)[0].Issuer.String(), "signed by the new key")
	require.NoError(t, verify(t, newBundle, fresh.CertPEM, "api.stripe.com"))
	// A pod started before the rotation does not trust the new key: the
	// reason for the procedure in docs/https.md.
	require.Error(t, verify(t, oldBundle, fresh.CertPEM, "api.stripe.com"))

	// A broken new key keeps the last good one, logged and counted once.
	anchorsBefore := a.AnchorsPEM()
	writeFile(t, dir, "ca.key", []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
	a.reload()
	a.reload()
	requireNoTick(t, a)
	require.InDelta(t, 1.0, testutil.ToFloat64(a.m.reloads.WithLabelValues("error")), 0)
	require.Equal(t, 1, logs.FilterMessage("stagingca.rotation").Len())
	require.Equal(t, anchorsBefore, a.AnchorsPEM())
	again, err := a.Leaf("api.stripe.com")
	require.NoError(t, err)
	require.Equal(t, fresh.Serial, again.Serial)

	// A missing file (mid-swap) is not an error and changes nothing.
	require.NoError(t, os.Remove(key))
	a.reload()
	require.InDelta(t, 1.0, testutil.ToFloat64(a.m.reloads.WithLabelValues("error")), 0)
}

func TestRunRotatesAndRenews(t *testing.T) {
	dir := t.TempDir()
	key := writeFile(t, dir, "ca.key", readFile(t, "testdata/ec.key"))
	a := newAuthority(t, Config{KeyFile: key}, "api.stripe.com")
	a.poll = 10 * time.Millisecond
	drain(a)
	ctx, cancel := contextWithCancel(t)
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	first := a.AnchorsPEM()
	writeFile(t, dir, "ca.key", readFile(t, "testdata/ca1.key"))
	requireTick(t, a)
	require.NotEqual(t, first, a.AnchorsPEM())
	cancel()
	require.NoError(t, <-done)
}

// caCert makes a self-signed CA certificate for key, as an operator or
// cert-manager would, modified by edit.
func caCert(t testing.TB, key crypto.Signer, edit func(*x509.Certificate)) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "operator staging CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
		PermittedDNSDomainsCritical: true, PermittedDNSDomains: []string{"api.stripe.com", ".sandbox.example.com"},
		ExcludedDNSDomains: []string{".api.stripe.com"}, ExcludedIPRanges: allIPs,
	}
	if edit != nil {
		edit(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestCertFile(t *testing.T) {
	dir := t.TempDir()
	m, err := loadKeyFile("testdata/ca1.key")
	require.NoError(t, err)
	other, err := loadKeyFile("testdata/ec.key")
	require.NoError(t, err)
	good := writeFile(t, dir, "good.crt", caCert(t, m.key, nil))

	t.Run("good", func(t *testing.T) {
		core, logs := observer.New(zap.InfoLevel)
		a, err := New(Config{KeyFile: "testdata/ca1.key", CertFile: good}, zap.New(core))
		require.NoError(t, err)
		require.NoError(t, a.SetPermitted([]string{"api.stripe.com", "*.sandbox.example.com"}))
		require.Equal(t, readFile(t, good), a.AnchorsPEM())
		l, err := a.Leaf("api.stripe.com")
		require.NoError(t, err)
		require.NoError(t, verify(t, podBundle(t, a), l.CertPEM, "api.stripe.com"))
		require.Zero(t, logs.FilterMessage("stagingca.constraints_broader_than_intercepted_hosts").Len())
		require.Zero(t, testutil.ToFloat64(a.m.excess))

		// The catalog drops a host: the CA now permits more than needed,
		// a warning and a gauge, not an error; Leaf refuses the host.
		require.NoError(t, a.SetPermitted([]string{"api.stripe.com"}))
		require.Equal(t, 1, logs.FilterMessage("stagingca.constraints_broader_than_intercepted_hosts").Len())
		require.InDelta(t, 1.0, testutil.ToFloat64(a.m.excess), 0)
		_, err = a.Leaf("x.sandbox.example.com")
		require.Error(t, err)

		// A host the CA does not admit: SetPermitted fails, nothing changes.
		err = a.SetPermitted([]string{"api.stripe.com", "api.twilio.com"})
		require.ErrorContains(t, err, `do not admit intercepted host "api.twilio.com"`)
		_, err = a.Leaf("api.twilio.com")
		require.Error(t, err)
	})
	t.Run("in the key file", func(t *testing.T) {
		both := writeFile(t, dir, "both.pem", append(readFile(t, "testdata/ca1.key"), readFile(t, good)...))
		a := newAuthority(t, Config{KeyFile: both}, "api.stripe.com")
		require.Equal(t, readFile(t, good), a.AnchorsPEM())
	})
	for name, c := range map[string]struct {
		key  crypto.Signer
		edit func(*x509.Certificate)
		want string
	}{
		"other key":        {other.key, nil, "public key is not the key file's"},
		"not a CA":         {m.key, func(c *x509.Certificate) { c.IsCA = false }, "not a CA"},
		"no cert sign":     {m.key, func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageDigitalSignature }, "certSign"},
		"unconstrained":    {m.key, func(c *x509.Certificate) { c.PermittedDNSDomains = nil }, "every name"},
		"not critical":     {m.key, func(c *x509.Certificate) { c.PermittedDNSDomainsCritical = false }, "not critical"},
		"expired":          {m.key, func(c *x509.Certificate) { c.NotAfter = time.Now().Add(-time.Minute) }, "not valid now"},
		"only IPs limited": {m.key, func(c *x509.Certificate) { c.PermittedDNSDomains = nil; c.ExcludedDNSDomains = nil }, "every name"},
	} {
		t.Run(name, func(t *testing.T) {
			crt := writeFile(t, dir, "bad.crt", caCert(t, c.key, c.edit))
			_, err := New(Config{KeyFile: "testdata/ca1.key", CertFile: crt}, zap.NewNop())
			require.ErrorContains(t, err, "cert_file")
			require.ErrorContains(t, err, c.want)
		})
	}
	t.Run("not self-signed", func(t *testing.T) {
		// An intermediate: CA:TRUE for ca1's key, signed by ec's root.
		root := parseCerts(t, caCert(t, other.key, nil))[0]
		tmpl := parseCerts(t, caCert(t, m.key, nil))[0]
		tmpl.Subject = pkix.Name{CommonName: "intermediate"}
		tmpl.SignatureAlgorithm = x509.UnknownSignatureAlgorithm
		der, err := x509.CreateCertificate(rand.Reader, tmpl, root, m.key.Public(), other.key)
		require.NoError(t, err)
		crt := writeFile(t, dir, "inter.crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
		_, err = New(Config{KeyFile: "testdata/ca1.key", CertFile: crt}, zap.NewNop())
		require.ErrorContains(t, err, "not self-signed")
	})
	t.Run("excess listed", func(t *testing.T) {
		c := parseCerts(t, caCert(t, m.key, func(c *x509.Certificate) {
			c.PermittedDNSDomains = []string{"stripe.com", ".sandbox.example.com"}
			c.ExcludedIPRanges = nil
		}))[0]
		require.Equal(t, []string{"stripe.com", "IP addresses (no excluded 0.0.0.0/0 and ::/0)"},
			excess(c, []string{"*.sandbox.example.com", "api.stripe.com"}))
		require.True(t, admits(c, "api.stripe.com"))
		require.True(t, admits(c, "*.stripe.com"))
		require.False(t, admits(c, "sandbox.example.com"))
		require.True(t, admits(c, "*.sandbox.example.com"))
	})
}

func TestPreviousKeyWithCertificate(t *testing.T) {
	dir := t.TempDir()
	m, err := loadKeyFile("testdata/ca1.key")
	require.NoError(t, err)
	prev := writeFile(t, dir, "prev.pem", append(readFile(t, "testdata/ca1.key"), caCert(t, m.key, nil)...))
	a := newAuthority(t, Config{KeyFile: "testdata/ca2.key", PreviousKeyFiles: []string{prev}}, "api.stripe.com")
	anchors := parseCerts(t, a.AnchorsPEM())
	require.Len(t, anchors, 2)
	require.Equal(t, "operator staging CA", anchors[1].Subject.CommonName)

	bad := writeFile(t, dir, "bad.pem", append(readFile(t, "testdata/ca2.key"), caCert(t, m.key, nil)...))
	_, err = New(Config{KeyFile: "testdata/ca2.key", PreviousKeyFiles: []string{prev, bad}}, zap.NewNop())
	require.ErrorContains(t, err, "previous_key_files[1]")
}
