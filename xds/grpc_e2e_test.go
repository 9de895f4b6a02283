package xds

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	_ "google.golang.org/grpc/xds" // the xds:/// resolver and balancers

	"github.com/egressguard/egressguard/internal/testcert"
	"github.com/egressguard/egressguard/inventory"
	"github.com/egressguard/egressguard/policy/plan"
)

// switchPlans is a PlanSource whose plan the test swaps.
type switchPlans struct{ p atomic.Pointer[plan.Plan] }

func (s *switchPlans) PlanFor(*inventory.Workload) (*plan.Plan, error) { return s.p.Load(), nil }

func mustCompile(t testing.TB, spec plan.Spec) *plan.Plan {
	t.Helper()
	p, err := plan.Compile(spec)
	require.NoError(t, err)
	return p
}

// backend is a gRPC server that names itself and the :authority it was
// sent in response headers, over TLS when opts say so.
func backend(t *testing.T, name string, opts ...grpc.ServerOption) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	opts = append(opts, grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		_ = grpc.SetHeader(ctx, metadata.Pairs("backend", name, "authority", strings.Join(md.Get(":authority"), ",")))
		return h(ctx, req)
	}))
	srv := grpc.NewServer(opts...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

const e2eNode = "staging-checkout-7f9c"

// e2eSpec: the payments target redirects to a plaintext sandbox on
// 127.0.0.1, the ledger to a TLS sandbox on localhost, the prod zone is
// denied; with denyAllowed a reload closes the allowed target.
func e2eSpec(sandboxPort, tlsSandboxPort string, allowedTarget string, denyAllowed bool) plan.Spec {
	port, tlsPort := uint16(0), uint16(0)
	fmt.Sscan(sandboxPort, &port)
	fmt.Sscan(tlsSandboxPort, &tlsPort)
	spec := plan.Spec{Default: plan.ActionAllow, Rules: []plan.Rule{
		{ID: "payments-prod", Hosts: []string{"payments.prod.example.com"}, Action: plan.ActionRedirect,
			Redirect: &plan.Redirect{Host: "127.0.0.1", Port: port}, Reason: "production payments; use the sandbox"},
		{ID: "ledger-live", Hosts: []string{"ledger.example.com"}, Action: plan.ActionRedirect,
			Redirect: &plan.Redirect{Host: "localhost", Port: tlsPort, TLS: true}, Reason: "live ledger; use the TLS sandbox"},
		{ID: "prod-zone", Hosts: []string{"*.prod.example.com"}, Action: plan.ActionDeny, Reason: "production zone"},
	}}
	if denyAllowed {
		host, _, _ := net.SplitHostPort(allowedTarget)
		spec.Rules = append(spec.Rules, plan.Rule{ID: "now-closed", Hosts: []string{host}, Action: plan.ActionDeny, Reason: "closed by a reload"})
	}
	return spec
}

// proxylessEnv is what a proxyless client process needs besides its
// bootstrap: authority rewrite for redirects (gRFC A81), system roots and
// SNI for TLS sandboxes (A82, A101), and sslRoots as the system roots (the
// TLS sandbox's test certificate).
func proxylessEnv(bootstrap []byte, sslRoots string) []string {
	return []string{"GRPC_XDS_BOOTSTRAP_CONFIG=" + string(bootstrap),
		"GRPC_EXPERIMENTAL_XDS_AUTHORITY_REWRITE=true", "GRPC_EXPERIMENTAL_XDS_SYSTEM_ROOT_CERTS=true",
		"GRPC_EXPERIMENTAL_XDS_SNI=true", "SSL_CERT_FILE=" + sslRoots}
}

// tlsBackend is backend over TLS with a certificate for localhost; it
// returns the backend's address and the certificate file.
func tlsBackend(t *testing.T, name string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	testcert.Write(t, dir, 1, "localhost")
	creds, err := credentials.NewServerTLSFromFile(testcert.CertFile(dir), testcert.KeyFile(dir))
	require.NoError(t, err)
	return backend(t, name, grpc.Creds(creds)), testcert.CertFile(dir)
}

// TestProxylessGRPC runs egressguard's ADS server and a real grpc-go xDS
// client (in a child process, because grpc-go reads GRPC_XDS_BOOTSTRAP_CONFIG
// when its packages initialise) and checks what the client enforces.
func TestProxylessGRPC(t *testing.T) {
	if os.Getenv("EGRESSGUARD_XDS_CHILD") != "" {
		t.Skip("child process")
	}
	log := zaptest.NewLogger(t)
	sandbox := backend(t, "sandbox")
	_ = backend(t, "production") // must never be reached
	allowed := backend(t, "allowed")
	tlsSandbox, roots := tlsBackend(t, "sandbox-tls")
	_, allowedPort, _ := net.SplitHostPort(allowed)
	allowedTarget := "localhost:" + allowedPort
	_, sandboxPort, _ := net.SplitHostPort(sandbox)
	_, tlsSandboxPort, _ := net.SplitHostPort(tlsSandbox)

	plans := &switchPlans{}
	plans.p.Store(mustCompile(t, e2eSpec(sandboxPort, tlsSandboxPort, allowedTarget, false)))
	snap, err := inventory.NewSnapshot("staging", []inventory.Workload{{Name: "checkout", Namespace: "payments", Environment: "staging", NodeIDs: []string{e2eNode}}})
	require.NoError(t, err)
	cfg := Defaults()
	enf, err := NewEnforcer(plans, inventory.NewStatic(snap), cfg, log, NewMetrics(nil))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := NewServer(ctx, cfg, enf, log)
	require.NoError(t, err)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, lis) }()

	bootstrap, err := GRPCBootstrap(e2eNode, lis.Addr().String(), GRPCBootstrapOptions{})
	require.NoError(t, err)
	cctx, ccancel := context.WithTimeout(ctx, 90*time.Second)
	defer ccancel()
	cmd := exec.CommandContext(cctx, os.Args[0], "-test.run=^TestProxylessChild$", "-test.v")
	cmd.Env = append(append(os.Environ(), proxylessEnv(bootstrap, roots)...),
		"EGRESSGUARD_XDS_CHILD=1", "EGRESSGUARD_ALLOWED_TARGET="+allowedTarget, "EGRESSGUARD_TLS_SANDBOX="+tlsSandbox)
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = cmd.Stdout
	require.NoError(t, cmd.Start())

	lines := make(chan string, 100)
	var output strings.Builder
	var outMu sync.Mutex
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			outMu.Lock()
			output.WriteString(sc.Text() + "\n")
			outMu.Unlock()
			lines <- sc.Text()
		}
		close(lines)
	}()
	waitFor := func(marker string) {
		t.Helper()
		for l := range lines {
			if strings.Contains(l, marker) {
				return
			}
			if strings.Contains(l, "CHILD FAIL") {
				break
			}
		}
		outMu.Lock()
		defer outMu.Unlock()
		t.Fatalf("child did not report %s; output:\n%s", marker, output.String())
	}

	waitFor("PHASE1 OK")
	// grpc-go keeps one xDS client (one ADS stream) per channel target: six
	// channels to four targets, all streams of one node, shown as one node.
	streamsAfterStart := srv.StreamsOpened()
	assert.GreaterOrEqual(t, streamsAfterStart, int64(2))
	assert.LessOrEqual(t, streamsAfterStart, int64(6))
	views := enf.Nodes()
	require.Len(t, views, 1)
	assert.Equal(t, e2eNode, views[0].ID)
	assert.Equal(t, int(streamsAfterStart), views[0].Streams)

	// A policy reload: the allowed target is now denied.
	plans.p.Store(mustCompile(t, e2eSpec(sandboxPort, tlsSandboxPort, allowedTarget, true)))
	enf.Rebuild()
	_, _ = io.WriteString(stdin, "PHASE2\n")
	waitFor("PHASE2 OK")

	// An invalid resource (a STATIC cluster, which grpc-go rejects) is
	// published behind egressguard's validation: the client NACKs it once,
	// keeps working on its last good config, and is not sent it again.
	good := enf.cache.Snapshot(e2eNode)
	require.NotNil(t, good)
	badItems := [numTypes][]*prepared{}
	for typ := range numTypes {
		for _, p := range good.sets[typ] {
			if typ == typeCluster && strings.HasPrefix(p.name, "grpc-sandbox|") {
				c := p.msg.(*clusterv3.Cluster)
				bad := &clusterv3.Cluster{Name: c.Name, ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
					LoadAssignment: singleEndpoint(c.Name, "127.0.0.1", 1, "")}
				bp, err := prepare(c.Name, bad)
				require.NoError(t, err)
				badItems[typ] = append(badItems[typ], bp)
				continue
			}
			badItems[typ] = append(badItems[typ], p)
		}
	}
	enf.cache.SetSnapshot(e2eNode, newSnapshot("bad", badItems))
	require.Eventually(t, func() bool {
		st, _ := enf.cache.status(e2eNode)
		return st.NACKs >= 1
	}, 30*time.Second, 20*time.Millisecond, "grpc-go should NACK a STATIC cluster")
	_, _ = io.WriteString(stdin, "PHASE3\n")
	waitFor("PHASE3 OK")
	st, _ := enf.cache.status(e2eNode)
	assert.LessOrEqual(t, st.NACKs, uint64(2), "a NACKed version must not be re-sent in a loop")
	require.NotNil(t, st.LastNACKs["cluster"])
	assert.Contains(t, st.LastNACKs["cluster"].Detail, "STATIC")

	// The good config again: the client recovers.
	enf.Rebuild()
	_, _ = io.WriteString(stdin, "DONE\n")
	waitFor("CHILD DONE")
	require.NoError(t, cmd.Wait())
	assert.Equal(t, streamsAfterStart, srv.StreamsOpened(), "no reconnect across reloads and NACKs")
	cancel()
	require.NoError(t, <-served)
}

