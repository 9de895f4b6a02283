package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The project's own examples and policy pass the project's own checks.

// TestDogfoodExampleCatalogLints: the shipped example catalog and inventory
// pass `policy lint` at the date the example says it was reviewed as of
// (its exception and opt-out are time-boxed like real ones, within lint's
// 90 days of that date). At today's date lint must still pass: once they
// have expired they are warnings (ignored), never errors, so CI does not
// break by date and the example does not pretend to be forever.
func TestDogfoodExampleCatalogLints(t *testing.T) {
	t.Chdir("../..")
	const catalog = "deploy/examples/catalog.yaml"
	b, err := os.ReadFile(catalog)
	require.NoError(t, err)
	m := regexp.MustCompile(`reviewed as of (\d{4}-\d{2}-\d{2})`).FindSubmatch(b)
	require.NotNil(t, m, "%s says the date it was reviewed as of", catalog)
	asOf := string(m[1])

	args := []string{"policy", "lint", "--catalog", catalog, "--inventory", "deploy/examples/inventory.yaml"}
	out, err := runCLI(t, append(args, "--now", asOf)...)
	require.NoError(t, err, out)
	assert.Contains(t, out, "0 error(s), 0 warning(s)")
	assert.Regexp(t, `deploy/examples/catalog\.yaml:\d+: info: host_network_opt_outs\[0\] \(node-exporter\): admits host-network pods node-exporter-\* labelled app=node-exporter in namespace monitoring until 2027-02-28 \(owner observability-team@example.com, ticket OPS-1234\) \[host-network-opt-out\]`, out)

	out, err = runCLI(t, args...)
	require.NoError(t, err, out)
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		assert.Regexp(t, `( info: |: warning: .*: expired 2027-02-28 and is ignored|^0 error\(s\), [0-2] warning\(s\)$)`, line)
	}
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
