package xds

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/egressguard/egressguard/policy/plan"
)

// readmeBlocks returns the fenced blocks of README.md after marker, in
// order, as (info string, lines).
func readmeBlocks(t *testing.T, marker string) [][2]string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	i := strings.Index(string(b), marker)
	require.GreaterOrEqual(t, i, 0, "README.md has no %q", marker)
	var out [][2]string
	var info string
	var body strings.Builder
	in := false
	sc := bufio.NewScanner(strings.NewReader(string(b[i:])))
	for sc.Scan() {
		l := sc.Text()
		switch {
		case !in && strings.HasPrefix(l, "```"):
			in, info = true, strings.TrimPrefix(l, "```")
			body.Reset()
		case in && l == "```":
			in = false
			out = append(out, [2]string{info, body.String()})
		case in:
			body.WriteString(l + "\n")
		case strings.HasPrefix(l, "#"): // the next section
			return out
		}
	}
	return out
}

// TestReadmeProxylessClient runs the README's proxyless client setup
// against egressguard's xDS server: the bootstrap its first command writes
// (GRPCBootstrap, which `bootstrap --proxyless` prints; the README tour
// runs that command itself), the environment its export lines set, and its
// Go program, built as shown. The program must print what the README says.
func TestReadmeProxylessClient(t *testing.T) {
	blocks := readmeBlocks(t, "<!-- proxyless-setup")
	require.Len(t, blocks, 3, "setup (sh), program (go), runs (console)")
	setup, program, runs := blocks[0], blocks[1], blocks[2]
	require.Equal(t, "sh", setup[0])
	require.Equal(t, "go", program[0])
	require.Equal(t, "console", runs[0])

	// The setup: `bin/egressguard bootstrap --proxyless --node-id ID ... > FILE`
	// then `export K=V` lines.
	lines := strings.Split(strings.TrimSpace(setup[1]), "\n")
	first := strings.Fields(lines[0])
	require.Equal(t, []string{"bin/egressguard", "bootstrap", "--proxyless", "--node-id"}, first[:4])
	nodeID := first[4]
	dir := t.TempDir()
	var env []string
	for _, l := range lines[1:] {
		l, _, _ = strings.Cut(l, "#")
		f := strings.Fields(l)
		require.Equal(t, "export", f[0], "README setup line %q", l)
		for _, kv := range f[1:] {
			env = append(env, strings.ReplaceAll(kv, "$PWD", dir))
		}
	}

	// egressguard's xDS server, with the example catalog's production zone.
	backendAddr := backend(t, "allowed")
	env0 := startADS(t, Defaults(), plan.Spec{Default: plan.ActionAllow, Rules: []plan.Rule{
		{ID: "zone:*.prod.example.com", Hosts: []string{"*.prod.example.com"}, Action: plan.ActionDeny, Reason: "production zone"}}}, nodeID)
	bootstrap, err := GRPCBootstrap(nodeID, env0.addr, GRPCBootstrapOptions{})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "xds-bootstrap.json"), bootstrap, 0o644))

	// The program, built inside this module (an overlay puts it there
	// without writing into the source tree).
	src := filepath.Join(dir, "main.go")
	require.NoError(t, os.WriteFile(src, []byte(program[1]), 0o644))
	root, err := filepath.Abs("..")
	require.NoError(t, err)
	overlay := filepath.Join(dir, "overlay.json")
	require.NoError(t, os.WriteFile(overlay, fmt.Appendf(nil, `{"Replace":{%q:%q}}`,
		filepath.Join(root, "xds", "testdata", "readmeclient", "main.go"), src), 0o644))
	bin := filepath.Join(dir, "checkout")
	build := exec.Command("go", "build", "-overlay", overlay, "-o", bin, "./xds/testdata/readmeclient")
	build.Dir = root
	out, err := build.CombinedOutput()
	require.NoError(t, err, "building the README's client: %s", out)

	// Each `$ go run . TARGET` prints the lines shown. The README's local
	// service is this test's backend.
	var ran int
	for _, step := range strings.Split(runs[1], "$ ")[1:] {
		l := strings.Split(strings.TrimSpace(step), "\n")
		f := strings.Fields(l[0])
		require.Equal(t, []string{"go", "run", "."}, f[:3])
		target := strings.ReplaceAll(f[3], "127.0.0.1:50051", backendAddr)
		rctx, rcancel := context.WithTimeout(context.Background(), 60*time.Second)
		cmd := exec.CommandContext(rctx, bin, target)
		cmd.Env = append(os.Environ(), env...)
		got, _ := cmd.Output() // a denied call exits 1
		rcancel()
		assert.Equal(t, strings.Join(l[1:], "\n"), strings.TrimSpace(string(got)), "README: go run . %s", f[3])
		ran++
	}
	assert.Equal(t, 2, ran)
}
