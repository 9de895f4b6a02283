package kubeapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Versions of the binaries test/kubeapi/tools/* build (their go.mod pins them).
const (
	kubeVersion = "v1.37.2"
	etcdVersion = "v3.6.13"
	// serviceCIDR is not kubeadm's 10.96.0.0/12: the chart must install
	// on clusters whose Service CIDR is anything.
	serviceCIDR = "10.0.0.0/24"
	adminToken  = "egressguard-test-admin-token"
)

// cluster is a running etcd and kube-apiserver on loopback.
type cluster struct {
	dir        string
	rest       *rest.Config
	client     kubernetes.Interface
	kubeconfig string
	saKey      *rsa.PrivateKey // the ServiceAccount token signing key
	procs      []proc
}

type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when it has exited
}

var (
	clusterOnce sync.Once
	theCluster  *cluster
	clusterSkip string
	clusterErr  error
)

func TestMain(m *testing.M) {
	// KUBEAPI_BUILD_ONLY=1 builds (or finds cached) kube-apiserver and etcd
	// and exits: `make test` runs it first, with its own timeout, so a cold
	// build does not eat into the timeout of the test run itself.
	if os.Getenv("KUBEAPI_BUILD_ONLY") == "1" {
		for _, name := range []string{"etcd", "kube-apiserver"} {
			bin, skip, err := buildTool(name)
			switch {
			case err != nil:
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			case skip != "":
				fmt.Fprintln(os.Stderr, skip)
			default:
				fmt.Fprintf(os.Stderr, "kubeapi: %s ready: %s\n", name, bin)
			}
		}
		os.Exit(0)
	}
	code := m.Run()
	if theCluster != nil {
		theCluster.stop()
	}
	os.Exit(code)
}

// startCluster starts the package's one cluster on first use. It skips the
// test only where the binaries cannot be built (no go command, no module
// proxy); any other failure fails the test.
func startCluster(t *testing.T) *cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("kubeapi: -short: not building or starting kube-apiserver and etcd")
	}
	clusterOnce.Do(func() { theCluster, clusterSkip, clusterErr = newCluster() })
	if clusterSkip != "" {
		t.Skip(clusterSkip)
	}
	if clusterErr != nil {
		t.Fatal(clusterErr)
	}
	return theCluster
}

func newCluster() (*cluster, string, error) {
	etcdBin, skip, err := buildTool("etcd")
	if skip != "" || err != nil {
		return nil, skip, err
	}
	apiBin, skip, err := buildTool("kube-apiserver")
	if skip != "" || err != nil {
		return nil, skip, err
	}
	dir, err := os.MkdirTemp("", "egressguard-kubeapi-")
	if err != nil {
		return nil, "", err
	}
	c := &cluster{dir: dir}
	if err := c.start(etcdBin, apiBin); err != nil {
		c.stop()
		return nil, "", err
	}
	return c, "", nil
}

// buildTool builds test/kubeapi/tools/<name> into the user cache directory,
// keyed by its go.mod, go.sum and main.go, and returns the binary. Go's
// build cache makes a rebuild after a key change quick; an unchanged key
// is not rebuilt at all.
func buildTool(name string) (bin, skip string, err error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", "kubeapi: no go command to build " + name + " with", nil
	}
	src, err := filepath.Abs(filepath.Join("tools", name))
	if err != nil {
		return "", "", err
	}
	// kube-apiserver reports the version it was stamped with (Helm checks
	// charts' kubeVersion against it); a module build is not stamped.
	ldflags := map[string]string{
		"kube-apiserver": "-X k8s.io/component-base/version.gitVersion=" + kubeVersion +
			" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37" +
			" -X k8s.io/component-base/version.gitTreeState=clean",
	}[name]
	h := sha256.New()
	h.Write([]byte(ldflags))
	for _, f := range []string{"go.mod", "go.sum", "main.go"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			return "", "", fmt.Errorf("kubeapi: %w", err)
		}
		h.Write(b)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	bin = filepath.Join(cache, "egressguard", "kubeapi", name+"-"+hex.EncodeToString(h.Sum(nil))[:16])
	if _, err := os.Stat(bin); err == nil {
		return bin, "", nil
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", "", err
	}
	tmp := bin + ".tmp" + strconv.Itoa(os.Getpid())
	cmd := exec.Command(goBin, "build", "-ldflags", ldflags, "-o", tmp, ".")
	cmd.Dir = src
	// The tools' own module, whatever GOFLAGS the caller runs the tests with.
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Run(); err != nil {
		_ = os.Remove(tmp)
		msg := out.String()
		if strings.Contains(msg, "dial tcp") || strings.Contains(msg, "proxy.golang.org") || strings.Contains(msg, "GOPROXY=off") ||
			strings.Contains(msg, "no such host") || strings.Contains(msg, "-mod=mod disabled") {
			return "", fmt.Sprintf("kubeapi: cannot download the modules to build %s (no module proxy?): %s", name, firstLine(msg)), nil
		}
		return "", "", fmt.Errorf("kubeapi: go build %s: %w\n%s", name, err, msg)
	}
	fmt.Fprintf(os.Stderr, "kubeapi: built %s in %s\n", name, time.Since(start).Round(time.Second))
	return bin, "", os.Rename(tmp, bin)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (c *cluster) start(etcdBin, apiBin string) error {
	var ports [3]int
	for i := range ports {
		p, err := freePort()
		if err != nil {
			return err
		}
		ports[i] = p
	}
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	if err := c.run(etcdBin, "etcd",
		"--data-dir", filepath.Join(c.dir, "etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", ports[1]),
		"--log-level", "warn"); err != nil {
		return err
	}

	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	c.saKey = key
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return err
	}
	files := map[string][]byte{
		"sa.key":     pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}),
		"sa.pub":     pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}),
		"tokens.csv": []byte(adminToken + ",admin,admin,system:masters\n"),
	}
	for n, b := range files {
		if err := os.WriteFile(filepath.Join(c.dir, n), b, 0o600); err != nil {
			return err
		}
	}
	certDir := filepath.Join(c.dir, "certs")
	if err := c.run(apiBin, "kube-apiserver",
		"--etcd-servers="+etcdURL,
		"--secure-port="+strconv.Itoa(ports[2]),
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		"--endpoint-reconciler-type=none",
		"--cert-dir="+certDir,
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file="+filepath.Join(c.dir, "sa.pub"),
		"--service-account-signing-key-file="+filepath.Join(c.dir, "sa.key"),
		"--authorization-mode=RBAC",
		"--token-auth-file="+filepath.Join(c.dir, "tokens.csv"),
		"--service-cluster-ip-range="+serviceCIDR,
		"--disable-admission-plugins=ServiceAccount",
		"--allow-privileged=true",
		"--v=0"); err != nil {
		return err
	}

	c.rest = &rest.Config{
		Host:        fmt.Sprintf("https://127.0.0.1:%d", ports[2]),
		BearerToken: adminToken,
		// The server's self-signed certificate appears in cert-dir only
		// once it runs; the tests talk to it on loopback.
		TLSClientConfig: rest.TLSClientConfig{Insecure: true},
		QPS:             100, Burst: 200,
	}
	if c.client, err = kubernetes.NewForConfig(c.rest); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for {
		body, err := c.client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err == nil && string(body) == "ok" {
			break
		}
		if ctx.Err() != nil {
			return fmt.Errorf("kubeapi: kube-apiserver not ready within 2m: %w (logs in %s)", err, c.dir)
		}
		for _, p := range c.procs {
			select {
			case <-p.done:
				return fmt.Errorf("kubeapi: %s exited: see %s.log in %s", p.name, p.name, c.dir)
			default:
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	c.kubeconfig = filepath.Join(c.dir, "kubeconfig")
	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = &clientcmdapi.Cluster{Server: c.rest.Host, InsecureSkipTLSVerify: true}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: adminToken}
	kc.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "admin"}
	kc.CurrentContext = "test"
	return clientcmd.WriteToFile(*kc, c.kubeconfig)
}

// run starts a server process with its output in dir/<name>.log.
func (c *cluster) run(bin, name string, args ...string) error {
	logf, err := os.Create(filepath.Join(c.dir, name+".log"))
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("kubeapi: start %s: %w", name, err)
	}
	p := proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); _ = logf.Close(); close(p.done) }()
	c.procs = append(c.procs, p)
	return nil
}

// stop ends the processes it started (API server first) and removes the
// data directory.
func (c *cluster) stop() {
	for i := len(c.procs) - 1; i >= 0; i-- {
		p := c.procs[i]
		_ = p.cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
	if os.Getenv("KUBEAPI_KEEP") == "" {
		_ = os.RemoveAll(c.dir)
	}
}

// impersonate returns a client acting as user (with groups).
func (c *cluster) impersonate(t *testing.T, user string, groups ...string) kubernetes.Interface {
	t.Helper()
	rc := rest.CopyConfig(c.rest)
	rc.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: groups}
	cl, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	return cl
}
