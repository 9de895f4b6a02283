package xds

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	"github.com/egressguard/egressguard/policy/plan"
	"github.com/egressguard/egressguard/xds/stagingca"
)

var update = flag.Bool("update", false, "rewrite xds/testdata/out golden files and delete stale ones")

// loadSpec strictly decodes a plan.Spec fixture.
func loadSpec(t testing.TB, path string) *plan.Plan {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var spec plan.Spec
	require.NoError(t, yaml.UnmarshalStrict(b, &spec), path)
	p, err := plan.Compile(spec)
	require.NoError(t, err, path)
	return p
}

func readTargets(t testing.TB, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

// testCerts is a staging CA for translation tests: a fixed fake PEM per
// host (the translation does not parse it), refusing the hosts in refuse.
type testCerts struct {
	refuse  map[string]bool
	changes chan struct{}
}

func (c *testCerts) Leaf(host string) (stagingca.Leaf, error) {
	if c.refuse[host] {
		return stagingca.Leaf{}, fmt.Errorf("host %s is outside the CA's name constraints", host)
	}
	return stagingca.Leaf{CertPEM: []byte("test leaf certificate for " + host + "\n"), KeyPEM: []byte("test leaf key for " + host + "\n")}, nil
}

func (c *testCerts) Changes() <-chan struct{} { return c.changes }

// caseSettings are the node settings of a case: intercept-* cases (but
// intercept-noca) have a staging CA.
func caseSettings(name string) NodeSettings {
	if strings.HasPrefix(name, "intercept-") && name != "intercept-noca" {
		return NodeSettings{Certificates: &testCerts{}}
	}
	return NodeSettings{}
}

// translateCase runs the translation a case asks for: proxyless for
// grpc-* cases (targets from <case>.targets), the sidecar otherwise.
func translateCase(t testing.TB, inPath string) *Resources {
	t.Helper()
	p := loadSpec(t, inPath)
	name := strings.TrimSuffix(filepath.Base(inPath), ".yaml")
	var (
		res *Resources
		err error
	)
	if strings.HasPrefix(name, "grpc-") {
		res, err = TranslateProxyless(p, readTargets(t, strings.TrimSuffix(inPath, ".yaml")+".targets"))
	} else {
		res, err = TranslateSidecar(p, caseSettings(name))
	}
	require.NoError(t, err)
	require.NoError(t, Validate(res))
	return res
}

// toYAML renders resources as protojson re-encoded as YAML (never compare
// raw protojson bytes: its whitespace is randomised on purpose).
func toYAML[M proto.Message](t testing.TB, ms []M) []byte {
	t.Helper()
	items := make([]any, 0, len(ms))
	for _, m := range ms {
		j, err := protojson.Marshal(m)
		require.NoError(t, err)
		var v any
		require.NoError(t, yaml.Unmarshal(j, &v))
		items = append(items, v)
	}
	out, err := yaml.Marshal(items)
	require.NoError(t, err)
	return out
}

func TestGolden(t *testing.T) {
	ins, err := filepath.Glob("testdata/in/*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, ins)
	produced := map[string]bool{}
	for _, in := range ins {
		name := strings.TrimSuffix(filepath.Base(in), ".yaml")
		t.Run(name, func(t *testing.T) {
			res := translateCase(t, in)
			outs := map[string][]byte{
				"listeners": toYAML(t, res.Listeners),
				"routes":    toYAML(t, res.Routes),
				"clusters":  toYAML(t, res.Clusters),
				"endpoints": toYAML(t, res.Endpoints),
			}
			if strings.HasPrefix(name, "intercept-") {
				outs["secrets"] = toYAML(t, res.Secrets)
			}
			for kind, got := range outs {
				path := filepath.Join("testdata", "out", name+"."+kind+".yaml")
				produced[path] = true
				if *update {
					require.NoError(t, os.WriteFile(path, got, 0o644))
					continue
				}
				want, err := os.ReadFile(path)
				require.NoError(t, err, "missing golden file; run go test ./xds -update")
				assert.Equal(t, string(want), string(got), path)
			}
		})
	}
	existing, err := filepath.Glob("testdata/out/*.yaml")
	require.NoError(t, err)
	for _, path := range existing {
		if produced[path] {
			continue
		}
		if *update {
			require.NoError(t, os.Remove(path))
			continue
		}
		t.Errorf("stale golden file %s (no case produces it); run go test ./xds -update", path)
	}
}
