package dnsguard

import (
	"encoding/binary"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"
)

// authServer is a real authoritative DNS server for tests: miekg/dns on
// 127.0.0.1 (UDP and TCP on one port) serving a zone file the test wrote.
// It follows in-zone CNAMEs the way an authoritative server does, answers
// NXDOMAIN/NODATA with the zone's SOA, and truncates UDP answers that do
// not fit the query's buffer.
type authServer struct {
	addr    string
	records map[string][]dns.RR // by lower-case owner name
	soa     *dns.SOA
	mode    atomic.Int32
	queries atomic.Int64
	udpQ    atomic.Int64
	tcpQ    atomic.Int64
	udp     *dns.Server
	tcp     *dns.Server
}

// authServer behaviours, switchable at run time.
const (
	modeNormal   int32 = iota
	modeSilent         // read queries, never answer (timeouts)
	modeServfail       // answer SERVFAIL to everything
)

func zoneRecords(t testing.TB, zone string) (map[string][]dns.RR, *dns.SOA) {
	t.Helper()
	zp := dns.NewZoneParser(strings.NewReader(zone), "", "testzone")
	records := map[string][]dns.RR{}
	var soa *dns.SOA
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		if s, isSOA := rr.(*dns.SOA); isSOA && soa == nil {
			soa = s
			continue
		}
		name := strings.ToLower(rr.Header().Name)
		records[name] = append(records[name], rr)
	}
	require.NoError(t, zp.Err())
	require.NotNil(t, soa, "test zone needs a SOA")
	return records, soa
}

// loadZone reads a zone file from testdata.
func loadZone(t testing.TB, file string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", file))
	require.NoError(t, err)
	return string(b)
}

func startAuth(t testing.TB, zone string) *authServer {
	t.Helper()
	a := &authServer{}
	a.records, a.soa = zoneRecords(t, zone)
	pc, l, err := listen("127.0.0.1:0")
	require.NoError(t, err)
	a.addr = pc.LocalAddr().String()
	a.udp = &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(a.serve)}
	a.tcp = &dns.Server{Listener: l, Handler: dns.HandlerFunc(a.serve)}
	var ready sync.WaitGroup
	ready.Add(2)
	a.udp.NotifyStartedFunc, a.tcp.NotifyStartedFunc = ready.Done, ready.Done
	go func() { _ = a.udp.ActivateAndServe() }()
	go func() { _ = a.tcp.ActivateAndServe() }()
	ready.Wait()
	t.Cleanup(func() {
		_ = a.udp.Shutdown()
		_ = a.tcp.Shutdown()
	})
	return a
}

func (a *authServer) serve(w dns.ResponseWriter, r *dns.Msg) {
	a.queries.Add(1)
	_, tcp := w.RemoteAddr().(*net.TCPAddr)
	if tcp {
		a.tcpQ.Add(1)
	} else {
		a.udpQ.Add(1)
	}
	switch a.mode.Load() {
	case modeSilent:
		return
	case modeServfail:
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeServerFailure)
		_ = w.WriteMsg(m)
		return
	}
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	q := r.Question[0]
	name := strings.ToLower(q.Name)
	for hops := 0; hops < 8; hops++ {
		rrs, exists := a.records[name]
		if !exists {
			if len(m.Answer) == 0 {
				m.Rcode = dns.RcodeNameError
			}
			m.Ns = []dns.RR{a.soa}
			break
		}
		var cname *dns.CNAME
		found := false
		for _, rr := range rrs {
			switch {
			case rr.Header().Rrtype == q.Qtype, q.Qtype == dns.TypeANY:
				m.Answer = append(m.Answer, dns.Copy(rr))
				found = true
			case rr.Header().Rrtype == dns.TypeCNAME:
				cname = rr.(*dns.CNAME)
			case rr.Header().Rrtype == dns.TypeDNAME:
				m.Answer = append(m.Answer, dns.Copy(rr))
			}
		}
		if found || cname == nil {
			if !found && len(m.Answer) == 0 {
				m.Ns = []dns.RR{a.soa}
			}
			break
		}
		m.Answer = append(m.Answer, dns.Copy(cname))
		name = strings.ToLower(cname.Target)
	}
	if opt := r.IsEdns0(); opt != nil {
		m.SetEdns0(opt.UDPSize(), opt.Do())
	}
	if !tcp {
		size := dns.MinMsgSize
		if opt := r.IsEdns0(); opt != nil {
			size = int(opt.UDPSize())
		}
		m.Truncate(size)
	}
	_ = w.WriteMsg(m)
}

