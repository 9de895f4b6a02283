package inventory

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Reload results, the values of the "result" label of reloads_total.
const (
	ResultSuccess   = "success"
	ResultFailure   = "failure"
	ResultUnchanged = "unchanged"
)

// Metrics are the inventory's Prometheus metrics. A nil *Metrics records
// nothing.
type Metrics struct {
	reloads     *prometheus.CounterVec
	workloads   prometheus.Gauge
	lastSuccess prometheus.Gauge
}

// NewMetrics creates the inventory metrics and registers them with reg
// (nil: not registered, for tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "egressguard", Subsystem: "inventory", Name: "reloads_total",
			Help: "Inventory reload attempts by result (success, failure: last good kept, unchanged).",
		}, []string{"result"}),
		workloads: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "egressguard", Subsystem: "inventory", Name: "workloads",
			Help: "Workloads in the inventory currently served.",
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "egressguard", Subsystem: "inventory", Name: "last_reload_success_timestamp_seconds",
			Help: "Unix time of the last successful inventory load.",
		}),
	}
	for _, r := range []string{ResultSuccess, ResultFailure, ResultUnchanged} {
		m.reloads.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.reloads, m.workloads, m.lastSuccess)
	}
	return m
}

func (m *Metrics) observe(result string, s *Snapshot, now time.Time) {
	if m == nil {
		return
	}
	m.reloads.WithLabelValues(result).Inc()
	if result == ResultSuccess && s != nil {
		m.workloads.Set(float64(s.Len()))
		m.lastSuccess.Set(float64(now.UnixNano()) / 1e9)
	}
}
