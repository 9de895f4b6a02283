package kubeapi

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.yaml.in/yaml/v3"
	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	helmkube "helm.sh/helm/v4/pkg/kube"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/kubernetes"

	"github.com/egressguard/egressguard/inject"
	"github.com/egressguard/egressguard/internal/testcert"
	"github.com/egressguard/egressguard/inventory/kube"
)

const (
	releaseName = "egressguard"
	releaseNS   = "egressguard"
	chartPath   = "../../deploy/helm/egressguard"
)

// TestKubernetesFlow runs the chart, RBAC, webhook and inventory against a
// real API server, in that order (each step builds on the last).
func TestKubernetesFlow(t *testing.T) {
	c := startCluster(t)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()

	t.Run("helm install with default values", func(t *testing.T) { helmInstall(ctx, t, c) })
	t.Run("control plane RBAC", func(t *testing.T) { checkRBAC(ctx, t, c) })
	t.Run("admin API auth: TokenReview and SubjectAccessReview", func(t *testing.T) { checkAdminAuth(ctx, t, c) })
	t.Run("kustomize base and overlay, server-side", func(t *testing.T) { checkKustomize(ctx, t, c) })
	t.Run("webhook called by the API server", func(t *testing.T) { checkWebhook(ctx, t, c) })
	t.Run("inventory informers", func(t *testing.T) { checkInventory(ctx, t, c) })
}

// helmInstall installs the chart through the Helm v4 SDK with its default
// values: every object is validated and applied server-side, and the staging
// namespaces do not exist yet.
func helmInstall(ctx context.Context, t *testing.T, c *cluster) {
	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig = &c.kubeconfig
	ns := releaseNS
	flags.Namespace = &ns
	cfg := action.NewConfiguration()
	require.NoError(t, cfg.Init(flags, releaseNS, "secret"))
	ch, err := loader.Load(chartPath)
	require.NoError(t, err)
	inst := action.NewInstall(cfg)
	inst.ReleaseName, inst.Namespace, inst.CreateNamespace = releaseName, releaseNS, true
	// Pods never run here (no kubelet): wait for hooks only (the chart has none).
	inst.WaitStrategy = helmkube.HookOnlyStrategy
	require.True(t, inst.ServerSideApply, "server-side apply: the API server validates every field")
	_, err = inst.RunWithContext(ctx, ch, map[string]any{})
	require.NoError(t, err, "helm install")

	// The dnsguard Service got an address from this cluster's Service CIDR.
	svc, err := c.client.CoreV1().Services(releaseNS).Get(ctx, releaseName+"-dnsguard", metav1.GetOptions{})
	require.NoError(t, err)
	ip, err := netip.ParseAddr(svc.Spec.ClusterIP)
	require.NoError(t, err)
	assert.True(t, netip.MustParsePrefix(serviceCIDR).Contains(ip), "allocated %s in %s", ip, serviceCIDR)
	mwc, err := c.client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, releaseName, metav1.GetOptions{})
	require.NoError(t, err)
	require.Len(t, mwc.Webhooks, 1)
	assert.NotEmpty(t, mwc.Webhooks[0].ClientConfig.CABundle, "the chart's CA bundle")
}

