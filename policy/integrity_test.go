package policy

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/egressguard/egressguard/inventory"
	"github.com/egressguard/egressguard/policy/plan"
)

// operatorPrefix is operator.yaml cut after its first two zones: valid
// YAML, what a reader sees while the file is being rewritten in place.
const operatorPrefix = "zones:\n  - \"*.prod.example.com\"\n  - billing.example.com\n"

func integrityCheck(err error) string {
	var ie *IntegrityError
	if errors.As(err, &ie) {
		return ie.Check
	}
	return ""
}

func engineOn(t *testing.T, opts Options) (*Engine, string) {
	t.Helper()
	cat := filepath.Join(t.TempDir(), "catalog.yaml")
	copyFile(t, "testdata/catalogs/operator.yaml", cat)
	opts.CatalogFiles = []string{cat}
	return newTestEngine(t, opts), cat
}

var stagingWeb = &inventory.Workload{Name: "web", Environment: "staging"}

func decide(t *testing.T, e *Engine, host string) plan.Action {
	t.Helper()
	d, err := e.Decide(stagingWeb, plan.Destination{Host: host, Port: 443})
	require.NoError(t, err)
	return d.Action
}

// A catalog rewritten in place is read while the writer is half-way: the
// truncated but valid prefix must never become the serving policy. The
// shrink guard is off here so that only the stable read protects.
func TestReloadReadsOnlyAStableFile(t *testing.T) {
	e, cat := engineOn(t, Options{Settle: 300 * time.Millisecond, MaxShrink: 1})
	var mu sync.Mutex
	var seen []string
	defer e.Subscribe(func() {
		mu.Lock()
		seen = append(seen, strings.Join(e.Catalog().Zones, ","))
		mu.Unlock()
	})()

	f, err := os.OpenFile(cat, os.O_WRONLY|os.O_TRUNC, 0)
	require.NoError(t, err)
	_, err = f.WriteString(operatorPrefix)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- e.Reload(context.Background()) }()
	time.Sleep(100 * time.Millisecond) // inside the first settle interval
	_, err = f.WriteString("  - \"*.corp-prod.example.net\"\ncidrs: [10.20.0.0/16]\n")
	require.NoError(t, err)
	require.NoError(t, f.Close())

	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("reload did not finish")
	}
	mu.Lock()
	defer mu.Unlock()
	for _, z := range seen {
		assert.Contains(t, z, "corp-prod", "a half-written catalog was activated")
	}
	assert.Equal(t, plan.ActionDeny, decide(t, e, "x.corp-prod.example.net"))
}

func TestReloadRefusesAFileThatKeepsChanging(t *testing.T) {
	e, cat := engineOn(t, Options{Settle: 30 * time.Millisecond, MaxShrink: 1})
	v1 := e.Version()
	full, err := os.ReadFile(cat)
	require.NoError(t, err)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			_ = os.WriteFile(cat, append(append([]byte(nil), full...), strings.Repeat("#", i%7)+"\n"...), 0o600)
		}
	})
	err = e.Reload(context.Background())
	close(stop)
	wg.Wait()
	require.Error(t, err)
	assert.Equal(t, CheckUnstable, integrityCheck(err))
	assert.Equal(t, v1, e.Version())
	assert.InDelta(t, 1, metricValue(t, e.integ.refusals.WithLabelValues(CheckUnstable)), 0)
}

func TestReloadRefusesAnEmptyCatalog(t *testing.T) {
	e, cat := engineOn(t, Options{MaxShrink: 1})
	v1 := e.Version()
	for _, content := range []string{"", "# being rewritten\n", "zones: []\n"} {
		require.NoError(t, os.WriteFile(cat, []byte(content), 0o600))
		err := e.Reload(context.Background())
		require.Error(t, err, "%q", content)
		assert.Equal(t, CheckEmpty, integrityCheck(err))
		assert.Contains(t, err.Error(), cat)
		assert.Equal(t, v1, e.Version())
		assert.Equal(t, plan.ActionDeny, decide(t, e, "orders.prod.example.com"), "the last good policy keeps serving")
	}
	assert.InDelta(t, 3, metricValue(t, e.integ.refusals.WithLabelValues(CheckEmpty)), 0)

	// Allowed explicitly, the empty file loads (and at start too).
	e2, cat2 := engineOn(t, Options{AllowEmpty: true, MaxShrink: 1})
	require.NoError(t, os.WriteFile(cat2, nil, 0o600))
	require.NoError(t, e2.Reload(context.Background()))
	assert.Equal(t, plan.ActionAllow, decide(t, e2, "orders.prod.example.com"))
	_, err := NewEngine(context.Background(), Options{CatalogFiles: []string{cat}, Now: fixedNow}, zaptest.NewLogger(t), nil)
	assert.Equal(t, CheckEmpty, integrityCheck(err), "an empty catalog fails the start too")
}

