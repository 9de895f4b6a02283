package kubeapi

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/egressguard/egressguard/inject"
	"github.com/egressguard/egressguard/inventory/kube"
	"github.com/egressguard/egressguard/xds"
	"github.com/egressguard/egressguard/xds/nodeauth"

	_ "google.golang.org/grpc/xds" // the xds:/// resolver and balancers
)

// Environment of the grpc-go child process (grpc-go reads its bootstrap and
// the call-credentials switch when its packages initialise).
const (
	childEnv       = "EGRESSGUARD_KUBEAPI_GRPC_CHILD"
	childXDSAddr   = "EGRESSGUARD_KUBEAPI_XDS_ADDR"
	childTarget    = "EGRESSGUARD_KUBEAPI_TARGET"
	childWant      = "EGRESSGUARD_KUBEAPI_WANT"
	childResolver  = "kubeapi-xds"
	childMarkerOK  = "CHILD SERVED"
	childMarkerBad = "CHILD REFUSED"
)

// TestProxylessGRPCOverTLS runs real grpc-go xDS clients with the bootstrap
// the webhook injects into a proxyless pod: TLS to the control plane,
// verified with the chart's xDS CA (the Secret the chart generated on the
// real API server) for the control-plane Service's name, and the pod's
// projected ServiceAccount token (a TokenRequest bound to the pod) as
// jwt_token_file call credentials (gRFC A97). The control plane serves the
// chart's xDS certificate and checks identity in enforce mode with
// TokenReview. The genuine client is served (its RPC reaches the backend
// through the xDS configuration); a client with pod A's token and pod B's
// node ID is refused, and the refusal names both pods. Both connect from
// 127.0.0.1, not their pods' addresses: only the token proves them.
func TestProxylessGRPCOverTLS(t *testing.T) {
	if os.Getenv(childEnv) != "" {
		t.Skip("child process")
	}
	c := startCluster(t)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	ensureInstalled(ctx, t, c)

	sec, err := c.client.CoreV1().Secrets(releaseNS).Get(ctx, releaseName+"-xds-tls", metav1.GetOptions{})
	require.NoError(t, err, "the chart generates the xDS serving certificate")
	tlsDir := t.TempDir()
	for _, f := range []string{"tls.crt", "tls.key", "ca.crt"} {
		require.NotEmpty(t, sec.Data[f], f)
		require.NoError(t, os.WriteFile(filepath.Join(tlsDir, f), sec.Data[f], 0o600))
	}
	r := startReplica(ctx, t, c, xds.TLSConfig{CertFile: filepath.Join(tlsDir, "tls.crt"), KeyFile: filepath.Join(tlsDir, "tls.key")})

	mkNamespace(ctx, t, c.client, "shop-grpc", map[string]string{kube.EnvironmentLabel: "staging"})
	mkNamespace(ctx, t, c.client, "ledger-grpc", map[string]string{kube.EnvironmentLabel: "production"})
	podA := identityPod(ctx, t, c, "shop-grpc", "client", netip.MustParseAddr("127.0.0.8"))
	identityPod(ctx, t, c, "ledger-grpc", "books", netip.MustParseAddr("127.0.0.9"))
	tokenA := podToken(ctx, t, c, podA, nodeauth.DefaultAudience)

	// The bootstrap the webhook writes, for the control plane's Service
	// name on the replica's port.
	_, port, err := net.SplitHostPort(r.addr)
	require.NoError(t, err)
	wcfg := inject.Defaults()
	wcfg.XDSAddress = releaseName + "." + releaseNS + ".svc:" + port
	wcfg.XDSCAFile = filepath.Join(tlsDir, "ca.crt")
	injected, err := inject.ProxylessBootstrap(wcfg)
	require.NoError(t, err)
	backend := healthBackend(t)

	run := func(t *testing.T, podIP, pod, ns, want string) string {
		t.Helper()
		// The kubelet's part: the projected volume (token and CA) and the
		// downward-API variables the bootstrap refers to.
		creds := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(creds, "token"), []byte(tokenA), 0o600))
		require.NoError(t, os.WriteFile(filepath.Join(creds, "ca.crt"), sec.Data["ca.crt"], 0o600))
		bootstrap := strings.NewReplacer(
			"$("+inject.EnvGRPCPodIP+")", podIP, "$("+inject.EnvGRPCPodName+")", pod,
			"$("+inject.EnvGRPCPodNamespace+")", ns, "$$", "$",
			inject.XDSCredentialsDir, creds,
		).Replace(injected)
		cctx, ccancel := context.WithTimeout(ctx, 90*time.Second)
		defer ccancel()
		cmd := exec.CommandContext(cctx, os.Args[0], "-test.run=^TestProxylessGRPCChild$", "-test.v")
		cmd.Env = append(os.Environ(), childEnv+"=1",
			inject.EnvGRPCBootstrapConfig+"="+bootstrap, inject.EnvGRPCCallCreds+"=true",
			childXDSAddr+"="+r.addr, childTarget+"="+backend, childWant+"="+want)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		return string(out)
	}

	t.Run("genuine client served over TLS with its pod's token", func(t *testing.T) {
		out := run(t, "127.0.0.8", "client", "shop-grpc", "served")
		assert.Contains(t, out, childMarkerOK)
		assert.GreaterOrEqual(t, checksMetric(t, r, "token", "verified"), 1.0, "proven by the token (the connection came from 127.0.0.1)")
	})
	t.Run("pod A's token with pod B's node ID refused", func(t *testing.T) {
		out := run(t, "127.0.0.9", "books", "ledger-grpc", "refused")
		assert.Contains(t, out, childMarkerBad)
		found := false
		for _, rf := range r.guard.Recent() {
			if rf.Evidence == nodeauth.EvidenceToken && strings.Contains(rf.Reason, "the token is bound to pod shop-grpc/client, the node ID names pod ledger-grpc/books") {
				found = rf.Enforced
			}
		}
		assert.True(t, found, "the refusal is recorded with both pods: %+v", r.guard.Recent())
	})
}

