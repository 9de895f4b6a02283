package xds

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the control plane's Prometheus metrics (namespace egressguard,
// subsystem xds).
type Metrics struct {
	connected     prometheus.Gauge
	streams       prometheus.Gauge
	streamsRefuse prometheus.Counter
	pushes        *prometheus.CounterVec
	pushLatency   prometheus.Histogram
	nacks         *prometheus.CounterVec
	unknownTypes  prometheus.Counter
	droppedBuilds prometheus.Counter
	rebuilds      *prometheus.CounterVec
	rebuildTime   prometheus.Histogram
	classes       prometheus.Gauge
	chainChecks   *prometheus.CounterVec
	certReloads   *prometheus.CounterVec
}

// NewMetrics creates and registers the metrics on reg (nil: not registered,
// for tests and benchmarks).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	const ns, sub = "egressguard", "xds"
	m := &Metrics{
		connected: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "connected_proxies",
			Help: "Nodes with at least one open xDS stream."}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "streams",
			Help: "Open xDS streams."}),
		streamsRefuse: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "streams_refused_total",
			Help: "Streams refused (over the stream limit, or a node without an ID)."}),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "pushes_total",
			Help: "Discovery responses handed to streams, by resource type."}, []string{"type"}),
		pushLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "push_latency_seconds",
			Help:    "Time from publishing a node's snapshot to sending it on a stream.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "nacks_total",
			Help: "Configurations rejected by clients, by resource type."}, []string{"type"}),
		unknownTypes: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "unknown_type_requests_total",
			Help: "Requests for resource types that are not served."}),
		droppedBuilds: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "dropped_builds_total",
			Help: "Node configurations built but not published because a newer build for the node was already settled."}),
		rebuilds: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "rebuilds_total",
			Help: "Snapshot rebuilds, by result (success, error)."}, []string{"result"}),
		rebuildTime: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "rebuild_duration_seconds",
			Help:    "Time to rebuild and publish every connected node's snapshot.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		classes: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "classes",
			Help: "Distinct plans (workload classes) with connected nodes."}),
		chainChecks: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "chain_checks_total",
			Help: "Filter-chain ambiguity checks of built listeners, by result source (computed, memo: the same listener bytes were checked before)."}, []string{"source"}),
		certReloads: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "certificate_reloads_total",
			Help: "Re-reads of the xDS serving certificate after it changed on disk, by result (ok, error: the last good pair stays)."}, []string{"result"}),
	}
	m.certReloads.WithLabelValues("ok")
	m.certReloads.WithLabelValues("error")
	if reg != nil {
		reg.MustRegister(m.connected, m.streams, m.streamsRefuse, m.pushes, m.pushLatency, m.nacks,
			m.unknownTypes, m.droppedBuilds, m.rebuilds, m.rebuildTime, m.classes, m.chainChecks, m.certReloads)
	}
	return m
}

// certReloaded counts a re-read of the serving certificate pair.
func (m *Metrics) certReloaded(ok bool) {
	if ok {
		m.certReloads.WithLabelValues("ok").Inc()
	} else {
		m.certReloads.WithLabelValues("error").Inc()
	}
}
