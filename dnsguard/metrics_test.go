package dnsguard

import (
	"strings"
	"testing"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMetricNames(t *testing.T) {
	h := newHarness(t, nil)
	h.ask(t, "udp", "www.staging.example.com.", dns.TypeA)
	h.ask(t, "udp", "db.prod.example.com.", dns.TypeA)
	mfs, err := h.reg.Gather()
	require.NoError(t, err)
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	require.NoError(t, err)
	assert.Empty(t, problems)
	names := map[string]bool{}
	for _, mf := range mfs {
		assert.True(t, strings.HasPrefix(mf.GetName(), "egressguard_dnsguard_"), mf.GetName())
		names[mf.GetName()] = true
	}
	for _, want := range []string{
		"egressguard_dnsguard_queries_total",
		"egressguard_dnsguard_rule_hits_total",
		"egressguard_dnsguard_upstream_duration_seconds",
		"egressguard_dnsguard_cache_hits_total",
		"egressguard_dnsguard_cache_misses_total",
	} {
		assert.True(t, names[want], "missing %s", want)
	}
}

func TestTypeIndexBounded(t *testing.T) {
	for qt := range uint16(300) {
		i := typeIndex(qt)
		assert.LessOrEqual(t, i, otherType)
	}
	assert.Equal(t, otherType, typeIndex(dns.TypeNULL))
}
