package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// runReviewCLI runs the root command; the output includes the returned
// error's text (main prints it).
func runReviewCLI(t *testing.T, args ...string) (string, int) {
	t.Helper()
	out, err := runCLI(t, args...)
	if err != nil {
		out += err.Error()
	}
	return out, exitCode(err)
}

const reviewFixtures = "../../policy/review/testdata/diff"

func TestPolicyDiffCommand(t *testing.T) {
	fx := func(c, side string) string { return filepath.Join(reviewFixtures, c, side) }
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"widening exits 3", []string{"policy", "diff", "--no-default-catalog", "--now", "2027-01-15",
			"--base", fx("widened-exception", "base"), "--head", fx("widened-exception", "head")}, 3, "WIDENS non-production access"},
		{"markdown", []string{"--inventory", filepath.Join(reviewFixtures, "inventory.yaml"), "policy", "diff", "--no-default-catalog", "--now", "2027-01-15", "-o", "markdown", "--max-rows", "1",
			"--decisions", filepath.Join(reviewFixtures, "decisions.jsonl"),
			"--base", fx("removed-deny", "base"), "--head", fx("removed-deny", "head")}, 3, "more decision change(s)"},
		{"new sandbox exits 0 (default catalog merged)", []string{"policy", "diff", "--now", "2027-01-15",
			"--base", fx("new-sandbox", "base"), "--head", fx("new-sandbox", "head")}, 0, "redirect -> api.sandbox.acmepay.com:443"},
		{"json", []string{"policy", "diff", "-o", "json", "--no-default-catalog", "--now", "2027-01-15",
			"--base", fx("unchanged", "base"), "--head", fx("unchanged", "head")}, 0, `"widens": false`},
		{"bad ref exits 2", []string{"policy", "diff", "--base", "no-such-ref-xyz", "--head", fx("unchanged", "head")}, 2, "neither a directory nor a git ref"},
		{"bad output exits 2", []string{"policy", "diff", "-o", "yaml", "--base", "a", "--head", "b"}, 2, "--output"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, code := runReviewCLI(t, tc.args...)
			assert.Equal(t, tc.code, code, out)
			assert.Contains(t, out, tc.want)
		})
	}
}

func TestPolicyDiffBrokenPolicyExits1(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "catalog.yaml"), []byte("zones: [\"bad zone\"]\n"), 0o644))
	out, code := runReviewCLI(t, "policy", "diff", "--base", filepath.Join(reviewFixtures, "unchanged", "base"), "--head", dir)
	assert.Equal(t, 1, code, out)
	assert.Contains(t, out, "catalog.yaml:1")
}

// TestPolicyDiffGitRefs reads both versions from commits of a scratch
// repository (git archive REF:PATH).
func TestPolicyDiffGitRefs(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	repo := t.TempDir()
	git := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"}, args...)...)
		cmd.Dir = repo
		b, err := cmd.CombinedOutput()
		require.NoError(t, err, string(b))
	}
	copyFile := func(src, dst string) {
		b, err := os.ReadFile(src)
		require.NoError(t, err)
		require.NoError(t, os.MkdirAll(filepath.Dir(dst), 0o755))
		require.NoError(t, os.WriteFile(dst, b, 0o644))
	}
	git("init", "-q")
	copyFile(filepath.Join(reviewFixtures, "removed-deny", "base", "catalog.yaml"), filepath.Join(repo, "egress", "catalog", "catalog.yaml"))
	git("add", ".")
	git("commit", "-q", "-m", "base")
	copyFile(filepath.Join(reviewFixtures, "removed-deny", "head", "catalog.yaml"), filepath.Join(repo, "egress", "catalog", "catalog.yaml"))
	git("commit", "-q", "-am", "head")

	out, code := runReviewCLI(t, "policy", "diff", "--repo", repo, "--no-default-catalog", "--now", "2027-01-15",
		"--base", "HEAD~1:egress", "--head", "HEAD:egress")
	assert.Equal(t, 3, code, out)
	assert.Contains(t, out, "removed zone:billing.example.com")
}

func TestPolicyLintFmtExplainCommands(t *testing.T) {
	out, code := runReviewCLI(t, "--replace-default-policy", "policy", "lint", "--now", "2027-01-15", "../../policy/review/testdata/lint/bad")
	assert.Equal(t, 1, code, out)
	assert.Contains(t, out, "3 error(s), 1 warning(s)")

	dir := t.TempDir()
	b, err := os.ReadFile("../../policy/review/testdata/fmt/ugly.rego")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "ugly.rego"), b, 0o644))
	out, code = runReviewCLI(t, "policy", "fmt", "--check", dir)
	assert.Equal(t, 1, code, out)
	_, code = runReviewCLI(t, "policy", "fmt", "-w", dir)
	assert.Equal(t, 0, code)
	out, code = runReviewCLI(t, "policy", "fmt", "--check", dir)
	assert.Equal(t, 0, code, out)

	out, code = runReviewCLI(t, "--catalog", filepath.Join(reviewFixtures, "common", "catalog.yaml"), "policy", "explain",
		"--workload", "env=staging", "--dest", "api.acmepay.com:443")
	assert.Equal(t, 0, code, out)
	assert.Contains(t, out, "* host api.acmepay.com")
	assert.Contains(t, out, "provider acmepay (category payment)")
}
