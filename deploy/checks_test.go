package deploy

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/egressguard/egressguard/dnsguard"
	"github.com/egressguard/egressguard/inject"
	"github.com/egressguard/egressguard/xds"
)

// Names shared with the code (the Kubernetes contract of issue #7).
const (
	injectLabel      = "egressguard.io/inject"
	environmentLabel = "egressguard.io/environment"
	catalogDir       = "/etc/egressguard/catalog"
	policyDir        = "/etc/egressguard/policy"
)

// serveConfig is the `egressguard serve --config` file as the contract in
// the issue #7 brief defines it, decoded strictly (yaml.v3 KnownFields, as
// serve does). The dns and xds sections are the packages' own Config types,
// and so is the webhook section (inject.Config), so a key those packages do
// not know fails here too. The inventory section follows the brief
// (inventory.source, inventory.kubernetes); cmd/egressguard wires it.
type serveConfig struct {
	Policy struct {
		Catalogs       []string `yaml:"catalogs"`
		Dir            string   `yaml:"dir"`
		ReplaceDefault bool     `yaml:"replace_default"`
	} `yaml:"policy"`
	Inventory struct {
		Source     string `yaml:"source"`
		File       string `yaml:"file"`
		Kubernetes struct {
			Kubeconfig         string `yaml:"kubeconfig"`
			NodeName           string `yaml:"node_name"`
			ClusterDomain      string `yaml:"cluster_domain"`
			DefaultEnvironment string `yaml:"default_environment"`
		} `yaml:"kubernetes"`
	} `yaml:"inventory"`
	Webhook *inject.Config `yaml:"webhook"`
	// Intercept is the staging CA's section (contract #18 §5; serve's own
	// type lives with the staging CA): the chart sets only the key file.
	Intercept struct {
		CA struct {
			KeyFile string `yaml:"key_file"`
		} `yaml:"ca"`
	} `yaml:"intercept"`
	DNS   dnsguard.Config `yaml:"dns"`
	XDS   xds.Config      `yaml:"xds"`
	Admin struct {
		Listen string `yaml:"listen"`
		Auth   struct {
			Kubernetes bool `yaml:"kubernetes"`
		} `yaml:"auth"`
	} `yaml:"admin"`
	Decisions struct {
		File     string `yaml:"file"`
		MaxBytes int64  `yaml:"max_bytes"`
		MaxFiles int    `yaml:"max_files"`
		Recent   int    `yaml:"recent"`
	} `yaml:"decisions"`
	Log struct {
		Level  string `yaml:"level"`
		Format string `yaml:"format"`
	} `yaml:"log"`
}

// parseServeConfig decodes a config file strictly over the packages'
// defaults (as serve does) and validates the dns/xds sections that are on.
func parseServeConfig(name, text string) (*serveConfig, error) {
	c := &serveConfig{DNS: dnsguard.Defaults(), XDS: xds.Defaults()}
	var wh struct {
		Webhook *yaml.Node `yaml:"webhook"`
	}
	if err := yaml.Unmarshal([]byte(text), &wh); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if wh.Webhook != nil {
		d := inject.Defaults()
		c.Webhook = &d
	}
	dec := yaml.NewDecoder(bytes.NewReader([]byte(text)))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	var errs []error
	if c.DNS.Listen != "" {
		if err := c.DNS.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("%s: dns: %w", name, err))
		}
	}
	if c.XDS.Listen != "" {
		if err := c.XDS.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("%s: xds: %w", name, err))
		}
	}
	if c.Inventory.Source != "kubernetes" {
		errs = append(errs, fmt.Errorf("%s: inventory.source is %q, want kubernetes", name, c.Inventory.Source))
	}
	if c.Webhook != nil && c.Webhook.Listen != "" {
		if err := c.Webhook.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("%s: webhook: %w", name, err))
		}
	}
	return c, errors.Join(errs...)
}

func listenPort(t *testing.T, addr string) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	require.NoError(t, err, addr)
	n, err := strconv.ParseInt(p, 10, 32)
	require.NoError(t, err)
	return int32(n)
}

// roles are the two workloads of an egressguard install.
type roles struct {
	cp       *appsv1.Deployment
	dg       *appsv1.DaemonSet
	cpConfig *serveConfig
	dgConfig *serveConfig
	objs     []object
}

