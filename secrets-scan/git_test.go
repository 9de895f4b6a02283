package secretscan

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
)

func gitRun(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_SYSTEM=/dev/null")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	return strings.TrimSpace(string(out))
}

// TestScanGit: only lines added by the commits in the range are reported,
// with block context from the whole file at that commit.
func TestScanGit(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	dir := t.TempDir()
	gitRun(t, dir, "init", "-q", "-b", "main")
	writeFile(t, filepath.Join(dir, "app.yaml"), "paypal:\n  mode: live\n  timeout: 5\n")
	writeFile(t, filepath.Join(dir, "old.env"), "STRIPE="+liveKey+"\n")
	gitRun(t, dir, "add", ".")
	gitRun(t, dir, "commit", "-q", "-m", "first")
	first := gitRun(t, dir, "rev-parse", "HEAD")

	pp := "EKj4Tn8Wq2Zx6Cv1Bm5Nr9Yp3Ls7Hd0Fg4Ja8Xk2Qe6Wt1Uo5Ri9Py3Mz7Nc0Lv"
	writeFile(t, filepath.Join(dir, "app.yaml"), "paypal:\n  mode: live\n  timeout: 5\n  client_secret: "+pp+"\n")
	gitRun(t, dir, "commit", "-q", "-am", "second")
	second := gitRun(t, dir, "rev-parse", "HEAD")

	s := NewScanner(newExampleDetector(t), Options{}, zaptest.NewLogger(t))
	res, err := s.ScanGit(context.Background(), dir, first+"..HEAD")
	require.NoError(t, err)
	require.Len(t, res.Findings, 1, "%+v", res.Findings)
	f := res.Findings[0]
	assert.Equal(t, RulePayPalSecret, f.Rule, "context from the unchanged line 2")
	assert.Equal(t, "app.yaml", f.File)
	assert.Equal(t, 4, f.Line)
	assert.Equal(t, second, f.Commit)

	all, err := s.ScanGit(context.Background(), dir, "")
	require.NoError(t, err)
	require.Len(t, all.Findings, 2)
	assert.Equal(t, first, all.Findings[1].Commit)
	assert.Equal(t, "old.env", all.Findings[1].File)

	var buf bytes.Buffer
	require.NoError(t, WriteText(&buf, all))
	assert.Contains(t, buf.String(), first[:12]+":old.env:1:8")

	_, err = s.ScanGit(context.Background(), dir, "--output=x")
	require.Error(t, err)
	_, err = s.ScanGit(context.Background(), dir, "no-such-rev")
	require.Error(t, err)
}

func TestAddedLines(t *testing.T) {
	patch := "diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1,0 +2,3 @@\n+a\n+b\n+c\n@@ -9 +12 @@\n-o\n+n\n--- a/y\n+++ /dev/null\n@@ -1 +0,0 @@\n"
	added, order := addedLines([]byte(patch))
	assert.Equal(t, []string{"x"}, order)
	assert.Equal(t, []int{2, 3, 4, 12}, added["x"])
}
