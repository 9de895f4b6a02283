package capture

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TestIptablesNetns applies the generated rules in a network namespace the
// test creates and checks where real TCP connections go.
//
// The parent re-executes this test binary in a new network namespace
// (SysProcAttr.Cloneflags = CLONE_NEWNET; the namespace dies with the
// child). The child ("netns" mode) is a pod in miniature: lo, and a TUN
// device eg0 with 192.0.2.2/24 and 2001:db8::2/64 and default routes
// through it. Packets routed out of eg0 are read back from the TUN file, so
// "not redirected" is observed positively as a SYN leaving the pod for the
// real destination, and "redirected" as a connection accepted on the proxy
// port whose SO_ORIGINAL_DST is the production address. Connections as the
// proxy UID are made by a grandchild (this binary again, "dial" mode) run
// with SysProcAttr.Credential.
func TestIptablesNetns(t *testing.T) {
	switch os.Getenv(netnsModeEnv) {
	case "netns":
		netnsChild(t)
		return
	case "dial":
		netnsDial(t)
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("skipped: needs root to create a network namespace and run iptables-restore")
	}
	for _, tool := range []string{"iptables-restore", "iptables-save", "ip6tables-restore", "ip6tables-save"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipped: %s is not installed (apt-get install iptables; make test-deps does it): %v", tool, err)
		}
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("skipped: no /dev/net/tun to play the pod's network interface: %v", err)
	}

	// The grandchild runs as the proxy UID and must be able to execute the
	// binary: copy it into a world-readable directory.
	bin := copyTestBinary(t)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-test.run=^TestIptablesNetns$", "-test.v", "-test.count=1", "-test.timeout=100s")
	cmd.Env = append(os.Environ(), netnsModeEnv+"=netns", netnsBinEnv+"="+bin)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Skipf("skipped: cannot create a network namespace (clone CLONE_NEWNET): %v", err)
	}
	err := cmd.Wait()
	t.Logf("in the network namespace:\n%s", out.String())
	if m := regexp.MustCompile(`(?m)^\s+netns_linux_test.go:\d+: (skipped: .*)$`).FindStringSubmatch(out.String()); m != nil && strings.Contains(out.String(), "--- SKIP: TestIptablesNetns") {
		t.Skip(m[1])
	}
	require.NoError(t, err, "the test in the network namespace failed (output above)")
	require.Contains(t, out.String(), "--- PASS: TestIptablesNetns", "the child must run the test, not skip it")
}

const (
	netnsModeEnv = "EGRESSGUARD_CAPTURE_NETNS_MODE"
	netnsBinEnv  = "EGRESSGUARD_CAPTURE_NETNS_BIN"
	netnsAddrEnv = "EGRESSGUARD_CAPTURE_NETNS_ADDR"

	proxyPort = 15001
	proxyUID  = 1337

	// IP6T_SO_ORIGINAL_DST (linux/netfilter_ipv6/ip6_tables.h); x/sys/unix lacks it.
	ip6tSOOriginalDst = 80
)