// checkManifests checks what every rendering of the manifests must hold,
// Helm or kustomize, whatever the values. It finds the objects by their
// roles (the control plane Deployment, the dnsguard DaemonSet) and follows
// the references between them.
func checkManifests(t *testing.T, objs []object) roles {
	t.Helper()
	deps := find[*appsv1.Deployment](objs)
	dss := find[*appsv1.DaemonSet](objs)
	require.Len(t, deps, 1, "one control plane Deployment")
	require.Len(t, dss, 1, "one dnsguard DaemonSet")
	r := roles{cp: deps[0], dg: dss[0], objs: objs}

	for _, o := range objs {
		switch o.Obj.(type) {
		case *rbacv1.ClusterRole, *rbacv1.ClusterRoleBinding, *admissionv1.MutatingWebhookConfiguration, *corev1.Namespace, *schedulingv1.PriorityClass:
			assert.Empty(t, o.NS, "%s is cluster-scoped", o)
		default:
			assert.NotEmpty(t, o.NS, "%s has a namespace", o)
		}
	}
	for _, pt := range []struct {
		name string
		spec *corev1.PodTemplateSpec
		sel  map[string]string
	}{
		{r.cp.Name, &r.cp.Spec.Template, r.cp.Spec.Selector.MatchLabels},
		{r.dg.Name, &r.dg.Spec.Template, r.dg.Spec.Selector.MatchLabels},
	} {
		checkPodTemplate(t, pt.name, pt.spec)
		assert.True(t, labels.SelectorFromSet(pt.sel).Matches(labels.Set(pt.spec.Labels)), "%s: selector matches its pods", pt.name)
	}

	r.cpConfig = mountedConfig(t, objs, &r.cp.Spec.Template)
	r.dgConfig = mountedConfig(t, objs, &r.dg.Spec.Template)
	checkControlPlane(t, r)
	checkDNSGuard(t, r)
	checkRBAC(t, objs, r)
	checkWebhook(t, objs, r)
	checkXDSTLS(t, r)
	checkStagingCA(t, r)
	checkNetworkPolicies(t, objs, r)
	checkCatalogMount(t, objs, r)
	return r
}

// checkPodTemplate: probes, requests, pinned images, a locked-down security
// context, and probe ports that exist.
func checkPodTemplate(t *testing.T, name string, pt *corev1.PodTemplateSpec) {
	t.Helper()
	ps := pt.Spec.SecurityContext
	require.NotNil(t, ps, "%s: pod securityContext", name)
	require.NotNil(t, ps.RunAsNonRoot, "%s: runAsNonRoot", name)
	assert.True(t, *ps.RunAsNonRoot, "%s: runAsNonRoot", name)
	require.NotEmpty(t, pt.Spec.Containers, name)
	for _, c := range append(slices.Clone(pt.Spec.InitContainers), pt.Spec.Containers...) {
		where := name + "/" + c.Name
		assertPinned(t, where, c.Image)
		require.NotNil(t, c.ReadinessProbe, "%s: readiness probe", where)
		require.NotNil(t, c.LivenessProbe, "%s: liveness probe", where)
		for probe, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe, "startup": c.StartupProbe} {
			if p == nil {
				continue
			}
			require.NotNil(t, p.HTTPGet, "%s: %s probe is HTTP", where, probe)
			assert.True(t, hasPort(c, p.HTTPGet.Port), "%s: %s probe port %s is a container port", where, probe, p.HTTPGet.Port.String())
		}
		assert.Equal(t, "/readyz", c.ReadinessProbe.HTTPGet.Path, where)
		assert.Equal(t, "/healthz", c.LivenessProbe.HTTPGet.Path, where)
		assert.False(t, c.Resources.Requests.Cpu().IsZero(), "%s: cpu request", where)
		assert.False(t, c.Resources.Requests.Memory().IsZero(), "%s: memory request", where)
		sc := c.SecurityContext
		require.NotNil(t, sc, "%s: securityContext", where)
		require.NotNil(t, sc.ReadOnlyRootFilesystem, where)
		assert.True(t, *sc.ReadOnlyRootFilesystem, "%s: readOnlyRootFilesystem", where)
		require.NotNil(t, sc.AllowPrivilegeEscalation, where)
		assert.False(t, *sc.AllowPrivilegeEscalation, "%s: allowPrivilegeEscalation", where)
		require.NotNil(t, sc.Capabilities, where)
		assert.Equal(t, []corev1.Capability{"ALL"}, sc.Capabilities.Drop, "%s: drop ALL", where)
		assert.Empty(t, sc.Capabilities.Add, "%s: no capabilities added", where)
		for _, m := range c.VolumeMounts {
			assert.True(t, slices.ContainsFunc(pt.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == m.Name }),
				"%s: volume %q is defined", where, m.Name)
		}
	}
}