// silentUDP is an upstream that reads queries and never answers.
func silentUDP(t testing.TB) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 512)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	return pc.LocalAddr().String()
}

// garbageUDP answers every packet with an HTTP error line: not DNS.
func garbageUDP(t testing.TB) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 512)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"), from)
		}
	}()
	return pc.LocalAddr().String()
}

// closedPort returns a UDP address nothing listens on.
func closedPort(t testing.TB) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := pc.LocalAddr().String()
	require.NoError(t, pc.Close())
	return addr
}

// cutTCP is an upstream that truncates every UDP answer (so the resolver
// must retry over TCP) and, over TCP, announces a full answer, sends a few
// bytes of it and closes the connection.
func cutTCP(t testing.TB) string {
	t.Helper()
	pc, l, err := listen("127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { pc.Close(); l.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			q := new(dns.Msg)
			if q.Unpack(buf[:n]) != nil {
				continue
			}
			m := new(dns.Msg)
			m.SetReply(q)
			m.Truncated = true
			out, _ := m.Pack()
			_, _ = pc.WriteTo(out, from)
		}
	}()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var lb [2]byte
				if _, err := io.ReadFull(c, lb[:]); err != nil {
					return
				}
				q := make([]byte, binary.BigEndian.Uint16(lb[:]))
				if _, err := io.ReadFull(c, q); err != nil {
					return
				}
				_, _ = c.Write([]byte{0x01, 0x00, q[0], q[1], 0x81, 0x80}) // 256 bytes promised, 4 sent
			}()
		}
	}()
	return pc.LocalAddr().String()
}

func TestMatchResponse(t *testing.T) {
	q := new(dns.Msg)
	q.SetQuestion("www.example.com.", dns.TypeA)
	q.Id = 42
	reply := func(mod func(m *dns.Msg)) []byte {
		m := new(dns.Msg)
		m.SetReply(q)
		mod(m)
		b, err := m.Pack()
		require.NoError(t, err)
		return b
	}
	for _, tc := range []struct {
		name    string
		in      []byte
		ok      bool
		wantErr bool
	}{
		{"matching answer", reply(func(*dns.Msg) {}), true, false},
		{"case differs", reply(func(m *dns.Msg) { m.Question[0].Name = "WWW.example.COM." }), true, false},
		{"other id", reply(func(m *dns.Msg) { m.Id = 43 }), false, false},
		{"other question", reply(func(m *dns.Msg) { m.Question[0].Name = "evil.example." }), false, false},
		{"not a response", reply(func(m *dns.Msg) { m.Response = false }), false, true},
		{"servfail without question", reply(func(m *dns.Msg) { m.Rcode = dns.RcodeServerFailure; m.Question = nil }), true, false},
		{"short", []byte{0, 42, 1}, false, true},
		{"garbage with our id", append([]byte{0, 42}, []byte("HTTP/1.1 400 Bad Request")...), false, true},
		{"HTTP", []byte("HTTP/1.1 400 Bad Request\r\n\r\n"), false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, ok, err := matchResponse(q, tc.in)
			require.Equal(t, tc.ok, ok)
			require.Equal(t, tc.wantErr, err != nil, "err=%v", err)
		})
	}
}

func TestParseUpstream(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{in: "10.0.0.10", want: "10.0.0.10:53"},
		{in: "10.0.0.10:5353", want: "10.0.0.10:5353"},
		{in: "2001:db8::1", want: "[2001:db8::1]:53"},
		{in: "[2001:db8::1]:54", want: "[2001:db8::1]:54"},
		{in: " 127.0.0.1 ", want: "127.0.0.1:53"},
		{in: "", err: "empty upstream"},
		{in: "dns.google:53", err: "not an IP address"},
		{in: "10.0.0.1:http", err: "invalid port"},
		{in: "10.0.0.1:0", err: "invalid port"},
		{in: "10.0.0.1:99999", err: "invalid port"},
		{in: "udp://10.0.0.1", err: "URL schemes are not supported"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseUpstream(tc.in)
			if tc.err != "" {
				require.Error(t, err)
				require.Contains(t, err.Error(), tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got.String())
		})
	}
}