func copyTestBinary(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	require.NoError(t, err)
	dir, err := os.MkdirTemp("", "egressguard-netns-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	src, err := os.Open(self)
	require.NoError(t, err)
	defer src.Close()
	bin := filepath.Join(dir, "capture.test")
	dst, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	require.NoError(t, err)
	_, err = io.Copy(dst, src)
	require.NoError(t, err)
	require.NoError(t, dst.Close())
	return bin
}

// netnsDial is the grandchild: print the UID, then dial and wait until killed.
func netnsDial(t *testing.T) {
	fmt.Printf("uid=%d\n", os.Getuid())
	conn, err := net.DialTimeout("tcp", os.Getenv(netnsAddrEnv), 30*time.Second)
	if err != nil {
		fmt.Printf("dial: %v\n", err)
		return
	}
	fmt.Println("connected")
	_, _ = fmt.Fprintf(conn, "proxy-uid\n")
	conn.Close()
}

// accepted is one connection that landed on the proxy port.
type accepted struct {
	token string
	orig  netip.AddrPort
	err   error
}

// syn is a TCP SYN read from the TUN device: a connection leaving the pod.
type syn struct{ src, dst netip.AddrPort }

func netnsChild(t *testing.T) {
	// Never touch a real network namespace: a fresh one has only lo.
	ifs, err := net.Interfaces()
	require.NoError(t, err)
	require.Len(t, ifs, 1, "expected a fresh network namespace with only lo, got %v", ifs)
	require.Equal(t, "lo", ifs[0].Name)

	tun := setupPodNetwork(t)
	syns, allSYNs := readSYNs(t, tun)

	// A pod's namespace (lo and a TUN standing for a veth) is not mistaken
	// for a host's, so the init container's --apply is not refused.
	reason, err := HostNetwork(SystemNamespace())
	require.NoError(t, err)
	require.Empty(t, reason, "the test's namespace has only lo and a TUN device")

	opts := Options{
		ProxyPort:    proxyPort,
		ProxyUID:     proxyUID,
		ExcludePorts: []uint16{18000, 53},
		ExcludeCIDRs: prefixes(t, "198.51.100.0/24", "2001:db8:dead::/48"),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A kernel without a nat table (no nf_tables/ip_tables nat support) is
	// the environment, not the rules: say so and skip.
	for _, tool := range []string{"iptables-restore", "ip6tables-restore"} {
		if _, err := (ExecRunner{}).Run(ctx, tool, []string{"--noflush"}, []byte("*nat\nCOMMIT\n")); err != nil {
			t.Skipf("skipped: this kernel has no usable nat table for %s: %v", tool, err)
		}
	}
	// Rules that are not egressguard's, which Cleanup must keep.
	for _, tool := range []string{"iptables-restore", "ip6tables-restore"} {
		_, err := (ExecRunner{}).Run(ctx, tool, []string{"--noflush"}, []byte("*nat\n:KEEP_ME - [0:0]\n-A OUTPUT -p udp -m udp --dport 9 -j KEEP_ME\n-A KEEP_ME -j RETURN\nCOMMIT\n"))
		require.NoError(t, err)
	}
	before4, before6 := saveNAT(ctx, t, "iptables-save"), saveNAT(ctx, t, "ip6tables-save")
	res, err := Apply(ctx, opts, ExecRunner{}, ApplyOptions{IPv6: IPv6On})
	require.NoError(t, err)
	require.NotEmpty(t, res.IPv6)
	saved4, saved6 := saveNAT(ctx, t, "iptables-save"), saveNAT(ctx, t, "ip6tables-save")
	v4, v6, err := Rules(opts)
	require.NoError(t, err)
	// What iptables holds is exactly what Rules printed, rule for rule and
	// in order, beside the rules that were there before, unchanged.
	for _, c := range []struct{ before, rules, saved string }{{before4, v4, saved4}, {before6, v6, saved6}} {
		ours, others := splitRules(ruleLines(c.saved))
		assert.Equal(t, ruleLines(c.rules), ours)
		assert.Equal(t, ruleLines(c.before), others)
	}
	// Idempotent: a second Apply (an init container restart) changes nothing.
	_, err = Apply(ctx, opts, ExecRunner{}, ApplyOptions{IPv6: IPv6On})
	require.NoError(t, err)
	assert.Equal(t, saved4, saveNAT(ctx, t, "iptables-save"), "second apply changed the IPv4 nat table")
	assert.Equal(t, saved6, saveNAT(ctx, t, "ip6tables-save"), "second apply changed the IPv6 nat table")
	t.Logf("applied IPv4 rules:\n%s", saved4)

	// The sidecar: REDIRECT sends locally generated connections to the
	// loopback address of their family.
	proxied := make(chan accepted, 64)
	listenProxy(t, "tcp4", "127.0.0.1:15001", proxied)
	listenProxy(t, "tcp6", "[::1]:15001", proxied)

	redirected := []struct{ name, dst string }{
		{"app to production IPv4", "203.0.113.10:443"},
		{"app to production IPv6", "[2001:db8:1::10]:443"},
		{"app to another port", "203.0.113.10:80"},
		{"app to the pod's gateway", "192.0.2.1:443"},
	}
	for _, tc := range redirected {
		t.Run(tc.name, func(t *testing.T) {
			dst := netip.MustParseAddrPort(tc.dst)
			conn, err := net.DialTimeout("tcp", tc.dst, 10*time.Second)
			require.NoError(t, err, "the connection should land on the sidecar")
			defer conn.Close()
			_, err = fmt.Fprintf(conn, "%s\n", tc.name)
			require.NoError(t, err)
			select {
			case a := <-proxied:
				require.NoError(t, a.err)
				assert.Equal(t, tc.name, a.token)
				assert.Equal(t, dst, a.orig, "SO_ORIGINAL_DST is the production address")
			case <-time.After(10 * time.Second):
				t.Fatalf("no connection on the sidecar port for %s", tc.dst)
			}
		})
	}

	// The redirected connections never left the pod (checked before the
	// proxy UID dials the same destinations).
	for _, s := range allSYNs() {
		for _, tc := range redirected {
			assert.NotEqual(t, tc.dst, s.dst.String(), "%s left the pod", tc.name)
		}
	}

	leaves := []struct {
		name, dst string
		asProxy   bool
	}{
		{"proxy UID to production IPv4", "203.0.113.10:443", true},
		{"proxy UID to production IPv6", "[2001:db8:1::10]:443", true},
		{"excluded port", "203.0.113.10:18000", false},
		{"excluded port IPv6", "[2001:db8:1::10]:53", false},
		{"excluded CIDR", "198.51.100.7:443", false},
		{"excluded CIDR IPv6", "[2001:db8:dead::7]:443", false},
	}
	for _, tc := range leaves {
		t.Run(tc.name, func(t *testing.T) {
			dst := netip.MustParseAddrPort(tc.dst)
			dctx, stop := context.WithCancel(ctx)
			defer stop()
			done := make(chan error, 1)
			if tc.asProxy {
				cmd := exec.CommandContext(dctx, os.Getenv(netnsBinEnv), "-test.run=^TestIptablesNetns$", "-test.count=1")
				cmd.Env = append(os.Environ(), netnsModeEnv+"=dial", netnsAddrEnv+"="+tc.dst)
				cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: proxyUID, Gid: proxyUID, NoSetGroups: true}}
				stdout, err := cmd.StdoutPipe()
				require.NoError(t, err)
				cmd.Stderr = os.Stderr
				require.NoError(t, cmd.Start())
				line, err := bufio.NewReader(stdout).ReadString('\n')
				require.NoError(t, err)
				require.Equal(t, fmt.Sprintf("uid=%d\n", proxyUID), line, "the dialer runs as the proxy UID")
				go func() { _, _ = io.Copy(io.Discard, stdout); done <- cmd.Wait() }()
			} else {
				go func() {
					var d net.Dialer
					conn, err := d.DialContext(dctx, "tcp", tc.dst)
					if err == nil {
						_, _ = fmt.Fprintf(conn, "%s\n", tc.name)
						conn.Close()
					}
					done <- err
				}()
			}
			waitSYN(t, syns, dst)
			stop()
			<-done
		})
	}

	t.Run("pod's own address stays on lo", func(t *testing.T) {
		ln, err := net.Listen("tcp", "192.0.2.2:0")
		require.NoError(t, err)
		defer ln.Close()
		go func() {
			if c, err := ln.Accept(); err == nil {
				c.Close()
			}
		}()
		conn, err := net.DialTimeout("tcp", ln.Addr().String(), 10*time.Second)
		require.NoError(t, err)
		conn.Close()
	})

	// Nothing but the redirected cases reached the sidecar.
	select {
	case a := <-proxied:
		t.Errorf("unexpected connection on the sidecar port: %+v", a)
	default:
	}

	t.Run("cleanup removes exactly what apply added", func(t *testing.T) {
		res, err := Cleanup(ctx, ExecRunner{}, ApplyOptions{IPv6: IPv6On})
		require.NoError(t, err)
		require.NotEmpty(t, res.IPv4)
		require.NotEmpty(t, res.IPv6)
		assert.Equal(t, chainsAndRules(before4), chainsAndRules(saveNAT(ctx, t, "iptables-save")), "IPv4 nat table after cleanup")
		assert.Equal(t, chainsAndRules(before6), chainsAndRules(saveNAT(ctx, t, "ip6tables-save")), "IPv6 nat table after cleanup")

		// A connection that was redirected now leaves the pod.
		dst := netip.MustParseAddrPort("203.0.113.10:443")
		dctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			var d net.Dialer
			if conn, err := d.DialContext(dctx, "tcp", dst.String()); err == nil {
				conn.Close()
			}
		}()
		waitSYN(t, syns, dst)
		stop()
		<-done

		// Nothing left to remove: a second cleanup runs no iptables-restore.
		res, err = Cleanup(ctx, ExecRunner{}, ApplyOptions{IPv6: IPv6On})
		require.NoError(t, err)
		assert.Empty(t, res.IPv4)
		assert.Empty(t, res.IPv6)
	})
}

