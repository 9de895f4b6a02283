package inject

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	ejsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admission/v1"
	sigsyaml "sigs.k8s.io/yaml"
)

// FuzzHandler feeds arbitrary bodies to the handler. Invariants: no
// panic; the answer is 200, 400 or 500; a 200 is an AdmissionReview v1
// answering the request's uid, and a patch in it applies to the request's
// object and yields a pod that decodes strictly.
func FuzzHandler(f *testing.F) {
	ins, _ := filepath.Glob("testdata/in/*.yaml")
	for _, in := range ins {
		y, err := os.ReadFile(in)
		require.NoError(f, err)
		j, err := sigsyaml.YAMLToJSON(y)
		require.NoError(f, err)
		f.Add(j)
	}
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","namespace":"n","object":{"metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"i"}]}}}}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u"}}`))
	f.Add([]byte(`null`))
	h, err := NewHandler(testConfig(), nil, nil)
	require.NoError(f, err)
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/mutate", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusBadRequest, http.StatusInternalServerError:
			return
		case http.StatusOK:
		default:
			t.Fatalf("status %d", rec.Code)
		}
		in, err := decodeReview(body)
		require.NoError(t, err, "a 200 answers a request that decodes")
		var out admissionv1.AdmissionReview
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &out))
		require.NotNil(t, out.Response)
		require.Equal(t, in.Request.UID, out.Response.UID)
		if out.Response.Patch == nil {
			return
		}
		p, err := ejsonpatch.DecodePatch(out.Response.Patch)
		require.NoError(t, err)
		patched, err := p.Apply(in.Request.Object.Raw)
		require.NoError(t, err)
		_, err = DecodePod(patched)
		require.NoError(t, err)
	})
}

// FuzzDecodeReview: decodeReview never panics, and what it accepts is a
// review v1 with a request and a uid.
func FuzzDecodeReview(f *testing.F) {
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u"}}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","uid":"v"}}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		rev, err := decodeReview(body)
		if err != nil {
			return
		}
		require.Equal(t, admissionAPIVersion, rev.APIVersion)
		require.NotNil(t, rev.Request)
		require.NotEmpty(t, rev.Request.UID)
	})
}
