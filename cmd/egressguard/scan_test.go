package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/egressguard/egressguard/policy"
	secretscan "github.com/egressguard/egressguard/secrets-scan"
)

// runScanCLI runs the root command and returns its output and exit code.
func runScanCLI(t *testing.T, stdin string, args ...string) (string, int) {
	t.Helper()
	out, err := runCLIWithInput(t, stdin, args...)
	var ec interface{ ExitCode() int }
	if err != nil && !errors.As(err, &ec) {
		out += err.Error()
	}
	return out, exitCode(err)
}

func TestScanCommand(t *testing.T) {
	dir := t.TempDir()
	cat := filepath.Join(dir, "catalog.yaml")
	require.NoError(t, os.WriteFile(cat, []byte("zones: [\"*.prod.example.com\"]\ncidrs: [10.20.0.0/16]\ncloud: {aws_accounts: [\"123456789012\"]}\n"), 0o644))
	tree := filepath.Join(dir, "tree")
	require.NoError(t, os.MkdirAll(tree, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(tree, "app.env"), []byte(
		"STRIPE=sk_live_4eC39HqLyjWDarjtT1zdp7dc\nSTRIPE_TEST=sk_test_4eC39HqLyjWDarjtT1zdp7dc\nDATABASE_URL=postgres://u:${P}@db.prod.example.com/x\nAWS_ACCESS_KEY_ID=AKIARZPUZDIKGLB5JZPW\n"), 0o644))
	clean := filepath.Join(dir, "clean")
	require.NoError(t, os.MkdirAll(clean, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(clean, "app.env"), []byte("STRIPE=sk_test_4eC39HqLyjWDarjtT1zdp7dc\n"), 0o644))

	out, code := runScanCLI(t, "", "scan", "--catalog", cat, "--format", "json", tree)
	require.Equal(t, 1, code, out)
	var rep secretscan.JSONReport
	require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
	rules := map[string]string{}
	for _, f := range rep.Findings {
		rules[f.Rule] = string(f.Kind)
	}
	assert.Equal(t, map[string]string{
		secretscan.RuleStripeSecret: "secret", secretscan.RuleDatabaseURL: "endpoint", secretscan.RuleAWSKeyID: "secret",
	}, rules)
	assert.NotContains(t, out, "4eC39HqLyjWDarjtT1zdp7dc")

	// The report is a baseline: nothing new, exit 0.
	base := filepath.Join(dir, "base.json")
	require.NoError(t, os.WriteFile(base, []byte(out), 0o644))
	out, code = runScanCLI(t, "", "scan", "--catalog", cat, "--baseline", base, tree)
	assert.Equal(t, 0, code, out)

	out, code = runScanCLI(t, "", "scan", "--catalog", cat, clean)
	assert.Equal(t, 0, code, out)
	_, code = runScanCLI(t, "", "scan", "--format", "xml", clean)
	assert.Equal(t, 2, code)
	_, code = runScanCLI(t, "", "scan", "--no-such-flag", clean)
	assert.Equal(t, 2, code)
	_, code = runScanCLI(t, "", "scan", filepath.Join(dir, "missing"))
	assert.Equal(t, 2, code)
	_, code = runScanCLI(t, "", "scan", "--catalog", filepath.Join(dir, "missing.yaml"), clean)
	assert.Equal(t, 2, code)

	out, code = runScanCLI(t, "", "scan", "--catalog", cat, "--format", "sarif", tree)
	assert.Equal(t, 1, code)
	assert.Contains(t, out, `"version": "2.1.0"`)

	out, code = runScanCLI(t, "KEY=sk_live_4eC39HqLyjWDarjtT1zdp7dc\n", "scan", "-")
	assert.Equal(t, 1, code, out)
	assert.Contains(t, out, "-:1:5:")

	out, code = runScanCLI(t, "A=Zk4Qm8Xv2Lc7Nb1T\n", "scan", "fingerprints", "--source", "t")
	assert.Equal(t, 0, code, out)
	assert.Contains(t, out, "algorithm: sha256")
	assert.NotContains(t, out, "Zk4Qm8Xv2Lc7Nb1T")
}

