package main

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
)

// testdata/stream.jsonl is `go test -json ./...` over a module with a
// passing, a failing and two skipping tests and a package without tests.
func TestSummary(t *testing.T) {
	var out, errOut bytes.Buffer
	code := run([]string{"--", "cat", "testdata/stream.jsonl"}, &out, &errOut)
	assert.Equal(t, 1, code, "the stream reports a failure")
	assert.Equal(t, `?   	example.com/tsmod/empty	[no test files]
=== RUN   TestFail/sub
    a_test.go:12: want 2, got 3
--- FAIL: TestFail/sub (0.00s)
=== RUN   TestFail
--- FAIL: TestFail (0.00s)
FAIL	example.com/tsmod	0.01s

skipped tests (2), by reason:
  skipped: needs root to create a network namespace
      example.com/tsmod.TestSkipRoot
  skipped: chromium not found; install it with make test-deps
      example.com/tsmod.TestSkipTool

tests: FAIL: 0 packages passed, 1 failed, 1 without tests; 2 tests skipped
FAIL example.com/tsmod
`, out.String())
	assert.Empty(t, errOut.String())
}

// TestExitStatus: the command's exit status is kept.
func TestExitStatus(t *testing.T) {
	var out, errOut bytes.Buffer
	assert.Equal(t, 3, run([]string{"sh", "-c", "echo not json; exit 3"}, &out, &errOut))
	assert.Contains(t, out.String(), "not json\n")
	assert.Contains(t, out.String(), "tests: FAIL:")
	out.Reset()
	assert.Equal(t, 0, run([]string{"sh", "-c", `echo '{"Action":"pass","Package":"p"}'`}, &out, &errOut))
	assert.Equal(t, "\ntests: ok: 1 packages passed, 0 failed, 0 without tests; 0 tests skipped\n", out.String())
	assert.Equal(t, 2, run(nil, &out, &errOut))
	assert.Equal(t, 2, run([]string{"--", "/nonexistent/go"}, &out, &errOut))
}
