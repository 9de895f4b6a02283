package stagingca

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics of the staging CA, in namespace egressguard, subsystem stagingca.
type metrics struct {
	minted     prometheus.Counter
	hits       prometheus.Counter
	refused    prometheus.Counter
	mintErrors prometheus.Counter
	permitErrs prometheus.Counter
	reloads    *prometheus.CounterVec
	notAfter   prometheus.Gauge
	hosts      prometheus.Gauge
	excess     prometheus.Gauge
}

func newMetrics() *metrics {
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: "egressguard", Subsystem: "stagingca", Name: name, Help: help}
	}
	return &metrics{
		minted:     prometheus.NewCounter(prometheus.CounterOpts(opts("leaves_minted_total", "Leaf certificates minted (first use of a host, renewal, or after a key rotation)."))),
		hits:       prometheus.NewCounter(prometheus.CounterOpts(opts("leaf_cache_hits_total", "Leaf requests answered from the per-host cache."))),
		refused:    prometheus.NewCounter(prometheus.CounterOpts(opts("leaves_refused_total", "Leaf requests for hosts the CA does not permit."))),
		mintErrors: prometheus.NewCounter(prometheus.CounterOpts(opts("mint_errors_total", "Leaves that could not be minted or failed the self-check against the anchor."))),
		permitErrs: prometheus.NewCounter(prometheus.CounterOpts(opts("set_permitted_errors_total",
			"Host sets refused by SetPermitted (a malformed pattern, or a cert_file whose constraints do not admit a host); the previous hosts stay."))),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts(opts("key_reloads_total",
			"Reloads of the CA key files after their contents changed, by result: ok, error (the last good keys stay in use).")), []string{"result"}),
		notAfter: prometheus.NewGauge(prometheus.GaugeOpts(opts("anchor_not_after_timestamp_seconds", "NotAfter of the current anchor (Unix seconds)."))),
		hosts:    prometheus.NewGauge(prometheus.GaugeOpts(opts("permitted_hosts", "Host patterns the CA may vouch for."))),
		excess: prometheus.NewGauge(prometheus.GaugeOpts(opts("constraints_excess",
			"Name constraints of cert_file that permit more than the intercepted hosts (0 when the anchor is generated)."))),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.minted, m.hits, m.refused, m.mintErrors, m.permitErrs, m.reloads, m.notAfter, m.hosts, m.excess}
}

func (m *metrics) setAnchor(st *state) {
	m.notAfter.Set(float64(st.anchor.NotAfter.Unix()))
	m.hosts.Set(float64(len(st.hosts)))
}

// Describe implements prometheus.Collector: register the Authority with
// serve's registry.
func (a *Authority) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range a.m.collectors() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (a *Authority) Collect(ch chan<- prometheus.Metric) {
	for _, c := range a.m.collectors() {
		c.Collect(ch)
	}
}