// checkRBAC acts as the control plane's ServiceAccount: it can read what the
// inventory needs, cluster-wide, and nothing else.
func checkRBAC(ctx context.Context, t *testing.T, c *cluster) {
	sa := c.impersonate(t, "system:serviceaccount:"+releaseNS+":"+releaseName, "system:serviceaccounts", "system:serviceaccounts:"+releaseNS, "system:authenticated")
	_, err := sa.CoreV1().Pods("").List(ctx, metav1.ListOptions{Limit: 1})
	require.NoError(t, err, "list pods cluster-wide")
	_, err = sa.CoreV1().Namespaces().List(ctx, metav1.ListOptions{Limit: 1})
	require.NoError(t, err, "list namespaces")
	w, err := sa.CoreV1().Pods("").Watch(ctx, metav1.ListOptions{})
	require.NoError(t, err, "watch pods")
	w.Stop()

	_, err = sa.AuthenticationV1().TokenReviews().Create(ctx, &authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: "x"}}, metav1.CreateOptions{})
	require.NoError(t, err, "TokenReview (xds.identity)")

	forbidden := map[string]error{}
	_, forbidden["list secrets cluster-wide"] = sa.CoreV1().Secrets("").List(ctx, metav1.ListOptions{})
	_, forbidden["list secrets in its own namespace"] = sa.CoreV1().Secrets(releaseNS).List(ctx, metav1.ListOptions{})
	_, forbidden["list configmaps"] = sa.CoreV1().ConfigMaps("").List(ctx, metav1.ListOptions{})
	_, forbidden["create a pod"] = sa.CoreV1().Pods(releaseNS).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "x"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "x", Image: "x"}}},
	}, metav1.CreateOptions{})
	_, forbidden["label a namespace"] = sa.CoreV1().Namespaces().Patch(ctx, releaseNS, types.MergePatchType,
		[]byte(`{"metadata":{"labels":{"x":"y"}}}`), metav1.PatchOptions{})
	forbidden["delete pods"] = sa.CoreV1().Pods("").DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
	_, forbidden["edit its webhook"] = sa.AdmissionregistrationV1().MutatingWebhookConfigurations().Patch(ctx, releaseName,
		types.MergePatchType, []byte(`{"metadata":{"labels":{"x":"y"}}}`), metav1.PatchOptions{})
	for what, err := range forbidden {
		assert.True(t, apierrors.IsForbidden(err), "%s: want Forbidden, got %v", what, err)
	}
}

// webhookConfig is the webhook section of the chart's control-plane config,
// as installed, with this test's listener and certificate.
func webhookConfig(ctx context.Context, t *testing.T, c *cluster, certDir string) inject.Config {
	cm, err := c.client.CoreV1().ConfigMaps(releaseNS).Get(ctx, releaseName+"-config", metav1.GetOptions{})
	require.NoError(t, err)
	var doc struct {
		Webhook yaml.Node `yaml:"webhook"`
	}
	require.NoError(t, yaml.Unmarshal([]byte(cm.Data["controlplane.yaml"]), &doc))
	cfg := inject.Defaults()
	require.NoError(t, doc.Webhook.Decode(&cfg))
	// What the Deployment's --set=webhook.dns_server=$(..._SERVICE_HOST)
	// gives the control plane: the Service's allocated address.
	svc, err := c.client.CoreV1().Services(releaseNS).Get(ctx, releaseName+"-dnsguard", metav1.GetOptions{})
	require.NoError(t, err)
	cfg.DNSServer = svc.Spec.ClusterIP
	cfg.Listen = "127.0.0.1:0"
	cfg.CertFile, cfg.KeyFile = testcert.CertFile(certDir), testcert.KeyFile(certDir)
	// The chart's xDS CA, as the control plane mounts it (xds_ca_file).
	require.Equal(t, "/etc/egressguard/xds/ca.crt", cfg.XDSCAFile)
	sec, err := c.client.CoreV1().Secrets(releaseNS).Get(ctx, releaseName+"-xds-tls", metav1.GetOptions{})
	require.NoError(t, err)
	cfg.XDSCAFile = filepath.Join(certDir, "xds-ca.crt")
	require.NoError(t, os.WriteFile(cfg.XDSCAFile, sec.Data["ca.crt"], 0o600))
	require.NoError(t, cfg.Validate())
	return cfg
}

