package main

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/klog/v2"

	"github.com/egressguard/egressguard/inventory/kube"
)

func kubeNamespace(name string, labels map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}

// loopbackPod is a running pod whose IP is 127.0.0.1, so the test's own DNS
// queries come from it.
func loopbackPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "billing-0", Namespace: "ops", Labels: map[string]string{"app": "billing"}},
		Spec:       corev1.PodSpec{NodeName: "node-a"},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "127.0.0.1",
			PodIPs: []corev1.PodIP{{IP: "127.0.0.1"}}},
	}
}

// TestServeKubernetesInventory runs serve with the Kubernetes inventory
// (a fake clientset): the caller's environment comes from its namespace
// label, and relabelling the namespace changes dnsguard's answers live.
func TestServeKubernetesInventory(t *testing.T) {
	client := fake.NewClientset(kubeNamespace("ops", map[string]string{kube.EnvironmentLabel: "production"}), loopbackPod())
	// The first list of namespaces waits until the test lets it through,
	// so the guard is observed before its inventory has synced.
	release := make(chan struct{})
	var once sync.Once
	client.PrependReactor("list", "namespaces", func(k8stesting.Action) (bool, k8sruntime.Object, error) {
		once.Do(func() { <-release })
		return false, nil, nil
	})
	cfg := testServeConfig(t)
	cfg.Inventory.Source = inventoryKubernetes
	cfg.Inventory.Kubernetes.client = client
	cfg.Inventory.Kubernetes.NodeName = "node-a"
	require.NoError(t, cfg.validate())
	addrs := startGuard(t, cfg)

	readyz := func() int {
		code, _ := httpGet(t, "http://"+addrs.Admin.String()+"/readyz")
		return code
	}
	query := func() int {
		m := new(dns.Msg)
		m.SetQuestion("api.stripe.com.", dns.TypeA)
		r, _, err := (&dns.Client{Timeout: 5 * time.Second}).Exchange(m, addrs.DNS.String())
		require.NoError(t, err)
		return r.Rcode
	}
	assert.Equal(t, http.StatusServiceUnavailable, readyz(), "not ready before the inventory has synced")
	assert.Equal(t, dns.RcodeNameError, query(), "until then the caller is the default (staging) workload")
	close(release)
	require.Eventually(t, func() bool { return readyz() == http.StatusOK }, 10*time.Second, 20*time.Millisecond)
	// The resolver's per-client plan cache may lag the rebuild by a moment.
	require.Eventually(t, func() bool { return query() == dns.RcodeSuccess }, 10*time.Second, 20*time.Millisecond,
		"a pod in a production namespace resolves production names")

	_, err := client.CoreV1().Namespaces().Update(context.Background(), kubeNamespace("ops", nil), metav1.UpdateOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return query() == dns.RcodeNameError }, 10*time.Second, 20*time.Millisecond,
		"without the label the namespace is staging (the default) and the name is blocked")

	code, body := httpGet(t, "http://"+addrs.Admin.String()+"/api/decide?workload=ops/billing&dest=api.stripe.com:443")
	require.Equal(t, http.StatusOK, code, body)
	assert.Contains(t, body, `"action": "deny"`)
}

// TestServeKubernetesSyncFailure: when the API server never answers the
// first list, serve exits with an error that says what to check (the pod
// restarts), instead of serving an empty inventory forever.
func TestServeKubernetesSyncFailure(t *testing.T) {
	client := fake.NewClientset()
	client.PrependReactor("list", "*", func(k8stesting.Action) (bool, k8sruntime.Object, error) {
		return true, nil, errors.New("forbidden: the service account may not list")
	})
	cfg := testServeConfig(t)
	cfg.Inventory.Source = inventoryKubernetes
	cfg.Inventory.Kubernetes.client = client
	cfg.Inventory.Kubernetes.SyncTimeout = 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := serve(ctx, zaptest.NewLogger(t), cfg, nil)
	require.Error(t, err)
	assert.ErrorContains(t, err, "did not sync")
	assert.ErrorContains(t, err, "list and watch")
}

