package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// allCommands lists every command of the tree, root first.
func allCommands(c *cobra.Command) []*cobra.Command {
	out := []*cobra.Command{c}
	for _, sub := range c.Commands() {
		out = append(out, allCommands(sub)...)
	}
	return out
}

// TestHelpRendering: every command's --help shows booleans as plain
// switches and each default once.
func TestHelpRendering(t *testing.T) {
	for _, c := range allCommands(newRootCmd()) {
		path := strings.Fields(c.CommandPath())[1:]
		t.Run(strings.Join(append([]string{"egressguard"}, path...), " "), func(t *testing.T) {
			out, err := runCLI(t, append(path, "--help")...)
			require.NoError(t, err)
			assert.NotContains(t, out, "[=true|false]")
			for _, line := range strings.Split(out, "\n") {
				assert.LessOrEqual(t, strings.Count(line, "(default"), 1, "a default rendered twice: %s", line)
			}
			assert.Regexp(t, `(?m)^\s+-h, --help\s+help for`, out)
		})
	}
	out, err := runCLI(t, "iptables", "--help")
	require.NoError(t, err)
	assert.Regexp(t, `(?m)^\s+--apply\s+install the rules`, out)
	// A plain switch still takes an explicit value.
	_, err = runCLI(t, "iptables", "--apply=false", "--ipv6=off")
	require.NoError(t, err)
}

// TestUnknownSubcommand: a typo under a command that groups subcommands
// fails with a suggestion instead of printing help and exiting 0.
func TestUnknownSubcommand(t *testing.T) {
	_, err := runCLI(t, "policy", "evl")
	require.EqualError(t, err, `unknown command "evl" for "egressguard policy"; did you mean eval?`)
	assert.Equal(t, exitUsage, exitCode(err))
	_, err = runCLI(t, "policy", "zzzzzz")
	require.EqualError(t, err, `unknown command "zzzzzz" for "egressguard policy"; run 'egressguard policy --help' for the commands`)
	_, err = runCLI(t, "polcy")
	require.ErrorContains(t, err, `unknown command "polcy" for "egressguard"; did you mean policy?`)
	assert.Equal(t, exitUsage, exitCode(err))
	out, err := runCLI(t, "policy")
	require.NoError(t, err, "the group alone prints its help")
	assert.Contains(t, out, "Available Commands:")
}

// TestDurationFlagUnit: a duration flag given a bare number says which
// unit to add, as the config file does.
func TestDurationFlagUnit(t *testing.T) {
	_, err := runCLI(t, "iptables", "--timeout", "2")
	require.EqualError(t, err, "--timeout 2: 2 has no unit: use 2s (or ms, m, h)")
	_, err = runCLI(t, "proxy-status", "--timeout=1.5")
	require.EqualError(t, err, "--timeout 1.5: 1.5 has no unit: use 1.5s (or ms, m, h)")
	_, err = runCLI(t, "iptables", "--timeout", "soon")
	require.ErrorContains(t, err, `invalid argument "soon" for "--timeout" flag`)
}

// TestPolicyDiffWithoutBase: a missing --base or --head is a usage error,
// exit 2 as documented, not cobra's generic 1.
func TestPolicyDiffWithoutBase(t *testing.T) {
	_, err := runCLI(t, "policy", "diff", "--head", ".")
	require.EqualError(t, err, "--base is required: a DIR or a git REF[:PATH]")
	assert.Equal(t, diffExitUsage, exitCode(err))
	_, err = runCLI(t, "policy", "diff", "--base", ".")
	assert.Equal(t, diffExitUsage, exitCode(err))
}

