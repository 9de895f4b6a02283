package kube

import (
	"context"
	"errors"
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/egressguard/egressguard/inventory"
)

const waitFor = 10 * time.Second

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", waitFor, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type running struct {
	src     *Source
	metrics *Metrics
	client  *fake.Clientset
	cancel  context.CancelFunc
	done    chan error
}

// start runs a source on a fake clientset holding objs and waits for it to sync.
func start(t *testing.T, objs ...k8sruntime.Object) *running {
	t.Helper()
	return startWith(t, Options{}, objs...)
}

// startWith is start with options (Debounce, SyncTimeout and Metrics are
// set by the test).
func startWith(t *testing.T, opts Options, objs ...k8sruntime.Object) *running {
	t.Helper()
	client := fake.NewClientset(objs...)
	m := NewMetrics(prometheus.NewRegistry())
	opts.Debounce, opts.SyncTimeout, opts.Metrics = 10*time.Millisecond, waitFor, m
	src := New(client, zaptest.NewLogger(t), opts)
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{src: src, metrics: m, client: client, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- src.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	eventually(t, "caches to sync", src.Synced)
	return r
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		assert.NoError(t, err)
		r.done <- nil // let a second stop return at once
	case <-time.After(waitFor):
		t.Fatal("Run did not return after cancel")
	}
}

func (r *running) lookup(ip string) (*inventory.Workload, bool) {
	return r.src.Current().LookupIP(netip.MustParseAddr(ip))
}

func (r *running) envOf(ip string) string {
	w, ok := r.lookup(ip)
	if !ok {
		return ""
	}
	return w.Environment
}

func (r *running) nameOf(ip string) string {
	w, ok := r.lookup(ip)
	if !ok {
		return ""
	}
	return w.Name
}

func TestSourceEnvironmentPrecedence(t *testing.T) {
	r := start(t,
		namespace("payments", EnvironmentLabel, "production"),
		namespace("shop"),
		pod("payments", "ledger-0", []string{"10.0.0.1"}, ownedBy("StatefulSet", "ledger")),
		pod("payments", "canary", []string{"10.0.0.2"}, withLabels(EnvironmentLabel, "qa")),
		pod("shop", "cart-1", []string{"10.0.0.3"}, withLabels(LabelApp, "cart")),
	)
	assert.Equal(t, "production", r.envOf("10.0.0.1"))
	assert.Equal(t, "qa", r.envOf("10.0.0.2"))
	assert.Equal(t, "staging", r.envOf("10.0.0.3"))
	assert.Equal(t, "ledger", r.nameOf("10.0.0.1"))
	assert.Equal(t, "cart", r.nameOf("10.0.0.3"))
	w, ok := r.src.Current().LookupNode("sidecar~10.0.0.1~ledger-0.payments~payments.svc.cluster.local")
	require.True(t, ok)
	assert.Equal(t, "ledger", w.Name)
	assert.Equal(t, "payments", w.Namespace)
	// Unknown callers: the default environment.
	assert.Equal(t, "staging", r.src.Current().ResolveIP(netip.MustParseAddr("10.9.9.9")).Environment)
}

func TestSourceOwnersDualStackHostNetwork(t *testing.T) {
	r := start(t,
		namespace("apps"),
		pod("apps", "web-5d8f-abcde", []string{"10.1.0.1", "fd00::1"},
			ownedBy("ReplicaSet", "web-5d8f"), withLabels(podTemplateHashLabel, "5d8f", "team", "pay")),
		pod("apps", "nightly-29876543-xyz", []string{"10.1.0.2"}, ownedBy("Job", "nightly-29876543")),
		pod("apps", "agent-q1", []string{"192.168.0.5"}, ownedBy("DaemonSet", "agent"), hostNetwork),
		pod("apps", "fluent-q1", []string{"10.1.0.3"}, ownedBy("DaemonSet", "fluent")),
	)
	assert.Equal(t, "web", r.nameOf("10.1.0.1"))
	assert.Equal(t, "web", r.nameOf("fd00::1"))
	assert.Equal(t, "nightly", r.nameOf("10.1.0.2"))
	assert.Equal(t, "fluent", r.nameOf("10.1.0.3"))
	_, ok := r.lookup("192.168.0.5")
	assert.False(t, ok, "hostNetwork pod must not claim its node's IP")
	w, _ := r.lookup("fd00::1")
	require.NotNil(t, w)
	assert.Equal(t, []netip.Prefix{netip.MustParsePrefix("10.1.0.1/32"), netip.MustParsePrefix("fd00::1/128")}, w.IPs)
	assert.Equal(t, map[string]string{podTemplateHashLabel: "5d8f", "team": "pay"}, w.Labels)
}

