package kubeapi

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/egressguard/egressguard/inventory/kube"
	"github.com/egressguard/egressguard/policy"
	"github.com/egressguard/egressguard/xds"
	"github.com/egressguard/egressguard/xds/nodeauth"
)

const listenerType = "type.googleapis.com/envoy.config.listener.v3.Listener"

// replica is one control plane as the chart runs it: policy from the
// chart's ConfigMaps, inventory from the API server, xDS with identity
// checks in enforce mode and TokenReview against the API server, over TLS
// when tls is set.
type replica struct {
	addr  string
	guard *nodeauth.Guard
	reg   *prometheus.Registry
}

func startReplica(ctx context.Context, t *testing.T, c *cluster, tls xds.TLSConfig) *replica {
	t.Helper()
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	dir := t.TempDir()
	var catalogs []string
	for _, name := range []string{releaseName + "-catalog", releaseName + "-policy"} {
		cm, err := c.client.CoreV1().ConfigMaps(releaseNS).Get(ctx, name, metav1.GetOptions{})
		require.NoError(t, err)
		sub := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(sub, 0o755))
		for f, body := range cm.Data {
			require.NoError(t, os.WriteFile(filepath.Join(sub, f), []byte(body), 0o600))
			if strings.HasSuffix(name, "-catalog") {
				catalogs = append(catalogs, filepath.Join(sub, f))
			}
		}
	}
	eng, err := policy.NewEngine(ctx, policy.Options{CatalogFiles: catalogs, PolicyDir: filepath.Join(dir, releaseName+"-policy")}, log, nil)
	require.NoError(t, err)
	src := kube.New(c.client, log, kube.Options{Debounce: 10 * time.Millisecond, SyncTimeout: 30 * time.Second})
	cfg := xds.Defaults()
	cfg.Listen = "127.0.0.1:0"
	cfg.TLS = tls
	cfg.Identity.Mode = nodeauth.ModeEnforce
	reg := prometheus.NewRegistry()
	guard, err := nodeauth.New(cfg.Identity, src, nodeauth.NewTokenReviewer(c.client, cfg.Identity.Audience), log, reg)
	require.NoError(t, err)
	enf, err := xds.NewEnforcer(eng, src, cfg, log, xds.NewMetrics(nil))
	require.NoError(t, err)
	srv, err := xds.NewServer(ctx, cfg, enf, log, guard.ServerOptions()...)
	require.NoError(t, err)
	eng.Subscribe(enf.Rebuild)
	src.Subscribe(enf.Rebuild)

	rctx, stop := context.WithCancel(ctx)
	lis, err := net.Listen("tcp", cfg.Listen)
	require.NoError(t, err)
	done := make(chan struct{}, 2)
	go func() { _ = src.Run(rctx); done <- struct{}{} }()
	go func() { _ = srv.Serve(rctx, lis); done <- struct{}{} }()
	t.Cleanup(func() { stop(); <-done; <-done })
	require.Eventually(t, src.Synced, 30*time.Second, 20*time.Millisecond)
	return &replica{addr: lis.Addr().String(), guard: guard, reg: reg}
}

// fetch opens an ADS stream from the local address from, as node (with
// token as call credentials when set), and returns the listener
// response's version or the stream's error.
func (r *replica) fetch(t *testing.T, from netip.Addr, token, node string) (string, error) {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: from.AsSlice()}}
	conn, err := grpc.NewClient("passthrough:///"+r.addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) { return d.DialContext(ctx, "tcp", a) }))
	require.NoError(t, err)
	defer conn.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	s, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	require.NoError(t, err)
	require.NoError(t, s.Send(&discoveryv3.DiscoveryRequest{
		Node: &corev3.Node{Id: node, UserAgentName: "envoy"}, TypeUrl: listenerType,
	}))
	resp, err := s.Recv()
	if err != nil {
		return "", err
	}
	return resp.GetVersionInfo(), nil
}

