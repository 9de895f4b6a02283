package dnsguard

import (
	"bufio"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
)

func seedNames(f *testing.F) []string {
	f.Helper()
	file, err := os.Open(filepath.Join("testdata", "seed-names.txt"))
	require.NoError(f, err)
	defer file.Close()
	var names []string
	sc := bufio.NewScanner(file)
	for sc.Scan() {
		names = append(names, sc.Text())
	}
	require.NoError(f, sc.Err())
	return names
}

// wireLabels packs name the way miekg/dns sends it and joins the labels
// found on the wire with dots: what an upstream actually looks up.
func wireLabels(name string) (string, bool) {
	buf := make([]byte, 512)
	n, err := dns.PackDomainName(dns.Fqdn(name), buf, 0, nil, false)
	if err != nil {
		return "", false
	}
	var labels []string
	for off := 0; off < n; {
		l := int(buf[off])
		if l == 0 {
			break
		}
		labels = append(labels, string(buf[off+1:off+1+l]))
		off += 1 + l
	}
	return strings.Join(labels, "."), true
}

// FuzzPolicyName checks name normalisation: the name matched against the
// plan is exactly what goes on the wire (so escapes cannot talk around a
// rule), the common case is the identity, and the cache form is a
// lower-case fixpoint.
func FuzzPolicyName(f *testing.F) {
	for _, n := range seedNames(f) {
		f.Add(n)
	}
	f.Fuzz(func(t *testing.T, name string) {
		got := policyName(name)
		if !strings.Contains(name, "\\") {
			require.Equal(t, strings.TrimSuffix(name, "."), got)
		}
		// From here on, the name as a client's question carries it: packed
		// by a client, unpacked by the server (miekg/dns presentation form).
		wire, ok := wireLabels(name)
		if !ok {
			return
		}
		buf := make([]byte, 512)
		n, err := dns.PackDomainName(dns.Fqdn(name), buf, 0, nil, false)
		require.NoError(t, err)
		qname, _, err := dns.UnpackDomainName(buf[:n], 0)
		require.NoError(t, err)

		// What is matched against the plan is what goes on the wire.
		require.Equal(t, wire, policyName(qname), "name %q (%q)", name, qname)

		c := cacheName(qname)
		require.Equal(t, c, cacheName(c), "cacheName is a fixpoint")
		require.Equal(t, asciiLower(qname), c)

		// A cached answer's question can always be given back the client's
		// case.
		if strings.Contains(qname, "\\") {
			return
		}
		q := new(dns.Msg)
		q.SetQuestion(c, dns.TypeA) // the form stored in the cache
		b, err := q.Pack()
		require.NoError(t, err)
		require.True(t, setQuestionCase(b, qname), "name %q", qname)
		back := new(dns.Msg)
		require.NoError(t, back.Unpack(b))
		require.Equal(t, qname, back.Question[0].Name)
	})
}

// FuzzServeDNS feeds arbitrary wire messages through the same steps as the
// miekg/dns server (header accept check, unpack, FORMERR on failure) into
// the handler. Invariants: no panic; anything written back is a DNS
// response to the same ID.
func FuzzServeDNS(f *testing.F) {
	for _, n := range seedNames(f) {
		for _, t := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeHTTPS, dns.TypeANY, dns.TypePTR} {
			m := new(dns.Msg)
			m.SetQuestion(dns.Fqdn(n), t)
			m.SetEdns0(1232, t == dns.TypeA)
			if b, err := m.Pack(); err == nil {
				f.Add(b)
			}
		}
	}
	f.Add([]byte{0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 1})
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	h := newHarnessLog(f, zap.NewNop(), func(c *Config) { c.CacheSize = 256 })
	f.Fuzz(func(t *testing.T, b []byte) {
		w := newMemWriter("127.0.0.1")
		if len(b) < headerLen {
			return // the server drops these before any handler runs
		}
		req := new(dns.Msg)
		if err := req.Unpack(b); err != nil {
			return // the server answers FORMERR itself
		}
		var hdr dns.Header
		hdr.Id = req.Id
		if req.Response {
			return
		}
		if len(req.Question) != 1 {
			return // rejected by the accept function
		}
		if len(req.Question[0].Name) > 255 {
			return
		}
		h.s.ServeDNS(w, req)
		if w.msgs == 0 {
			return
		}
		resp := new(dns.Msg)
		require.NoError(t, resp.Unpack(w.last), "answer must parse")
		require.Equal(t, req.Id, resp.Id)
		require.True(t, resp.Response)
	})
}

