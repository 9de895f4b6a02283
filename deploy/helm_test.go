package deploy

import (
	"os"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"helm.sh/helm/v4/pkg/chart/common"
	commonutil "helm.sh/helm/v4/pkg/chart/common/util"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
	"helm.sh/helm/v4/pkg/engine"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"

	"github.com/egressguard/egressguard/inject"
	"github.com/egressguard/egressguard/policy"
)

const (
	chartDir    = "helm/egressguard"
	releaseName = "egressguard"
	releaseNS   = "egressguard"
	kubeVersion = "v1.33.0"
)

// capabilities is a cluster of kubeVersion serving client-go's APIs plus
// extra API versions (e.g. cert-manager.io/v1).
func capabilities(extra ...string) *common.Capabilities {
	c := common.DefaultCapabilities.Copy()
	kv, err := common.ParseKubeVersion(kubeVersion)
	if err != nil {
		panic(err) // the constant above
	}
	c.KubeVersion = *kv
	c.APIVersions = append(slices.Clone(c.APIVersions), extra...)
	return c
}

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	ch, err := loader.Load(chartDir)
	require.NoError(t, err)
	ok := chartutil.IsCompatibleRange(ch.Metadata.KubeVersion, kubeVersion)
	require.True(t, ok, "chart kubeVersion %s admits %s", ch.Metadata.KubeVersion, kubeVersion)
	return ch
}

// renderChart renders the chart as `helm install` would (strict: a template
// that reads a value that does not exist fails) and decodes every object.
// It returns the objects and the NOTES.
func renderChart(t *testing.T, ch *chart.Chart, values string, caps *common.Capabilities) ([]object, string, error) {
	t.Helper()
	return renderChartSchema(t, ch, values, caps, false)
}

// renderChartSchema is renderChart, optionally without the values schema
// (helm install --skip-schema-validation).
func renderChartSchema(t *testing.T, ch *chart.Chart, values string, caps *common.Capabilities, skipSchema bool) ([]object, string, error) {
	t.Helper()
	vals, err := common.ReadValues([]byte(values))
	require.NoError(t, err, "test values")
	top, err := commonutil.ToRenderValuesWithSchemaValidation(ch, vals, common.ReleaseOptions{
		Name: releaseName, Namespace: releaseNS, Revision: 1, IsInstall: true,
	}, caps, skipSchema)
	if err != nil {
		return nil, "", err
	}
	out, err := engine.Engine{Strict: true}.RenderWithContext(t.Context(), ch, top)
	if err != nil {
		return nil, "", err
	}
	names := make([]string, 0, len(out))
	for n := range out {
		names = append(names, n)
	}
	sort.Strings(names)
	var objs []object
	var notes string
	for _, n := range names {
		switch {
		case strings.HasSuffix(n, "NOTES.txt"):
			notes = out[n]
			continue
		case !strings.HasSuffix(n, ".yaml"):
			t.Fatalf("unexpected template output %s", n)
		}
		o, err := decodeManifests(path.Base(n), []byte(out[n]))
		if err != nil {
			return nil, "", err
		}
		objs = append(objs, o...)
	}
	return objs, notes, nil
}

// chartCase is one set of values and what it must render.
type chartCase struct {
	name   string
	values string
	caps   *common.Capabilities
	check  func(t *testing.T, r roles)
}