// checksMetric reads egressguard_nodeauth_checks_total{evidence,result}.
func checksMetric(t *testing.T, r *replica, evidence, result string) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "egressguard_nodeauth_checks_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			if l["evidence"] == evidence && l["result"] == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// healthBackend is a plaintext gRPC health server on loopback, the
// service the proxyless client's xds:/// target names.
func healthBackend(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	_, port, _ := net.SplitHostPort(lis.Addr().String())
	return "localhost:" + port
}

// TestProxylessGRPCChild is the grpc-go half of TestProxylessGRPCOverTLS.
// The bootstrap's server_uri is the control plane's Service name, which
// nothing here resolves: a resolver registered as the default scheme sends
// it to the replica's loopback address, while grpc-go still verifies the
// certificate for the name (the channel's authority). Then it calls the
// backend through xds:///, as an application would.
func TestProxylessGRPCChild(t *testing.T) {
	if os.Getenv(childEnv) == "" {
		t.Skip("run by TestProxylessGRPCOverTLS")
	}
	r := manual.NewBuilderWithScheme(childResolver)
	r.InitialState(resolver.State{Addresses: []resolver.Address{{Addr: os.Getenv(childXDSAddr)}}})
	resolver.Register(r)
	resolver.SetDefaultScheme(childResolver)

	cc, err := grpc.NewClient("xds:///"+os.Getenv(childTarget), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer cc.Close()
	var last error
	deadline := time.Now().Add(20 * time.Second)
	if os.Getenv(childWant) == "refused" {
		deadline = time.Now().Add(8 * time.Second)
	}
	for time.Now().Before(deadline) {
		cctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, last = healthpb.NewHealthClient(cc).Check(cctx, &healthpb.HealthCheckRequest{})
		cancel()
		if last == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	switch want := os.Getenv(childWant); {
	case want == "served" && last == nil:
		fmt.Println(childMarkerOK)
	case want == "refused" && last != nil && status.Code(last) == codes.Unavailable:
		fmt.Println(childMarkerBad, last)
	default:
		t.Fatalf("want %s, last RPC: %v", want, last)
	}
}
