package deploy

import (
	"os"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// ingressPorts maps each rule's port list to the namespace selectors or
// CIDRs it admits, per NetworkPolicy.
func ingressPorts(np *networkingv1.NetworkPolicy) map[string][]string {
	out := map[string][]string{}
	for _, r := range np.Spec.Ingress {
		var from []string
		for _, p := range r.From {
			switch {
			case p.IPBlock != nil:
				from = append(from, p.IPBlock.CIDR)
			case p.NamespaceSelector != nil && len(p.NamespaceSelector.MatchLabels) == 0:
				from = append(from, "all namespaces")
			case p.NamespaceSelector != nil:
				from = append(from, p.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"])
			}
		}
		if len(r.From) == 0 {
			from = []string{"anywhere"}
		}
		for _, p := range r.Ports {
			out[string(*p.Protocol)+"/"+p.Port.String()] = from
		}
	}
	return out
}

// egressguard's namespace admits only the port each client needs: DNS and
// xDS from client namespaces, the webhook from the API server, the admin
// port (metrics) from the monitoring namespace. Nothing reaches the admin
// port from staging.
func TestIngressPolicyOfEgressguardNamespace(t *testing.T) {
	ch := loadChart(t)
	objs, _, err := renderChart(t, ch, "ingressPolicy: {apiServerCIDRs: [172.20.0.10/32]}", capabilities())
	require.NoError(t, err)
	got := map[string]map[string][]string{}
	for _, o := range objs {
		if np, ok := o.Obj.(*networkingv1.NetworkPolicy); ok && o.NS == releaseNS {
			require.Equal(t, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}, np.Spec.PolicyTypes, o.String())
			got[o.Name] = ingressPorts(np)
		}
	}
	assert.Equal(t, map[string][]string{
		"UDP/5353": {"all namespaces"},
		"TCP/5353": {"all namespaces"},
		"TCP/9901": {"monitoring"},
	}, got["egressguard-dnsguard-ingress"])
	assert.Equal(t, map[string][]string{
		"TCP/18000": {"all namespaces"},
		"TCP/8443":  {"172.20.0.10/32"},
		"TCP/9901":  {"monitoring"},
	}, got["egressguard-control-plane-ingress"])

	objs, _, err = renderChart(t, ch, "ingressPolicy: {enabled: false}", capabilities())
	require.NoError(t, err)
	for _, o := range objs {
		_, isNP := o.Obj.(*networkingv1.NetworkPolicy)
		assert.False(t, isNP && o.NS == releaseNS, "disabled: %s", o)
	}
}

// The kustomize base labels the namespace as production, so the staging
// egress policy does not count it as open non-production.
func TestNamespaceLabelledProduction(t *testing.T) {
	b, err := os.ReadFile("kustomize/base/namespace.yaml")
	require.NoError(t, err)
	objs, err := decodeManifests("namespace.yaml", b)
	require.NoError(t, err)
	for _, o := range objs {
		if ns, ok := o.Obj.(*corev1.Namespace); ok {
			assert.Equal(t, "production", ns.Labels["egressguard.io/environment"])
			return
		}
	}
	t.Fatal("no Namespace in the kustomize base")
}

// egressPolicies are the NetworkPolicies with egress rules (the staging
// policies), leaving out egressguard's own ingress policies.
func egressPolicies(objs []object) []*networkingv1.NetworkPolicy {
	var out []*networkingv1.NetworkPolicy
	for _, np := range find[*networkingv1.NetworkPolicy](objs) {
		if slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
			out = append(out, np)
		}
	}
	return out
}

// The chart's dnsguard answers only the configured sources and rate-limits
// UDP answers (on in the chart, off in `make run`).
func TestChartDNSExposure(t *testing.T) {
	objs, _, err := renderChart(t, loadChart(t), "dnsExposure: {allowFrom: [10.244.0.0/16]}", capabilities())
	require.NoError(t, err)
	dns := checkManifests(t, objs).dgConfig.DNS
	assert.Equal(t, []string{"10.244.0.0/16"}, dns.AllowFrom)
	assert.Equal(t, 100, dns.RRL.ResponsesPerSecond)
	assert.Equal(t, 2, dns.RRL.Slip)
	assert.Equal(t, 32, dns.RRL.IPv4PrefixLength)
	require.NoError(t, dns.Validate())
}
