package inject

import (
	"bytes"
	"encoding/json"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	ejsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
	"go.yaml.in/yaml/v3"
	admissionv1 "k8s.io/api/admission/v1"
	sigsyaml "sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite testdata/out from the current output and remove stale files")

// testConfig is the webhook configuration of the golden cases: IPv4 and
// IPv6 excluded prefixes, a dnsguard Service IP.
func testConfig() Config {
	c := Defaults()
	c.Listen = "127.0.0.1:0"
	c.DNSServer = "10.96.0.53"
	c.InitImage = "ghcr.io/egressguard/egressguard:v0.9.0"
	c.ExcludeCIDRs = []string{"10.0.0.0/8", "fd00:10:96::/112"}
	return c
}

// tlsConfig is testConfig with xDS over TLS (testdata/xds-ca.pem), and
// stagingAnchors the staging CA of the tls-* cases.
func tlsConfig() Config {
	c := testConfig()
	c.XDSCAFile = filepath.Join("testdata", "xds-ca.pem")
	return c
}

func stagingAnchors(t testing.TB) func() []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "staging-anchors.pem"))
	require.NoError(t, err)
	return func() []byte { return b }
}

func newTestHandler(t testing.TB, m *Metrics) *Handler {
	t.Helper()
	h, err := NewHandler(testConfig(), m, zaptest.NewLogger(t))
	require.NoError(t, err)
	return h
}

// review posts body to h and returns the HTTP status and decoded review.
func review(t testing.TB, h http.Handler, body []byte) (int, *admissionv1.AdmissionReview, string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/mutate", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		return rec.Code, nil, rec.Body.String()
	}
	rev := &admissionv1.AdmissionReview{}
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), rev))
	return rec.Code, rev, ""
}