// identityPod creates a ServiceAccount and a pod running as it, with ip as
// its (kubelet-reported) address.
func identityPod(ctx context.Context, t *testing.T, c *cluster, ns, name string, ip netip.Addr) *corev1.Pod {
	t.Helper()
	_, err := c.client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = c.client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": name}},
		Spec:       corev1.PodSpec{ServiceAccountName: name, Containers: []corev1.Container{{Name: "app", Image: "example/app:1"}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	setPodIP(ctx, t, c.client, ns, name, ip)
	p, err := c.client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	require.NoError(t, err)
	return p
}

// podToken is a projected ServiceAccount token bound to pod, as the kubelet
// would mount it.
func podToken(ctx context.Context, t *testing.T, c *cluster, pod *corev1.Pod, audience string) string {
	t.Helper()
	exp := int64(600)
	tr, err := c.client.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, pod.Spec.ServiceAccountName, &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{
			Audiences: []string{audience}, ExpirationSeconds: &exp,
			BoundObjectRef: &authnv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	return tr.Status.Token
}

// expired re-signs token with the cluster's signing key, its validity moved
// an hour into the past: a genuine token that has expired (TokenRequest
// does not issue tokens shorter than ten minutes).
func expired(t *testing.T, c *cluster, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	require.Len(t, parts, 3)
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	require.NoError(t, err)
	var claims map[string]any
	require.NoError(t, json.Unmarshal(raw, &claims))
	now := time.Now()
	claims["iat"], claims["nbf"], claims["exp"] = now.Add(-2*time.Hour).Unix(), now.Add(-2*time.Hour).Unix(), now.Add(-time.Hour).Unix()
	raw, err = json.Marshal(claims)
	require.NoError(t, err)
	signed := parts[0] + "." + base64.RawURLEncoding.EncodeToString(raw)
	sum := sha256.Sum256([]byte(signed))
	sig, err := rsa.SignPKCS1v15(rand.Reader, c.saKey, crypto.SHA256, sum[:])
	require.NoError(t, err)
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func requireDenied(t *testing.T, err error, contains string) {
	t.Helper()
	require.Error(t, err)
	assert.Equal(t, codes.PermissionDenied, status.Code(err), "%v", err)
	assert.Contains(t, status.Convert(err).Message(), contains)
}

// TestNodeIdentity proves node IDs against the real API server (peer
// addresses from the informers, tokens through TokenReview), and checks
// that two replicas from the same ConfigMaps hand a node the same version.
func TestNodeIdentity(t *testing.T) {
	c := startCluster(t)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	ensureInstalled(ctx, t, c)
	mkNamespace(ctx, t, c.client, "payments", map[string]string{kube.EnvironmentLabel: "production"})
	mkNamespace(ctx, t, c.client, "batch", map[string]string{kube.EnvironmentLabel: "staging"})
	prodIP, stagingIP := netip.MustParseAddr("127.0.0.5"), netip.MustParseAddr("127.0.0.6")
	nat := netip.MustParseAddr("127.0.0.1") // clients behind NAT share an address
	prodPod := identityPod(ctx, t, c, "payments", "charge", prodIP)
	stagingPod := identityPod(ctx, t, c, "batch", "report", stagingIP)
	prodNode := kube.NodeID(prodIP, "charge", "payments", "")
	stagingNode := kube.NodeID(stagingIP, "report", "batch", "")

	r1, r2 := startReplica(ctx, t, c, xds.TLSConfig{}), startReplica(ctx, t, c, xds.TLSConfig{})
	require.Eventually(t, func() bool {
		_, err := r1.fetch(t, prodIP, "", prodNode)
		return err == nil
	}, 20*time.Second, 100*time.Millisecond, "the replica's inventory has the pods")

	t.Run("genuine sidecar served, same version from both replicas", func(t *testing.T) {
		v1, err := r1.fetch(t, prodIP, "", prodNode)
		require.NoError(t, err)
		v2, err := r2.fetch(t, prodIP, "", prodNode)
		require.NoError(t, err)
		assert.NotEmpty(t, v1)
		assert.Equal(t, v1, v2, "deterministic plans: replicas are interchangeable")
	})
	t.Run("forged node ID from another pod's address refused", func(t *testing.T) {
		_, err := r1.fetch(t, stagingIP, "", prodNode)
		requireDenied(t, err, "the connection comes from 127.0.0.6")
	})
	staging := podToken(ctx, t, c, stagingPod, nodeauth.DefaultAudience)
	t.Run("genuine token behind NAT served", func(t *testing.T) {
		_, err := r1.fetch(t, nat, staging, stagingNode)
		require.NoError(t, err)
	})
	t.Run("token for pod A with the node ID of pod B refused", func(t *testing.T) {
		_, err := r1.fetch(t, nat, staging, prodNode)
		requireDenied(t, err, "the token is bound to pod batch/report, the node ID names pod payments/charge")
	})
	t.Run("wrong-audience token refused", func(t *testing.T) {
		_, err := r1.fetch(t, nat, podToken(ctx, t, c, prodPod, "vault"), prodNode)
		requireDenied(t, err, "token rejected")
	})
	t.Run("expired token refused", func(t *testing.T) {
		tok := podToken(ctx, t, c, prodPod, nodeauth.DefaultAudience)
		_, err := r1.fetch(t, nat, tok, prodNode)
		require.NoError(t, err, "the same token, unexpired, is accepted")
		_, err = r1.fetch(t, nat, expired(t, c, tok), prodNode)
		requireDenied(t, err, "token rejected")
	})
	assert.NotEmpty(t, r1.guard.Recent())
}

// ensureInstalled installs the chart when TestKubernetesFlow has not (the
// tests can run alone with -run).
func ensureInstalled(ctx context.Context, t *testing.T, c *cluster) {
	t.Helper()
	if _, err := c.client.CoreV1().ConfigMaps(releaseNS).Get(ctx, releaseName+"-catalog", metav1.GetOptions{}); err == nil {
		return
	}
	helmInstall(ctx, t, c)
}
