package kube

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/egressguard/egressguard/inventory"
)

// Metrics are the Kubernetes inventory source's Prometheus metrics
// (namespace egressguard, subsystem inventory_kube). A nil *Metrics
// records nothing.
type Metrics struct {
	rebuilds    *prometheus.CounterVec
	workloads   prometheus.Gauge
	lastSuccess prometheus.Gauge
	conflicts   prometheus.Counter
}

// NewMetrics creates the metrics and registers them with reg (nil: not
// registered, for tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		rebuilds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "egressguard", Subsystem: "inventory_kube", Name: "rebuilds_total",
			Help: "Inventory rebuilds from the Kubernetes caches by result (success, failure: last good kept, unchanged).",
		}, []string{"result"}),
		workloads: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "egressguard", Subsystem: "inventory_kube", Name: "workloads",
			Help: "Workloads in the Kubernetes inventory currently served.",
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "egressguard", Subsystem: "inventory_kube", Name: "last_rebuild_success_timestamp_seconds",
			Help: "Unix time of the last rebuild that published a new inventory.",
		}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "egressguard", Subsystem: "inventory_kube", Name: "ip_conflicts_total",
			Help: "Pods left out of a rebuild because a newer live pod claimed the same IP (counted at every rebuild while it lasts).",
		}),
	}
	for _, r := range []string{inventory.ResultSuccess, inventory.ResultFailure, inventory.ResultUnchanged} {
		m.rebuilds.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.rebuilds, m.workloads, m.lastSuccess, m.conflicts)
	}
	return m
}

func (m *Metrics) observe(result string, s *inventory.Snapshot, now time.Time) {
	if m == nil {
		return
	}
	m.rebuilds.WithLabelValues(result).Inc()
	if result == inventory.ResultSuccess && s != nil {
		m.workloads.Set(float64(s.Len()))
		m.lastSuccess.Set(float64(now.UnixNano()) / 1e9)
	}
}

func (m *Metrics) addConflicts(n int) {
	if m == nil || n == 0 {
		return
	}
	m.conflicts.Add(float64(n))
}
