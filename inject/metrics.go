package inject

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Results of one admission request (label "result" of requests_total).
const (
	ResultInjected   = "injected"    // the pod was injected
	ResultSkipped    = "skipped"     // admitted unchanged (or only reordered), see skipped_total
	ResultRefused    = "refused"     // denied: RefusedError
	ResultBadRequest = "bad_request" // HTTP 400: not a well-formed AdmissionReview
	ResultError      = "error"       // HTTP 500: injection or patch failed
)

// Metrics of the webhook, in namespace egressguard, subsystem inject.
type Metrics struct {
	requests *prometheus.CounterVec
	injected prometheus.Counter
	skipped  *prometheus.CounterVec
	// wouldDeny counts report-mode admissions enforce mode would refuse.
	wouldDeny prometheus.Counter
	errors    *prometheus.CounterVec
	duration  prometheus.Histogram
	certs     *prometheus.CounterVec
}

// NewMetrics creates the webhook's metrics and registers them with reg
// (nil: not registered, for tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "egressguard", Subsystem: "inject", Name: "requests_total",
			Help: "Admission requests by result: injected, skipped, refused, bad_request, error.",
		}, []string{"result"}),
		injected: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "egressguard", Subsystem: "inject", Name: "injected_total",
			Help: "Pods injected with the sidecar, init container and DNS config.",
		}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "egressguard", Subsystem: "inject", Name: "skipped_total",
			Help: "Requests admitted without injection, by reason: host_network, opted_out, already_injected, not_a_pod, not_create.",
		}, []string{"reason"}),
		wouldDeny: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "egressguard", Subsystem: "inject", Name: "would_deny_total",
			Help: "Pods admitted in report mode that enforce mode would refuse (host network, containers that could leave traffic capture).",
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "egressguard", Subsystem: "inject", Name: "errors_total",
			Help: "Requests that failed, by stage: decode, inject, patch, encode.",
		}, []string{"stage"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "egressguard", Subsystem: "inject", Name: "request_duration_seconds",
			Help:    "Time to answer one admission request.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}),
		certs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "egressguard", Subsystem: "inject", Name: "certificate_reloads_total",
			Help: "Reloads of the serving certificate after its files changed, by result: ok, error (the last good pair stays in use).",
		}, []string{"result"}),
	}
	// Known label values start at zero so dashboards and alerts see them.
	for _, r := range []string{ResultInjected, ResultSkipped, ResultRefused, ResultBadRequest, ResultError} {
		m.requests.WithLabelValues(r)
	}
	for _, r := range []string{SkipHostNetwork, SkipOptedOut, SkipAlreadyInjected, SkipNotPod, SkipOperation} {
		m.skipped.WithLabelValues(r)
	}
	for _, s := range []string{stageDecode, stageInject, stagePatch, stageEncode} {
		m.errors.WithLabelValues(s)
	}
	m.certs.WithLabelValues("ok")
	m.certs.WithLabelValues("error")
	if reg != nil {
		reg.MustRegister(m.requests, m.injected, m.skipped, m.wouldDeny, m.errors, m.duration, m.certs)
	}
	return m
}

// Stages of a request that can fail (label "stage" of errors_total).
const (
	stageDecode = "decode"
	stageInject = "inject"
	stagePatch  = "patch"
	stageEncode = "encode"
)

// certReloaded counts a re-read of the webhook's certificate pair.
func (m *Metrics) certReloaded(ok bool) {
	if ok {
		m.certs.WithLabelValues("ok").Inc()
	} else {
		m.certs.WithLabelValues("error").Inc()
	}
}