// stagingAnchor is a name-constrained CA certificate standing in for the
// staging CA's anchor (what stagingca.Authority.AnchorsPEM returns).
func stagingAnchor(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "egressguard staging CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, PermittedDNSDomains: []string{"api.stripe.com"}, PermittedDNSDomainsCritical: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func checkWebhook(ctx context.Context, t *testing.T, c *cluster) {
	certDir := t.TempDir()
	cert := testcert.Write(t, certDir, 1)
	cfg := webhookConfig(ctx, t, c, certDir)
	// The chart installs in report mode (admit, record would-denies); the
	// flow checks the enforce mode an operator switches to after rollout,
	// where a pod spec that could leave the capture is refused.
	cfg.Mode = inject.ModeEnforce
	log := zaptest.NewLogger(t)
	anchor := stagingAnchor(t)
	h, err := inject.NewHandler(cfg, inject.NewMetrics(nil), log, inject.WithStagingCA(func() []byte { return anchor }))
	require.NoError(t, err)
	srv, err := inject.NewServer(cfg, h, log)
	require.NoError(t, err)
	lis, err := net.Listen("tcp", cfg.Listen)
	require.NoError(t, err)
	wctx, stopWebhook := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(wctx, lis) }()
	running := true
	defer func() {
		if running {
			stopWebhook()
			<-served
		}
	}()

	// The chart's webhook configuration, pointed at this listener: the API
	// server cannot reach a Service (there is no kube-proxy), and verifies
	// the webhook's certificate with the CA bundle.
	mwc, err := c.client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, releaseName, metav1.GetOptions{})
	require.NoError(t, err)
	url := "https://" + lis.Addr().String() + *mwc.Webhooks[0].ClientConfig.Service.Path
	mwc.Webhooks[0].ClientConfig.Service = nil
	mwc.Webhooks[0].ClientConfig.URL = &url
	mwc.Webhooks[0].ClientConfig.CABundle = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	_, err = c.client.AdmissionregistrationV1().MutatingWebhookConfigurations().Update(ctx, mwc, metav1.UpdateOptions{})
	require.NoError(t, err)

	// Namespaces created after the install, labelled as the docs say.
	mkNamespace(ctx, t, c.client, "staging", map[string]string{inject.NamespaceLabel: "enabled", kube.EnvironmentLabel: "staging"})
	mkNamespace(ctx, t, c.client, "production", map[string]string{kube.EnvironmentLabel: "production"})

	pod := func(name string, mutate ...func(*corev1.Pod)) *corev1.Pod {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": name}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example/app:1",
				// What the webhook asks of a container in enforce mode: it
				// cannot gain the capabilities that would leave the capture.
				SecurityContext: &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}}}},
		}
		for _, m := range mutate {
			m(p)
		}
		return p
	}
	create := func(ns string, p *corev1.Pod) (*corev1.Pod, error) {
		return c.client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
	}

	got, err := create("staging", pod("orders"))
	require.NoError(t, err)
	assert.True(t, hasContainer(got.Spec.Containers, inject.ProxyContainerName), "sidecar stored")
	assert.True(t, hasContainer(got.Spec.InitContainers, inject.InitContainerName), "capture init container stored")
	require.NotNil(t, got.Spec.DNSConfig)
	assert.Equal(t, []string{cfg.DNSServer}, got.Spec.DNSConfig.Nameservers, "resolver: the dnsguard Service's allocated address")
	assert.Equal(t, corev1.DNSNone, got.Spec.DNSPolicy)
	// The staging CA's trust bundle and xDS over TLS pass the API
	// server's validation of the mutated pod.
	require.Len(t, got.Spec.InitContainers, 2)
	assert.Equal(t, inject.TrustContainerName, got.Spec.InitContainers[1].Name, "trust bundle written right after the capture")
	assert.Equal(t, string(anchor), got.Spec.InitContainers[1].Env[0].Value)
	assert.Contains(t, envNames(got.Spec.Containers[0].Env), "SSL_CERT_FILE")
	assert.Contains(t, got.Spec.Containers[1].Args[1], "inlineBytes", "the sidecar verifies the control plane with the CA inline")

	got, err = create("staging", pod("checkout-grpc", func(p *corev1.Pod) {
		p.Annotations = map[string]string{inject.AnnotationProxylessGRPC: "true", inject.AnnotationTrustStagingCA: "false"}
	}))
	require.NoError(t, err)
	assert.Equal(t, string(mustRead(t, cfg.XDSCAFile)), got.Annotations[inject.AnnotationXDSCA], "the CA the downward API projects")
	var projected *corev1.ProjectedVolumeSource
	for _, v := range got.Spec.Volumes {
		if v.Projected != nil {
			projected = v.Projected
		}
	}
	require.NotNil(t, projected, "the token and CA volume is stored")
	require.NotNil(t, projected.Sources[0].ServiceAccountToken)
	assert.Equal(t, cfg.TokenAudience, projected.Sources[0].ServiceAccountToken.Audience)
	assert.Contains(t, envNames(got.Spec.Containers[0].Env), inject.EnvGRPCCallCreds)
	assert.Len(t, got.Spec.InitContainers, 1, "opted out of the trust bundle")

	got, err = create("production", pod("api"))
	require.NoError(t, err)
	assert.Len(t, got.Spec.Containers, 1, "production pod untouched")
	assert.Empty(t, got.Spec.InitContainers)

	got, err = create("staging", pod("legacy", func(p *corev1.Pod) {
		p.Annotations = map[string]string{inject.AnnotationInject: "disabled"}
	}))
	require.NoError(t, err)
	assert.Len(t, got.Spec.Containers, 1, "opted-out pod untouched")
	assert.Empty(t, got.Spec.InitContainers)

	uid := cfg.ProxyUID
	_, err = create("staging", pod("as-proxy", func(p *corev1.Pod) {
		p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: &uid}
	}))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "runAsUser is "+strconv.FormatInt(uid, 10)+", the egressguard sidecar's UID", "the webhook's message reaches the user")

	stopWebhook()
	running = false
	require.NoError(t, <-served)
	_, err = create("staging", pod("while-down"))
	require.Error(t, err, "failurePolicy Fail: no pod in a guarded namespace without the webhook")
	assert.Contains(t, err.Error(), "failed calling webhook")
	_, err = create("production", pod("api-2"))
	require.NoError(t, err, "namespaces the webhook does not select are not affected")
}

