package kube

import (
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"github.com/egressguard/egressguard/inventory"
)

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

type podOpt func(*corev1.Pod)

func withLabels(kv ...string) podOpt {
	return func(p *corev1.Pod) {
		if p.Labels == nil {
			p.Labels = map[string]string{}
		}
		for i := 0; i+1 < len(kv); i += 2 {
			p.Labels[kv[i]] = kv[i+1]
		}
	}
}

func ownedBy(kind, name string) podOpt {
	return func(p *corev1.Pod) {
		yes := true
		p.OwnerReferences = append(p.OwnerReferences, metav1.OwnerReference{
			APIVersion: "apps/v1", Kind: kind, Name: name, UID: types.UID("u-" + name), Controller: &yes,
		})
	}
}

func createdAt(d time.Duration) podOpt {
	return func(p *corev1.Pod) { p.CreationTimestamp = metav1.NewTime(t0.Add(d)) }
}

func phase(ph corev1.PodPhase) podOpt { return func(p *corev1.Pod) { p.Status.Phase = ph } }

func hostNetwork(p *corev1.Pod) { p.Spec.HostNetwork = true }

// pod builds a Running pod with the given IPs (primary first).
func pod(ns, name string, ips []string, opts ...podOpt) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + ns + "-" + name),
			CreationTimestamp: metav1.NewTime(t0)},
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	}
	for _, ip := range ips {
		p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: ip})
	}
	if len(ips) > 0 {
		p.Status.PodIP = ips[0]
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func namespace(name string, kv ...string) *corev1.Namespace {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}}}
	for i := 0; i+1 < len(kv); i += 2 {
		ns.Labels[kv[i]] = kv[i+1]
	}
	return ns
}

func TestWorkloadName(t *testing.T) {
	tests := []struct {
		name string
		pod  *corev1.Pod
		want string
	}{
		{"deployment via replicaset", pod("ns", "web-7d9f8c6b5-x2x4q", nil,
			ownedBy("ReplicaSet", "web-7d9f8c6b5"), withLabels(podTemplateHashLabel, "7d9f8c6b5")), "web"},
		{"deployment with dashes", pod("ns", "api-gw-5f6-abcde", nil,
			ownedBy("ReplicaSet", "api-gw-5f6"), withLabels(podTemplateHashLabel, "5f6")), "api-gw"},
		{"bare replicaset (no hash label)", pod("ns", "rs-abcde", nil, ownedBy("ReplicaSet", "rs")), "rs"},
		{"replicaset hash does not match", pod("ns", "rs-abcde", nil,
			ownedBy("ReplicaSet", "rs-1"), withLabels(podTemplateHashLabel, "2")), "rs-1"},
		{"statefulset", pod("ns", "db-0", nil, ownedBy("StatefulSet", "db")), "db"},
		{"daemonset", pod("ns", "agent-x7k2p", nil, ownedBy("DaemonSet", "agent")), "agent"},
		{"job", pod("ns", "migrate-abcde", nil, ownedBy("Job", "migrate")), "migrate"},
		{"job with short numeric suffix", pod("ns", "migrate-2-abcde", nil, ownedBy("Job", "migrate-2")), "migrate-2"},
		{"cronjob's job", pod("ns", "report-29876543-abcde", nil, ownedBy("Job", "report-29876543")), "report"},
		{"controller ref preferred", func() *corev1.Pod {
			p := pod("ns", "x", nil)
			no := false
			p.OwnerReferences = []metav1.OwnerReference{{Kind: "ConfigMap", Name: "cm", Controller: &no}}
			ownedBy("StatefulSet", "ss")(p)
			return p
		}(), "ss"},
		{"app.kubernetes.io/name label", pod("ns", "p", nil, withLabels(LabelAppName, "shop", LabelApp, "other")), "shop"},
		{"app label", pod("ns", "p", nil, withLabels(LabelApp, "cart")), "cart"},
		{"pod name", pod("ns", "lonely", nil), "lonely"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, WorkloadName(tt.pod))
		})
	}
}

func TestNodeID(t *testing.T) {
	assert.Equal(t, "sidecar~10.1.2.3~web-1.shop~shop.svc.cluster.local",
		NodeID(netip.MustParseAddr("10.1.2.3"), "web-1", "shop", ""))
	assert.Equal(t, "sidecar~fd00::1~web-1.shop~shop.svc.corp.local",
		NodeID(netip.MustParseAddr("fd00:0::1"), "web-1", "shop", "corp.local"))
}

