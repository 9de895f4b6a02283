package inject

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/egressguard/egressguard/inventory/kube"
)

// expand does what the kubelet does to a container's args: $(VAR) is
// replaced by the variable's value when env defines it (else left as is),
// $$ becomes $, and an escaped reference is never expanded.
func expand(s string, env map[string]string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+2+end]
			if v, ok := env[name]; ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

func TestExpandLikeTheKubelet(t *testing.T) {
	env := map[string]string{"A": "1"}
	for in, want := range map[string]string{
		"$(A)":     "1",
		"$$(A)":    "$(A)",
		"$(B)":     "$(B)",
		"x$y":      "x$y",
		"$$$(A)$$": "$1$",
		"$(A":      "$(A",
	} {
		assert.Equal(t, want, expand(in, env), in)
	}
}

// TestSidecarBootstrapExpandsToValidNodeID renders the sidecar's
// arguments, expands them as the kubelet would for sample pods (IPv4 and
// IPv6), and checks that the bootstrap then parses, validates (every Any
// inside included) and carries kube.NodeID's node ID.
func TestSidecarBootstrapExpandsToValidNodeID(t *testing.T) {
	inj, err := NewInjector(testConfig())
	require.NoError(t, err)
	c := inj.proxyContainer(false)
	require.Len(t, c.Args, 3)
	require.Equal(t, "--config-yaml", c.Args[0])
	envNames := map[string]string{}
	for _, e := range c.Env {
		require.NotNil(t, e.ValueFrom)
		envNames[e.Name] = e.ValueFrom.FieldRef.FieldPath
	}
	assert.Equal(t, map[string]string{EnvPodIP: "status.podIP", EnvPodName: "metadata.name", EnvPodNamespace: "metadata.namespace"}, envNames)

	for _, tc := range []struct{ ip, pod, ns string }{
		{"10.244.3.17", "checkout-7d9f8c6b5-x2x9q", "shop"},
		{"fd00:10:244::3:11", "ledger-0", "payments"},
	} {
		t.Run(tc.ip, func(t *testing.T) {
			out := expand(c.Args[1], map[string]string{EnvPodIP: tc.ip, EnvPodName: tc.pod, EnvPodNamespace: tc.ns})
			assert.NotContains(t, out, "$(")
			b, err := ParseBootstrap([]byte(out))
			require.NoError(t, err)
			assert.Equal(t, kube.NodeID(netip.MustParseAddr(tc.ip), tc.pod, tc.ns, "cluster.local"), b.GetNode().GetId())
			assert.Equal(t, "127.0.0.1", b.GetAdmin().GetAddress().GetSocketAddress().GetAddress())
			assert.EqualValues(t, AdminPort, b.GetAdmin().GetAddress().GetSocketAddress().GetPortValue())
			require.Len(t, b.GetStaticResources().GetListeners(), 1)
			assert.EqualValues(t, ReadyPort, b.GetStaticResources().GetListeners()[0].GetAddress().GetSocketAddress().GetPortValue())
		})
	}
	// Unexpanded, the node ID is the $(VAR) form.
	b, err := ParseBootstrap([]byte(expand(c.Args[1], nil)))
	require.NoError(t, err)
	assert.Equal(t, SidecarNodeID("cluster.local"), b.GetNode().GetId())
}

func TestSidecarBootstrapRejectsBadAddress(t *testing.T) {
	c := testConfig()
	c.XDSAddress = "no-port"
	_, err := SidecarBootstrap(c, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "xds address")
}