// shellWords splits an example command line the way sh would for the
// quoting the examples use (double quotes, no escapes).
func shellWords(s string) []string {
	var words []string
	var cur strings.Builder
	in, quoted := false, false
	for _, r := range s {
		switch {
		case r == '"':
			quoted, in = !quoted, true
		case r == ' ' && !quoted:
			if in {
				words = append(words, cur.String())
				cur.Reset()
			}
			in = false
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if in {
		words = append(words, cur.String())
	}
	return words
}

// exampleArgs returns the egressguard arguments of each example line (the
// pipeline stage that runs egressguard, without redirections).
func exampleArgs(t *testing.T, c *cobra.Command) [][]string {
	t.Helper()
	var out [][]string
	for _, line := range strings.Split(c.Example, "\n") {
		for _, stage := range strings.Split(line, "|") {
			w := shellWords(strings.TrimSpace(stage))
			if len(w) == 0 || w[0] != "egressguard" {
				continue
			}
			if i := slicesIndex(w, ">>"); i >= 0 {
				w = w[:i]
			}
			out = append(out, w[1:])
		}
	}
	return out
}

func slicesIndex(w []string, s string) int {
	for i, x := range w {
		if x == s {
			return i
		}
	}
	return -1
}

// TestHelpExamplesParse: every example in every command's --help names
// that command and parses with its flags, spelled as documented.
func TestHelpExamplesParse(t *testing.T) {
	root := newRootCmd()
	n := 0
	for _, c := range allCommands(root) {
		for _, args := range exampleArgs(t, c) {
			n++
			found, rest, err := root.Find(args)
			require.NoError(t, err, "%v", args)
			assert.True(t, strings.HasPrefix(found.CommandPath(), c.CommandPath()), "example %q is under %q", strings.Join(args, " "), c.CommandPath())
			assert.NoError(t, found.ParseFlags(rest), "example %q", strings.Join(args, " "))
		}
	}
	assert.Greater(t, n, 5, "the examples were found")
}

// TestScanHelpExamples runs each of scan's examples in a repository whose
// origin/main is behind HEAD by one commit adding a live key.
func TestScanHelpExamples(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("skipped: git is not installed")
	}
	dir := t.TempDir()
	gitRun := func(args ...string) {
		cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.email=t@example.com", "-c", "user.name=t"}, args...)...)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "git %v: %s", args, out)
	}
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "deploy", "staging"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "deploy", "staging", "app.env"), []byte("STRIPE=sk_test_4eC39HqLyjWDarjtT1zdp7dc\n"), 0o644))
	gitRun("init", "-q", "-b", "main")
	gitRun("add", ".")
	gitRun("commit", "-qm", "base")
	gitRun("update-ref", "refs/remotes/origin/main", "HEAD")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "deploy", "staging", "app.env"), []byte("STRIPE=sk_live_4eC39HqLyjWDarjtT1zdp7dc\n"), 0o644))
	gitRun("commit", "-qam", "oops")
	t.Chdir(dir)

	baseline, code := runScanCLI(t, "", "scan", "--format", "json", ".")
	require.Equal(t, 1, code, baseline)
	require.NoError(t, os.WriteFile("scan-baseline.json", []byte(baseline), 0o644))

	scan, _, err := newRootCmd().Find([]string{"scan"})
	require.NoError(t, err)
	vault := `{"data":{"data":{"password":"Zk4Qm8Xv2Lc7Nb1T"}}}`
	want := map[string]struct {
		code     int
		contains string
	}{
		"scan deploy/staging":                       {1, "1 findings"},
		"scan -q deploy/staging":                    {1, "[stripe-live-secret-key]"},
		"scan --format sarif --output scan.sarif .": {1, ""},
		"scan --baseline scan-baseline.json .":      {0, "0 findings"},
		"scan --git origin/main..HEAD":              {1, "1 findings"},
		"scan fingerprints --source vault prod/app": {0, "algorithm: sha256"},
	}
	seen := 0
	for _, args := range exampleArgs(t, scan) {
		key := strings.Join(args, " ")
		w, ok := want[key]
		if !assert.True(t, ok, "an example this test does not know: %q", key) {
			continue
		}
		seen++
		t.Run(key, func(t *testing.T) {
			stdin := ""
			if args[1] == "fingerprints" {
				stdin = vault
			}
			out, code := runScanCLI(t, stdin, args...)
			assert.Equal(t, w.code, code, out)
			assert.Contains(t, out, w.contains)
			if key == "scan -q deploy/staging" {
				assert.NotContains(t, out, "findings (", "quiet: no summary")
			}
		})
	}
	assert.Equal(t, len(want), seen)
	var sarif map[string]any
	b, err := os.ReadFile("scan.sarif")
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &sarif))

	// --git=RANGE still works; a bare --git followed by two words is refused.
	out, code := runScanCLI(t, "", "scan", "--git=origin/main..HEAD")
	assert.Equal(t, 1, code, out)
	_, code = runScanCLI(t, "", "scan", "--git", "origin/main..HEAD", "extra")
	assert.Equal(t, 2, code)
}

// TestScanMissingPath: nothing scanned, no "0 findings" summary.
func TestScanMissingPath(t *testing.T) {
	out, err := runCLI(t, "scan", filepath.Join(t.TempDir(), "nonexistent"))
	assert.Equal(t, 2, exitCode(err))
	assert.NotRegexp(t, `\d+ findings`, out)
	require.ErrorContains(t, err, "no such file or directory")
}
