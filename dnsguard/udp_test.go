package dnsguard

import (
	"net/netip"
	"testing"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
)

// TestFastPathMatchesSlowPath: for queries the UDP fast path answers, the
// answer is the one ServeDNS gives; for the others it declines.
func TestFastPathMatchesSlowPath(t *testing.T) {
	h := newHarnessLog(t, zap.NewNop(), nil)
	client := netip.MustParseAddrPort("127.0.0.1:40000")
	type q struct {
		name  string
		qtype uint16
		edns  bool
		do    bool
		fast  bool
	}
	for _, tc := range []q{
		{"www.staging.example.com.", dns.TypeA, false, false, true},
		{"www.staging.example.com.", dns.TypeA, true, false, true},
		{"www.staging.example.com.", dns.TypeA, true, true, true},
		{"WWW.Staging.Example.COM.", dns.TypeAAAA, true, false, true},
		{"alias.staging.example.com.", dns.TypeA, true, false, true},
		{"_sip._tcp.staging.example.com.", dns.TypeSRV, true, false, true},
		{"missing.staging.example.com.", dns.TypeA, true, false, true},             // cached NXDOMAIN
		{"db.prod.example.com.", dns.TypeA, true, false, false},                    // denied: slow path
		{"api-m.paypal.com.", dns.TypeA, true, false, false},                       // redirected
		{"metrics.vendor.example.", dns.TypeA, true, false, false},                 // report mode: recorded
		{"leaky.staging.example.com.", dns.TypeA, true, false, false},              // production answer
		{"big.staging.example.com.", dns.TypeTXT, true, false, false},              // does not fit
		{"www.staging.example.com.", dns.TypeANY, true, false, false},              // RFC 8482
		{"a\\.b.staging.example.com.", dns.TypeA, true, false, false},              // needs escaping
		{"never-asked-before.staging.example.com.", dns.TypeA, true, false, false}, // miss
	} {
		t.Run(tc.name+"/"+dns.TypeToString[tc.qtype], func(t *testing.T) {
			req := new(dns.Msg)
			req.SetQuestion(tc.name, tc.qtype)
			if tc.edns {
				req.SetEdns0(1232, tc.do)
			}
			if tc.fast {
				// Fill the cache through the slow path first.
				h.s.ServeDNS(newMemWriter("127.0.0.1"), req)
			}
			wire, err := req.Pack()
			require.NoError(t, err)
			var name nameBuf
			fast, ok := h.s.fastAnswer(wire, client, nil, &name)
			require.Equal(t, tc.fast, ok)
			if !ok {
				return
			}
			slow := newMemWriter("127.0.0.1")
			h.s.ServeDNS(slow, req)
			var fm, sm dns.Msg
			require.NoError(t, fm.Unpack(fast))
			require.NoError(t, sm.Unpack(slow.last))
			assert.Equal(t, sm.String(), fm.String())
			assert.Equal(t, tc.name, fm.Question[0].Name, "question echoed byte for byte")
		})
	}
}

func TestFastPathDeclinesOddPackets(t *testing.T) {
	h := newHarnessLog(t, zap.NewNop(), nil)
	req := new(dns.Msg)
	req.SetQuestion("www.staging.example.com.", dns.TypeA)
	h.s.ServeDNS(newMemWriter("127.0.0.1"), req) // cached
	good, err := req.Pack()
	require.NoError(t, err)
	client := netip.MustParseAddrPort("127.0.0.1:40000")
	var name nameBuf
	_, ok := h.s.fastAnswer(good, client, nil, &name)
	require.True(t, ok)
	withCookie := append(append([]byte(nil), good...), 0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 12, 0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8)
	withCookie[11] = 1
	_, ok = h.s.fastAnswer(withCookie, client, nil, &name)
	require.True(t, ok, "a client cookie is ignored, not a reason to leave the fast path")
	for _, tc := range []struct {
		name string
		mod  func(b []byte) []byte
	}{
		{"response bit", func(b []byte) []byte { b[2] |= 0x80; return b }},
		{"opcode notify", func(b []byte) []byte { b[2] |= 4 << 3; return b }},
		{"two questions", func(b []byte) []byte { b[5] = 2; return b }},
		{"answer count", func(b []byte) []byte { b[7] = 1; return b }},
		{"trailing garbage", func(b []byte) []byte { return append(b, 0xde, 0xad) }},
		{"cut question", func(b []byte) []byte { return b[:len(b)-3] }},
		{"class CH", func(b []byte) []byte { b[len(b)-1] = 3; return b }},
		{"compression pointer in question", func(b []byte) []byte { b[12] = 0xC0; return b }},
		{"additional that is not OPT", func(b []byte) []byte {
			b[11] = 1
			return append(b, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0)
		}},
		{"EDNS client subnet option (parsed by the slow path)", func(b []byte) []byte {
			b[11] = 1
			return append(b, 0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 8, 0, 8, 0, 4, 0, 1, 24, 0)
		}},
		{"option longer than the OPT", func(b []byte) []byte {
			b[11] = 1
			return append(b, 0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 4, 0, 10, 0, 9)
		}},
		{"EDNS version 1", func(b []byte) []byte {
			b[11] = 1
			return append(b, 0, 0, 41, 4, 0xd0, 0, 1, 0, 0, 0, 0)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.mod(append([]byte(nil), good...))
			_, ok := h.s.fastAnswer(b, client, nil, &name)
			assert.False(t, ok)
		})
	}
}

// BenchmarkUDPFastPath is the UDP cache-hit path from the query's bytes to
// the answer's bytes (what a reader goroutine does between recvmsg and
// sendmsg), policy on with a 2,200-rule plan.
func BenchmarkUDPFastPath(b *testing.B) {
	for _, tc := range []struct {
		name  string
		qname string
	}{
		{"A+EDNS", "www.staging.example.com."},
		{"A+EDNS 0x20", "WwW.StAgInG.ExAmPlE.CoM."},
	} {
		b.Run(tc.name, func(b *testing.B) {
			h := newHarnessLog(b, zap.NewNop(), nil)
			h.plans.staging.Store(mustPlan(b, largeSpec()))
			h.s.Rebuild()
			req := new(dns.Msg)
			req.SetQuestion(tc.qname, dns.TypeA)
			req.SetEdns0(1232, false)
			h.s.ServeDNS(newMemWriter("127.0.0.1"), req)
			wire, err := req.Pack()
			require.NoError(b, err)
			client := netip.MustParseAddrPort("127.0.0.1:40000")
			out := make([]byte, 0, maxUDPSize)
			var name nameBuf
			_, ok := h.s.fastAnswer(wire, client, out, &name)
			require.True(b, ok)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				h.s.fastAnswer(wire, client, out[:0], &name)
			}
		})
	}
}
