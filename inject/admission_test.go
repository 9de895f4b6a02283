package inject

import (
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
)

func injectorIn(t *testing.T, mode string) *Injector {
	t.Helper()
	cfg := testConfig()
	cfg.Mode = mode
	inj, err := NewInjector(cfg)
	require.NoError(t, err)
	return inj
}

// TestHostNetworkIsRefusedUnlessAuditedOptOut: enforce mode refuses a
// host-network pod, with the fix; a blank opt-out is no opt-out; report
// mode admits it unchanged with a would-deny.
func TestHostNetworkIsRefusedUnlessAuditedOptOut(t *testing.T) {
	for _, v := range []string{"", "  "} {
		p := samplePod()
		p.Spec.HostNetwork = true
		if v != "" {
			p.Annotations[AnnotationHostNetworkOptOut] = v
		}
		_, _, err := injectorIn(t, ModeEnforce).Inject(p, "shop")
		var refused *RefusedError
		require.ErrorAs(t, err, &refused, "opt-out %q", v)
		assert.Contains(t, refused.Reason, "set hostNetwork: false")
		assert.Contains(t, refused.Reason, AnnotationHostNetworkOptOut)
	}
	p := samplePod()
	p.Spec.HostNetwork = true
	out, d, err := injectorIn(t, ModeReport).Inject(p, "shop")
	require.NoError(t, err)
	assert.Same(t, p, out)
	assert.False(t, d.Injected)
	require.Len(t, d.WouldDeny, 1)
	assert.Contains(t, d.WouldDeny[0], "spec.hostNetwork")

	// Opt-outs by catalog ID: TestHostNetworkOptOutNamesACatalogEntry.
}

// TestCaptureEscapes: which security contexts could leave traffic
// capture, and which cannot.
func TestCaptureEscapes(t *testing.T) {
	uid := func(v int64) *int64 { return &v }
	tests := []struct {
		name   string
		pod    *corev1.PodSecurityContext
		sc     *corev1.SecurityContext
		escape string // "" when the container cannot leave capture
	}{
		{"no security context: maybe root, default caps", nil, nil, "holds NET_RAW, SETGID, SETUID"},
		{"drop ALL", nil, &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}, ""},
		{"drop all, lower case", nil, &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"all"}}}, ""},
		{"drop the four by CAP_ name", nil, &corev1.SecurityContext{Capabilities: &corev1.Capabilities{
			Drop: []corev1.Capability{"CAP_SETUID", "CAP_SETGID", "CAP_NET_RAW", "NET_ADMIN"}}}, ""},
		{"drop ALL, add SETGID back", nil, &corev1.SecurityContext{Capabilities: &corev1.Capabilities{
			Drop: []corev1.Capability{"ALL"}, Add: []corev1.Capability{"SETGID"}}}, "holds SETGID"},
		{"add ALL, drop one", nil, &corev1.SecurityContext{Capabilities: &corev1.Capabilities{
			Add: []corev1.Capability{"ALL"}, Drop: []corev1.Capability{"NET_RAW"}}}, "holds NET_ADMIN, SETGID, SETUID"},
		{"added then dropped individually", nil, &corev1.SecurityContext{Capabilities: &corev1.Capabilities{
			Drop: []corev1.Capability{"ALL", "NET_ADMIN"}, Add: []corev1.Capability{"NET_ADMIN"}}}, ""},
		{"non-root, no escalation, default caps", &corev1.PodSecurityContext{RunAsNonRoot: ptr(true)},
			&corev1.SecurityContext{AllowPrivilegeEscalation: ptr(false)}, ""},
		{"non-root UID, escalation allowed", &corev1.PodSecurityContext{RunAsUser: uid(1000)}, nil, "may gain privileges"},
		{"non-root, NET_ADMIN added, no escalation", &corev1.PodSecurityContext{RunAsUser: uid(1000)},
			&corev1.SecurityContext{AllowPrivilegeEscalation: ptr(false), Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN"}}}, ""},
		{"root, no escalation, default caps", nil, &corev1.SecurityContext{RunAsUser: uid(0), AllowPrivilegeEscalation: ptr(false)},
			"runs as root and holds NET_RAW, SETGID, SETUID"},
		{"container UID overrides a non-root pod", &corev1.PodSecurityContext{RunAsUser: uid(1000), RunAsNonRoot: ptr(true)},
			&corev1.SecurityContext{RunAsUser: uid(0), RunAsNonRoot: ptr(false), AllowPrivilegeEscalation: ptr(false)}, "runs as root"},
		{"privileged", nil, &corev1.SecurityContext{Privileged: ptr(true), Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}, "is privileged"},
		{"proxy UID", nil, &corev1.SecurityContext{RunAsUser: uid(DefaultProxyUID), AllowPrivilegeEscalation: ptr(false)}, "runs as UID 1337"},
		{"proxy UID pod-wide", &corev1.PodSecurityContext{RunAsUser: uid(DefaultProxyUID)},
			&corev1.SecurityContext{AllowPrivilegeEscalation: ptr(false)}, "runs as UID 1337"},
	}
	inj := injectorIn(t, ModeEnforce)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := samplePod()
			p.Spec.SecurityContext = tc.pod
			p.Spec.Containers[0].SecurityContext = tc.sc
			got := inj.captureEscapes(p)
			if tc.escape == "" {
				assert.Empty(t, got)
				return
			}
			require.NotEmpty(t, got)
			assert.Contains(t, got[len(got)-1], tc.escape)
			assert.Contains(t, got[len(got)-1], "spec.containers[web]")
			// Our own containers are never findings.
			out, _, err := injectorIn(t, ModeReport).Inject(p, "shop")
			require.NoError(t, err)
			assert.Equal(t, got, inj.captureEscapes(out))
		})
	}
}