// splitRules separates the rules that name an egressguard chain from the others.
func splitRules(rules []string) (ours, others []string) {
	for _, r := range rules {
		if strings.Contains(r, "EGRESSGUARD_") {
			ours = append(ours, r)
		} else {
			others = append(others, r)
		}
	}
	return ours, others
}

// chainsAndRules are the chain names and -A lines of an iptables-save
// document: what Cleanup must restore, without the packet counters.
func chainsAndRules(doc string) []string {
	var out []string
	for _, l := range strings.Split(doc, "\n") {
		switch {
		case strings.HasPrefix(l, ":"):
			out = append(out, strings.Fields(l)[0])
		case strings.HasPrefix(l, "-A "):
			out = append(out, l)
		}
	}
	return out
}

// setupPodNetwork brings lo up and adds eg0, a TUN device standing for the
// pod's eth0, with addresses and default routes; it returns the TUN file.
func setupPodNetwork(t *testing.T) *os.File {
	t.Helper()
	lo, err := netlink.LinkByName("lo")
	require.NoError(t, err)
	require.NoError(t, netlink.LinkSetUp(lo))
	tun := &netlink.Tuntap{
		LinkAttrs:  netlink.LinkAttrs{Name: "eg0"},
		Mode:       netlink.TUNTAP_MODE_TUN,
		Flags:      netlink.TUNTAP_NO_PI,
		Queues:     1,
		NonPersist: true,
	}
	if err := netlink.LinkAdd(tun); err != nil {
		t.Skipf("skipped: cannot create a TUN device in the network namespace: %v", err)
	}
	require.Len(t, tun.Fds, 1)
	t.Cleanup(func() { tun.Fds[0].Close() })
	link, err := netlink.LinkByName("eg0")
	require.NoError(t, err)
	for _, a := range []string{"192.0.2.2/24", "2001:db8::2/64"} {
		addr, err := netlink.ParseAddr(a)
		require.NoError(t, err)
		addr.Flags = unix.IFA_F_NODAD // usable at once, no duplicate address detection
		require.NoError(t, netlink.AddrAdd(link, addr), a)
	}
	require.NoError(t, netlink.LinkSetUp(link))
	for _, gw := range []string{"192.0.2.1", "2001:db8::1"} {
		require.NoError(t, netlink.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Gw: net.ParseIP(gw)}), "default via %s", gw)
	}
	return tun.Fds[0]
}