func TestSourceNamespaceRelabel(t *testing.T) {
	r := start(t, namespace("shop"),
		pod("shop", "a", []string{"10.0.0.1"}),
		pod("shop", "b", []string{"10.0.0.2"}, withLabels(EnvironmentLabel, "dev")))
	require.Equal(t, "staging", r.envOf("10.0.0.1"))

	ctx := context.Background()
	ns := namespace("shop", EnvironmentLabel, "production")
	_, err := r.client.CoreV1().Namespaces().Update(ctx, ns, metav1.UpdateOptions{})
	require.NoError(t, err)
	eventually(t, "namespace label to re-label its pod", func() bool { return r.envOf("10.0.0.1") == "production" })
	assert.Equal(t, "dev", r.envOf("10.0.0.2"), "the pod's own label still wins")

	_, err = r.client.CoreV1().Namespaces().Update(ctx, namespace("shop"), metav1.UpdateOptions{})
	require.NoError(t, err)
	eventually(t, "label removal to restore the default", func() bool { return r.envOf("10.0.0.1") == "staging" })

	// A pod that finishes leaves the inventory.
	done := pod("shop", "b", []string{"10.0.0.2"}, withLabels(EnvironmentLabel, "dev"), phase(corev1.PodSucceeded))
	_, err = r.client.CoreV1().Pods("shop").Update(ctx, done, metav1.UpdateOptions{})
	require.NoError(t, err)
	eventually(t, "finished pod to leave", func() bool { _, ok := r.lookup("10.0.0.2"); return !ok })
}

func TestSourcePodIPReuse(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name        string
		deleteFirst bool
	}{
		{"delete then add", true},
		{"add then delete", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := start(t, namespace("shop"),
				pod("shop", "old", []string{"10.0.0.7", "fd00::7"}, withLabels(LabelApp, "old")))
			require.Equal(t, "old", r.nameOf("10.0.0.7"))
			pods := r.client.CoreV1().Pods("shop")
			newPod := pod("shop", "new", []string{"10.0.0.7", "fd00::7"}, withLabels(LabelApp, "new"), createdAt(time.Minute))

			if tt.deleteFirst {
				require.NoError(t, pods.Delete(ctx, "old", metav1.DeleteOptions{}))
				eventually(t, "old pod to leave", func() bool { _, ok := r.lookup("10.0.0.7"); return !ok })
				_, err := pods.Create(ctx, newPod, metav1.CreateOptions{})
				require.NoError(t, err)
			} else {
				_, err := pods.Create(ctx, newPod, metav1.CreateOptions{})
				require.NoError(t, err)
				// Both pods live: the newer one owns the address.
				eventually(t, "new pod to take the IP", func() bool {
					return r.nameOf("10.0.0.7") == "new" && r.nameOf("fd00::7") == "new"
				})
				assert.Positive(t, counterValue(t, r.metrics.conflicts), "the conflict is counted")
				_, ok := r.src.Current().LookupNode("sidecar~10.0.0.7~old.shop~shop.svc.cluster.local")
				assert.False(t, ok, "the older pod is left out while the conflict lasts")
				require.NoError(t, pods.Delete(ctx, "old", metav1.DeleteOptions{}))
				// The conflict ends with the rebuild that follows the delete.
				eventually(t, "conflict to clear", func() bool { return len(r.src.lastConflictsSnapshot()) == 0 })
			}
			eventually(t, "new pod to own the IP", func() bool {
				return r.nameOf("10.0.0.7") == "new" && r.nameOf("fd00::7") == "new"
			})
			for _, w := range r.src.Current().Workloads() {
				assert.NotEqual(t, "old", w.Name)
			}
			_, ok := r.src.Current().LookupNode("sidecar~10.0.0.7~new.shop~shop.svc.cluster.local")
			assert.True(t, ok)
		})
	}
}

