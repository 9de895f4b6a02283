package secretscan

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
)

const liveKey = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
}

func noticeFor(res *Result, suffix string) *Notice {
	for i := range res.Notices {
		if strings.HasSuffix(res.Notices[i].File, suffix) {
			return &res.Notices[i]
		}
	}
	return nil
}

// TestBadInput: each kind of damage is skipped or noted with a reason and
// the scan goes on to find the secret in the good file.
func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "good.env"), "STRIPE_KEY="+liveKey+"\n")
	writeFile(t, filepath.Join(dir, "binary.bin"), "\x7fELF\x00\x00\x01"+liveKey)
	writeFile(t, filepath.Join(dir, "latin1.properties"), "caf\xe9=1\nstripe.key="+liveKey+"\n")
	writeFile(t, filepath.Join(dir, "broken.yaml"), "a: b\n  c: d\n\tkey: "+liveKey+"\n")
	writeFile(t, filepath.Join(dir, "broken.json"), "{\"a\": \"b\",\n \"c\": \n \"key\": \""+liveKey+"\"\n")
	writeFile(t, filepath.Join(dir, "unreadable.env"), "X=1\n")
	// A 1 GiB sparse file: skipped from its size, never read.
	big, err := os.Create(filepath.Join(dir, "huge.yaml"))
	require.NoError(t, err)
	require.NoError(t, big.Truncate(1<<30))
	require.NoError(t, big.Close())
	// Symlink loop (a directory linking to its parent) and a self loop.
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "sub"), 0o755))
	require.NoError(t, os.Symlink("..", filepath.Join(dir, "sub", "up")))
	require.NoError(t, os.Symlink("self", filepath.Join(dir, "self")))
	require.NoError(t, syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644))

	opened := map[string]bool{}
	opts := Options{open: func(p string) (*os.File, error) {
		opened[filepath.Base(p)] = true
		if filepath.Base(p) == "unreadable.env" {
			return nil, &fs.PathError{Op: "open", Path: p, Err: fs.ErrPermission}
		}
		return os.Open(p)
	}, Workers: 1}
	d := newExampleDetector(t)
	res, err := NewScanner(d, opts, zaptest.NewLogger(t)).ScanPaths(context.Background(), []string{dir}, nil)
	require.NoError(t, err)

	for _, tc := range []struct {
		file    string
		skipped bool
		reason  string
	}{
		{"binary.bin", true, "binary"},
		{"huge.yaml", true, "1.0 GiB exceeds"},
		{"unreadable.env", true, "permission denied"},
		{"latin1.properties", false, "invalid UTF-8"},
		{"broken.yaml", false, "broken YAML"},
		{"broken.json", false, "invalid JSON"},
		{"up", true, "symlink loop"},
		{"self", true, "symlink loop"},
		{"fifo", true, "not a regular file"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			n := noticeFor(res, tc.file)
			require.NotNil(t, n, "no notice for %s in %v", tc.file, res.Notices)
			assert.Equal(t, tc.skipped, n.Skipped)
			assert.Contains(t, n.Reason, tc.reason)
		})
	}
	assert.False(t, opened["huge.yaml"], "the 1 GiB file must not be opened")
	files := map[string]bool{}
	for _, f := range res.Findings {
		files[filepath.Base(f.File)] = true
	}
	// Damaged but readable files are still scanned.
	for _, f := range []string{"good.env", "latin1.properties", "broken.yaml", "broken.json"} {
		assert.True(t, files[f], "%s: secret not found in %v", f, res.Findings)
	}
	assert.False(t, files["binary.bin"])
}

func TestIgnoreFilesAllowAndStdin(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, ".gitignore"), "build/\n*.log\n!keep.log\n")
	writeFile(t, filepath.Join(dir, "build", "a.env"), "K="+liveKey+"\n")
	writeFile(t, filepath.Join(dir, "x.log"), "K="+liveKey+"\n")
	writeFile(t, filepath.Join(dir, "keep.log"), "K="+liveKey+"\n")
	writeFile(t, filepath.Join(dir, "deep", "nested", ".gitignore"), "/only-here.env\n")
	writeFile(t, filepath.Join(dir, "deep", "nested", "only-here.env"), "K="+liveKey+"\n")
	writeFile(t, filepath.Join(dir, "allowed.yaml"), "stripe:\n  # egressguard:allow revoked in SEC-12\n  key: "+liveKey+"\n  other: sk_live_9Tq2LmNc7XvB4rE1wZy6KpAs3Dh8 # egressguard:allow\n")
	d := newExampleDetector(t)
	s := NewScanner(d, Options{}, zaptest.NewLogger(t))
	res, err := s.ScanPaths(context.Background(), []string{dir}, nil)
	require.NoError(t, err)
	var got []string
	for _, f := range res.Findings {
		got = append(got, strings.TrimPrefix(f.File, dir+"/"))
	}
	assert.ElementsMatch(t, []string{"keep.log", "allowed.yaml"}, got, "only keep.log and the reason-less allow remain")
	assert.Equal(t, 1, res.Allowed)
	require.NotNil(t, noticeFor(res, "allowed.yaml"))
	assert.Contains(t, noticeFor(res, "allowed.yaml").Reason, "without a reason")

	// The egressguard ignore file can drop a finding by fingerprint.
	writeFile(t, filepath.Join(dir, IgnoreFileName), res.Findings[0].Fingerprint+"\n")
	res2, err := s.ScanPaths(context.Background(), []string{dir}, nil)
	require.NoError(t, err)
	assert.Len(t, res2.Findings, len(res.Findings)-1)
	assert.Equal(t, 1, res2.Ignored)

	// Standard input.
	res3, err := s.ScanPaths(context.Background(), []string{"-"}, strings.NewReader("KEY="+liveKey+"\n"))
	require.NoError(t, err)
	require.Len(t, res3.Findings, 1)
	assert.Equal(t, "-", res3.Findings[0].File)

	// A missing path is an error (exit 2), not a notice.
	_, err = s.ScanPaths(context.Background(), []string{filepath.Join(dir, "nope")}, nil)
	require.Error(t, err)
	assert.ErrorIs(t, err, fs.ErrNotExist)
}

// TestNeverTheValue: no report format contains a secret value.
func TestNeverTheValue(t *testing.T) {
	d := newExampleDetector(t)
	res := &Result{}
	for _, r := range d.Rules() {
		for _, ex := range r.TruePositives {
			fs, _ := d.Scan(ex.Path, []byte(ex.Content))
			res.Findings = append(res.Findings, fs...)
		}
	}
	require.NotEmpty(t, res.Findings)
	secrets := []string{liveKey, "sk_live_", "EKj4Tn8Wq2Zx6Cv1Bm5Nr9Yp3Ls7Hd0Fg4Ja8Xk2Qe6Wt1Uo5Ri9Py3Mz7Nc0Lv", "9f8e7d6c5b4a39281706f5e4d3c2b1a0",
		"MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj", "Zk4Qm8Xv2Lc7", "correct-horse-battery-staple-42", "Tq8Zm3Xc7Lv2Nb5W",
		"q8Lm3Nc7Xv2Bt5Ry9Wp4Ks6Dh1Gf0Jz8Qe3Ua7I/"}
	var buf bytes.Buffer
	require.NoError(t, WriteJSON(&buf, res))
	require.NoError(t, WriteText(&buf, res))
	require.NoError(t, WriteSARIF(&buf, res, d.Rules(), "test"))
	out := buf.String()
	for _, s := range secrets {
		if s == "sk_live_" {
			continue // the public prefix is shown on purpose
		}
		assert.NotContains(t, out, s)
	}
}
