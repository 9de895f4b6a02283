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
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	_ "google.golang.org/grpc/xds" // the xds:/// resolver and balancers

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

// backend is a gRPC server that names itself in a response header.
func backend(t *testing.T, name string) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		_ = grpc.SetHeader(ctx, metadata.Pairs("backend", name))
		return h(ctx, req)
	}))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

const e2eNode = "staging-checkout-7f9c"

func e2eSpec(sandboxPort string, allowedTarget string, denyAllowed bool) plan.Spec {
	port := uint16(0)
	fmt.Sscan(sandboxPort, &port)
	spec := plan.Spec{Default: plan.ActionAllow, Rules: []plan.Rule{
		{ID: "payments-prod", Hosts: []string{"payments.prod.example.com"}, Action: plan.ActionRedirect,
			Redirect: &plan.Redirect{Host: "127.0.0.1", Port: port}, Reason: "production payments; use the sandbox"},
		{ID: "prod-zone", Hosts: []string{"*.prod.example.com"}, Action: plan.ActionDeny, Reason: "production zone"},
	}}
	if denyAllowed {
		host, _, _ := net.SplitHostPort(allowedTarget)
		spec.Rules = append(spec.Rules, plan.Rule{ID: "now-closed", Hosts: []string{host}, Action: plan.ActionDeny, Reason: "closed by a reload"})
	}
	return spec
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
	_, allowedPort, _ := net.SplitHostPort(allowed)
	allowedTarget := "localhost:" + allowedPort
	_, sandboxPort, _ := net.SplitHostPort(sandbox)

	plans := &switchPlans{}
	plans.p.Store(mustCompile(t, e2eSpec(sandboxPort, allowedTarget, false)))
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

	bootstrap := fmt.Sprintf(`{"xds_servers":[{"server_uri":%q,"channel_creds":[{"type":"insecure"}],"server_features":["xds_v3","trusted_xds_server"]}],"node":{"id":%q,"metadata":{"EGRESSGUARD_ENVIRONMENT":"production"}}}`,
		lis.Addr().String(), e2eNode)
	cctx, ccancel := context.WithTimeout(ctx, 90*time.Second)
	defer ccancel()
	cmd := exec.CommandContext(cctx, os.Args[0], "-test.run=^TestProxylessChild$", "-test.v")
	cmd.Env = append(os.Environ(), "EGRESSGUARD_XDS_CHILD=1", "GRPC_XDS_BOOTSTRAP_CONFIG="+bootstrap,
		"EGRESSGUARD_ALLOWED_TARGET="+allowedTarget)
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
	// grpc-go keeps one xDS client (one ADS stream) per channel target.
	streamsAfterStart := srv.StreamsOpened()
	assert.LessOrEqual(t, streamsAfterStart, int64(3))

	// A policy reload: the allowed target is now denied.
	plans.p.Store(mustCompile(t, e2eSpec(sandboxPort, allowedTarget, true)))
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
	dial := func(target string) *grpc.ClientConn {
		cc, err := grpc.NewClient("xds:///"+target, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			fail("dial %s: %v", target, err)
		}
		t.Cleanup(func() { cc.Close() })
		return cc
	}
	call := func(cc *grpc.ClientConn) (string, codes.Code) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var md metadata.MD
		_, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&md))
		got := ""
		if v := md.Get("backend"); len(v) > 0 {
			got = v[0]
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
	billing := dial("billing.prod.example.com")
	open := dial(allowedTarget)

	expect(payments, "production payments", "sandbox", codes.OK)
	expect(billing, "production billing", "", codes.PermissionDenied)
	expect(open, "allowed service", "allowed", codes.OK)
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
	fmt.Println("CHILD DONE")
}