// readSYNs reports every TCP SYN routed out of the TUN device on the
// channel, and all of them so far from the function.
func readSYNs(t *testing.T, tun *os.File) (<-chan syn, func() []syn) {
	t.Helper()
	ch := make(chan syn, 256)
	var mu sync.Mutex
	var all []syn
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 65536)
		for {
			n, err := tun.Read(buf)
			if err != nil {
				return // closed at cleanup
			}
			if s, ok := parseSYN(buf[:n]); ok {
				mu.Lock()
				all = append(all, s)
				mu.Unlock()
				select {
				case ch <- s:
				default: // retransmissions beyond the buffer are not needed
				}
			}
		}
	}()
	t.Cleanup(func() { tun.Close(); wg.Wait() })
	return ch, func() []syn {
		mu.Lock()
		defer mu.Unlock()
		return append([]syn(nil), all...)
	}
}

// parseSYN decodes an IPv4 or IPv6 packet carrying a TCP SYN.
func parseSYN(p []byte) (syn, bool) {
	if len(p) < 1 {
		return syn{}, false
	}
	var src, dst netip.Addr
	var tcp []byte
	switch p[0] >> 4 {
	case 4:
		ihl := int(p[0]&0x0f) * 4
		if len(p) < ihl+20 || p[9] != unix.IPPROTO_TCP {
			return syn{}, false
		}
		src, dst = netip.AddrFrom4([4]byte(p[12:16])), netip.AddrFrom4([4]byte(p[16:20]))
		tcp = p[ihl:]
	case 6:
		if len(p) < 60 || p[6] != unix.IPPROTO_TCP {
			return syn{}, false
		}
		src, dst = netip.AddrFrom16([16]byte(p[8:24])), netip.AddrFrom16([16]byte(p[24:40]))
		tcp = p[40:]
	default:
		return syn{}, false
	}
	if tcp[13]&0x12 != 0x02 { // SYN without ACK
		return syn{}, false
	}
	return syn{
		src: netip.AddrPortFrom(src, binary.BigEndian.Uint16(tcp[0:2])),
		dst: netip.AddrPortFrom(dst, binary.BigEndian.Uint16(tcp[2:4])),
	}, true
}