func TestChartRenders(t *testing.T) {
	ch := loadChart(t)
	cases := []chartCase{
		{name: "defaults", check: func(t *testing.T, r roles) {
			assert.Equal(t, int32(2), *r.cp.Spec.Replicas)
			one[*policyv1.PodDisruptionBudget](t, r.objs, releaseName)
			assert.Empty(t, find[*autoscalingv2.HorizontalPodAutoscaler](r.objs))
			assert.Empty(t, find[*cmCertificate](r.objs), "no cert-manager API, no Certificate")
			assert.Empty(t, find[*serviceMonitor](r.objs))
			mwc := one[*admissionv1.MutatingWebhookConfiguration](t, r.objs, releaseName)
			assert.Equal(t, "Fail", string(*mwc.Webhooks[0].FailurePolicy), "fail closed by default")
			assert.Equal(t, "/mutate", *mwc.Webhooks[0].ClientConfig.Service.Path)
			assert.Equal(t, "egressguard.egressguard.svc:18000", r.cpConfig.Webhook.XDSAddress, "the brief's default xds_address")
			assert.Equal(t, allocatedIP, r.cpConfig.Webhook.DNSServer, "the allocated ClusterIP, read by the control plane")
			assert.Equal(t, inject.DefaultSidecarImage, r.cpConfig.Webhook.SidecarImage, "the chart pins the Envoy the webhook is built for")
			assert.True(t, strings.HasPrefix(r.cpConfig.Webhook.InitImage, inject.DefaultInitImageRepository+":"))
			assert.Equal(t, int64(1337), r.cpConfig.Webhook.ProxyUID)
			assert.Equal(t, uint32(15001), r.cpConfig.Webhook.OutboundPort)
			// xDS over TLS, identity in report mode, the staging CA's key.
			assert.Equal(t, "/etc/egressguard/xds/tls.crt", r.cpConfig.XDS.TLS.CertFile)
			assert.Equal(t, "/etc/egressguard/xds/ca.crt", r.cpConfig.Webhook.XDSCAFile)
			assert.Equal(t, "report", string(r.cpConfig.XDS.Identity.Mode), "identity checks roll out in report mode")
			assert.Equal(t, time.Minute, r.cpConfig.XDS.Identity.ReviewCacheTTL)
			assert.Equal(t, "egressguard", r.cpConfig.Webhook.TokenAudience)
			assert.Equal(t, "/etc/egressguard/staging-ca/tls.key", r.cpConfig.Intercept.CA.KeyFile)
			one[*corev1.Secret](t, r.objs, releaseName+"-xds-tls")
			one[*corev1.Secret](t, r.objs, releaseName+"-staging-ca")
			// No object in a namespace the chart does not own: the
			// install does not depend on staging namespaces existing.
			for _, o := range r.objs {
				if o.NS != "" {
					assert.Equal(t, releaseNS, o.NS, "%s %s", o.GVK.Kind, o.Name)
				}
			}
			assert.Empty(t, egressPolicies(r.objs))
			// Report mode: every guarded environment reports.
			assertEnvironments(t, r, "", []string{"staging", "stage", "qa", "test", "dev", "development", "sandbox"})
			pcm := one[*corev1.ConfigMap](t, r.objs, releaseName+"-policy")
			assert.Empty(t, pcm.Data, "no Rego: the embedded policy alone")
		}},
		{name: "cert-manager present", caps: capabilities("cert-manager.io/v1"), check: func(t *testing.T, r roles) {
			assert.Len(t, find[*cmCertificate](r.objs), 3, "CA, webhook and xDS serving certificates")
			assert.Len(t, find[*cmIssuer](r.objs), 2, "self-signed root and CA issuer")
		}},
		{name: "cert-manager forced", values: "webhook: {certificate: {certManager: true}}", check: func(t *testing.T, r roles) {
			assert.Len(t, find[*cmCertificate](r.objs), 3)
		}},
		{name: "plaintext xDS, identity enforced, operator's staging CA key", values: `
xds: {tls: {enabled: false}, identity: {mode: enforce, audience: egressguard-xds, tokenExpirationSeconds: 3600}}
stagingCA: {existingSecret: my-staging-ca}
`, check: func(t *testing.T, r roles) {
			assert.False(t, r.cpConfig.XDS.TLS.Enabled())
			assert.Empty(t, r.cpConfig.Webhook.XDSCAFile)
			assert.Equal(t, "enforce", string(r.cpConfig.XDS.Identity.Mode))
			assert.Equal(t, "egressguard-xds", r.cpConfig.Webhook.TokenAudience)
			assert.Equal(t, int64(3600), r.cpConfig.Webhook.TokenExpirationSeconds)
			assert.Empty(t, find[*corev1.Secret](r.objs)[1:], "only the webhook's Secret is rendered")
			assert.Equal(t, "my-staging-ca", mountedSecret(t, r, "/etc/egressguard/staging-ca").SecretName)
		}},
		{name: "no staging CA", values: "stagingCA: {enabled: false}", check: func(t *testing.T, r roles) {
			assert.Empty(t, r.cpConfig.Intercept.CA.KeyFile)
		}},
		{name: "cert-manager refused although present", values: "webhook: {certificate: {certManager: false}}",
			caps: capabilities("cert-manager.io/v1"), check: func(t *testing.T, r roles) {
				assert.Empty(t, find[*cmCertificate](r.objs))
			}},
		{name: "hpa", values: "controlPlane: {autoscaling: {enabled: true, minReplicas: 3, maxReplicas: 9}}", check: func(t *testing.T, r roles) {
			assert.Nil(t, r.cp.Spec.Replicas, "the HPA owns replicas")
			h := one[*autoscalingv2.HorizontalPodAutoscaler](t, r.objs, releaseName)
			assert.Equal(t, int32(3), *h.Spec.MinReplicas)
			assert.Equal(t, int32(9), h.Spec.MaxReplicas)
			assert.Equal(t, r.cp.Name, h.Spec.ScaleTargetRef.Name)
			assert.Equal(t, "Deployment", h.Spec.ScaleTargetRef.Kind)
			one[*policyv1.PodDisruptionBudget](t, r.objs, releaseName)
		}},
		{name: "single replica has no PDB", values: "controlPlane: {replicas: 1}", check: func(t *testing.T, r roles) {
			assert.Empty(t, find[*policyv1.PodDisruptionBudget](r.objs), "a PDB of minAvailable 1 over one replica would block node drains")
		}},
		{name: "enforce with one environment still reporting", values: `
mode: enforce
environments: {report: [qa]}
`, check: func(t *testing.T, r roles) {
			assertEnvironments(t, r, "", []string{"qa"})
		}},
		{name: "enforce", values: "mode: enforce", check: func(t *testing.T, r roles) {
			assertEnvironments(t, r, "", nil)
		}},
		{name: "operator catalog, policy, network and monitoring", caps: capabilities("monitoring.coreos.com/v1"), values: `
catalog:
  files:
    production.yaml: |
      zones: ["*.prod.example.com"]
      cidrs: [10.20.0.0/16, "2001:db8:20::/48"]
policy:
  files:
    extra.rego: |
      package egressguard.extra
      import rego.v1
      x := 1
image: {digest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}
webhook: {failurePolicy: Ignore, path: /inject/v1, excludeCIDRs: [169.254.169.254/32]}
networkPolicy:
  namespaces: [staging, qa]
  productionCIDRs: [10.20.0.0/16, "2001:db8:20::/48"]
  clusterCIDRs: [10.244.0.0/16, 10.96.0.0/12]
serviceMonitor: {enabled: true}
controlPlane:
  extraConfig: {xds: {max_streams: 20000}}
dnsguard:
  service: {clusterIP: 10.100.0.53}
  upstreams: [10.100.0.10]
`, check: func(t *testing.T, r roles) {
			assert.Contains(t, r.cp.Spec.Template.Spec.Containers[0].Image, "@sha256:")
			assert.Equal(t, []string{catalogDir + "/production.yaml", catalogDir + "/zz-egressguard-environments.yaml"}, r.cpConfig.Policy.Catalogs)
			assertEnvironments(t, r, "production.yaml", []string{"staging", "stage", "qa", "test", "dev", "development", "sandbox"})
			pcm := one[*corev1.ConfigMap](t, r.objs, releaseName+"-policy")
			assert.Contains(t, pcm.Data, "extra.rego")
			assert.Equal(t, 20000, r.cpConfig.XDS.MaxStreams, "extraConfig reaches the serve config")
			assert.Equal(t, []string{"10.100.0.10"}, r.dgConfig.DNS.Upstreams)
			assert.Equal(t, "10.100.0.53", r.cpConfig.Webhook.DNSServer)
			assert.Equal(t, []string{"169.254.169.254/32"}, r.cpConfig.Webhook.ExcludeCIDRs)
			mwc := one[*admissionv1.MutatingWebhookConfiguration](t, r.objs, releaseName)
			assert.Equal(t, "Ignore", string(*mwc.Webhooks[0].FailurePolicy))
			assert.Equal(t, "/inject/v1", *mwc.Webhooks[0].ClientConfig.Service.Path)
			nps := egressPolicies(r.objs)
			require.Len(t, nps, 2)
			for _, np := range nps {
				var except []string
				for _, rule := range np.Spec.Egress {
					for _, peer := range rule.To {
						if peer.IPBlock != nil {
							except = append(except, peer.IPBlock.Except...)
						}
					}
				}
				assert.ElementsMatch(t, []string{"10.20.0.0/16", "2001:db8:20::/48", "10.244.0.0/16", "10.96.0.0/12"}, except, np.Namespace)
			}
			sms := find[*serviceMonitor](r.objs)
			require.Len(t, sms, 2, "control plane and dnsguard")
			for _, sm := range sms {
				var svcs []*corev1.Service
				for _, s := range find[*corev1.Service](r.objs) {
					if labelsMatch(sm.Spec.Selector.MatchLabels, s.Labels) {
						svcs = append(svcs, s)
					}
				}
				require.NotEmpty(t, svcs, "ServiceMonitor %s selects a Service", sm.Name)
				for _, s := range svcs {
					assert.True(t, slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == sm.Spec.Endpoints[0].Port }),
						"Service %s has the port %s that %s scrapes", s.Name, sm.Spec.Endpoints[0].Port, sm.Name)
				}
			}
		}},
		{name: "udp allowed", values: "networkPolicy: {allowUDP: true, namespaces: [staging]}", check: func(t *testing.T, r roles) {
			nps := egressPolicies(r.objs)
			require.Len(t, nps, 1)
			np := nps[0]
			udp := 0
			for _, rule := range np.Spec.Egress {
				for _, p := range rule.Ports {
					if p.Protocol != nil && *p.Protocol == corev1.ProtocolUDP {
						udp++
					}
				}
			}
			assert.Greater(t, udp, 1, "UDP beyond DNS")
		}},
		{name: "no network policy, no webhook", values: "networkPolicy: {enabled: false}\nwebhook: {enabled: false}", check: func(t *testing.T, r roles) {
			assert.Empty(t, egressPolicies(r.objs))
			assert.Nil(t, r.cpConfig.Webhook)
			var names []string
			for _, s := range find[*corev1.Secret](r.objs) {
				names = append(names, s.Name)
			}
			assert.ElementsMatch(t, []string{releaseName + "-staging-ca", releaseName + "-xds-tls"}, names, "no webhook Secret")
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			caps := tc.caps
			if caps == nil {
				caps = capabilities()
			}
			objs, notes, err := renderChart(t, ch, tc.values, caps)
			require.NoError(t, err)
			assert.Contains(t, notes, "egressguard.io/inject=enabled")
			r := checkManifests(t, objs)
			tc.check(t, r)
		})
	}
}

