package main

import (
	"io/fs"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The project's own examples and policy pass the project's own checks.

// TestDogfoodExampleCatalogLints: the shipped example catalog and inventory
// pass `policy lint`. The example's one exception expires far ahead on
// purpose, so the README tour that uses it never expires; lint's 90-day
// window is therefore checked at a date 60 days before that expiry, and at
// today's date the expiry must be the only finding.
func TestDogfoodExampleCatalogLints(t *testing.T) {
	t.Chdir("../..")
	args := []string{"policy", "lint", "--catalog", "deploy/examples/catalog.yaml", "--inventory", "deploy/examples/inventory.yaml"}
	out, err := runCLI(t, append(args, "--now", "2099-11-01")...)
	require.NoError(t, err, out)
	assert.Contains(t, out, "0 error(s), 0 warning(s)")

	out, err = runCLI(t, args...)
	assert.Equal(t, 1, exitCode(err), out)
	assert.Regexp(t, `^deploy/examples/catalog\.yaml:\d+: error: exceptions\[0\] \(checkout-reads-prod-status\): expires 2099-12-31, more than 90 days ahead \(latest allowed: [0-9-]+\) \[exception-expiry\]\n1 error\(s\), 0 warning\(s\)\n$`, out)
}

// TestDogfoodRegoFormatted: the embedded Rego is as OPA's formatter writes it.
func TestDogfoodRegoFormatted(t *testing.T) {
	t.Chdir("../..")
	out, err := runCLI(t, "policy", "fmt", "--check", "policy/rego")
	require.NoError(t, err, "run: egressguard policy fmt -w policy/rego\n%s", out)
}

// TestDogfoodExamples: every file under deploy/examples/ goes through the
// command that reads it; a new example without a check here fails.
func TestDogfoodExamples(t *testing.T) {
	t.Chdir("../..")
	checks := map[string][]string{
		"deploy/examples/config.yaml":    {"validate", "--config", "deploy/examples/config.yaml"},
		"deploy/examples/catalog.yaml":   {"validate", "--catalog", "deploy/examples/catalog.yaml", "--set", "xds.listen=", "--set", "dns.listen="},
		"deploy/examples/inventory.yaml": {"validate", "--inventory", "deploy/examples/inventory.yaml", "--set", "xds.listen=", "--set", "dns.listen="},
		// A staging application's config: what `scan` reads. It must parse
		// (exit 0 or 1), never fail to scan (2).
		"deploy/examples/staging/orders.yaml": {"scan", "--catalog", "deploy/examples/catalog.yaml", "deploy/examples/staging/orders.yaml"},
		// Read by scan when it walks the directory.
		"deploy/examples/.egressguardignore": {"scan", "--catalog", "deploy/examples/catalog.yaml", "deploy/examples"},
	}
	seen := 0
	require.NoError(t, filepath.WalkDir("deploy/examples", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		args, ok := checks[p]
		if !assert.True(t, ok, "%s has no check in TestDogfoodExamples", p) {
			return nil
		}
		seen++
		t.Run(p, func(t *testing.T) {
			out, err := runCLI(t, args...)
			if args[0] == "scan" {
				assert.Less(t, exitCode(err), scanExitError, "%v\n%s", err, out)
				return
			}
			require.NoError(t, err, out)
			assert.Contains(t, out, "ok: policy ")
		})
		return nil
	}))
	assert.Equal(t, len(checks), seen, "a checked example is missing")
}
