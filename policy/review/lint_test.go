package review

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
)

func TestLint(t *testing.T) {
	s, err := Load(context.Background(), "testdata/lint/bad", LoadOptions{NoDefaultCatalog: true, ReplaceDefaultPolicy: true,
		Now: func() time.Time { return fixedNow }, Log: zaptest.NewLogger(t)})
	require.NoError(t, err)
	fs, err := Lint(s, nil, fixedNow)
	require.NoError(t, err)
	var buf bytes.Buffer
	require.NoError(t, WriteFindings(&buf, fs))
	out := buf.String()
	assert.Contains(t, out, "testdata/lint/bad/catalog/catalog.yaml:6: error: exceptions[0] (too-long): expires 2027-06-30, more than 90 days ahead (latest allowed: 2027-04-15) [exception-expiry]")
	assert.Contains(t, out, "catalog.yaml:12: warning: exceptions[1] (stale): expired 2026-12-01 and is ignored")
	assert.Contains(t, out, `error: rule "allow-db" (class staging{`)
	assert.Contains(t, out, "has no reason")
	assert.Contains(t, out, "allows production *.prod.example.com to non-production environment staging without an exception (add a time-boxed exception")
	assert.NotContains(t, out, "(fine)")
	assert.Equal(t, 3, Errors(fs), out)
}

func TestLintCleanFixture(t *testing.T) {
	s := loadSide(t, "testdata/diff/unchanged/head")
	fs, err := Lint(s, nil, fixedNow)
	require.NoError(t, err)
	assert.Empty(t, fs)
}

func TestFormat(t *testing.T) {
	dir := t.TempDir()
	ugly, err := os.ReadFile("testdata/fmt/ugly.rego")
	require.NoError(t, err)
	p := filepath.Join(dir, "ugly.rego")
	require.NoError(t, os.WriteFile(p, ugly, 0o644))
	files, err := RegoFiles([]string{dir})
	require.NoError(t, err)
	res, err := Format(files)
	require.NoError(t, err)
	require.Len(t, res, 1)
	assert.True(t, res[0].Changed)
	assert.Equal(t, "package egressguard\n\nallowed if input.x == 1\n", string(res[0].Formatted))
	require.NoError(t, os.WriteFile(p, res[0].Formatted, 0o644))
	res, err = Format(files)
	require.NoError(t, err)
	assert.False(t, res[0].Changed, "formatting is a fixpoint")

	require.NoError(t, os.WriteFile(filepath.Join(dir, "broken.rego"), []byte("package x\n\nallow if {\n"), 0o644))
	files, err = RegoFiles([]string{dir})
	require.NoError(t, err)
	_, err = Format(files)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "broken.rego:")
}

func netipMust(s string) netip.Addr { return netip.MustParseAddr(s) }