// waitSYN waits for a SYN to dst leaving the pod.
func waitSYN(t *testing.T, syns <-chan syn, dst netip.AddrPort) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case s := <-syns:
			if s.dst == dst {
				return
			}
			t.Logf("ignoring SYN %s -> %s", s.src, s.dst)
		case <-deadline:
			t.Fatalf("no SYN to %s left the pod: the connection was redirected or dropped", dst)
		}
	}
}

func listenProxy(t *testing.T, network, addr string, out chan<- accepted) {
	t.Helper()
	ln, err := net.Listen(network, addr)
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				a := accepted{}
				a.orig, a.err = originalDst(c.(*net.TCPConn), network == "tcp6")
				_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
				line, err := bufio.NewReader(c).ReadString('\n')
				a.token = strings.TrimSuffix(line, "\n")
				a.err = errors.Join(a.err, err)
				out <- a
			}()
		}
	}()
}

// originalDst reads the pre-REDIRECT destination (SO_ORIGINAL_DST), as
// Envoy's original_dst listener filter does.
func originalDst(c *net.TCPConn, v6 bool) (netip.AddrPort, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, err
	}
	var ap netip.AddrPort
	var opErr error
	err = raw.Control(func(fd uintptr) {
		if v6 {
			info, err := unix.GetsockoptIPv6MTUInfo(int(fd), unix.SOL_IPV6, ip6tSOOriginalDst)
			if err != nil {
				opErr = err
				return
			}
			var port [2]byte
			binary.NativeEndian.PutUint16(port[:], info.Addr.Port)
			ap = netip.AddrPortFrom(netip.AddrFrom16(info.Addr.Addr), binary.BigEndian.Uint16(port[:]))
			return
		}
		mreq, err := unix.GetsockoptIPv6Mreq(int(fd), unix.SOL_IP, unix.SO_ORIGINAL_DST)
		if err != nil {
			opErr = err
			return
		}
		// struct sockaddr_in: family, port (big endian), address.
		m := mreq.Multiaddr
		ap = netip.AddrPortFrom(netip.AddrFrom4([4]byte(m[4:8])), binary.BigEndian.Uint16(m[2:4]))
	})
	return ap, errors.Join(err, opErr)
}

func saveNAT(ctx context.Context, t *testing.T, tool string) string {
	t.Helper()
	out, err := ExecRunner{}.Run(ctx, tool, []string{"-t", "nat"}, nil)
	require.NoError(t, err)
	// Drop the timestamped comments.
	var keep []string
	for _, l := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(l, "#") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// ruleLines are the -A lines of an iptables-restore/save document.
func ruleLines(doc string) []string {
	var out []string
	for _, l := range strings.Split(doc, "\n") {
		if strings.HasPrefix(l, "-A ") {
			out = append(out, l)
		}
	}
	return out
}