// TestProxylessChild is the grpc-go client half of TestProxylessGRPC.
func TestProxylessChild(t *testing.T) {
	if os.Getenv("EGRESSGUARD_XDS_CHILD") == "" {
		t.Skip("run by TestProxylessGRPC")
	}
	fail := func(format string, args ...any) {
		fmt.Printf("CHILD FAIL: "+format+"\n", args...)
		t.Fatalf(format, args...)
	}
	allowedTarget := os.Getenv("EGRESSGUARD_ALLOWED_TARGET")
	// xDS credentials: TLS where a cluster asks for it (the TLS sandbox),
	// plaintext elsewhere.
	creds, err := xdscreds.NewClientCredentials(xdscreds.ClientOptions{FallbackCreds: insecure.NewCredentials()})
	if err != nil {
		fail("xds credentials: %v", err)
	}
	dial := func(target string) *grpc.ClientConn {
		cc, err := grpc.NewClient("xds:///"+target, grpc.WithTransportCredentials(creds))
		if err != nil {
			fail("dial %s: %v", target, err)
		}
		t.Cleanup(func() { cc.Close() })
		return cc
	}
	authority := map[*grpc.ClientConn]string{} // what the backend saw last
	call := func(cc *grpc.ClientConn) (string, codes.Code) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var md metadata.MD
		_, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&md))
		got := ""
		if v := md.Get("backend"); len(v) > 0 {
			got = v[0]
		}
		if v := md.Get("authority"); len(v) > 0 {
			authority[cc] = v[0]
		}
		return got, status.Code(err)
	}
	// expect retries until the client has its config, then insists.
	expect := func(cc *grpc.ClientConn, name, wantBackend string, wantCode codes.Code) {
		deadline := time.Now().Add(30 * time.Second)
		for {
			got, code := call(cc)
			if got == wantBackend && code == wantCode {
				return
			}
			if time.Now().After(deadline) {
				_, err := healthpb.NewHealthClient(cc).Check(context.Background(), &healthpb.HealthCheckRequest{})
				fail("%s: got backend %q code %v (%v), want %q %v", name, got, code, err, wantBackend, wantCode)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	payments := dial("payments.prod.example.com:443")
	payments2 := dial("payments.prod.example.com:443")
	billing := dial("billing.prod.example.com")
	open := dial(allowedTarget)
	ledger := dial("ledger.example.com:443")
	ledger2 := dial("ledger.example.com:443")

	expect(payments, "production payments", "sandbox", codes.OK)
	expect(payments2, "production payments, second channel", "sandbox", codes.OK)
	expect(billing, "production billing", "", codes.PermissionDenied)
	expect(open, "allowed service", "allowed", codes.OK)
	expect(ledger, "live ledger", "sandbox-tls", codes.OK)
	expect(ledger2, "live ledger, second channel", "sandbox-tls", codes.OK)
	// The TLS sandbox is reached by name (SNI and certificate "localhost")
	// and sees its own name as :authority, not the live one.
	if got, want := authority[ledger], "localhost:"+portOf(os.Getenv("EGRESSGUARD_TLS_SANDBOX")); got != want {
		fail("TLS sandbox saw :authority %q, want %q", got, want)
	}
	fmt.Println("PHASE1 OK")

	in := bufio.NewScanner(os.Stdin)
	waitLine := func(want string) {
		for in.Scan() {
			if strings.TrimSpace(in.Text()) == want {
				return
			}
		}
		fail("stdin closed before %s", want)
	}
	waitLine("PHASE2")
	expect(open, "allowed service after reload", "", codes.PermissionDenied)
	expect(payments, "payments after reload", "sandbox", codes.OK)
	expect(payments2, "payments after reload, second channel", "sandbox", codes.OK)
	expect(ledger2, "ledger after reload", "sandbox-tls", codes.OK)
	fmt.Println("PHASE2 OK")

	waitLine("PHASE3")
	for i := 0; i < 20; i++ {
		if got, code := call(payments); got != "sandbox" || code != codes.OK {
			fail("after a NACK the client must keep its last good config: got %q %v", got, code)
		}
		if _, code := call(billing); code != codes.PermissionDenied {
			fail("after a NACK billing must stay denied: got %v", code)
		}
		time.Sleep(25 * time.Millisecond)
	}
	fmt.Println("PHASE3 OK")
	waitLine("DONE")
	expect(payments, "payments after recovery", "sandbox", codes.OK)
	expect(ledger, "ledger after recovery", "sandbox-tls", codes.OK)
	fmt.Println("CHILD DONE")
}

func portOf(hostport string) string {
	_, port, _ := net.SplitHostPort(hostport)
	return port
}