func assertPinned(t *testing.T, where, image string) {
	t.Helper()
	if _, digest, ok := strings.Cut(image, "@"); ok {
		assert.True(t, strings.HasPrefix(digest, "sha256:"), "%s: image %s digest", where, image)
		return
	}
	last := image[strings.LastIndex(image, "/")+1:]
	_, tag, ok := strings.Cut(last, ":")
	assert.True(t, ok && tag != "" && tag != "latest", "%s: image %q is pinned to a tag or digest", where, image)
}

func hasPort(c corev1.Container, p intstr.IntOrString) bool {
	return slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool {
		if p.Type == intstr.String {
			return cp.Name == p.StrVal
		}
		return cp.ContainerPort == p.IntVal
	})
}

func containerPort(t *testing.T, c corev1.Container, name string) corev1.ContainerPort {
	t.Helper()
	i := slices.IndexFunc(c.Ports, func(cp corev1.ContainerPort) bool { return cp.Name == name })
	require.GreaterOrEqual(t, i, 0, "container %s has a port named %s", c.Name, name)
	return c.Ports[i]
}

// mountedConfig finds the --config file a pod runs with in the ConfigMap
// mounted at its directory, and decodes it strictly.
func mountedConfig(t *testing.T, objs []object, pt *corev1.PodTemplateSpec) *serveConfig {
	t.Helper()
	c := pt.Spec.Containers[0]
	require.NotEmpty(t, c.Args, c.Name)
	assert.Equal(t, "serve", c.Args[0], "%s runs egressguard serve", c.Name)
	var file string
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--config="); ok {
			file = v
		}
	}
	require.NotEmpty(t, file, "%s: --config=FILE", c.Name)
	cm := configMapAt(t, objs, pt, c, path.Dir(file))
	text, ok := cm.Data[path.Base(file)]
	require.True(t, ok, "ConfigMap %s has key %s", cm.Name, path.Base(file))
	env := serviceLinks(objs, cm.Namespace)
	for _, e := range c.Env {
		switch {
		case e.Value != "":
			env[e.Name] = e.Value
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil:
			env[e.Name] = "from-" + e.ValueFrom.FieldRef.FieldPath // the kubelet fills it in
		}
	}
	text = applyArgSets(t, text, c.Args, env)
	cfg, err := parseServeConfig(cm.Name+"/"+path.Base(file), text)
	require.NoError(t, err)
	return cfg
}

// allocatedIP stands in for the ClusterIP the API server allocates to a
// Service that does not fix one.
const allocatedIP = "192.0.2.53"

// serviceLinks are the <SERVICE>_SERVICE_HOST variables Kubernetes sets in
// pods of namespace ns created after its Services (enableServiceLinks).
func serviceLinks(objs []object, ns string) map[string]string {
	env := map[string]string{}
	for _, o := range objs {
		s, ok := o.Obj.(*corev1.Service)
		if !ok || o.NS != ns || s.Spec.ClusterIP == corev1.ClusterIPNone {
			continue
		}
		ip := s.Spec.ClusterIP
		if ip == "" {
			ip = allocatedIP
		}
		env[strings.ToUpper(strings.ReplaceAll(s.Name, "-", "_"))+"_SERVICE_HOST"] = ip
	}
	return env
}

// applyArgSets applies a container's --set=KEY=VALUE arguments to a serve
// config, with $(VAR) expanded from env as the kubelet expands arguments.
func applyArgSets(t *testing.T, text string, args []string, env map[string]string) string {
	t.Helper()
	var doc map[string]any
	require.NoError(t, yaml.Unmarshal([]byte(text), &doc))
	for _, a := range args {
		kv, ok := strings.CutPrefix(a, "--set=")
		if !ok {
			continue
		}
		key, val, ok := strings.Cut(kv, "=")
		require.True(t, ok, a)
		val = regexp.MustCompile(`\$\(([A-Z0-9_]+)\)`).ReplaceAllStringFunc(val, func(m string) string {
			v, ok := env[m[2:len(m)-1]]
			require.True(t, ok, "%s: %s is not set in the pod", a, m)
			return v
		})
		m := doc
		parts := strings.Split(key, ".")
		for _, p := range parts[:len(parts)-1] {
			next, ok := m[p].(map[string]any)
			if !ok {
				next = map[string]any{}
				m[p] = next
			}
			m = next
		}
		m[parts[len(parts)-1]] = val
	}
	b, err := yaml.Marshal(doc)
	require.NoError(t, err)
	return string(b)
}

