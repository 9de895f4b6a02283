package decisionlog

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the decision-log writers' Prometheus metrics. A nil *Metrics
// records nothing.
type Metrics struct {
	written prometheus.Counter
	errors  *prometheus.CounterVec
	rotated prometheus.Counter
	dropped prometheus.Counter
}

// Error kinds, the values of the "kind" label of write_errors_total.
const (
	ErrorKindMarshal = "marshal"
	ErrorKindWrite   = "write"
)

// NewMetrics creates the decision-log metrics and registers them with reg
// (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		written: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "egressguard", Subsystem: "decisionlog", Name: "records_total",
			Help: "Decision records written.",
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "egressguard", Subsystem: "decisionlog", Name: "write_errors_total",
			Help: "Decision records lost, by kind (marshal, write).",
		}, []string{"kind"}),
		rotated: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "egressguard", Subsystem: "decisionlog", Name: "rotations_total",
			Help: "Decision log file rotations.",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "egressguard", Subsystem: "decisionlog", Name: "dropped_total",
			Help: "Decision records dropped because the write queue was full (the disk is slower than the deny rate).",
		}),
	}
	m.errors.WithLabelValues(ErrorKindMarshal)
	m.errors.WithLabelValues(ErrorKindWrite)
	if reg != nil {
		reg.MustRegister(m.written, m.errors, m.rotated, m.dropped)
	}
	return m
}

func (m *Metrics) wrote() {
	if m != nil {
		m.written.Inc()
	}
}

func (m *Metrics) failed(kind string) {
	if m != nil {
		m.errors.WithLabelValues(kind).Inc()
	}
}

func (m *Metrics) rotation() {
	if m != nil {
		m.rotated.Inc()
	}
}

func (m *Metrics) drop() {
	if m != nil {
		m.dropped.Inc()
	}
}
