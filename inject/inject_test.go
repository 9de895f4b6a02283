package inject

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func samplePod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "web-", Annotations: map[string]string{"a": "b"}},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "web", Image: "nginx", SecurityContext: &corev1.SecurityContext{
				AllowPrivilegeEscalation: ptr(false),
				Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			}}},
		},
	}
}

func TestInjectDoesNotWriteItsInput(t *testing.T) {
	inj, err := NewInjector(testConfig())
	require.NoError(t, err)
	in := samplePod()
	before := in.DeepCopy()
	out, d, err := inj.Inject(in, "shop")
	require.NoError(t, err)
	assert.True(t, d.Injected)
	assert.True(t, equality.Semantic.DeepEqual(before, in), "input changed")
	assert.Len(t, out.Spec.Containers, 2)
	assert.Equal(t, "envoyproxy/envoy:v1.40.0", out.Annotations[AnnotationInjected])
}

func TestInjectSkips(t *testing.T) {
	inj, err := NewInjector(testConfig())
	require.NoError(t, err)
	inj.hostNet = hostNetworkGate{check: testOptOuts}
	for _, tc := range []struct {
		name   string
		mutate func(*corev1.Pod)
		reason string
	}{
		{"host network, opted out", func(p *corev1.Pod) {
			p.Spec.HostNetwork = true
			p.Annotations[AnnotationHostNetworkOptOut] = "shop-agent"
		}, SkipHostNetwork},
		{"opt-out false", func(p *corev1.Pod) { p.Annotations[AnnotationInject] = "false" }, SkipOptedOut},
		{"opt-out disabled", func(p *corev1.Pod) { p.Annotations[AnnotationInject] = " Disabled " }, SkipOptedOut},
		{"opt-out no", func(p *corev1.Pod) { p.Annotations[AnnotationInject] = "NO" }, SkipOptedOut},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := samplePod()
			tc.mutate(p)
			out, d, err := inj.Inject(p, "shop")
			require.NoError(t, err)
			assert.False(t, d.Injected)
			assert.Equal(t, tc.reason, d.Reason)
			assert.Same(t, p, out)
		})
	}
	// Anything else is not an opt-out: fail towards enforcement.
	for _, v := range []string{"true", "enabled", "", "maybe", "0"} {
		p := samplePod()
		p.Annotations[AnnotationInject] = v
		_, d, err := inj.Inject(p, "shop")
		require.NoError(t, err)
		assert.True(t, d.Injected, "annotation %q", v)
	}
}

func TestInjectReplacesOurContainersWhenNotFullyInjected(t *testing.T) {
	inj, err := NewInjector(testConfig())
	require.NoError(t, err)
	p := samplePod()
	// A proxy container of the same name but no marker and no init
	// container: not injected, so it is replaced (it cannot be used to
	// skip injection).
	p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: ProxyContainerName, Image: "busybox"})
	out, d, err := inj.Inject(p, "shop")
	require.NoError(t, err)
	require.True(t, d.Injected)
	assert.Contains(t, d.Notes, "replaced existing container "+ProxyContainerName)
	require.Len(t, out.Spec.Containers, 2)
	assert.Equal(t, "envoyproxy/envoy:v1.40.0", out.Spec.Containers[1].Image)

	// The marker alone does not count as injected either.
	p = samplePod()
	p.Annotations[AnnotationInjected] = "whatever"
	_, d, err = inj.Inject(p, "shop")
	require.NoError(t, err)
	assert.True(t, d.Injected)
}

func TestInjectRefusesProxyUID(t *testing.T) {
	inj, err := NewInjector(testConfig())
	require.NoError(t, err)
	uid := int64(DefaultProxyUID)
	p := samplePod()
	p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: &uid}
	p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{RunAsUser: &uid}
	_, _, err = inj.Inject(p, "shop")
	refused, ok := err.(*RefusedError) //nolint:errorlint // Inject returns it unwrapped
	require.True(t, ok, "%v", err)
	assert.Contains(t, refused.Reason, "spec.securityContext.runAsUser is 1337, the egressguard sidecar's UID")
	assert.Contains(t, refused.Reason, "spec.containers[web]: runs as UID 1337")
}

func TestInjectRefusesTooManySearchPaths(t *testing.T) {
	inj, err := NewInjector(testConfig())
	require.NoError(t, err)
	p := samplePod()
	p.Spec.DNSConfig = &corev1.PodDNSConfig{}
	for i := range 30 {
		p.Spec.DNSConfig.Searches = append(p.Spec.DNSConfig.Searches, "d"+string(rune('a'+i%26))+string(rune('a'+i/26))+".example.com")
	}
	_, _, err = inj.Inject(p, "shop")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "spec.dnsConfig.searches: 33 search paths")
}

func TestInjectNeedsANamespace(t *testing.T) {
	inj, err := NewInjector(testConfig())
	require.NoError(t, err)
	_, _, err = inj.Inject(samplePod(), "")
	require.Error(t, err)
	_, _, err = inj.Inject(nil, "shop")
	require.Error(t, err)
}

func TestIsGuaranteed(t *testing.T) {
	res := func(req, lim string) corev1.ResourceRequirements {
		r := corev1.ResourceRequirements{}
		if req != "" {
			r.Requests = corev1.ResourceList{corev1.ResourceCPU: mustQ(req), corev1.ResourceMemory: mustQ("1Gi")}
		}
		if lim != "" {
			r.Limits = corev1.ResourceList{corev1.ResourceCPU: mustQ(lim), corev1.ResourceMemory: mustQ("1Gi")}
		}
		return r
	}
	for _, tc := range []struct {
		name string
		rs   []corev1.ResourceRequirements
		want bool
	}{
		{"equal", []corev1.ResourceRequirements{res("1", "1")}, true},
		{"limits only (requests default to them)", []corev1.ResourceRequirements{res("", "500m")}, true},
		{"burstable", []corev1.ResourceRequirements{res("1", "2")}, false},
		{"best effort", []corev1.ResourceRequirements{res("", "")}, false},
		{"one of two", []corev1.ResourceRequirements{res("1", "1"), res("1", "")}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &corev1.Pod{}
			for _, r := range tc.rs {
				p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Resources: r})
			}
			assert.Equal(t, tc.want, isGuaranteed(p))
		})
	}
}

func mustQ(s string) resource.Quantity { return resource.MustParse(s) }