func TestBuildWorkloads(t *testing.T) {
	o := buildOptions{defaultEnv: "staging", clusterDomain: "cluster.local"}
	nss := []*corev1.Namespace{namespace("prod", EnvironmentLabel, "production"), namespace("plain")}

	t.Run("environment precedence", func(t *testing.T) {
		ws, _ := buildWorkloads([]*corev1.Pod{
			pod("prod", "a", []string{"10.0.0.1"}),                                       // namespace label
			pod("prod", "b", []string{"10.0.0.2"}, withLabels(EnvironmentLabel, "qa")),   // pod label wins
			pod("plain", "c", []string{"10.0.0.3"}),                                      // default
			pod("missing", "d", []string{"10.0.0.4"}),                                    // namespace not seen
			pod("plain", "e", []string{"10.0.0.5"}, withLabels(EnvironmentLabel, "dev")), // pod label
		}, nss, o)
		got := map[string]string{}
		for _, w := range ws {
			got[w.Namespace+"/"+w.Name] = w.Environment
		}
		assert.Equal(t, map[string]string{
			"prod/a": "production", "prod/b": "qa", "plain/c": "staging", "missing/d": "staging", "plain/e": "dev",
		}, got)
	})

	t.Run("skips", func(t *testing.T) {
		ws, _ := buildWorkloads([]*corev1.Pod{
			pod("plain", "host", []string{"192.168.1.10"}, hostNetwork),
			pod("plain", "done", []string{"10.0.0.1"}, phase(corev1.PodSucceeded)),
			pod("plain", "failed", []string{"10.0.0.2"}, phase(corev1.PodFailed)),
			pod("plain", "unknown", []string{"10.0.0.3"}, phase(corev1.PodUnknown)),
			pod("plain", "noip", nil, phase(corev1.PodPending)),
			pod("plain", "badip", []string{"not-an-ip"}),
			pod("plain", "pending", []string{"10.0.0.4"}, phase(corev1.PodPending)),
		}, nss, o)
		require.Len(t, ws, 1)
		assert.Equal(t, "pending", ws[0].Name)
	})

	t.Run("dual stack and node ID", func(t *testing.T) {
		ws, _ := buildWorkloads([]*corev1.Pod{
			pod("plain", "web-1", []string{"fd00::a", "10.0.0.9"}, withLabels(LabelApp, "web")),
		}, nss, o)
		require.Len(t, ws, 1)
		assert.Equal(t, []netip.Prefix{netip.MustParsePrefix("10.0.0.9/32"), netip.MustParsePrefix("fd00::a/128")}, ws[0].IPs)
		assert.Equal(t, []string{"sidecar~fd00::a~web-1.plain~plain.svc.cluster.local"}, ws[0].NodeIDs)
	})

	t.Run("replicas aggregate, shared labels only", func(t *testing.T) {
		ws, _ := buildWorkloads([]*corev1.Pod{
			pod("plain", "web-h1-a", []string{"10.0.0.1"}, ownedBy("ReplicaSet", "web-h1"),
				withLabels(podTemplateHashLabel, "h1", "team", "pay", LabelApp, "web")),
			pod("plain", "web-h2-b", []string{"10.0.0.2"}, ownedBy("ReplicaSet", "web-h2"),
				withLabels(podTemplateHashLabel, "h2", "team", "pay", LabelApp, "web")),
		}, nss, o)
		require.Len(t, ws, 1)
		assert.Equal(t, "web", ws[0].Name)
		assert.Equal(t, map[string]string{"team": "pay", LabelApp: "web"}, ws[0].Labels)
		assert.Len(t, ws[0].IPs, 2)
		assert.Len(t, ws[0].NodeIDs, 2)
		_, err := inventory.NewSnapshot("staging", ws)
		require.NoError(t, err)
	})

	t.Run("environment change mid-rollout splits", func(t *testing.T) {
		ws, _ := buildWorkloads([]*corev1.Pod{
			pod("plain", "old", []string{"10.0.0.1"}, withLabels(LabelApp, "web", EnvironmentLabel, "qa")),
			pod("plain", "new", []string{"10.0.0.2"}, withLabels(LabelApp, "web", EnvironmentLabel, "dev"), createdAt(time.Minute)),
		}, nss, o)
		got := map[string]string{}
		for _, w := range ws {
			got[w.Name] = w.Environment
		}
		assert.Equal(t, map[string]string{"web": "dev", "old": "qa"}, got)
		_, err := inventory.NewSnapshot("staging", ws)
		require.NoError(t, err)
	})

	t.Run("IP conflict: newer pod wins", func(t *testing.T) {
		for _, order := range []string{"old first", "new first"} {
			t.Run(order, func(t *testing.T) {
				older := pod("plain", "old", []string{"10.0.0.7"})
				newer := pod("plain", "new", []string{"10.0.0.7"}, createdAt(time.Minute))
				in := []*corev1.Pod{older, newer}
				if order == "new first" {
					in = []*corev1.Pod{newer, older}
				}
				ws, conflicts := buildWorkloads(in, nss, o)
				require.Len(t, ws, 1)
				assert.Equal(t, "new", ws[0].Name)
				assert.Equal(t, []Conflict{{IP: netip.MustParseAddr("10.0.0.7"), Kept: "plain/new", Dropped: "plain/old"}}, conflicts)
				_, err := inventory.NewSnapshot("staging", ws)
				require.NoError(t, err)
			})
		}
	})
}

