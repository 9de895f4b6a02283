package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// cliExitCode is the exit code main gives err.
func cliExitCode(err error) int {
	if err == nil {
		return 0
	}
	var ec interface{ ExitCode() int }
	if errors.As(err, &ec) {
		return ec.ExitCode()
	}
	return 1
}

func TestPolicyTestCoverageCLI(t *testing.T) {
	out, err := runCLI(t, "policy", "test", "--threshold", "1")
	require.NoError(t, err, out)
	assert.Contains(t, out, "0 failed")
	assert.Regexp(t, `coverage +\d+\.\d\d%  embedded:rego/egressguard\.rego \(\d+/\d+ lines\)`, out)
	assert.Regexp(t, `coverage +\d+\.\d\d%  total \(\d+/\d+ lines\)\n$`, out)

	out, err = runCLI(t, "policy", "test", "--threshold", "101")
	require.Error(t, err, out)
	assert.Equal(t, 1, cliExitCode(err))
	assert.Contains(t, err.Error(), `--threshold: coverage threshold "101": want a single number between 0 and 100`)

	out, err = runCLI(t, "policy", "test", "--coverage", "-o", "json")
	require.NoError(t, err, out)
	var rep struct {
		Coverage struct {
			Files []struct {
				File string `json:"file"`
			} `json:"files"`
			Coverage float64 `json:"coverage"`
		} `json:"coverage"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &rep))
	require.Len(t, rep.Coverage.Files, 1)
	assert.Equal(t, "embedded:rego/egressguard.rego", rep.Coverage.Files[0].File)
	assert.Positive(t, rep.Coverage.Coverage)
}

func TestPolicyTestCoverageThresholdFileCLI(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600))
	}
	// A module no test evaluates keeps total coverage below 100%.
	write("extra.rego", "package extra\n\nnever_tested if {\n\tinput.x == 1\n}\n")
	write(".egressguard-coverage", "99.99\n")

	out, err := runCLI(t, "--policy", dir, "policy", "test", "--coverage")
	require.Error(t, err, out)
	assert.Equal(t, 1, cliExitCode(err))
	assert.Regexp(t, `Rego coverage \d+\.\d\d% is below the threshold 99\.99%`, err.Error())
	assert.Contains(t, out, filepath.Join(dir, "extra.rego")+" (0/2 lines) not covered: 3-4\n")
	assert.Contains(t, out, "0 failed", "the tests themselves pass")

	out, err = runCLI(t, "--policy", dir, "policy", "test", "--coverage", "--threshold", "1")
	require.NoError(t, err, "--threshold overrides the file: %s", out)

	out, err = runCLI(t, "--policy", dir, "policy", "test")
	require.NoError(t, err, "the file applies with --coverage only: %s", out)
	assert.NotContains(t, out, "coverage", "no coverage unless asked")

	write(".egressguard-coverage", "lots\n")
	_, err = runCLI(t, "--policy", dir, "policy", "test", "--coverage")
	require.Error(t, err)
	assert.Contains(t, err.Error(), filepath.Join(dir, ".egressguard-coverage")+`: coverage threshold "lots"`)
}