// configMapAt returns the ConfigMap a container mounts at dir.
func configMapAt(t *testing.T, objs []object, pt *corev1.PodTemplateSpec, c corev1.Container, dir string) *corev1.ConfigMap {
	t.Helper()
	i := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == dir })
	require.GreaterOrEqual(t, i, 0, "%s mounts %s", c.Name, dir)
	j := slices.IndexFunc(pt.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == c.VolumeMounts[i].Name })
	require.GreaterOrEqual(t, j, 0)
	require.NotNil(t, pt.Spec.Volumes[j].ConfigMap, "%s is a ConfigMap", dir)
	return one[*corev1.ConfigMap](t, objs, pt.Spec.Volumes[j].ConfigMap.Name)
}

// serviceFor returns the Services selecting a pod template's pods.
func servicesFor(objs []object, ns string, pt *corev1.PodTemplateSpec) []*corev1.Service {
	var out []*corev1.Service
	for _, o := range objs {
		s, ok := o.Obj.(*corev1.Service)
		if ok && o.NS == ns && len(s.Spec.Selector) > 0 && labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(pt.Labels)) {
			out = append(out, s)
		}
	}
	return out
}

func checkControlPlane(t *testing.T, r roles) {
	t.Helper()
	cfg := r.cpConfig
	assert.Empty(t, cfg.DNS.Listen, "control plane: dns off")
	require.NotEmpty(t, cfg.XDS.Listen, "control plane: xds on")
	require.NotEmpty(t, cfg.Admin.Listen, "control plane: admin on")
	assert.True(t, cfg.Admin.Auth.Kubernetes, "control plane: admin APIs need a token (TokenReview + SubjectAccessReview)")
	assert.Empty(t, cfg.Inventory.Kubernetes.NodeName, "control plane: cluster-wide inventory")
	c := r.cp.Spec.Template.Spec.Containers[0]
	assert.Equal(t, listenPort(t, cfg.XDS.Listen), containerPort(t, c, "xds").ContainerPort, "xds.listen port is the container's xds port")
	assert.Equal(t, listenPort(t, cfg.Admin.Listen), containerPort(t, c, "admin").ContainerPort, "admin.listen port is the probes' port")
	require.NotNil(t, r.cp.Spec.Strategy.RollingUpdate)
	assert.Equal(t, 0, r.cp.Spec.Strategy.RollingUpdate.MaxUnavailable.IntValue(), "a rollout never lowers the ready replicas")
}

func checkDNSGuard(t *testing.T, r roles) {
	t.Helper()
	cfg := r.dgConfig
	assert.Empty(t, cfg.XDS.Listen, "dnsguard: xds off")
	require.NotEmpty(t, cfg.DNS.Listen, "dnsguard: dns on")
	c := r.dg.Spec.Template.Spec.Containers[0]
	assert.Contains(t, c.Args, "--set=inventory.kubernetes.node_name=$(NODE_NAME)", "dnsguard watches its node's pods only")
	i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "NODE_NAME" })
	require.GreaterOrEqual(t, i, 0, "NODE_NAME env")
	require.NotNil(t, c.Env[i].ValueFrom)
	require.NotNil(t, c.Env[i].ValueFrom.FieldRef)
	assert.Equal(t, "spec.nodeName", c.Env[i].ValueFrom.FieldRef.FieldPath)
	dnsPort := listenPort(t, cfg.DNS.Listen)
	assert.Equal(t, listenPort(t, cfg.Admin.Listen), containerPort(t, c, "admin").ContainerPort)
	assert.True(t, cfg.Admin.Auth.Kubernetes, "dnsguard: admin APIs need a token (TokenReview + SubjectAccessReview)")

	require.NotNil(t, r.dg.Spec.UpdateStrategy.RollingUpdate)
	assert.Equal(t, 0, r.dg.Spec.UpdateStrategy.RollingUpdate.MaxUnavailable.IntValue(),
		"a node never loses its dnsguard during a rollout (maxUnavailable 0, maxSurge)")
	assert.Positive(t, r.dg.Spec.UpdateStrategy.RollingUpdate.MaxSurge.IntValue())

	// The DNS Service: allocated (or fixed) ClusterIP, node-local, 53 -> the dns ports,
	// UDP and TCP.
	var dnsSvc *corev1.Service
	for _, s := range servicesFor(r.objs, r.dg.Namespace, &r.dg.Spec.Template) {
		if s.Spec.ClusterIP != corev1.ClusterIPNone {
			require.Nil(t, dnsSvc, "one DNS Service")
			dnsSvc = s
		}
	}
	require.NotNil(t, dnsSvc, "a Service for dnsguard")
	dnsIP := dnsSvc.Spec.ClusterIP
	if dnsIP == "" {
		dnsIP = allocatedIP // the API server allocates it
	} else {
		_, err := netip.ParseAddr(dnsIP)
		require.NoError(t, err, "a fixed clusterIP is an address")
	}
	require.NotNil(t, dnsSvc.Spec.InternalTrafficPolicy)
	assert.Equal(t, corev1.ServiceInternalTrafficPolicyLocal, *dnsSvc.Spec.InternalTrafficPolicy)
	protos := map[corev1.Protocol]bool{}
	for _, p := range dnsSvc.Spec.Ports {
		assert.Equal(t, int32(53), p.Port, "dns Service port")
		cp := containerPort(t, c, p.TargetPort.StrVal)
		assert.Equal(t, dnsPort, cp.ContainerPort, "Service port %s -> dns.listen", p.Name)
		assert.Equal(t, p.Protocol, cp.Protocol, "Service port %s protocol", p.Name)
		protos[p.Protocol] = true
	}
	assert.Equal(t, map[corev1.Protocol]bool{corev1.ProtocolUDP: true, corev1.ProtocolTCP: true}, protos)

	// The webhook points injected pods at that address.
	if w := r.cpConfig.Webhook; w != nil && w.Listen != "" {
		assert.Equal(t, dnsIP, w.DNSServer, "webhook.dns_server is the dnsguard Service's clusterIP")
	}
}