func TestInventoryConfigValidate(t *testing.T) {
	for name, tc := range map[string]struct {
		sets []string
		want string
	}{
		"unknown source":     {[]string{"inventory.source=consul"}, `inventory.source: "consul" is not one of file, kubernetes`},
		"file without file":  {[]string{"inventory.source=file"}, "inventory.file: required"},
		"two sources":        {[]string{"inventory.source=kubernetes", "inventory.file=x.yaml"}, "use one source"},
		"bad cluster domain": {[]string{"inventory.source=kubernetes", "inventory.kubernetes.cluster_domain=a b"}, "inventory.kubernetes.cluster_domain"},
		"no default env":     {[]string{"inventory.source=kubernetes", `inventory.kubernetes.default_environment=""`}, "inventory.kubernetes.default_environment"},
		"bad sync timeout":   {[]string{"inventory.source=kubernetes", "inventory.kubernetes.sync_timeout=0s"}, "inventory.kubernetes.sync_timeout"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg, err := loadServeConfig("", tc.sets...)
			require.NoError(t, err)
			assert.ErrorContains(t, cfg.validate(), tc.want)
		})
	}
	cfg, err := loadServeConfig("", "inventory.source=kubernetes", "inventory.kubernetes.node_name=node-a")
	require.NoError(t, err)
	assert.NoError(t, cfg.validate())
}

// TestValidateKubernetesOffline: validate checks a Kubernetes-source
// configuration without contacting (or needing) a cluster.
func TestValidateKubernetesOffline(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "missing"))
	out, err := runCLI(t, "validate", "--set", "inventory.source=kubernetes", "--set", "dns.listen=", "--set", "xds.listen=")
	require.NoError(t, err, out)
	assert.Contains(t, out, "inventory kubernetes (not contacted)")
}

// TestKubeRESTConfig: a named kubeconfig is used; a broken one is an error
// that names it; outside a cluster with nothing configured the error says
// what to set.
func TestKubeRESTConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "kubeconfig")
	require.NoError(t, os.WriteFile(good, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`), 0o600))
	rc, err := kubeRESTConfig(good)
	require.NoError(t, err)
	assert.Equal(t, "https://127.0.0.1:6443", rc.Host)

	bad := filepath.Join(dir, "bad")
	require.NoError(t, os.WriteFile(bad, []byte("clusters: [oops"), 0o600))
	_, err = kubeRESTConfig(bad)
	assert.ErrorContains(t, err, "kubeconfig "+bad)

	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBECONFIG", filepath.Join(dir, "missing"))
	t.Setenv("HOME", dir)
	_, err = kubeRESTConfig("")
	assert.ErrorContains(t, err, "--kubeconfig")
}

// TestRouteKlog: client-go's klog messages (a failing watch, as in
// TestServeKubernetesSyncFailure) reach our logger as structured entries.
func TestRouteKlog(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	routeKlog(zap.New(core))
	t.Cleanup(klog.ClearLogger)
	klog.ErrorS(errors.New("forbidden"), "Failed to watch", "type", "*v1.Pod")
	entries := logs.FilterLoggerName("client-go").FilterMessage("Failed to watch").All()
	require.Len(t, entries, 1)
	assert.Equal(t, "*v1.Pod", entries[0].ContextMap()["type"])
	assert.Equal(t, "forbidden", entries[0].ContextMap()["error"])
}

// TestIdentityGuardWiring: xds.identity installs the node identity guard
// (set from the command line like any key); mode off installs none, and a
// bad mode fails validation with its field path.
func TestIdentityGuardWiring(t *testing.T) {
	for mode, want := range map[string]bool{"off": false, "report": true, "enforce": true} {
		cfg := testServeConfig(t)
		require.NoError(t, applySet(&cfg, "xds.identity.mode="+mode))
		require.NoError(t, cfg.validate())
		g, err := build(t.Context(), zaptest.NewLogger(t), cfg)
		require.NoError(t, err)
		assert.Equal(t, want, g.identity != nil, mode)
	}
	cfg := testServeConfig(t)
	require.NoError(t, applySet(&cfg, "xds.identity.mode=block"))
	require.ErrorContains(t, cfg.validate(), `xds.identity.mode: "block" is not one of off, report, enforce`)
}
