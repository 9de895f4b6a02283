package inject

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	admissionv1 "k8s.io/api/admission/v1"
)

// BenchmarkHandler is one admission of a Deployment's pod, as the API
// server sends it: decode, inject, build the JSON patch, verify it with the
// second library, encode the review. The webhook sits in the path of every
// pod creation in an injected namespace, with a 10 s timeout.
//
//	go test -run '^$' -bench Handler -benchmem ./inject/
func BenchmarkHandler(b *testing.B) {
	h, err := NewHandler(testConfig(), NewMetrics(prometheus.NewRegistry()), zap.NewNop())
	require.NoError(b, err)
	for _, tc := range []struct {
		name string
		body []byte
	}{
		{"inject", podReview(b, samplePod(), admissionv1.Create)},
		{"skip-update", podReview(b, samplePod(), admissionv1.Update)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest(http.MethodPost, "/mutate", bytes.NewReader(tc.body))
				req.Header.Set("Content-Type", "application/json")
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatalf("status %d: %s", w.Code, w.Body)
				}
			}
		})
	}
}