// FuzzUpstreamAnswer feeds arbitrary upstream answers through the cache
// form (repack, TTL index) and back out to a client. Invariants: no panic;
// what the client gets parses and answers its question.
func FuzzUpstreamAnswer(f *testing.F) {
	zone := loadZone(f, "upstream.zone")
	records, soa := zoneRecords(f, zone)
	for name, rrs := range records {
		m := new(dns.Msg)
		m.SetQuestion(name, rrs[0].Header().Rrtype)
		m.Response = true
		m.Answer = rrs
		m.Ns = []dns.RR{soa}
		m.SetEdns0(1232, false)
		if b, err := m.Pack(); err == nil {
			f.Add(b, "WwW.Example.")
		}
	}
	h := newHarnessLog(f, zap.NewNop(), nil)
	p := mustPlan(f, stagingSpec())
	f.Fuzz(func(t *testing.T, b []byte, qname string) {
		r := new(dns.Msg)
		if r.Unpack(b) != nil || len(r.Question) != 1 {
			return
		}
		q := r.Question[0]
		q.Name = strings.ToLower(q.Name)
		e, err := h.s.newEntry(q, r, timeNow())
		if err != nil {
			return
		}
		_ = h.s.check(e, p, false)
		req := new(dns.Msg)
		req.SetQuestion(q.Name, q.Qtype)
		if strings.EqualFold(dns.Fqdn(qname), q.Name) {
			req.Question[0].Name = dns.Fqdn(qname) // the client's case
		}
		req.SetEdns0(512, false)
		w := newMemWriter("127.0.0.1")
		h.s.writeEntry(w, req, req.IsEdns0(), e, e.stored, false)
		require.Equal(t, 1, w.msgs)
		resp := new(dns.Msg)
		require.NoError(t, resp.Unpack(w.last))
		require.Equal(t, req.Id, resp.Id)
		require.Len(t, resp.Question, 1)
		require.True(t, strings.EqualFold(req.Question[0].Name, resp.Question[0].Name))
	})
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		b[i] = lowerASCII(c)
	}
	return string(b)
}

// FuzzUDPPacket feeds raw packets to the UDP fast path. Invariants: no
// panic; when it answers, the answer parses, answers the same ID and
// question, and is the answer ServeDNS gives the same query.
func FuzzUDPPacket(f *testing.F) {
	h := newHarnessLog(f, zap.NewNop(), nil)
	records, _ := zoneRecords(f, loadZone(f, "upstream.zone"))
	for name, rrs := range records {
		for _, edns := range []bool{false, true} {
			m := new(dns.Msg)
			m.SetQuestion(name, rrs[0].Header().Rrtype)
			if edns {
				m.SetEdns0(1232, false)
			}
			h.s.ServeDNS(newMemWriter("127.0.0.1"), m) // fill the cache
			b, err := m.Pack()
			require.NoError(f, err)
			f.Add(b)
		}
	}
	client := netip.MustParseAddrPort("127.0.0.1:40000")
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < headerLen {
			return // dropped by the reader before the fast path
		}
		var name nameBuf
		out, ok := h.s.fastAnswer(b, client, nil, &name)
		if !ok {
			return
		}
		req := new(dns.Msg)
		require.NoError(t, req.Unpack(b), "the fast path answered a query that does not parse")
		fast := new(dns.Msg)
		require.NoError(t, fast.Unpack(out))
		require.Equal(t, req.Id, fast.Id)
		require.Equal(t, req.Question, fast.Question)
		slow := newMemWriter("127.0.0.1")
		h.s.ServeDNS(slow, req)
		sm := new(dns.Msg)
		require.NoError(t, sm.Unpack(slow.last))
		require.Equal(t, sm.String(), fast.String())
	})
}