// checkRBAC: ServiceAccounts exist, and the only permissions are get, list
// and watch on pods and namespaces, and create on tokenreviews and
// subjectaccessreviews. The chart's other ClusterRole, admin-reader, is
// bound to no one: operators bind it to who may read the admin APIs.
func checkRBAC(t *testing.T, objs []object, r roles) {
	t.Helper()
	assert.Empty(t, find[*rbacv1.Role](objs), "no namespaced Roles")
	assert.Empty(t, find[*rbacv1.RoleBinding](objs), "no RoleBindings")
	roles := slices.DeleteFunc(find[*rbacv1.ClusterRole](objs), func(cr *rbacv1.ClusterRole) bool {
		if !strings.HasSuffix(cr.Name, "-admin-reader") {
			return false
		}
		assert.Equal(t, []rbacv1.PolicyRule{{APIGroups: []string{"egressguard.io"}, Resources: []string{"adminapi"}, Verbs: []string{"get"}}}, cr.Rules)
		return true
	})
	require.Len(t, roles, 1)
	// Reading pods and namespaces; TokenReview (xds.identity, admin auth)
	// and SubjectAccessReview (admin auth): the only write-like verbs, and
	// they store nothing.
	allowed := map[string][]string{"/pods": {"get", "list", "watch"}, "/namespaces": {"get", "list", "watch"},
		"authentication.k8s.io/tokenreviews": {"create"}, "authorization.k8s.io/subjectaccessreviews": {"create"}}
	for _, rule := range roles[0].Rules {
		assert.Len(t, rule.APIGroups, 1)
		assert.Empty(t, rule.ResourceNames)
		assert.Empty(t, rule.NonResourceURLs)
		for _, res := range rule.Resources {
			verbs, ok := allowed[rule.APIGroups[0]+"/"+res]
			assert.True(t, ok, "%s/%s", rule.APIGroups[0], res)
			for _, v := range rule.Verbs {
				assert.Contains(t, verbs, v, "%s/%s", rule.APIGroups[0], res)
			}
		}
	}
	bound := map[string]bool{}
	for _, b := range find[*rbacv1.ClusterRoleBinding](objs) {
		assert.Equal(t, roles[0].Name, b.RoleRef.Name)
		assert.Equal(t, "ClusterRole", b.RoleRef.Kind)
		for _, s := range b.Subjects {
			require.Equal(t, "ServiceAccount", s.Kind)
			one[*corev1.ServiceAccount](t, objs, s.Name)
			bound[s.Namespace+"/"+s.Name] = true
		}
	}
	assert.True(t, bound[r.cp.Namespace+"/"+r.cp.Spec.Template.Spec.ServiceAccountName], "control plane can watch pods")
	assert.True(t, bound[r.dg.Namespace+"/"+r.dg.Spec.Template.Spec.ServiceAccountName], "dnsguard can watch pods")
}

