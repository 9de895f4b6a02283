package dnsguard

import (
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
)

func TestSourceACLRefuses(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.AllowFrom = []string{"127.0.0.2/32"} })
	for _, network := range []string{"udp", "tcp"} {
		r := h.ask(t, network, "www.example.com.", dns.TypeA, from("127.0.0.1"))
		assert.Equal(t, dns.RcodeRefused, r.Rcode, network)
		assert.Empty(t, r.Answer, network)
		r = h.ask(t, network, "www.example.com.", dns.TypeA, from("127.0.0.2"))
		assert.NotEqual(t, dns.RcodeRefused, r.Rcode, network)
	}
	assert.InDelta(t, 2, value(h.s.exp.refused), 0)
	assert.Empty(t, h.sink.all(), "a refused source reaches neither the policy nor the records")
}

func TestDefaultACLAllowsLoopbackOnlyAndPrivate(t *testing.T) {
	acl, err := parseACL(Defaults().AllowFrom)
	require.NoError(t, err)
	for ip, want := range map[string]bool{
		"127.0.0.1": true, "::1": true, "10.1.2.3": true, "::ffff:10.1.2.3": true, "fd00::1": true,
		"8.8.8.8": false, "2001:4860::1": false, "169.254.1.1": false,
	} {
		assert.Equal(t, want, acl.Lookup(netip.MustParseAddr(ip).Unmap()), ip)
	}
	c := Defaults()
	c.AllowFrom = []string{"10.0.0.0/8", "not-a-cidr"}
	assert.ErrorContains(t, c.Validate(), `allow_from[1]: "not-a-cidr" is not a CIDR or an IP`)
	c.AllowFrom = nil
	assert.ErrorContains(t, c.Validate(), "dns.allow_from: empty")
}

// askRaw sends one UDP query and waits briefly: nil when nothing came back
// (an answer RRL dropped).
func askRaw(t *testing.T, addr, name string) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	r, _, err := (&dns.Client{Timeout: 150 * time.Millisecond}).Exchange(m, addr)
	if err != nil {
		var ne net.Error
		require.ErrorAs(t, err, &ne)
		require.True(t, ne.Timeout(), "%v", err)
		return nil
	}
	return r
}

func TestRRLDropsAndSlips(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.RRL = RRLConfig{ResponsesPerSecond: 2, Window: 1, Slip: 2, IPv4PrefixLength: 24, IPv6PrefixLength: 56, LimitLoopback: true}
	})
	var full, tc, none int
	for range 12 {
		switch r := askRaw(t, h.udp, "www.example.com."); {
		case r == nil:
			none++
		case r.Truncated:
			tc++
			assert.Empty(t, r.Answer)
		default:
			full++
		}
	}
	assert.LessOrEqual(t, full, 4, "about 2 per second get through (the test takes under 2 s)")
	assert.Positive(t, tc, "every 2nd answer over the limit slips (truncated)")
	assert.Positive(t, none, "the others are dropped")
	assert.InDelta(t, float64(tc), value(h.s.exp.rrlSlipped), 0)
	assert.InDelta(t, float64(none), value(h.s.exp.rrlDropped), 0)
	// Another name is another bucket; TCP is never limited.
	assert.NotNil(t, askRaw(t, h.udp, "other.example.com."))
	assert.NotEqual(t, dns.RcodeRefused, h.ask(t, "tcp", "www.example.com.", dns.TypeA).Rcode)
}

func TestRRLOffForLoopbackByDefault(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.RRL.ResponsesPerSecond = 1 })
	for range 10 {
		r := askRaw(t, h.udp, "www.example.com.")
		require.NotNil(t, r)
		require.False(t, r.Truncated)
	}
	assert.Zero(t, value(h.s.exp.rrlDropped)+value(h.s.exp.rrlSlipped))
}

func TestRRLBucketsByNetblock(t *testing.T) {
	now := time.Unix(1000, 0)
	r := newRRL(RRLConfig{ResponsesPerSecond: 1, Window: 1, Slip: 0, IPv4PrefixLength: 24, IPv6PrefixLength: 56})
	r.now = func() time.Time { return now }
	a, b, other := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.200"), netip.MustParseAddr("10.0.1.1")
	assert.Equal(t, rrlSend, r.check(a, "x."))
	assert.Equal(t, rrlDrop, r.check(b, "x."), "same /24, same name: one bucket")
	assert.Equal(t, rrlSend, r.check(other, "x."))
	assert.Equal(t, rrlSend, r.check(a, "y."))
	now = now.Add(time.Second)
	assert.Equal(t, rrlSend, r.check(b, "x."), "refilled after a second")
}

// emfileListener fails n accepts with EMFILE, then reports closed.
type emfileListener struct {
	net.Listener
	n int
}

func (l *emfileListener) Accept() (net.Conn, error) {
	if l.n == 0 {
		return nil, net.ErrClosed
	}
	l.n--
	return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
}

func TestAcceptBacksOffOnEMFILE(t *testing.T) {
	var slept []time.Duration
	l := &backoffListener{Listener: &emfileListener{n: 10}, m: newExposureMetrics(nil), log: zap.NewNop(),
		sleep: func(d time.Duration) { slept = append(slept, d) }}
	_, err := l.Accept()
	require.ErrorIs(t, err, net.ErrClosed)
	require.Len(t, slept, 10)
	assert.Equal(t, acceptBackoffMin, slept[0])
	for i := 1; i < len(slept); i++ {
		assert.Equal(t, min(2*slept[i-1], acceptBackoffMax), slept[i])
	}
	assert.InDelta(t, 10, value(l.m.acceptErrors), 0)
}

// FuzzRawQname: RRL's bucket name never panics and, when miekg/dns reads
// the same question with a plain name, agrees with it (lower-cased).
func FuzzRawQname(f *testing.F) {
	for _, n := range []string{"www.example.com.", "A.B.", "."} {
		m := new(dns.Msg)
		m.SetQuestion(n, dns.TypeA)
		b, err := m.Pack()
		require.NoError(f, err)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got := rawQname(b)
		m := new(dns.Msg)
		if got == "" || m.Unpack(b) != nil || len(m.Question) == 0 || strings.Contains(m.Question[0].Name, `\`) {
			return // presentation form escapes it; nothing to compare
		}
		assert.Equal(t, strings.ToLower(m.Question[0].Name), got)
	})
}

// BenchmarkSourceACL is what the ACL adds to every query (the UDP fast
// path's ≈ 0.4–1 µs, BenchmarkUDPFastPath, does not include it).
func BenchmarkSourceACL(b *testing.B) {
	s := &Server{exp: newExposureMetrics(nil)}
	var err error
	s.acl, err = parseACL(Defaults().AllowFrom)
	require.NoError(b, err)
	src := netip.MustParseAddr("10.244.3.17")
	b.ReportAllocs()
	for b.Loop() {
		if !s.allowed(src) {
			b.Fatal("refused")
		}
	}
}
