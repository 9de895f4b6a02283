package kubeapi

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestClusterVersion(t *testing.T) {
	c := startCluster(t)
	v, err := c.client.Discovery().ServerVersion()
	require.NoError(t, err)
	require.Equal(t, kubeVersion, v.GitVersion)
}