// TestChartRejectsBadValues: values that would deploy something broken or
// unguarded, and misspelt values (values.schema.json forbids unknown keys),
// fail the render with a message naming the value. The templates check
// what the schema cannot (and again what it can, for installs that skip
// the schema).
func TestChartRejectsBadValues(t *testing.T) {
	ch := loadChart(t)
	for _, tc := range []struct {
		name, values string
		caps         *common.Capabilities
		want         string
	}{
		{"unknown mode", "mode: audit", nil, "at '/mode'"},
		{"misspelt value", "controlPlane: {replica: 3}", nil, "at '/controlPlane': additional properties 'replica' not allowed"},
		{"misspelt nested value", "webhook: {certificate: {certmanager: true}}", nil, "additional properties 'certmanager' not allowed"},
		{"port out of range", "ports: {dns: 70000}", nil, "at '/ports/dns'"},
		{"webhook timeout over the API server's 30s", "webhook: {timeoutSeconds: 45}", nil, "at '/webhook/timeoutSeconds'"},
		{"bad failure policy", "webhook: {failurePolicy: Maybe}", nil, "at '/webhook/failurePolicy'"},
		{"dns clusterIP not an IP", "dnsguard: {service: {clusterIP: dnsguard}}", nil, "dnsguard.service.clusterIP"},
		{"catalog sets environments", "catalog: {files: {a.yaml: \"environments:\\n  production: [prod]\\n\"}}", nil, "catalog.files.a.yaml sets environments"},
		{"catalog file name", "catalog: {files: {a.yml: \"zones: []\"}}", nil, "catalog.files.a.yml"},
		{"rego file name", "policy: {files: {a.txt: \"package x\"}}", nil, "policy.files.a.txt"},
		{"replace default without rego", "policy: {replaceDefault: true}", nil, "policy.replaceDefault"},
		{"latest tag", "image: {tag: latest}", nil, "image.tag: latest"},
		{"bad digest", "image: {digest: abc}", nil, "image.digest"},
		{"cert-manager value", "webhook: {certificate: {certManager: maybe}}", nil, "at '/webhook/certificate/certManager'"},
		{"servicemonitor without the CRD", "serviceMonitor: {enabled: true}", capabilities(), "monitoring.coreos.com/v1"},
		{"hpa bounds", "controlPlane: {autoscaling: {enabled: true, minReplicas: 5, maxReplicas: 2}}", nil, "maxReplicas is below minReplicas"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// cert-manager present: these cases are not about the
			// certificate, and generating RSA keys is most of a render's
			// time under -race.
			caps := tc.caps
			if caps == nil {
				caps = capabilities("cert-manager.io/v1")
			}
			_, _, err := renderChart(t, ch, tc.values, caps)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

// TestChartChecksWithoutSchema: with the schema skipped, the templates
// still refuse the values that would deploy something broken.
func TestChartChecksWithoutSchema(t *testing.T) {
	ch := loadChart(t)
	for _, tc := range []struct{ values, want string }{
		{"mode: audit", `mode: "audit" is not report or enforce`},
		{"webhook: {failurePolicy: Maybe}", `webhook.failurePolicy: "Maybe"`},
		{"webhook: {certificate: {certManager: maybe}}", `webhook.certificate.certManager: "maybe"`},
	} {
		_, _, err := renderChartSchema(t, ch, tc.values, capabilities("cert-manager.io/v1"), true)
		require.Error(t, err, tc.values)
		assert.Contains(t, err.Error(), tc.want)
	}
}

// TestChartStrictDecodeCatchesTypos proves the harness fails on the kind of
// mistakes a template edit makes: a misspelt field, a duplicate field, a
// value that does not exist, an unknown kind.
func TestChartStrictDecodeCatchesTypos(t *testing.T) {
	ch := loadChart(t)
	dep := templateNamed(t, ch, "templates/controlplane-deployment.yaml")
	orig := string(dep.Data)
	for _, tc := range []struct {
		name, from, to, want string
	}{
		{"misspelt field", "readinessProbe:", "readynessProbe:", `unknown field "spec.template.spec.containers[0].readynessProbe"`},
		{"duplicate field", "      serviceAccountName:", "      automountServiceAccountToken: true\n      serviceAccountName:", `"automountServiceAccountToken" already set`},
		{"missing value", ".Values.controlPlane.terminationGracePeriodSeconds", ".Values.controlPlane.terminationGracePeriod", "terminationGracePeriod"},
		{"unknown kind", "kind: Deployment", "kind: Deploymnt", "no API type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Contains(t, orig, tc.from)
			dep.Data = []byte(strings.Replace(orig, tc.from, tc.to, 1))
			defer func() { dep.Data = []byte(orig) }()
			_, _, err := renderChart(t, ch, "", capabilities("cert-manager.io/v1"))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	dep.Data = []byte(orig)
	_, _, err := renderChart(t, ch, "", capabilities("cert-manager.io/v1"))
	require.NoError(t, err, "the unmodified chart renders")
}

func templateNamed(t *testing.T, ch *chart.Chart, name string) *common.File {
	t.Helper()
	for _, f := range ch.Templates {
		if f.Name == name {
			return f
		}
	}
	t.Fatalf("template %s not found", name)
	return nil
}

func labelsMatch(sel, lbls map[string]string) bool {
	for k, v := range sel {
		if lbls[k] != v {
			return false
		}
	}
	return len(sel) > 0
}

func assertNoUDPBeyondDNS(t *testing.T, np *networkingv1.NetworkPolicy) {
	t.Helper()
	for i, rule := range np.Spec.Egress {
		for _, p := range rule.Ports {
			if p.Protocol != nil && *p.Protocol == corev1.ProtocolUDP {
				assert.Equal(t, int32(5353), p.Port.IntVal, "rule %d: UDP only to dnsguard", i)
				assert.Nil(t, p.EndPort, "rule %d", i)
			}
		}
	}
}

// assertEnvironments loads the catalog the way serve does (the embedded
// default first, then each file the config lists, from the ConfigMap) and
// checks the report list: the policy package's own validation runs on the
// rendered files, so a malformed catalog fails here.
func assertEnvironments(t *testing.T, r roles, operatorFile string, wantReport []string) {
	t.Helper()
	cm := configMapAt(t, r.objs, &r.cp.Spec.Template, r.cp.Spec.Template.Spec.Containers[0], catalogDir)
	files := []policy.CatalogFile{policy.DefaultCatalog()}
	for _, p := range r.cpConfig.Policy.Catalogs {
		files = append(files, policy.CatalogFile{Name: p, Data: []byte(cm.Data[path.Base(p)])})
	}
	if operatorFile != "" {
		assert.Contains(t, cm.Data, operatorFile)
	}
	cat, _, err := policy.BuildCatalog(files, time.Now())
	require.NoError(t, err)
	require.NotNil(t, cat.Environments)
	assert.Equal(t, []string{"production", "prod"}, cat.Environments.Production)
	assert.ElementsMatch(t, wantReport, cat.Environments.Report)
}

// TestCoreDNSSnippetForwardsToDNSGuard: the CoreDNS snippet's address is one
// the chart can pin dnsguard's Service to (the default lets the API server
// allocate it: the snippet is then edited to that address).
func TestCoreDNSSnippetForwardsToDNSGuard(t *testing.T) {
	b, err := os.ReadFile("coredns/staging-forward.Corefile")
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^\s*forward \. (\S+) \{`).FindSubmatch(b)
	require.NotNil(t, m, "the snippet has a forward")
	objs, _, err := renderChart(t, loadChart(t), "dnsguard: {service: {clusterIP: "+string(m[1])+"}}", capabilities("cert-manager.io/v1"))
	require.NoError(t, err)
	svc := one[*corev1.Service](t, objs, releaseName+"-dnsguard")
	assert.Equal(t, svc.Spec.ClusterIP, string(m[1]))
}

// TestChartLint runs Helm's own linter (`helm lint`): Chart.yaml, values,
// template syntax, object names and top-level indentation. Info messages
// (e.g. a missing icon) are allowed; warnings and errors are not.
func TestChartLint(t *testing.T) {
	kv, err := common.ParseKubeVersion(kubeVersion)
	require.NoError(t, err)
	l := lint.RunAll(chartDir, nil, releaseNS, lint.WithKubeVersion(kv))
	for _, m := range l.Messages {
		assert.Less(t, m.Severity, support.WarningSev, "helm lint: %s", m.Error())
	}
}