func TestSourceSubscribers(t *testing.T) {
	r := start(t, namespace("shop"))
	var calls atomic.Int32
	var sawPod atomic.Bool
	cancel := r.src.Subscribe(func() {
		calls.Add(1)
		if _, ok := r.src.Current().LookupIP(netip.MustParseAddr("10.0.0.1")); ok {
			sawPod.Store(true)
		}
	})
	_, err := r.client.CoreV1().Pods("shop").Create(context.Background(),
		pod("shop", "a", []string{"10.0.0.1"}), metav1.CreateOptions{})
	require.NoError(t, err)
	eventually(t, "subscriber to see the new pod", sawPod.Load)

	// A change that does not alter the inventory (a pod's unrelated
	// annotation) does not notify.
	n := calls.Load()
	unchanged := counterValue(t, r.metrics.rebuilds.WithLabelValues(inventory.ResultUnchanged))
	p := pod("shop", "a", []string{"10.0.0.1"})
	p.Annotations = map[string]string{"x": "y"}
	_, err = r.client.CoreV1().Pods("shop").Update(context.Background(), p, metav1.UpdateOptions{})
	require.NoError(t, err)
	eventually(t, "the unchanged rebuild", func() bool {
		return counterValue(t, r.metrics.rebuilds.WithLabelValues(inventory.ResultUnchanged)) > unchanged
	})
	assert.Equal(t, n, calls.Load(), "no call for an unchanged inventory")

	cancel()
	_, err = r.client.CoreV1().Pods("shop").Create(context.Background(),
		pod("shop", "b", []string{"10.0.0.2"}), metav1.CreateOptions{})
	require.NoError(t, err)
	eventually(t, "second pod", func() bool { _, ok := r.lookup("10.0.0.2"); return ok })
	assert.Equal(t, n, calls.Load(), "no call for an unchanged inventory nor after cancel")
}

func TestSourceSyncTimeout(t *testing.T) {
	client := fake.NewClientset()
	client.PrependReactor("list", "pods", func(k8stesting.Action) (bool, k8sruntime.Object, error) {
		return true, nil, errors.New("pods is forbidden")
	})
	src := New(client, zaptest.NewLogger(t), Options{SyncTimeout: 200 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	err := src.Run(ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "did not sync within 200ms")
	assert.False(t, src.Synced())
	assert.Equal(t, 0, src.Current().Len())
	assert.Error(t, src.Run(ctx), "Run twice")
}

func TestSourceNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	r := start(t, namespace("shop"), pod("shop", "a", []string{"10.0.0.1"}))
	_, err := r.client.CoreV1().Pods("shop").Create(context.Background(),
		pod("shop", "b", []string{"10.0.0.2"}), metav1.CreateOptions{})
	require.NoError(t, err)
	eventually(t, "pod b", func() bool { _, ok := r.lookup("10.0.0.2"); return ok })
	r.stop(t)
	eventually(t, "goroutines to exit", func() bool { return runtime.NumGoroutine() <= before })
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	require.NoError(t, c.Write(&m))
	return m.GetCounter().GetValue()
}

func onNode(node string) podOpt { return func(p *corev1.Pod) { p.Spec.NodeName = node } }

func TestSourceNodeName(t *testing.T) {
	r := startWith(t, Options{NodeName: "node-a"}, namespace("apps"),
		pod("apps", "here", []string{"10.1.0.1"}, onNode("node-a")),
		pod("apps", "there", []string{"10.2.0.1"}, onNode("node-b")))
	assert.Equal(t, "here", r.nameOf("10.1.0.1"))
	_, ok := r.lookup("10.2.0.1")
	assert.False(t, ok, "a pod on another node must not be in a node-local inventory")

	// The API server is asked for this node's pods only; namespaces are
	// still listed cluster-wide.
	var podSel, nsSel []string
	for _, a := range r.client.Actions() {
		if l, ok := a.(k8stesting.ListAction); ok {
			sel := l.GetListRestrictions().Fields.String()
			switch a.GetResource().Resource {
			case "pods":
				podSel = append(podSel, sel)
			case "namespaces":
				nsSel = append(nsSel, sel)
			}
		}
	}
	require.NotEmpty(t, podSel)
	for _, s := range podSel {
		assert.Equal(t, "spec.nodeName=node-a", s)
	}
	require.NotEmpty(t, nsSel)
	for _, s := range nsSel {
		assert.Empty(t, s)
	}

	// A pod rescheduled onto this node appears.
	_, err := r.client.CoreV1().Pods("apps").Update(context.Background(),
		pod("apps", "there", []string{"10.2.0.1"}, onNode("node-a")), metav1.UpdateOptions{})
	require.NoError(t, err)
	eventually(t, "pod moved to this node to appear", func() bool { return r.nameOf("10.2.0.1") == "there" })
}