// checkWebhook: the webhook calls the control plane's Service, whose port
// 443 leads to the webhook listener, and selects labelled namespaces only.
// It returns the webhook configuration (nil when the webhook is off).
func checkWebhook(t *testing.T, objs []object, r roles) {
	t.Helper()
	mwcs := find[*admissionv1.MutatingWebhookConfiguration](objs)
	w := r.cpConfig.Webhook
	if w == nil || w.Listen == "" {
		assert.Empty(t, mwcs, "no webhook configuration without a webhook listener")
		return
	}
	require.Len(t, mwcs, 1)
	require.Len(t, mwcs[0].Webhooks, 1)
	wh := mwcs[0].Webhooks[0]
	assert.Equal(t, []string{"v1"}, wh.AdmissionReviewVersions)
	require.NotNil(t, wh.SideEffects)
	assert.Equal(t, admissionv1.SideEffectClassNone, *wh.SideEffects)
	require.NotNil(t, wh.FailurePolicy)
	require.NotNil(t, wh.TimeoutSeconds)
	assert.LessOrEqual(t, *wh.TimeoutSeconds, int32(30))
	require.NotNil(t, wh.NamespaceSelector)
	assert.Equal(t, "enabled", wh.NamespaceSelector.MatchLabels[injectLabel])
	nsSel, err := metav1LabelSelectorAsSelector(wh.NamespaceSelector)
	require.NoError(t, err)
	assert.False(t, nsSel.Matches(labels.Set{injectLabel: "enabled", "kubernetes.io/metadata.name": r.cp.Namespace}),
		"egressguard's own namespace is never injected")
	assert.False(t, nsSel.Matches(labels.Set{injectLabel: "enabled", "kubernetes.io/metadata.name": "kube-system"}))
	assert.True(t, nsSel.Matches(labels.Set{injectLabel: "enabled", "kubernetes.io/metadata.name": "staging"}))
	assert.False(t, nsSel.Matches(labels.Set{"kubernetes.io/metadata.name": "staging"}))
	objSel, err := metav1LabelSelectorAsSelector(wh.ObjectSelector)
	require.NoError(t, err)
	for _, v := range []string{"false", "disabled", "no"} {
		assert.False(t, objSel.Matches(labels.Set{injectLabel: v}), "label opt-out %q", v)
	}
	assert.True(t, objSel.Matches(labels.Set{"app": "x"}))
	require.Len(t, wh.Rules, 1)
	assert.Equal(t, []admissionv1.OperationType{admissionv1.Create}, wh.Rules[0].Operations)
	assert.Equal(t, []string{"pods"}, wh.Rules[0].Resources)

	ref := wh.ClientConfig.Service
	require.NotNil(t, ref, "the webhook calls a Service")
	assert.Nil(t, wh.ClientConfig.URL)
	require.NotNil(t, ref.Path)
	assert.True(t, strings.HasPrefix(*ref.Path, "/"), "path %q", *ref.Path)
	assert.Equal(t, r.cp.Namespace, ref.Namespace)
	svc := one[*corev1.Service](t, objs, ref.Name)
	require.Contains(t, servicesFor(objs, r.cp.Namespace, &r.cp.Spec.Template), svc, "the webhook Service selects the control plane")
	port := int32(443)
	if ref.Port != nil {
		port = *ref.Port
	}
	c := r.cp.Spec.Template.Spec.Containers[0]
	i := slices.IndexFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Port == port })
	require.GreaterOrEqual(t, i, 0, "Service %s has port %d", svc.Name, port)
	target := containerPort(t, c, svc.Spec.Ports[i].TargetPort.StrVal)
	assert.Equal(t, listenPort(t, w.Listen), target.ContainerPort, "Service port %d -> webhook.listen", port)

	// The certificate files the config names are in a mounted Secret.
	require.Equal(t, path.Dir(w.CertFile), path.Dir(w.KeyFile))
	j := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == path.Dir(w.CertFile) })
	require.GreaterOrEqual(t, j, 0, "the control plane mounts %s", path.Dir(w.CertFile))
	k := slices.IndexFunc(r.cp.Spec.Template.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == c.VolumeMounts[j].Name })
	require.GreaterOrEqual(t, k, 0)
	sec := r.cp.Spec.Template.Spec.Volumes[k].Secret
	require.NotNil(t, sec, "webhook certificate volume is a Secret")
	assert.Equal(t, "tls.crt", path.Base(w.CertFile))
	assert.Equal(t, "tls.key", path.Base(w.KeyFile))
	checkWebhookCert(t, objs, mwcs[0], svc, sec.SecretName)

	// What the webhook injects points at what this install runs.
	assert.Equal(t, fmt.Sprintf("%s.%s.svc:%d", svc.Name, svc.Namespace, servicePortFor(t, svc, c, "xds")), w.XDSAddress,
		"webhook.xds_address is the control plane Service's xds port")
	assert.Equal(t, c.Image, w.InitImage, "the init container runs the same egressguard image")
	assertPinned(t, "webhook.sidecar_image", w.SidecarImage)
	assertPinned(t, "webhook.init_image", w.InitImage)
	assert.Equal(t, r.cpConfig.XDS.OutboundPort, w.OutboundPort, "xds and webhook agree on the outbound port")
}