func TestSlimPod(t *testing.T) {
	p := pod("ns", "a", []string{"10.0.0.1", "fd00::1"}, withLabels("k", "v"), ownedBy("StatefulSet", "s"), hostNetwork)
	p.Annotations = map[string]string{"big": "annotation"}
	p.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubelet"}}
	p.Spec.Containers = []corev1.Container{{Name: "c", Image: "img"}}
	got, err := slimPod(p)
	require.NoError(t, err)
	sp := got.(*corev1.Pod)
	assert.Nil(t, sp.Annotations)
	assert.Nil(t, sp.ManagedFields)
	assert.Empty(t, sp.Spec.Containers)
	// Everything the builder reads survives.
	assert.Equal(t, WorkloadName(p), WorkloadName(sp))
	assert.Equal(t, PodIPs(p), PodIPs(sp))
	assert.Equal(t, p.Labels, sp.Labels)
	assert.True(t, sp.Spec.HostNetwork)
	assert.Equal(t, p.Status.Phase, sp.Status.Phase)
	assert.Equal(t, p.CreationTimestamp, sp.CreationTimestamp)

	tomb := cache.DeletedFinalStateUnknown{Key: "ns/a", Obj: p}
	got, err = slimPod(tomb)
	require.NoError(t, err)
	assert.Equal(t, tomb, got)
}

func injected(p *corev1.Pod) {
	if p.Annotations == nil {
		p.Annotations = map[string]string{}
	}
	p.Annotations[annotationInjected] = "envoy:1"
	p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "app", Image: "app"}, corev1.Container{Name: proxyContainerName, Image: "envoy:1"})
}

func TestSidecar(t *testing.T) {
	marked := pod("ns", "m", []string{"10.0.0.9"}, func(p *corev1.Pod) { p.Annotations = map[string]string{annotationInjected: "x"} })
	container := pod("ns", "c", []string{"10.0.0.8"}, func(p *corev1.Pod) {
		p.Spec.Containers = []corev1.Container{{Name: proxyContainerName}}
	})
	both := pod("ns", "b", []string{"10.0.0.7"}, injected)
	assert.False(t, HasSidecar(marked), "the marker alone")
	assert.False(t, HasSidecar(container), "the container alone")
	assert.True(t, HasSidecar(both))

	// What the informer keeps of a pod (slimPod) still shows the sidecar.
	p := pod("ns", "a", []string{"10.0.0.1"}, injected)
	p.Annotations["big"] = "annotation"
	got, err := slimPod(p)
	require.NoError(t, err)
	sp := got.(*corev1.Pod)
	assert.True(t, HasSidecar(sp))
	assert.Equal(t, map[string]string{annotationInjected: "envoy:1"}, sp.Annotations)
	assert.Equal(t, []corev1.Container{{Name: proxyContainerName}}, sp.Spec.Containers)

	// A workload has the sidecar only when every pod does.
	ws, _ := buildWorkloads([]*corev1.Pod{
		pod("shop", "web-1", []string{"10.1.0.1"}, ownedBy("StatefulSet", "web"), injected),
		pod("shop", "web-2", []string{"10.1.0.2"}, ownedBy("StatefulSet", "web"), injected),
		pod("shop", "api-1", []string{"10.1.0.3"}, ownedBy("StatefulSet", "api"), injected),
		pod("shop", "api-2", []string{"10.1.0.4"}, ownedBy("StatefulSet", "api")),
	}, nil, buildOptions{defaultEnv: "staging"})
	require.Len(t, ws, 2)
	assert.Equal(t, "api", ws[0].Name)
	assert.False(t, ws[0].Sidecar, "api-2 has no sidecar")
	assert.Equal(t, "web", ws[1].Name)
	assert.True(t, ws[1].Sidecar)
}
