package policy

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metric label values for reloads.
const (
	reloadSuccess   = "success"
	reloadError     = "error"
	reloadUnchanged = "unchanged"
)

// Metrics are the policy engine's Prometheus metrics.
type Metrics struct {
	Reloads           *prometheus.CounterVec
	PlanCompile       prometheus.Histogram
	ClassesCached     prometheus.Gauge
	ExpiredExceptions prometheus.Gauge
	PlanErrors        prometheus.Counter
}

// NewMetrics creates the metrics and registers them on reg (nil: not
// registered, for tests and offline commands).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "egressguard", Subsystem: "policy", Name: "reloads_total",
			Help: "Policy (catalog + Rego) loads by result: success, unchanged or error (the last good policy keeps serving).",
		}, []string{"result"}),
		PlanCompile: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "egressguard", Subsystem: "policy", Name: "plan_compile_seconds",
			Help:    "Time to evaluate the Rego plan for one workload class and compile it.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 4, 10),
		}),
		ClassesCached: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "egressguard", Subsystem: "policy", Name: "classes_cached",
			Help: "Workload classes with a compiled plan for the current policy version.",
		}),
		ExpiredExceptions: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "egressguard", Subsystem: "policy", Name: "exceptions_expired",
			Help: "Catalog exceptions ignored because they have expired (remove or renew them).",
		}),
		PlanErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "egressguard", Subsystem: "policy", Name: "plan_errors_total",
			Help: "Workload classes whose plan could not be evaluated or compiled.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.Reloads, m.PlanCompile, m.ClassesCached, m.ExpiredExceptions, m.PlanErrors)
	}
	return m
}
