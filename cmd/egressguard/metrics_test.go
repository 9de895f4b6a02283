package main

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
)

// TestMetricNamesLint lints every metric serve registers, in the one
// registry serve passes to every component (the CoreDNS habit).
func TestMetricNamesLint(t *testing.T) {
	cfg := testServeConfig(t)
	g, err := build(context.Background(), zaptest.NewLogger(t), cfg)
	require.NoError(t, err)
	mfs, err := g.reg.Gather()
	require.NoError(t, err)
	var ours int
	for _, mf := range mfs {
		if len(mf.GetName()) > len("egressguard_") && mf.GetName()[:len("egressguard_")] == "egressguard_" {
			ours++
		}
	}
	assert.Greater(t, ours, 10, "the components register their metrics in serve's registry")
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	require.NoError(t, err)
	assert.Empty(t, problems)
}
