package inject

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

func podReview(t testing.TB, pod *corev1.Pod, op admissionv1.Operation) []byte {
	t.Helper()
	raw, err := json.Marshal(pod)
	require.NoError(t, err)
	b, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: admissionAPIVersion, Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       "uid-1",
			Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Namespace: "shop",
			Operation: op,
			Object:    runtime.RawExtension{Raw: raw},
		},
	})
	require.NoError(t, err)
	return b
}

func TestHandlerBadRequests(t *testing.T) {
	good := podReview(t, samplePod(), admissionv1.Create)
	replace := func(old, new string) []byte { return []byte(strings.Replace(string(good), old, new, 1)) }
	for _, tc := range []struct {
		name        string
		method      string
		contentType string
		body        []byte
		code        int
		msg         string
	}{
		{"GET", http.MethodGet, "application/json", good, 400, "method GET: want POST"},
		{"no content type", "", "", good, 400, `content type "": want application/json`},
		{"yaml", "", "application/yaml", good, 400, "want application/json"},
		{"empty body", "", "", nil, 400, "decode AdmissionReview"},
		{"not json", "", "", []byte("{"), 400, "decode AdmissionReview"},
		{"array", "", "", []byte("[]"), 400, "decode AdmissionReview"},
		{"v1beta1", "", "", replace("admission.k8s.io/v1", "admission.k8s.io/v1beta1"), 400, `apiVersion "admission.k8s.io/v1beta1"`},
		{"wrong kind", "", "", replace(`"kind":"AdmissionReview"`, `"kind":"Pod"`), 400, `kind "Pod"`},
		{"no request", "", "", []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`), 400, "request: missing"},
		{"no uid", "", "", replace(`"uid":"uid-1",`, ""), 400, "request.uid: missing"},
		{"duplicate field", "", "", replace(`"uid":"uid-1",`, `"uid":"uid-1","uid":"uid-2",`), 400, "duplicate field"},
		{"response in request", "", "", replace(`{"kind"`, `{"response":{"uid":"x","allowed":true},"kind"`), 400, "response: set in a request"},
		{"no object", "", "", replace(`"object":`, `"unknownObject":`), 400, "request.object: missing"},
		{"unknown pod field", "", "", replace(`"spec":{`, `"spec":{"sidecarz":true,`), 400, `unknown field "spec.sidecarz"`},
		{"object not a pod", "", "", replace(`"metadata":`, `"kind":"Service","apiVersion":"v1","metadata":`), 400, "not v1 Pod"},
		{"too big", "", "", append(append([]byte(`{"apiVersion":"`), bytes.Repeat([]byte("x"), MaxRequestBytes)...), `"}`...), 400, "body larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			m := NewMetrics(reg)
			h := newTestHandler(t, m)
			method := tc.method
			if method == "" {
				method = http.MethodPost
			}
			ct := tc.contentType
			if ct == "" && tc.name != "no content type" {
				ct = "application/json; charset=utf-8"
			}
			req := httptest.NewRequest(method, "/mutate", bytes.NewReader(tc.body))
			if ct != "" {
				req.Header.Set("Content-Type", ct)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			assert.Equal(t, tc.code, rec.Code)
			assert.Contains(t, rec.Body.String(), tc.msg)
			assert.InDelta(t, 1, testutil.ToFloat64(m.requests.WithLabelValues(ResultBadRequest)), 0)
			assert.InDelta(t, 1, testutil.ToFloat64(m.errors.WithLabelValues(stageDecode)), 0)
		})
	}
}

func TestHandlerAllowsWhatItDoesNotInject(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	h := newTestHandler(t, m)

	// Not a CREATE.
	code, rev, msg := review(t, h, podReview(t, samplePod(), admissionv1.Update))
	require.Equal(t, http.StatusOK, code, msg)
	assert.True(t, rev.Response.Allowed)
	assert.Nil(t, rev.Response.Patch)
	assert.Equal(t, "uid-1", string(rev.Response.UID))

	// Not a pod: a Service, whatever its object holds.
	var in admissionv1.AdmissionReview
	require.NoError(t, json.Unmarshal(podReview(t, samplePod(), admissionv1.Create), &in))
	in.Request.Kind = metav1.GroupVersionKind{Version: "v1", Kind: "Service"}
	in.Request.Object.Raw = []byte(`{"kind":"Service"}`)
	b, err := json.Marshal(in)
	require.NoError(t, err)
	code, rev, msg = review(t, h, b)
	require.Equal(t, http.StatusOK, code, msg)
	assert.True(t, rev.Response.Allowed)
	assert.Nil(t, rev.Response.Patch)

	// A pod's subresource (pods/binding, pods/ephemeralcontainers).
	in.Request.Kind = metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}
	in.Request.SubResource = "ephemeralcontainers"
	b, err = json.Marshal(in)
	require.NoError(t, err)
	code, rev, msg = review(t, h, b)
	require.Equal(t, http.StatusOK, code, msg)
	assert.True(t, rev.Response.Allowed)

	assert.InDelta(t, 1, testutil.ToFloat64(m.skipped.WithLabelValues(SkipOperation)), 0)
	assert.InDelta(t, 2, testutil.ToFloat64(m.skipped.WithLabelValues(SkipNotPod)), 0)
	assert.InDelta(t, 3, testutil.ToFloat64(m.requests.WithLabelValues(ResultSkipped)), 0)
	assert.InDelta(t, 0, testutil.ToFloat64(m.injected), 0)
}

func TestHandlerInjectsAndRefuses(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	h := newTestHandler(t, m)

	code, rev, msg := review(t, h, podReview(t, samplePod(), admissionv1.Create))
	require.Equal(t, http.StatusOK, code, msg)
	require.True(t, rev.Response.Allowed)
	require.NotNil(t, rev.Response.PatchType)
	assert.Equal(t, admissionv1.PatchTypeJSONPatch, *rev.Response.PatchType)
	assert.NotEmpty(t, rev.Response.Patch)

	uid := int64(DefaultProxyUID)
	p := samplePod()
	p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{RunAsUser: &uid}
	code, rev, msg = review(t, h, podReview(t, p, admissionv1.Create))
	require.Equal(t, http.StatusOK, code, msg)
	assert.False(t, rev.Response.Allowed)
	require.NotNil(t, rev.Response.Result)
	assert.EqualValues(t, http.StatusForbidden, rev.Response.Result.Code)
	assert.Contains(t, rev.Response.Result.Message, "UID 1337")
	assert.Nil(t, rev.Response.Patch)

	assert.InDelta(t, 1, testutil.ToFloat64(m.injected), 0)
	assert.InDelta(t, 1, testutil.ToFloat64(m.requests.WithLabelValues(ResultInjected)), 0)
	assert.InDelta(t, 1, testutil.ToFloat64(m.requests.WithLabelValues(ResultRefused)), 0)
	n, err := testutil.GatherAndCount(reg, "egressguard_inject_request_duration_seconds")
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	assert.Empty(t, problems)
}

func TestVerifyPatchCatchesAMismatch(t *testing.T) {
	raw, err := json.Marshal(samplePod())
	require.NoError(t, err)
	want := samplePod()
	want.Spec.DNSPolicy = corev1.DNSNone
	// A patch that does something else than the injection meant.
	err = VerifyPatch(raw, []byte(`[{"op":"add","path":"/spec/dnsPolicy","value":"Default"}]`), want)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "differs from the injected pod")
	require.NoError(t, VerifyPatch(raw, []byte(`[{"op":"add","path":"/spec/dnsPolicy","value":"None"}]`), want))
	// A patch that does not apply.
	err = VerifyPatch(raw, []byte(`[{"op":"replace","path":"/spec/nothing/0","value":1}]`), want)
	require.Error(t, err)
}
