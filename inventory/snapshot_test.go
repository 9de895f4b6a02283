package inventory

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func mustSnapshot(t testing.TB, defaultEnv string, ws ...Workload) *Snapshot {
	t.Helper()
	s, err := NewSnapshot(defaultEnv, ws)
	require.NoError(t, err)
	return s
}

func pfx(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

func TestLookupIP(t *testing.T) {
	s := mustSnapshot(t, "",
		Workload{Name: "wide", Environment: "production", IPs: pfx("10.0.0.0/8", "fd00::/16")},
		Workload{Name: "narrow", Environment: "staging", IPs: pfx("10.1.0.0/16", "fd00:1::/64")},
		Workload{Name: "host", Environment: "qa", IPs: pfx("10.1.2.3/32", "fd00:1::7/128")},
		Workload{Name: "mapped", Environment: "dev", IPs: pfx("::ffff:192.168.0.0/112")},
	)
	for _, tc := range []struct {
		ip   string
		want string // "" for no match
	}{
		{"10.200.0.1", "wide"},
		{"10.1.9.9", "narrow"},
		{"10.1.2.3", "host"},
		{"10.1.2.4", "narrow"},
		{"11.0.0.1", ""},
		{"fd00:2::1", "wide"},
		{"fd00:1::1", "narrow"},
		{"fd00:1::7", "host"},
		{"fe80::1", ""},
		// IPv4-mapped sources are looked up as IPv4.
		{"::ffff:10.1.2.3", "host"},
		{"::ffff:10.9.9.9", "wide"},
		// A mapped prefix was stored as IPv4.
		{"192.168.3.4", "mapped"},
		{"::ffff:192.168.3.4", "mapped"},
		// Zones do not matter.
		{"fd00:1::7%eth0", "host"},
	} {
		t.Run(tc.ip, func(t *testing.T) {
			ip := netip.MustParseAddr(tc.ip)
			w, ok := s.LookupIP(ip)
			if tc.want == "" {
				assert.False(t, ok)
				assert.Nil(t, w)
				assert.Same(t, s.Default(), s.ResolveIP(ip))
				return
			}
			require.True(t, ok)
			assert.Equal(t, tc.want, w.Name)
			assert.Same(t, w, s.ResolveIP(ip))
		})
	}
	t.Run("invalid address", func(t *testing.T) {
		_, ok := s.LookupIP(netip.Addr{})
		assert.False(t, ok)
		assert.Same(t, s.Default(), s.ResolveIP(netip.Addr{}))
	})
}

func TestLookupNode(t *testing.T) {
	s := mustSnapshot(t, "qa",
		Workload{Name: "a", Environment: "staging", NodeIDs: []string{"n1", "n2"}},
		Workload{Name: "b", Environment: "production", NodeIDs: []string{"n3"}},
	)
	for _, tc := range []struct{ id, want string }{
		{"n1", "a"}, {"n2", "a"}, {"n3", "b"}, {"n4", ""}, {"", ""},
	} {
		t.Run(tc.id, func(t *testing.T) {
			w, ok := s.LookupNode(tc.id)
			if tc.want == "" {
				assert.False(t, ok)
				got := s.ResolveNode(tc.id)
				assert.Equal(t, &Workload{Name: "unknown", Environment: "qa"}, got)
				return
			}
			require.True(t, ok)
			assert.Equal(t, tc.want, w.Name)
			assert.Same(t, w, s.ResolveNode(tc.id))
		})
	}
}

func TestDefaultWorkload(t *testing.T) {
	for _, tc := range []struct{ env, want string }{{"", "staging"}, {"dev", "dev"}} {
		s := mustSnapshot(t, tc.env)
		assert.Equal(t, &Workload{Name: UnknownName, Environment: tc.want}, s.Default())
		assert.Equal(t, tc.want, Empty(tc.env).Default().Environment)
	}
	assert.Equal(t, "staging", Empty("bad\x00env").Default().Environment)
}

func TestNewSnapshotCopiesInput(t *testing.T) {
	in := []Workload{{Name: "a", Environment: "staging", Labels: map[string]string{"app": "a"},
		IPs: pfx("10.0.0.1/32"), NodeIDs: []string{"n"}}}
	s := mustSnapshot(t, "", in...)
	in[0].Name = "changed"
	in[0].Labels["app"] = "changed"
	in[0].IPs[0] = netip.MustParsePrefix("10.0.0.2/32")
	in[0].NodeIDs[0] = "changed"
	w := s.Workloads()[0]
	assert.Equal(t, "a", w.Name)
	assert.Equal(t, "a", w.Labels["app"])
	assert.Equal(t, pfx("10.0.0.1/32"), w.IPs)
	assert.Equal(t, []string{"n"}, w.NodeIDs)
	_, ok := s.LookupIP(netip.MustParseAddr("10.0.0.1"))
	assert.True(t, ok)
}

func TestNewSnapshotErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		ws   []Workload
		is   []error
		want []string
	}{
		{
			name: "identical prefix in two workloads",
			ws: []Workload{
				{Name: "a", Namespace: "x", Environment: "staging", IPs: pfx("10.0.0.0/24")},
				{Name: "b", Namespace: "y", Environment: "staging", IPs: pfx("10.0.0.0/24")},
			},
			is:   []error{ErrDuplicateIP},
			want: []string{"inventory: workloads[1].ips[0]", "10.0.0.0/24 is in workload y/b and in workload x/a (workloads[0].ips[0])"},
		},
		{
			name: "mapped and plain prefix are identical",
			ws: []Workload{
				{Name: "a", Environment: "staging", IPs: pfx("::ffff:10.0.0.0/120")},
				{Name: "b", Environment: "staging", IPs: pfx("10.0.0.0/24")},
			},
			is: []error{ErrDuplicateIP},
		},
		{
			name: "invalid and host-bit prefixes",
			ws:   []Workload{{Name: "a", Environment: "staging", IPs: []netip.Prefix{{}, netip.MustParsePrefix("10.0.0.1/8")}}},
			is:   []error{ErrBadIP},
			want: []string{"workloads[0].ips[0]: bad IP address or prefix: invalid prefix", "workloads[0].ips[1]: bad IP address or prefix: 10.0.0.1/8 has host bits set"},
		},
		{
			name: "everything at once",
			ws: []Workload{
				{Labels: map[string]string{"": "x"}, NodeIDs: []string{"n", ""}},
				{Name: "b", Environment: "qa", NodeIDs: []string{"n"}},
			},
			is: []error{ErrNoName, ErrNoEnvironment, ErrEmptyLabelKey, ErrEmptyNodeID, ErrDuplicateNode},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewSnapshot("", tc.ws)
			require.Error(t, err)
			assert.Nil(t, s)
			for _, target := range tc.is {
				assert.ErrorIs(t, err, target)
			}
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

// Overlapping prefixes of different lengths in different workloads are
// allowed: that is how a host is carved out of its subnet.
func TestOverlapAllowed(t *testing.T) {
	s := mustSnapshot(t, "",
		Workload{Name: "subnet", Environment: "production", IPs: pfx("10.0.0.0/24")},
		Workload{Name: "canary", Environment: "staging", IPs: pfx("10.0.0.5/32")},
	)
	assert.Equal(t, "canary", s.ResolveIP(netip.MustParseAddr("10.0.0.5")).Name)
	assert.Equal(t, "subnet", s.ResolveIP(netip.MustParseAddr("10.0.0.6")).Name)
}

func TestWorkloadsIsACopy(t *testing.T) {
	s := mustSnapshot(t, "", Workload{Name: "a", Environment: "qa"}, Workload{Name: "b", Environment: "qa"})
	ws := s.Workloads()
	ws[0] = nil
	assert.Equal(t, "a", s.Workloads()[0].Name)
}

func TestFingerprint(t *testing.T) {
	a := mustSnapshot(t, "", Workload{Name: "a", Environment: "qa", IPs: pfx("10.0.0.1/32")})
	b := mustSnapshot(t, "", Workload{Name: "a", Environment: "qa", IPs: pfx("::ffff:10.0.0.1/128")})
	c := mustSnapshot(t, "", Workload{Name: "a", Environment: "staging", IPs: pfx("10.0.0.1/32")})
	d := mustSnapshot(t, "dev", Workload{Name: "a", Environment: "qa", IPs: pfx("10.0.0.1/32")})
	assert.Equal(t, a.Fingerprint(), b.Fingerprint())
	assert.NotEqual(t, a.Fingerprint(), c.Fingerprint())
	assert.NotEqual(t, a.Fingerprint(), d.Fingerprint())
	assert.Len(t, a.Fingerprint(), 64)
}

func benchSnapshot(b *testing.B, n int) *Snapshot {
	ws := make([]Workload, 0, n)
	for i := range n {
		ws = append(ws, Workload{
			Name:        fmt.Sprintf("w%d", i),
			Namespace:   "ns",
			Environment: "staging",
			IPs: []netip.Prefix{
				netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32),
				netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, byte(i >> 16), byte(i >> 8), byte(i)}), 128),
			},
			NodeIDs: []string{fmt.Sprintf("sidecar~10.%d.%d.%d~w%d.ns~ns.svc.cluster.local", byte(i>>16), byte(i>>8), byte(i), i)},
		})
	}
	// A few subnets under the hosts, for backtracking.
	ws = append(ws, Workload{Name: "subnet", Environment: "production", IPs: pfx("10.0.0.0/8", "fd00::/8")})
	s, err := NewSnapshot("", ws)
	require.NoError(b, err)
	return s
}