// TestProductionFromCatalog: the adapter carries what the scanner needs and
// leaves disabled providers out.
func TestProductionFromCatalog(t *testing.T) {
	c := &policy.Catalog{
		Zones: []string{"*.prod.example.com"}, CIDRs: []string{"10.20.0.0/16"},
		Providers: []policy.Provider{
			{Name: "paypal", Endpoints: []policy.Endpoint{{Live: "api-m.paypal.com", Sandbox: &policy.Target{Host: "api-m.sandbox.paypal.com", Port: 443}}, {Live: "*.paypal.com"}}},
			{Name: "gone", Disabled: true, Endpoints: []policy.Endpoint{{Live: "api.gone.com"}}},
			{Name: "smtp", Endpoints: []policy.Endpoint{{Ports: []uint16{25}, Sink: true}}},
			{Name: "twilio", Accounts: []string{"AC" + strings.Repeat("0a", 16)}, Endpoints: []policy.Endpoint{{Live: "api.twilio.com"}}},
		},
		JWT:          &policy.JWTIdentities{Issuers: []string{"https://auth.prod.example.com"}, Audiences: []string{"prod-api"}},
		Cloud:        &policy.Cloud{AWSAccounts: []string{"123456789012"}, GCPProjects: []string{"acme-prod"}},
		Fingerprints: []policy.Fingerprint{{Algorithm: "sha256", Salt: "c2FsdHNhbHRzYWx0c2FsdA==", Values: []string{strings.Repeat("ab", 32)}, Source: "v"}},
	}
	p, err := productionFromCatalog(c)
	require.NoError(t, err)
	assert.Equal(t, []secretscan.ProviderEndpoint{
		{Provider: "paypal", Live: "api-m.paypal.com", Sandbox: "api-m.sandbox.paypal.com"},
		{Provider: "paypal", Live: "*.paypal.com"},
		{Provider: "twilio", Live: "api.twilio.com"},
	}, p.Providers)
	assert.Equal(t, []string{"https://auth.prod.example.com"}, p.JWTIssuers)
	assert.Equal(t, []string{"prod-api"}, p.JWTAudiences)
	assert.Equal(t, map[string][]string{"twilio": {"AC" + strings.Repeat("0a", 16)}}, p.AccountIDs)
	assert.Equal(t, []string{"123456789012"}, p.AWSAccounts)
	assert.Equal(t, []string{"acme-prod"}, p.GCPProjects)
	require.Len(t, p.Fingerprints, 1)
	assert.Equal(t, "saltsaltsaltsalt", string(p.Fingerprints[0].Salt))
	_, err = secretscan.NewDetector(p)
	require.NoError(t, err)

	c.Fingerprints[0].Salt = "%%%"
	_, err = productionFromCatalog(c)
	require.ErrorContains(t, err, "fingerprints[0].salt")
}

// TestScanFailOn: a token whose environment nothing reveals is reported but
// passes by default; --fail-on unknown makes it fail; a bad --fail-on value
// is a usage error.
func TestScanFailOn(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "ci.env"), []byte("GITHUB_TOKEN=ghp_FLZDe1f8rESQedUStPKR0CsTy4Qwb8DwkNhF\n"), 0o644))

	out, code := runScanCLI(t, "", "scan", "--format", "json", dir)
	require.Equal(t, 0, code, out)
	var rep secretscan.JSONReport
	require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
	require.Len(t, rep.Findings, 1, out)
	assert.Equal(t, secretscan.KindCredential, rep.Findings[0].Kind)

	out, code = runScanCLI(t, "", "scan", "--fail-on", "unknown", dir)
	assert.Equal(t, 1, code, out)

	_, err := runCLIWithInput(t, "", "scan", "--fail-on", "everything", dir)
	assert.Equal(t, 2, exitCode(err))
	assert.ErrorContains(t, err, "--fail-on")
}