// TestInjectedIsProven: a pod marked injected whose containers differ from
// what the webhook writes in any field that decides what runs (image,
// command, args, env, UID, capabilities) or whose resolver is not
// dnsguard alone is injected again, ending exactly as a fresh injection.
func TestInjectedIsProven(t *testing.T) {
	inj := injectorIn(t, ModeEnforce)
	fresh, d, err := inj.Inject(samplePod(), "shop")
	require.NoError(t, err)
	require.True(t, d.Injected)
	again, d, err := inj.Inject(fresh, "shop")
	require.NoError(t, err)
	assert.Equal(t, SkipAlreadyInjected, d.Reason)
	assert.Same(t, fresh, again)

	proxy := func(p *corev1.Pod) *corev1.Container {
		return &p.Spec.Containers[indexOf(p.Spec.Containers, ProxyContainerName)]
	}
	initC := func(p *corev1.Pod) *corev1.Container { return &p.Spec.InitContainers[0] }
	for name, tamper := range map[string]func(*corev1.Pod){
		"proxy image":        func(p *corev1.Pod) { proxy(p).Image = "evil/envoy:1" },
		"proxy args":         func(p *corev1.Pod) { proxy(p).Args = []string{"--config-yaml", "{}"} },
		"proxy env":          func(p *corev1.Pod) { proxy(p).Env = nil },
		"proxy command":      func(p *corev1.Pod) { proxy(p).Command = []string{"/bin/sh"} },
		"proxy UID":          func(p *corev1.Pod) { proxy(p).SecurityContext.RunAsUser = ptr(int64(0)) },
		"proxy capabilities": func(p *corev1.Pod) { proxy(p).SecurityContext.Capabilities.Add = []corev1.Capability{"NET_ADMIN"} },
		"init image":         func(p *corev1.Pod) { initC(p).Image = "busybox" },
		"init args":          func(p *corev1.Pod) { initC(p).Args = append(initC(p).Args, "--exclude-cidr", "0.0.0.0/0") },
		"init UID":           func(p *corev1.Pod) { initC(p).SecurityContext.RunAsUser = ptr(int64(1000)) },
		"init capabilities":  func(p *corev1.Pod) { initC(p).SecurityContext.Capabilities.Drop = nil },
		"nameserver":         func(p *corev1.Pod) { p.Spec.DNSConfig.Nameservers = []string{"8.8.8.8"} },
		"dns policy":         func(p *corev1.Pod) { p.Spec.DNSPolicy = corev1.DNSClusterFirst },
		"no init container":  func(p *corev1.Pod) { p.Spec.InitContainers = p.Spec.InitContainers[1:] },
	} {
		t.Run(name, func(t *testing.T) {
			p := fresh.DeepCopy()
			tamper(p)
			out, d, err := inj.Inject(p, "shop")
			require.NoError(t, err)
			assert.True(t, d.Injected, "a claimed injection is injected again")
			assert.Equal(t, fresh.Spec, out.Spec)
		})
	}
}

// TestReportModeAdmitsWithWouldDeny: through the handler, report mode
// injects a pod enforce mode refuses, with a warning, an audit annotation
// and the would-deny counter.
func TestReportModeAdmitsWithWouldDeny(t *testing.T) {
	p := samplePod()
	p.Spec.Containers[0].SecurityContext = nil
	body := podReview(t, p, admissionv1.Create)

	enforce := newTestHandler(t, nil)
	code, rev, msg := review(t, enforce, body)
	require.Equal(t, http.StatusOK, code, msg)
	require.False(t, rev.Response.Allowed)
	assert.Contains(t, rev.Response.Result.Message, "capabilities.drop: [ALL]")

	cfg := testConfig()
	cfg.Mode = ModeReport
	m := NewMetrics(nil)
	h, err := NewHandler(cfg, m, zaptest.NewLogger(t))
	require.NoError(t, err)
	code, rev, msg = review(t, h, body)
	require.Equal(t, http.StatusOK, code, msg)
	require.True(t, rev.Response.Allowed)
	require.NotNil(t, rev.Response.Patch, "still injected")
	require.Len(t, rev.Response.Warnings, 1)
	assert.Contains(t, rev.Response.Warnings[0], "report mode")
	assert.Contains(t, rev.Response.AuditAnnotations[AuditWouldDeny], "spec.containers[web]")
	assert.InDelta(t, 1, testutil.ToFloat64(m.wouldDeny), 0)
}

func TestConfigMode(t *testing.T) {
	c := testConfig()
	assert.Equal(t, ModeEnforce, c.Mode)
	c.Mode = "audit"
	require.ErrorContains(t, c.Validate(), `webhook.mode: "audit": want enforce or report`)
}