func TestReloadRefusesASharpShrink(t *testing.T) {
	e, cat := engineOn(t, Options{})
	v1 := e.Version()
	assert.Equal(t, 7, e.Status().ProductionEntries)

	// The truncated-but-valid prefix: 7 -> 2 entries.
	require.NoError(t, os.WriteFile(cat, []byte(operatorPrefix), 0o600))
	err := e.Reload(context.Background())
	require.Error(t, err)
	assert.Equal(t, CheckShrink, integrityCheck(err))
	assert.Contains(t, err.Error(), "7 -> 2 (71% removed)")
	assert.Equal(t, v1, e.Version())
	assert.Contains(t, e.Status().LastError, "shrink")
	assert.InDelta(t, 1, metricValue(t, e.integ.refusals.WithLabelValues(CheckShrink)), 0)

	// A small edit (one zone of seven removed) is an ordinary reload.
	full, err := os.ReadFile("testdata/catalogs/operator.yaml")
	require.NoError(t, err)
	edited := strings.Replace(string(full), "  - billing.example.com\n", "", 1)
	require.NoError(t, os.WriteFile(cat, []byte(edited), 0o600))
	require.NoError(t, e.Reload(context.Background()))
	assert.NotEqual(t, v1, e.Version())
	assert.Equal(t, 6, e.Status().ProductionEntries)

	// The operator allows it: max_shrink 0.8 takes 6 -> 2.
	e.opts.MaxShrink = 0.8
	require.NoError(t, os.WriteFile(cat, []byte(operatorPrefix), 0o600))
	require.NoError(t, e.Reload(context.Background()))
	assert.Equal(t, 2, e.Status().ProductionEntries)
}

func TestCompareCatalogs(t *testing.T) {
	dir := t.TempDir()
	cur := filepath.Join(dir, "new.yaml")
	require.NoError(t, os.WriteFile(cur, []byte(operatorPrefix), 0o600))
	s, err := CompareCatalogs([]string{"testdata/catalogs/operator.yaml"}, []string{cur}, 0)
	assert.Equal(t, Shrink{Before: 7, After: 2}, s)
	assert.Equal(t, CheckShrink, integrityCheck(err))
	s, err = CompareCatalogs([]string{cur}, []string{"testdata/catalogs/operator.yaml"}, 0)
	require.NoError(t, err)
	assert.Zero(t, s.Removed())
}

func writeKey(t *testing.T, dir string) (ed25519.PrivateKey, string) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	der, err := x509.MarshalPKIXPublicKey(pub)
	require.NoError(t, err)
	path := filepath.Join(dir, "policy.pub")
	require.NoError(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600))
	return priv, path
}

func sign(t *testing.T, key ed25519.PrivateKey, file string) {
	t.Helper()
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	sig := base64.StdEncoding.EncodeToString(ed25519.Sign(key, b))
	require.NoError(t, os.WriteFile(file+SignatureSuffix, []byte(sig+"\n"), 0o600))
}

func TestSignedPolicy(t *testing.T) {
	dir := t.TempDir()
	key, pubFile := writeKey(t, dir)
	pub, err := LoadPublicKey(pubFile)
	require.NoError(t, err)
	cat := filepath.Join(dir, "catalog.yaml")
	copyFile(t, "testdata/catalogs/operator.yaml", cat)
	regoDir := filepath.Join(dir, "rego")
	require.NoError(t, os.Mkdir(regoDir, 0o700))
	mod := filepath.Join(regoDir, "extra.rego")
	require.NoError(t, os.WriteFile(mod, []byte("package egressguard.extra\n\nx := 1\n"), 0o600))
	opts := Options{CatalogFiles: []string{cat}, PolicyDir: regoDir, VerifyKey: pub, Now: fixedNow, MaxShrink: 1}

	// Unsigned files do not start.
	_, err = NewEngine(context.Background(), opts, zaptest.NewLogger(t), nil)
	require.Error(t, err)
	assert.Equal(t, CheckSignature, integrityCheck(err))

	sign(t, key, cat)
	sign(t, key, mod)
	reg := prometheus.NewRegistry()
	e, err := NewEngine(context.Background(), opts, zaptest.NewLogger(t), reg)
	require.NoError(t, err)
	assert.Equal(t, SignatureVerified, e.Status().Signature)
	v1 := e.Version()

	// An edit without a new signature keeps the last good policy, and says so.
	require.NoError(t, os.WriteFile(cat, []byte("zones: [\"*.attacker-chosen.example\"]\n"), 0o600))
	err = e.Reload(context.Background())
	require.Error(t, err)
	assert.Equal(t, CheckSignature, integrityCheck(err))
	assert.Contains(t, err.Error(), cat+": signature")
	assert.Equal(t, v1, e.Version())
	st := e.Status()
	assert.Equal(t, SignatureFailed, st.Signature)
	assert.Contains(t, st.LastError, "signature")
	assert.InDelta(t, 0, metricValue(t, e.integ.signature), 0)
	assert.InDelta(t, 1, metricValue(t, e.integ.refusals.WithLabelValues(CheckSignature)), 0)

	// Signed by the operator, the edit loads.
	sign(t, key, cat)
	require.NoError(t, e.Reload(context.Background()))
	assert.NotEqual(t, v1, e.Version())
	assert.Equal(t, SignatureVerified, e.Status().Signature)
	assert.InDelta(t, 1, metricValue(t, e.integ.signature), 0)

	// A tampered Rego module is refused the same way.
	require.NoError(t, os.WriteFile(mod, []byte("package egressguard.extra\n\nx := 2\n"), 0o600))
	err = e.Reload(context.Background())
	assert.Contains(t, err.Error(), mod+": signature")
}

func TestLoadPublicKeyErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.pub")
	require.NoError(t, os.WriteFile(bad, []byte("not a key"), 0o600))
	_, err := LoadPublicKey(bad)
	assert.ErrorContains(t, err, bad)
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	raw := filepath.Join(dir, "raw.pub")
	require.NoError(t, os.WriteFile(raw, []byte(base64.StdEncoding.EncodeToString(pub)), 0o600))
	got, err := LoadPublicKey(raw)
	require.NoError(t, err)
	assert.Equal(t, pub, got)
}

// yaml/v3 reports parser (not scanner) errors one line early; the
// FieldError names the line of the problem.
func TestYAMLSyntaxErrorLines(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		line       int
	}{
		{"sequence after mapping", "zones:\n  - a.example.com\ncidrs: []\n- c\n", 4},
		{"nested mapping", "environments:\n  production: [prod]\n  non_production: [staging]\n zones: []\n", 4},
		{"deeper problem", "mail_sink:\n  host: a\n  port: 25\n  tls: true\n - x\n", 5},
		{"unclosed flow sequence", "zones:\n  - a.example.com\n  - [b\n", 3},
		{"scanner error (already right)", "zones: []\ncidrs:\n\t- 10.0.0.0/8\n", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseCatalog("c.yaml", []byte(tc.yaml))
			var fe *FieldError
			require.ErrorAs(t, err, &fe)
			assert.Equal(t, tc.line, fe.Line, "%v", err)
		})
	}
}

// A file that only classifies environments (as the Helm chart ships one)
// is not an empty catalog: the embedded providers still name production.
func TestAnEnvironmentsOnlyFileIsNotEmpty(t *testing.T) {
	dir := t.TempDir()
	env := filepath.Join(dir, "environments.yaml")
	require.NoError(t, os.WriteFile(env, []byte("environments:\n  production: [production]\n  non_production: [staging]\n"), 0o600))
	e, err := NewEngine(context.Background(), Options{CatalogFiles: []string{env}, Now: fixedNow}, zaptest.NewLogger(t), nil)
	require.NoError(t, err)
	require.NoError(t, e.Reload(context.Background()))

	// Emptied to nothing but a key with no content, it is refused.
	require.NoError(t, os.WriteFile(env, []byte("environments: {}\nzones: []\n"), 0o600))
	err = e.Reload(context.Background())
	require.Error(t, err)
	assert.Equal(t, CheckEmpty, integrityCheck(err))
}

// The operator fixes a refused edit by re-signing it: only the signature
// file changes, and the watcher must load the edit then (it watched the
// catalog alone, so the signed edit waited for an unrelated event).
func TestWatchReloadsWhenOnlyTheSignatureChanges(t *testing.T) {
	dir := t.TempDir()
	key, pubFile := writeKey(t, dir)
	pub, err := LoadPublicKey(pubFile)
	require.NoError(t, err)
	cat := filepath.Join(dir, "catalog.yaml")
	copyFile(t, "testdata/catalogs/operator.yaml", cat)
	sign(t, key, cat)
	e := newTestEngine(t, Options{CatalogFiles: []string{cat}, VerifyKey: pub, Debounce: 20 * time.Millisecond, MaxShrink: 1})
	v1 := e.Version()
	changed := make(chan string, 8)
	defer e.Subscribe(func() { changed <- e.Version() })()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Watch(ctx) }()

	require.NoError(t, os.WriteFile(cat, []byte("zones: [\"*.resigned.example.com\"]\n"), 0o600))
	require.Eventually(t, func() bool { return e.Status().Signature == SignatureFailed }, 20*time.Second, 20*time.Millisecond)
	assert.Equal(t, v1, e.Version(), "an unsigned edit is refused")

	sign(t, key, cat) // the signature file alone changes
	select {
	case v2 := <-changed:
		assert.NotEqual(t, v1, v2)
		assert.Equal(t, SignatureVerified, e.Status().Signature)
	case <-time.After(20 * time.Second):
		t.Fatal("a re-signed catalog was not loaded")
	}
	cancel()
	require.NoError(t, <-done)
}