// TestGolden runs each AdmissionReview in testdata/in through the handler
// and compares the JSON patch and the patched pod (the patch applied to the
// request's object with evanphx/json-patch, decoded strictly) with
// testdata/out. It also checks that the patched pod, reviewed again, gets
// no patch (injection is idempotent).
//
// Cases named refuse-* must be refused: their files are <case>.refused.txt,
// the denial's message. Cases named report-* run in report mode, tls-* with
// xDS over TLS and a staging CA (tlsConfig, stagingAnchors). A
// response's warnings and audit annotations, when it has any, are
// <case>.audit.yaml.
func TestGolden(t *testing.T) {
	h := newTestHandler(t, nil)
	rcfg := testConfig()
	rcfg.Mode = ModeReport
	hReport, err := NewHandler(rcfg, nil, zaptest.NewLogger(t))
	require.NoError(t, err)
	hTLS, err := NewHandler(tlsConfig(), nil, zaptest.NewLogger(t), WithStagingCA(stagingAnchors(t)))
	require.NoError(t, err)
	ins, err := filepath.Glob("testdata/in/*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, ins)
	want := map[string]bool{}
	for _, in := range ins {
		name := strings.TrimSuffix(filepath.Base(in), ".yaml")
		patchFile := filepath.Join("testdata/out", name+".patch.json")
		podFile := filepath.Join("testdata/out", name+".pod.yaml")
		refusedFile := filepath.Join("testdata/out", name+".refused.txt")
		auditFile := filepath.Join("testdata/out", name+".audit.yaml")
		h := h
		switch {
		case strings.HasPrefix(name, "report-"):
			h = hReport
		case strings.HasPrefix(name, "tls-"):
			h = hTLS
		}
		t.Run(name, func(t *testing.T) {
			y, err := os.ReadFile(in)
			require.NoError(t, err)
			body, err := sigsyaml.YAMLToJSON(y)
			require.NoError(t, err)
			var in admissionv1.AdmissionReview
			require.NoError(t, json.Unmarshal(body, &in))

			code, rev, msg := review(t, h, body)
			require.Equal(t, http.StatusOK, code, msg)
			require.NotNil(t, rev.Response)
			assert.Equal(t, in.Request.UID, rev.Response.UID)
			assert.Equal(t, admissionAPIVersion, rev.APIVersion)
			assert.Equal(t, "AdmissionReview", rev.Kind)
			if strings.HasPrefix(name, "refuse-") {
				want[refusedFile] = true
				require.False(t, rev.Response.Allowed)
				require.Nil(t, rev.Response.Patch)
				assert.Equal(t, int32(http.StatusForbidden), rev.Response.Result.Code)
				golden(t, refusedFile, []byte(rev.Response.Result.Message+"\n"))
				return
			}
			want[patchFile], want[podFile] = true, true
			require.True(t, rev.Response.Allowed, "%v", rev.Response.Result)
			if len(rev.Response.Warnings)+len(rev.Response.AuditAnnotations) > 0 {
				want[auditFile] = true
				a, err := sigsyaml.Marshal(map[string]any{"warnings": rev.Response.Warnings, "auditAnnotations": rev.Response.AuditAnnotations})
				require.NoError(t, err)
				golden(t, auditFile, a)
			}

			patchOut := []byte("[]\n")
			patched := in.Request.Object.Raw
			if rev.Response.Patch != nil {
				require.NotNil(t, rev.Response.PatchType)
				assert.Equal(t, admissionv1.PatchTypeJSONPatch, *rev.Response.PatchType)
				// gomodules.xyz/jsonpatch emits operations on different
				// object keys in map order, which varies between runs; the
				// file holds them sorted by path (stable) so it can be
				// compared and reviewed. The patch as served is applied below.
				var ops []map[string]any
				require.NoError(t, json.Unmarshal(rev.Response.Patch, &ops))
				sort.SliceStable(ops, func(i, j int) bool { return ops[i]["path"].(string) < ops[j]["path"].(string) })
				patchOut, err = json.MarshalIndent(ops, "", "  ")
				require.NoError(t, err)
				patchOut = append(patchOut, '\n')
				p, err := ejsonpatch.DecodePatch(rev.Response.Patch)
				require.NoError(t, err)
				patched, err = p.Apply(in.Request.Object.Raw)
				require.NoError(t, err)
			} else {
				assert.Nil(t, rev.Response.PatchType)
			}
			pod, err := DecodePod(patched) // strict: unknown fields fail
			require.NoError(t, err)
			// Rendered from the decoded pod: the patched document's key
			// order follows the (varying) operation order.
			podJSON, err := json.Marshal(pod)
			require.NoError(t, err)
			podOut := toYAML(t, podJSON)

			// Idempotency: the patched pod gets no patch the second time.
			again := in.DeepCopy()
			again.Request.Object.Raw = patched
			body2, err := json.Marshal(again)
			require.NoError(t, err)
			code, rev2, msg := review(t, h, body2)
			require.Equal(t, http.StatusOK, code, msg)
			assert.Nil(t, rev2.Response.Patch, "second injection must change nothing")
			if pod.Annotations[AnnotationInjected] != "" {
				assert.Equal(t, InitContainerName, pod.Spec.InitContainers[0].Name, "init container first")
			}

			if *update {
				require.NoError(t, os.WriteFile(patchFile, patchOut, 0o644))
				require.NoError(t, os.WriteFile(podFile, podOut, 0o644))
				return
			}
			wantPatch, err := os.ReadFile(patchFile)
			require.NoError(t, err, "run go test ./inject -update")
			assert.JSONEq(t, string(wantPatch), string(patchOut))
			wantPod, err := os.ReadFile(podFile)
			require.NoError(t, err, "run go test ./inject -update")
			assert.Equal(t, string(wantPod), string(podOut))
		})
	}
	outs, err := filepath.Glob("testdata/out/*")
	require.NoError(t, err)
	for _, f := range outs {
		if want[f] {
			continue
		}
		if *update {
			require.NoError(t, os.Remove(f))
			continue
		}
		t.Errorf("%s: no case in testdata/in produces it (run go test ./inject -update)", f)
	}
}

// golden compares got with the file, or writes it with -update.
func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		require.NoError(t, os.WriteFile(path, got, 0o644))
		return
	}
	b, err := os.ReadFile(path)
	require.NoError(t, err, "run go test ./inject -update")
	assert.Equal(t, string(b), string(got), path)
}

// toYAML renders JSON as block-style YAML, keeping key order and writing
// multi-line strings (the bootstrap) as literal blocks, for review.
func toYAML(t testing.TB, j []byte) []byte {
	t.Helper()
	var n yaml.Node
	require.NoError(t, yaml.Unmarshal(j, &n))
	var walk func(*yaml.Node)
	walk = func(n *yaml.Node) {
		n.Style = 0
		if n.Kind == yaml.ScalarNode && n.Tag == "!!str" {
			if strings.Contains(n.Value, "\n") {
				n.Style = yaml.LiteralStyle
			} else {
				var probe any
				if yaml.Unmarshal([]byte(n.Value), &probe) != nil || probe != n.Value {
					n.Style = yaml.DoubleQuotedStyle
				}
			}
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(&n)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	require.NoError(t, enc.Encode(&n))
	require.NoError(t, enc.Close())
	return buf.Bytes()
}