func servicePortFor(t *testing.T, svc *corev1.Service, c corev1.Container, portName string) int32 {
	t.Helper()
	for _, p := range svc.Spec.Ports {
		if p.TargetPort.StrVal == portName {
			return p.Port
		}
	}
	t.Fatalf("Service %s has no port to %s", svc.Name, portName)
	return 0
}

// checkNetworkPolicies: in each injected namespace, DNS goes only to
// dnsguard's pods, the xDS port of the control plane is reachable, and no
// rule opens port 53 (or, unless allowed, UDP) to anything else.
func checkNetworkPolicies(t *testing.T, objs []object, r roles) {
	t.Helper()
	dgLabels := labels.Set(r.dg.Spec.Template.Labels)
	cpLabels := labels.Set(r.cp.Spec.Template.Labels)
	dnsPort := listenPort(t, r.dgConfig.DNS.Listen)
	xdsPort := listenPort(t, r.cpConfig.XDS.Listen)
	for _, np := range egressPolicies(objs) {
		where := np.Namespace + "/" + np.Name
		assert.NotEqual(t, r.cp.Namespace, np.Namespace, "%s: policies are for injected namespaces", where)
		assert.Empty(t, np.Spec.PodSelector.MatchLabels, "%s: every pod", where)
		assert.Equal(t, []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}, np.Spec.PolicyTypes, where)
		var dnsOK, xdsOK bool
		for i, rule := range np.Spec.Egress {
			toDNSGuard, toCP := false, false
			for _, peer := range rule.To {
				if peer.PodSelector == nil {
					continue
				}
				ps, err := metav1LabelSelectorAsSelector(peer.PodSelector)
				require.NoError(t, err)
				ns, err := metav1LabelSelectorAsSelector(peer.NamespaceSelector)
				require.NoError(t, err)
				inNS := ns.Matches(labels.Set{"kubernetes.io/metadata.name": r.cp.Namespace})
				toDNSGuard = toDNSGuard || (inNS && ps.Matches(dgLabels))
				toCP = toCP || (inNS && ps.Matches(cpLabels))
			}
			for _, p := range rule.Ports {
				require.NotNil(t, p.Port, "%s rule %d: a port", where, i)
				lo, hi := p.Port.IntVal, p.Port.IntVal
				if p.EndPort != nil {
					hi = *p.EndPort
				}
				switch {
				case toDNSGuard:
					assert.Equal(t, dnsPort, lo, "%s rule %d: dnsguard's port", where, i)
					dnsOK = true
				case toCP:
					assert.Equal(t, xdsPort, lo, "%s rule %d: the xds port", where, i)
					xdsOK = true
				default:
					assert.False(t, lo <= 53 && 53 <= hi, "%s rule %d: port 53 open to %v", where, i, rule.To)
				}
			}
			assert.NotEmpty(t, rule.Ports, "%s rule %d: every rule names its ports", where, i)
		}
		assert.True(t, dnsOK, "%s: DNS to dnsguard", where)
		assert.True(t, xdsOK, "%s: xDS to the control plane", where)
	}
}

// checkCatalogMount: every catalog file the config loads is a key of the
// ConfigMap mounted at the catalog directory, in both roles, and the policy
// dir is a mounted ConfigMap.
func checkCatalogMount(t *testing.T, objs []object, r roles) {
	t.Helper()
	for _, x := range []struct {
		cfg *serveConfig
		pt  *corev1.PodTemplateSpec
	}{{r.cpConfig, &r.cp.Spec.Template}, {r.dgConfig, &r.dg.Spec.Template}} {
		c := x.pt.Spec.Containers[0]
		cm := configMapAt(t, objs, x.pt, c, catalogDir)
		require.NotEmpty(t, x.cfg.Policy.Catalogs)
		for _, f := range x.cfg.Policy.Catalogs {
			assert.Equal(t, catalogDir, path.Dir(f))
			assert.Contains(t, cm.Data, path.Base(f), "catalog %s is in ConfigMap %s", f, cm.Name)
		}
		assert.Len(t, x.cfg.Policy.Catalogs, len(cm.Data), "every catalog file in %s is loaded", cm.Name)
		assert.Equal(t, policyDir, x.cfg.Policy.Dir)
		pcm := configMapAt(t, objs, x.pt, c, policyDir)
		for k := range pcm.Data {
			assert.True(t, strings.HasSuffix(k, ".rego"), "policy ConfigMap key %s", k)
		}
	}
	assert.Equal(t, r.cpConfig.Policy, r.dgConfig.Policy, "both roles load the same policy")
}

