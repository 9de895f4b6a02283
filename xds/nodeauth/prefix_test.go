package nodeauth_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/egressguard/egressguard/xds"
	"github.com/egressguard/egressguard/xds/nodeauth"
)

// The guard checks a proxyless node ID against the pod the xDS enforcer
// serves it as: both must read the prefix the same way.
func TestProxylessPrefixMatchesEnforcer(t *testing.T) {
	assert.Equal(t, xds.ProxylessNodePrefix, nodeauth.ProxylessNodePrefix)
}
