package xds

import (
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/google/go-cmp/cmp"
)

// TestPrepareRouteFromParts: a route configuration assembled from its
// shell and its (cached) virtual hosts' wire forms decodes to the very
// message that was translated, and the enforcer's eager path validates the
// same resources as Validate.
func TestPrepareRouteFromParts(t *testing.T) {
	p := loadSpec(t, "testdata/in/sidecar-mixed.yaml")
	vhc := newVHostCache(true)
	res, err := translateSidecar(p, NodeSettings{}, vhc)
	require.NoError(t, err)
	require.NoError(t, validateWith(res, vhc, nil))
	require.NotZero(t, vhc.Len())
	for _, rc := range res.Routes {
		pr, err := prepareRoute(rc, vhc)
		require.NoError(t, err)
		got := &routev3.RouteConfiguration{}
		require.NoError(t, proto.Unmarshal(pr.any.Value, got))
		assert.Empty(t, cmp.Diff(rc, got, protocmp.Transform()), rc.Name)
		again, err := prepareRoute(rc, vhc)
		require.NoError(t, err)
		assert.Equal(t, pr.version, again.version, "assembly is deterministic")
		pr.msg = nil
		m, err := pr.message()
		require.NoError(t, err)
		assert.True(t, proto.Equal(rc, m), "message() decodes a dropped resource")
	}
	// The lazy path (TranslateSidecar) gives equal resources.
	lazy, err := TranslateSidecar(p, NodeSettings{})
	require.NoError(t, err)
	require.Len(t, lazy.Routes, len(res.Routes))
	for i := range lazy.Routes {
		assert.True(t, proto.Equal(lazy.Routes[i], res.Routes[i]))
	}
	assert.True(t, proto.Equal(lazy.Listeners[0], res.Listeners[0]))
}
