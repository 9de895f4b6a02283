package nodeauth

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the guard's Prometheus metrics (namespace egressguard,
// subsystem nodeauth).
type metrics struct {
	checks  *prometheus.CounterVec
	reviews *prometheus.CounterVec
	cache   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	const ns, sub = "egressguard", "nodeauth"
	m := &metrics{
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "checks_total",
			Help: "xDS stream identity verdicts by evidence (peer, token) and result (verified, unknown, denied, would_deny): " +
				"each stream's first verdict, and each time a later check against a newer inventory starts failing."},
			[]string{"evidence", "result"}),
		reviews: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "token_reviews_total",
			Help: "TokenReview calls by result (authenticated, rejected, error)."}, []string{"result"}),
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "token_review_cache_total",
			Help: "Token lookups in the cache of successful TokenReviews by result (hit, miss); a miss asks the API server."},
			[]string{"result"}),
	}
	if reg != nil {
		reg.MustRegister(m.checks, m.reviews, m.cache)
	}
	return m
}

func (m *metrics) checked(e Evidence, r Result) { m.checks.WithLabelValues(string(e), string(r)).Inc() }

func (m *metrics) reviewed(err error) {
	switch {
	case err == nil:
		m.reviews.WithLabelValues("authenticated").Inc()
	case errors.Is(err, ErrTokenRejected):
		m.reviews.WithLabelValues("rejected").Inc()
	default:
		m.reviews.WithLabelValues("error").Inc()
	}
}

func (m *metrics) cacheLookup(hit bool) {
	if hit {
		m.cache.WithLabelValues("hit").Inc()
		return
	}
	m.cache.WithLabelValues("miss").Inc()
}
