package dnsguard

import (
	"errors"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

const (
	metricsNamespace = "egressguard"
	metricsSubsystem = "dnsguard"
)

// Outcome labels of egressguard_dnsguard_queries_total{action}.
const (
	actionAllow    = "allow"
	actionDeny     = "deny"
	actionRedirect = "redirect"
	actionServfail = "servfail"
	actionRefused  = "refused" // not class IN, or not a query
)

var queryActions = [...]string{actionAllow, actionDeny, actionRedirect, actionServfail, actionRefused}

const (
	idxAllow = iota
	idxDeny
	idxRedirect
	idxServfail
	idxRefused
)

// queryTypes are the qtype label values; anything else is "other", so the
// label's cardinality stays bounded whatever clients send.
var queryTypes = [...]uint16{
	dns.TypeA, dns.TypeAAAA, dns.TypeHTTPS, dns.TypeSVCB, dns.TypeCNAME, dns.TypeMX, dns.TypeTXT,
	dns.TypeSRV, dns.TypePTR, dns.TypeNS, dns.TypeSOA, dns.TypeANY, dns.TypeCAA, dns.TypeDS, dns.TypeDNSKEY,
}

const otherType = len(queryTypes)

func typeIndex(t uint16) int {
	for i, q := range queryTypes {
		if q == t {
			return i
		}
	}
	return otherType
}

// Metrics are dnsguard's Prometheus collectors. The per-query counters are
// resolved once here so that the query path only does atomic adds.
type Metrics struct {
	queries [len(queryActions)][len(queryTypes) + 1]prometheus.Counter

	// RuleHits counts non-allow answers by rule and action (deny,
	// redirect, would_deny).
	RuleHits *prometheus.CounterVec
	// WouldDeny counts answers a report-mode rule would have denied or
	// redirected.
	WouldDeny prometheus.Counter
	// AnswerBlocked counts allowed names whose answer led into production
	// (CNAME cloaking, production IPs, SVCB hints).
	AnswerBlocked prometheus.Counter

	CacheHits      prometheus.Counter
	CacheMisses    prometheus.Counter
	CacheEvictions prometheus.Counter
	CacheEntries   prometheus.GaugeFunc
	StaleAnswers   prometheus.Counter

	UpstreamDuration  *prometheus.HistogramVec
	upstreamErrors    *prometheus.CounterVec
	UpstreamMalformed prometheus.Counter
	TCPRetries        prometheus.Counter

	// Malformed counts queries that could not be parsed (dropped or
	// answered FORMERR).
	Malformed prometheus.Counter
	// PlanErrors counts queries answered SERVFAIL because no plan could be
	// had for the client's workload.
	PlanErrors prometheus.Counter
	// Rebuilds counts Rebuild calls (policy or inventory changes).
	Rebuilds prometheus.Counter

	cacheLen func() float64
}

// NewMetrics creates and registers dnsguard's collectors on reg (nil: not
// registered, e.g. in benchmarks).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{}
	qv := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: "queries_total",
		Help: "DNS queries answered, by action (allow, deny, redirect, servfail, refused) and query type.",
	}, []string{"action", "qtype"})
	for a, action := range queryActions {
		for t := range len(queryTypes) + 1 {
			name := "other"
			if t < len(queryTypes) {
				name = dns.TypeToString[queryTypes[t]]
			}
			m.queries[a][t] = qv.WithLabelValues(action, name)
		}
	}
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: name, Help: help,
		})
	}
	m.RuleHits = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: "rule_hits_total",
		Help: "Answers that were not a plain allow, by deciding rule and action (deny, redirect, would_deny).",
	}, []string{"rule", "action"})
	m.WouldDeny = counter("would_deny_total", "Queries answered allow because the deciding rule is in report mode, that would otherwise have been denied or redirected.")
	m.AnswerBlocked = counter("answer_blocked_total", "Allowed names whose upstream answer led into production (CNAME/DNAME target, A/AAAA, SVCB/HTTPS hint) and was replaced by the deny answer.")
	m.CacheHits = counter("cache_hits_total", "Queries answered from the cache.")
	m.CacheMisses = counter("cache_misses_total", "Queries that had to be forwarded upstream.")
	m.CacheEvictions = counter("cache_evictions_total", "Cache entries evicted to stay within cache_size.")
	m.StaleAnswers = counter("stale_answers_total", "Expired cache entries served because no upstream answered (serve-stale, EDE 3).")
	m.CacheEntries = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: "cache_entries",
		Help: "Entries in the answer cache.",
	}, func() float64 {
		if m.cacheLen == nil {
			return 0
		}
		return m.cacheLen()
	})
	m.UpstreamDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: "upstream_duration_seconds",
		Help:    "Time for one attempt at one upstream, by upstream and result (ok, timeout, network).",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"upstream", "result"})
	m.upstreamErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: "upstream_errors_total",
		Help: "Failed attempts at an upstream, by upstream and kind (timeout, network).",
	}, []string{"upstream", "kind"})
	m.UpstreamMalformed = counter("upstream_malformed_total", "Malformed or non-DNS packets received from upstreams.")
	m.TCPRetries = counter("tcp_retries_total", "Upstream answers that came back truncated over UDP and were retried over TCP.")
	m.Malformed = counter("malformed_queries_total", "Queries that could not be parsed (dropped or answered FORMERR).")
	m.PlanErrors = counter("plan_errors_total", "Queries answered SERVFAIL because no policy plan could be had for the client's workload.")
	m.Rebuilds = counter("rebuilds_total", "Plan rebuilds (policy or inventory changes) applied.")
	if reg != nil {
		for _, c := range []prometheus.Collector{
			qv, m.RuleHits, m.WouldDeny, m.AnswerBlocked, m.CacheHits, m.CacheMisses, m.CacheEvictions,
			m.StaleAnswers, m.CacheEntries, m.UpstreamDuration, m.upstreamErrors, m.UpstreamMalformed,
			m.TCPRetries, m.Malformed, m.PlanErrors, m.Rebuilds,
		} {
			reg.MustRegister(c)
		}
	}
	return m
}

func (m *Metrics) query(action int, qtype uint16) {
	m.queries[action][typeIndex(qtype)].Inc()
}

func (m *Metrics) observeUpstream(name string, err error, d time.Duration) {
	result := "ok"
	if err != nil {
		result = failNetwork.String()
		var ue *upstreamError
		if errors.As(err, &ue) {
			result = ue.kind.String()
		}
		m.upstreamErrors.WithLabelValues(name, result).Inc()
	}
	m.UpstreamDuration.WithLabelValues(name, result).Observe(d.Seconds())
}