func BenchmarkLookupIP(b *testing.B) {
	for _, n := range []int{100, 10000} {
		s := benchSnapshot(b, n)
		for _, tc := range []struct {
			name string
			ip   netip.Addr
		}{
			{"v4-host", netip.AddrFrom4([4]byte{10, 0, 0, 42})},
			{"v4-subnet", netip.MustParseAddr("10.250.1.1")},
			{"v4-miss", netip.MustParseAddr("192.0.2.1")},
			{"v4mapped", netip.MustParseAddr("::ffff:10.0.0.42")},
			{"v6-host", netip.AddrFrom16([16]byte{0xfd, 15: 42})},
		} {
			b.Run(fmt.Sprintf("n=%d/%s", n, tc.name), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					s.ResolveIP(tc.ip)
				}
			})
		}
	}
}

func BenchmarkLookupNode(b *testing.B) {
	s := benchSnapshot(b, 10000)
	id := "sidecar~10.0.0.42~w42.ns~ns.svc.cluster.local"
	b.ReportAllocs()
	for b.Loop() {
		s.ResolveNode(id)
	}
}

func TestLookupIPDoesNotAllocate(t *testing.T) {
	s := mustSnapshot(t, "", Workload{Name: "a", Environment: "qa", IPs: pfx("10.0.0.0/8", "fd00::/8")})
	for _, ip := range []netip.Addr{
		netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("::ffff:10.1.2.3"),
		netip.MustParseAddr("fd00::1"), netip.MustParseAddr("192.0.2.1"),
	} {
		allocs := testing.AllocsPerRun(100, func() { s.ResolveIP(ip) })
		assert.Zero(t, allocs, ip.String())
	}
}

// BenchmarkLookupIPLinearPeer is the peer for BenchmarkLookupIP: a naive
// longest-prefix scan over the same prefixes, in the same run.
func BenchmarkLookupIPLinearPeer(b *testing.B) {
	type entry struct {
		p netip.Prefix
		w *Workload
	}
	for _, n := range []int{100, 10000} {
		s := benchSnapshot(b, n)
		var table []entry
		for _, w := range s.Workloads() {
			for _, p := range w.IPs {
				table = append(table, entry{p, w})
			}
		}
		ip := netip.AddrFrom4([4]byte{10, 0, 0, 42})
		b.Run(fmt.Sprintf("n=%d/v4-host", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				best := -1
				var got *Workload
				for _, e := range table {
					if e.p.Bits() > best && e.p.Contains(ip) {
						best, got = e.p.Bits(), e.w
					}
				}
				if got == nil {
					b.Fatal("no match")
				}
			}
		})
	}
}
