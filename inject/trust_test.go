package inject

import (
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
)

// The trust bundle is part of what "already injected" proves: a pod whose
// trust container, mounts or variables are missing or stale is injected
// again, and a pod carrying them exactly is left alone.
func TestTrustBundleProof(t *testing.T) {
	var anchors atomic.Pointer[[]byte]
	first := stagingAnchors(t)()
	anchors.Store(&first)
	inj, err := NewInjector(tlsConfig(), WithStagingCA(func() []byte { return *anchors.Load() }))
	require.NoError(t, err)
	injected, d, err := inj.Inject(samplePod(), "shop")
	require.NoError(t, err)
	require.True(t, d.Injected)
	require.Equal(t, []string{InitContainerName, TrustContainerName}, names(injected.Spec.InitContainers))

	_, d, err = inj.Inject(injected.DeepCopy(), "shop")
	require.NoError(t, err)
	assert.Equal(t, SkipAlreadyInjected, d.Reason, "proven as it is")

	for name, tamper := range map[string]func(*corev1.Pod){
		"trust container missing": func(p *corev1.Pod) { p.Spec.InitContainers = p.Spec.InitContainers[:1] },
		"trust container with other anchors": func(p *corev1.Pod) {
			p.Spec.InitContainers[1].Env[0].Value = "-----BEGIN CERTIFICATE-----\nforged\n"
		},
		"trust container as root": func(p *corev1.Pod) { p.Spec.InitContainers[1].SecurityContext.RunAsUser = ptr(int64(0)) },
		"app variable changed": func(p *corev1.Pod) {
			env := p.Spec.Containers[0].Env
			env[slices.IndexFunc(env, func(e corev1.EnvVar) bool { return e.Name == "SSL_CERT_FILE" })].Value = "/etc/evil.pem"
		},
		"app mount removed": func(p *corev1.Pod) { p.Spec.Containers[0].VolumeMounts = p.Spec.Containers[0].VolumeMounts[:1] },
		"trust volume on disk": func(p *corev1.Pod) {
			p.Spec.Volumes[slices.IndexFunc(p.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == trustVolumeName })].EmptyDir.Medium = ""
		},
	} {
		t.Run(name, func(t *testing.T) {
			p := injected.DeepCopy()
			tamper(p)
			out, d, err := inj.Inject(p, "shop")
			require.NoError(t, err)
			assert.True(t, d.Injected, "injected again")
			assert.Contains(t, d.Notes[0], "injected again")
			_, d, err = inj.Inject(out, "shop")
			require.NoError(t, err)
			assert.Equal(t, SkipAlreadyInjected, d.Reason, "and the result is proven")
		})
	}

	t.Run("rotated anchors", func(t *testing.T) {
		next := append(slices.Clone(first), first...)
		anchors.Store(&next)
		defer anchors.Store(&first)
		out, d, err := inj.Inject(injected.DeepCopy(), "shop")
		require.NoError(t, err)
		assert.True(t, d.Injected)
		assert.Equal(t, string(next), out.Spec.InitContainers[1].Env[0].Value)
	})
	t.Run("no staging CA: no trust bundle", func(t *testing.T) {
		empty := []byte(nil)
		anchors.Store(&empty)
		defer anchors.Store(&first)
		out, d, err := inj.Inject(samplePod(), "shop")
		require.NoError(t, err)
		assert.True(t, d.Injected)
		assert.Equal(t, []string{InitContainerName}, names(out.Spec.InitContainers))
		assert.Empty(t, out.Spec.Containers[0].VolumeMounts)
	})
	t.Run("opted out", func(t *testing.T) {
		p := samplePod()
		p.Annotations[AnnotationTrustStagingCA] = " False"
		out, _, err := inj.Inject(p, "shop")
		require.NoError(t, err)
		assert.Equal(t, []string{InitContainerName}, names(out.Spec.InitContainers))
		assert.Empty(t, out.Spec.Containers[0].Env)
	})
	t.Run("a pod's own egressguard-trust container is replaced", func(t *testing.T) {
		p := samplePod()
		p.Spec.InitContainers = []corev1.Container{{Name: TrustContainerName, Image: "evil", SecurityContext: &corev1.SecurityContext{
			RunAsNonRoot: ptr(true), RunAsUser: ptr(int64(1000)), AllowPrivilegeEscalation: ptr(false),
			Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}}}
		out, _, err := inj.Inject(p, "shop")
		require.NoError(t, err)
		require.Len(t, out.Spec.InitContainers, 2)
		assert.Equal(t, tlsConfig().InitImage, out.Spec.InitContainers[1].Image)
	})
}

func names(cs []corev1.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func TestXDSCAFile(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct{ body, want string }{
		"missing": {"", "no such file"},
		"empty":   {"-", "no PEM certificate"},
		"a key":   {"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", `PEM block 1 is "PRIVATE KEY"`},
		"not DER": {"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "certificate 1"},
	} {
		t.Run(name, func(t *testing.T) {
			c := testConfig()
			c.XDSCAFile = filepath.Join(dir, name)
			if tc.body != "" {
				require.NoError(t, os.WriteFile(c.XDSCAFile, []byte(tc.body), 0o600))
			}
			_, err := NewInjector(c)
			require.ErrorContains(t, err, "webhook.xds_ca_file")
			require.ErrorContains(t, err, tc.want)
		})
	}
}
