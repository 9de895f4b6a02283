package inject

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"

	"github.com/egressguard/egressguard/inventory/kube"
	"github.com/egressguard/egressguard/xds"
)

// containerEnv expands a container's environment as the kubelet does:
// in order, fieldRef values from the pod, $(VAR) references to variables
// defined before.
func containerEnv(t *testing.T, c corev1.Container, fields map[string]string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom != nil {
			v, ok := fields[e.ValueFrom.FieldRef.FieldPath]
			require.True(t, ok, "field %s", e.ValueFrom.FieldRef.FieldPath)
			out[e.Name] = v
			continue
		}
		out[e.Name] = expand(e.Value, out)
	}
	return out
}

// TestProxylessPod: a pod annotated as a proxyless gRPC client gets, in
// every application container, a bootstrap whose node ID (once the kubelet
// has expanded it) is the pod's inventory node ID in its proxyless form,
// egressguard's xDS address, and the grpc-go settings; a bootstrap the
// application set itself is replaced, and the sidecar is left alone.
func TestProxylessPod(t *testing.T) {
	inj, err := NewInjector(testConfig())
	require.NoError(t, err)
	pod := samplePod()
	pod.Annotations[AnnotationProxylessGRPC] = "true"
	pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: "worker", Image: "w",
		// A spec the admission checks accept (it cannot leave the capture).
		SecurityContext: &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
		Env:             []corev1.EnvVar{{Name: "GRPC_XDS_BOOTSTRAP", Value: "/etc/own-bootstrap.json"}, {Name: "POD_IP", Value: "kept"}}})
	out, d, err := inj.Inject(pod, "payments")
	require.NoError(t, err)
	require.True(t, d.Injected)
	assert.Contains(t, d.Notes, "container worker: replaced GRPC_XDS_BOOTSTRAP with egressguard's proxyless gRPC setting")

	fields := map[string]string{"status.podIP": "10.244.3.17", "metadata.name": "checkout-7d9f8c6b5-x2x9q", "metadata.namespace": "payments"}
	want := kube.NodeID(netip.MustParseAddr("10.244.3.17"), "checkout-7d9f8c6b5-x2x9q", "payments", "cluster.local")
	for _, c := range out.Spec.Containers {
		env := containerEnv(t, c, fields)
		if c.Name == ProxyContainerName {
			assert.NotContains(t, env, EnvGRPCBootstrapConfig)
			continue
		}
		assert.Empty(t, env["GRPC_XDS_BOOTSTRAP"], c.Name)
		for _, name := range grpcFeatureEnv {
			assert.Equal(t, "true", env[name], "%s %s", c.Name, name)
		}
		var b struct {
			XDSServers []struct {
				ServerURI string `json:"server_uri"`
			} `json:"xds_servers"`
			Node struct {
				ID string `json:"id"`
			} `json:"node"`
		}
		require.NoError(t, json.Unmarshal([]byte(env[EnvGRPCBootstrapConfig]), &b), c.Name)
		assert.Equal(t, "egressguard.egressguard.svc:18000", b.XDSServers[0].ServerURI)
		assert.True(t, strings.HasPrefix(b.Node.ID, xds.ProxylessNodePrefix), b.Node.ID)
		assert.Equal(t, strings.TrimPrefix(want, "sidecar~"), strings.TrimPrefix(b.Node.ID, xds.ProxylessNodePrefix),
			"the proxyless node ID is the pod's inventory node ID with another first field")
	}
	assert.Equal(t, "kept", containerEnv(t, out.Spec.Containers[1], fields)["POD_IP"], "the application's own variables stay")

	// Unexpanded, the node ID is ProxylessNodeID's $(VAR) form.
	var raw struct {
		Node struct {
			ID string `json:"id"`
		} `json:"node"`
	}
	b, err := ProxylessBootstrap(testConfig())
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal([]byte(expand(b, nil)), &raw))
	assert.Equal(t, ProxylessNodeID("cluster.local"), raw.Node.ID)

	// Injecting the result again changes nothing.
	again, d, err := inj.Inject(out, "payments")
	require.NoError(t, err)
	assert.Equal(t, SkipAlreadyInjected, d.Reason)
	assert.Same(t, out, again)
}

func TestProxylessPodNotAnnotated(t *testing.T) {
	inj, err := NewInjector(testConfig())
	require.NoError(t, err)
	out, _, err := inj.Inject(samplePod(), "shop")
	require.NoError(t, err)
	assert.Empty(t, out.Spec.Containers[0].Env)
}

// The API server refuses a projected ServiceAccount token in a pod without
// a serviceAccountName (found against the real API server, whose
// ServiceAccount admission plugin was off): the webhook sets "default", as
// that plugin would.
func TestProxylessTokenNeedsServiceAccount(t *testing.T) {
	inj, err := NewInjector(tlsConfig())
	require.NoError(t, err)
	p := samplePod()
	p.Annotations[AnnotationProxylessGRPC] = "true"
	out, d, err := inj.Inject(p, "shop")
	require.NoError(t, err)
	assert.Equal(t, "default", out.Spec.ServiceAccountName)
	assert.Contains(t, d.Notes, `serviceAccountName set to "default" for the proxyless client's projected token`)

	p.Spec.ServiceAccountName = "checkout"
	out, _, err = inj.Inject(p, "shop")
	require.NoError(t, err)
	assert.Equal(t, "checkout", out.Spec.ServiceAccountName, "a pod's own account is kept")
	_, d, err = inj.Inject(out, "shop")
	require.NoError(t, err)
	assert.Equal(t, SkipAlreadyInjected, d.Reason)
}
