package review

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/egressguard/egressguard/inventory"
	"github.com/egressguard/egressguard/policy/plan"
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

func TestExplain(t *testing.T) {
	s := loadSide(t, "testdata/diff/widened-exception/head")
	checkout := &inventory.Workload{Environment: "staging", Labels: map[string]string{"app": "checkout"}}
	tests := []struct {
		name string
		w    *inventory.Workload
		dest plan.Destination
		want []string
	}{
		{"exception restates the catalog pattern", checkout, plan.Destination{Host: "files.stripe.com", Port: 443},
			[]string{"decision     allow [exception:checkout-stripe:files.stripe.com]",
				"* host files.stripe.com", "less specific than files.stripe.com",
				"a class overlay rule on the same pattern beats the shared catalog rule",
				"exception checkout-stripe: owner alice@example.com, ticket SEC-123, expires 2027-03-31"}},
		{"port filter and specificity", &inventory.Workload{Environment: "staging"}, plan.Destination{Host: "files.stripe.com", Port: 25},
			[]string{"decision     deny [provider:stripe:files.stripe.com]",
				"provider:smtp-submission:*:25,587: less specific than files.stripe.com",
				"port filter 587 does not include port 25", "provider stripe (category payment)"}},
		{"dns lookup skips port filters", &inventory.Workload{Environment: "staging"}, plan.Destination{Host: "mail.example.org"},
			[]string{"decision     allow [default]", "port filter 25, but the port is unknown", "no pattern matched"}},
		{"cidr", &inventory.Workload{Environment: "qa"}, plan.Destination{IP: netipMust("10.20.3.4"), Port: 5432},
			[]string{"decision     deny [cidr:10.20.0.0/16]", "* cidr 10.20.0.0/16", "longest matching prefix", "production cidr 10.20.0.0/16"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x, err := Explain(s.Engine, tc.w, tc.dest)
			require.NoError(t, err)
			var buf bytes.Buffer
			require.NoError(t, x.WriteText(&buf))
			for _, w := range tc.want {
				assert.Contains(t, buf.String(), w)
			}
			won := 0
			for _, c := range x.Candidates {
				if c.Won {
					won++
					assert.Equal(t, x.Decision.Rule, c.Rule)
				}
			}
			assert.LessOrEqual(t, won, 1, strings.Join(tc.want, ";"))
		})
	}
}

func netipMust(s string) netip.Addr { return netip.MustParseAddr(s) }