func envNames(env []corev1.EnvVar) []string {
	var out []string
	for _, e := range env {
		out = append(out, e.Name)
	}
	return out
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return b
}

func checkInventory(ctx context.Context, t *testing.T, c *cluster) {
	src := kube.New(c.client, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)), kube.Options{Debounce: 10 * time.Millisecond, SyncTimeout: 30 * time.Second})
	rctx, stop := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- src.Run(rctx) }()
	defer func() { stop(); require.NoError(t, <-ran) }()

	// There is no kubelet: the pod gets its IP through the status
	// subresource, as the kubelet would report it.
	ip := netip.MustParseAddr("10.244.1.7")
	setPodIP(ctx, t, c.client, "staging", "orders", ip)
	nodeID := kube.NodeID(ip, "orders", "staging", "")
	require.Eventually(t, func() bool {
		w, ok := src.Current().LookupIP(ip)
		return ok && w.Name == "orders" && w.Environment == "staging"
	}, 20*time.Second, 20*time.Millisecond, "resolvable by IP")
	w, ok := src.Current().LookupNode(nodeID)
	require.True(t, ok, "resolvable by node ID")
	assert.Equal(t, "staging", w.Namespace)

	_, err := c.client.CoreV1().Namespaces().Patch(ctx, "staging", types.MergePatchType,
		[]byte(`{"metadata":{"labels":{"`+kube.EnvironmentLabel+`":"qa"}}}`), metav1.PatchOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		w, ok := src.Current().LookupNode(nodeID)
		return ok && w.Environment == "qa"
	}, 20*time.Second, 20*time.Millisecond, "a namespace relabel moves the pod")
	_, err = c.client.CoreV1().Namespaces().Patch(ctx, "staging", types.MergePatchType,
		[]byte(`{"metadata":{"labels":{"`+kube.EnvironmentLabel+`":"staging"}}}`), metav1.PatchOptions{})
	require.NoError(t, err)
}

func mkNamespace(ctx context.Context, t *testing.T, cl kubernetes.Interface, name string, labels map[string]string) {
	t.Helper()
	_, err := cl.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return
	}
	require.NoError(t, err)
}

func setPodIP(ctx context.Context, t *testing.T, cl kubernetes.Interface, ns, name string, ip netip.Addr) {
	t.Helper()
	p, err := cl.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	require.NoError(t, err)
	p.Status.Phase = corev1.PodRunning
	p.Status.PodIP = ip.String()
	p.Status.PodIPs = []corev1.PodIP{{IP: ip.String()}}
	_, err = cl.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{})
	require.NoError(t, err)
}

func hasContainer(cs []corev1.Container, name string) bool {
	for _, c := range cs {
		if c.Name == name {
			return true
		}
	}
	return false
}