func metav1LabelSelectorAsSelector(s *metav1.LabelSelector) (labels.Selector, error) {
	if s == nil {
		return labels.Everything(), nil
	}
	return metav1.LabelSelectorAsSelector(s)
}

// checkWebhookCert: the Secret the control plane serves with is either
// issued by cert-manager for the Service's name, with the CA injected into
// the webhook configuration, or generated by Helm, with a caBundle that
// verifies the serving certificate for the Service's name.
func checkWebhookCert(t *testing.T, objs []object, mwc *admissionv1.MutatingWebhookConfiguration, svc *corev1.Service, secretName string) {
	t.Helper()
	svcName := svc.Name + "." + svc.Namespace + ".svc"
	caBundle := mwc.Webhooks[0].ClientConfig.CABundle
	if from, ok := mwc.Annotations["cert-manager.io/inject-ca-from"]; ok {
		assert.Empty(t, caBundle, "cainjector fills caBundle")
		ns, name, _ := strings.Cut(from, "/")
		assert.Equal(t, svc.Namespace, ns)
		var cert *cmCertificate
		for _, c := range find[*cmCertificate](objs) {
			if c.Name == name && c.Namespace == ns {
				cert = c
			}
		}
		require.NotNil(t, cert, "inject-ca-from names a Certificate: %s", from)
		assert.Equal(t, secretName, cert.Spec.SecretName, "the Certificate writes the mounted Secret")
		assert.Contains(t, cert.Spec.DNSNames, svcName)
		assert.False(t, cert.Spec.IsCA)
		checkIssuerChain(t, objs, cert)
		for _, s := range find[*corev1.Secret](objs) {
			assert.NotEqual(t, secretName, s.Name, "cert-manager owns the Secret; it is not rendered")
		}
		return
	}
	require.NotEmpty(t, caBundle, "without cert-manager the caBundle is set")
	sec := one[*corev1.Secret](t, objs, secretName)
	assert.Equal(t, corev1.SecretTypeTLS, sec.Type)
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(caBundle), "caBundle is PEM")
	assert.Equal(t, caBundle, sec.Data["ca.crt"], "the Secret keeps the CA (read back on upgrade)")
	pair, err := tls.X509KeyPair(sec.Data["tls.crt"], sec.Data["tls.key"])
	require.NoError(t, err, "tls.crt and tls.key are a pair")
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	require.NoError(t, err)
	_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: svcName, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	require.NoError(t, err, "the caBundle verifies the serving certificate for %s", svcName)
}

func checkIssuerChain(t *testing.T, objs []object, cert *cmCertificate) {
	t.Helper()
	for _, c := range find[*cmCertificate](objs) {
		for _, d := range []string{c.Spec.Duration, c.Spec.RenewBefore} {
			if d != "" {
				_, err := time.ParseDuration(d)
				assert.NoError(t, err, "Certificate %s duration %q", c.Name, d)
			}
		}
		for _, u := range c.Spec.Usages {
			assert.Contains(t, []string{"server auth", "client auth", "digital signature", "key encipherment", "cert sign"}, u)
		}
	}
	// serving cert -> CA Issuer -> CA Certificate -> self-signed Issuer.
	issuer := func(name string) *cmIssuer {
		for _, i := range find[*cmIssuer](objs) {
			if i.Name == name {
				return i
			}
		}
		t.Fatalf("Issuer %s not found", name)
		return nil
	}
	assert.Equal(t, "Issuer", cert.Spec.IssuerRef.Kind)
	ca := issuer(cert.Spec.IssuerRef.Name)
	require.NotNil(t, ca.Spec.CA, "the serving certificate comes from a CA issuer")
	var caCert *cmCertificate
	for _, c := range find[*cmCertificate](objs) {
		if c.Spec.SecretName == ca.Spec.CA.SecretName {
			caCert = c
		}
	}
	require.NotNil(t, caCert, "a Certificate writes the CA secret %s", ca.Spec.CA.SecretName)
	assert.True(t, caCert.Spec.IsCA)
	require.NotNil(t, issuer(caCert.Spec.IssuerRef.Name).Spec.SelfSigned)
}
