package dnsguard

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/miekg/dns"
	"go.uber.org/zap"

	"github.com/egressguard/egressguard/policy/plan"
)

// udpServer serves DNS over UDP. Reader goroutines (one per CPU) answer
// cache hits of plain queries straight from the packet bytes, without a
// goroutine or a dns.Msg per query; everything else (misses, denials,
// redirects, anything unusual) is copied and handed to ServeDNS on its own
// goroutine, after the same checks miekg/dns's server makes (header accept
// function, unpack, FORMERR). TCP is served by miekg/dns's server.
type udpServer struct {
	s       *Server
	pc      *net.UDPConn
	readers sync.WaitGroup
	flight  sync.WaitGroup // slow-path handlers
	closing atomic.Bool
}

func (u *udpServer) start(n int) {
	for range n {
		u.readers.Add(1)
		go u.read()
	}
}

// shutdown stops reading, waits for the queries in flight to be answered
// (or ctx to end), then closes the socket.
func (u *udpServer) shutdown(ctx context.Context) error {
	u.closing.Store(true)
	_ = u.pc.SetReadDeadline(time.Unix(1, 0)) // unblock the readers
	done := make(chan struct{})
	go func() {
		u.readers.Wait()
		u.flight.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if cerr := u.pc.Close(); err == nil && cerr != nil && !errors.Is(cerr, net.ErrClosed) {
		err = cerr
	}
	return err
}

func (u *udpServer) read() {
	defer u.readers.Done()
	buf := make([]byte, maxUDPSize)
	out := make([]byte, 0, maxUDPSize+optRRLen)
	var name nameBuf
	for {
		n, from, err := u.pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			if u.closing.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			u.s.log.Warn("udp read", zap.Error(err))
			time.Sleep(time.Millisecond) // do not spin on a persistent error
			continue
		}
		if n < headerLen {
			u.s.metrics.Malformed.Inc() // too short to answer: dropped
			continue
		}
		if !u.s.allowed(from.Addr()) {
			if buf[2]&0x80 == 0 { // never answer a response
				_, _ = u.pc.WriteToUDPAddrPort(refuse(buf[:n]), from)
			}
			continue
		}
		if resp, ok := u.s.fastAnswer(buf[:n], from, out[:0], &name); ok {
			u.send(resp, buf[:n], from)
			continue
		}
		msg := append([]byte(nil), buf[:n]...)
		u.flight.Add(1)
		go u.slow(msg, from)
	}
}

// slow answers one packet through ServeDNS, after the checks miekg/dns's
// server makes: a response is ignored; a header the accept function
// rejects, or a message that does not unpack, gets FORMERR (NOTIMP for
// other opcodes) and is counted as malformed.
func (u *udpServer) slow(msg []byte, from netip.AddrPort) {
	defer u.flight.Done()
	w := &udpWriter{u: u, query: msg, to: from}
	hdr := dns.Header{
		Id:      binary.BigEndian.Uint16(msg[0:]),
		Bits:    binary.BigEndian.Uint16(msg[2:]),
		Qdcount: binary.BigEndian.Uint16(msg[4:]),
		Ancount: binary.BigEndian.Uint16(msg[6:]),
		Nscount: binary.BigEndian.Uint16(msg[8:]),
		Arcount: binary.BigEndian.Uint16(msg[10:]),
	}
	reject := func(rcode int) {
		u.s.metrics.Malformed.Inc()
		m := new(dns.Msg)
		m.Id = hdr.Id
		m.Response = true
		m.Opcode = int(hdr.Bits>>11) & 0xF
		m.Rcode = rcode
		_ = w.WriteMsg(m)
	}
	switch dns.DefaultMsgAcceptFunc(hdr) {
	case dns.MsgIgnore:
		u.s.metrics.Malformed.Inc()
		return
	case dns.MsgReject:
		reject(dns.RcodeFormatError)
		return
	case dns.MsgRejectNotImplemented:
		reject(dns.RcodeNotImplemented)
		return
	}
	req := new(dns.Msg)
	if err := req.Unpack(msg); err != nil {
		reject(dns.RcodeFormatError)
		return
	}
	u.s.ServeDNS(w, req)
}

// send writes a UDP answer, subject to response rate limiting.
func (u *udpServer) send(resp, query []byte, to netip.AddrPort) {
	if u.s.rrl != nil {
		switch u.s.rrl.check(to.Addr(), rawQname(query)) {
		case rrlDrop:
			u.s.exp.rrlDropped.Inc()
			return
		case rrlSlip:
			u.s.exp.rrlSlipped.Inc()
			if resp = truncated(resp); resp == nil {
				return
			}
		}
	}
	_, _ = u.pc.WriteToUDPAddrPort(resp, to)
}

// udpWriter is the dns.ResponseWriter of one slow-path UDP query.
type udpWriter struct {
	u     *udpServer
	query []byte
	to    netip.AddrPort
}

func (w *udpWriter) LocalAddr() net.Addr  { return w.u.pc.LocalAddr() }
func (w *udpWriter) RemoteAddr() net.Addr { return net.UDPAddrFromAddrPort(w.to) }
func (w *udpWriter) WriteMsg(m *dns.Msg) error {
	b, err := m.Pack()
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}
func (w *udpWriter) Write(b []byte) (int, error) {
	w.u.send(b, w.query, w.to)
	return len(b), nil
}
func (w *udpWriter) Close() error        { return nil }
func (w *udpWriter) TsigStatus() error   { return nil }
func (w *udpWriter) TsigTimersOnly(bool) {}
func (w *udpWriter) Hijack()             {}

// nameBuf holds a query name in cache-key form (lower case, fully
// qualified) while a reader answers one packet.
type nameBuf [256]byte

// fastAnswer answers a cache hit straight from the query's bytes into out.
// It takes only the plain case, a single IN question whose name is made of
// letters, digits, '-' and '_', at most an OPT record (version 0), a name
// the plan allows outright (no would-deny), a fresh cache entry whose
// answer passes the plan's check and fits the client's buffer. It reports
// false for everything else, which the slow path then answers, so both
// paths give the same answer to the same query.
func (s *Server) fastAnswer(msg []byte, from netip.AddrPort, out []byte, name *nameBuf) ([]byte, bool) {
	if msg[2]&0xF8 != 0 { // QR set, or an opcode other than QUERY
		return nil, false
	}
	if binary.BigEndian.Uint16(msg[4:]) != 1 || binary.BigEndian.Uint16(msg[6:]) != 0 ||
		binary.BigEndian.Uint16(msg[8:]) != 0 || binary.BigEndian.Uint16(msg[10:]) > 1 {
		return nil, false
	}
	// Question name, lower-cased into name.
	off, n := headerLen, 0
	for {
		if off >= len(msg) {
			return nil, false
		}
		l := int(msg[off])
		off++
		if l == 0 {
			break
		}
		if l > 63 || off+l > len(msg) || n+l+1 > len(name) {
			return nil, false
		}
		for _, c := range msg[off : off+l] {
			switch {
			case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
			case 'A' <= c && c <= 'Z':
				c += 'a' - 'A'
			default:
				return nil, false // needs escaping in presentation form
			}
			name[n] = c
			n++
		}
		name[n] = '.'
		n++
		off += l
	}
	if n == 0 || off+4 > len(msg) {
		return nil, false
	}
	qEnd := off + 4
	qtype := binary.BigEndian.Uint16(msg[off:])
	if binary.BigEndian.Uint16(msg[off+2:]) != dns.ClassINET {
		return nil, false
	}
	switch qtype {
	case dns.TypeANY, dns.TypeAXFR, dns.TypeIXFR, dns.TypeOPT:
		return nil, false
	}
	var (
		hasOPT, do bool
		bufSize    uint16
	)
	off = qEnd
	if msg[11] == 1 { // ARCOUNT: the OPT record, nothing else
		if off+optRRLen > len(msg) || msg[off] != 0 || binary.BigEndian.Uint16(msg[off+1:]) != dns.TypeOPT || msg[off+6] != 0 {
			return nil, false
		}
		bufSize = binary.BigEndian.Uint16(msg[off+3:])
		do = msg[off+7]&0x80 != 0
		rdEnd := off + optRRLen + int(binary.BigEndian.Uint16(msg[off+9:]))
		if rdEnd > len(msg) || !plainOptions(msg[off+optRRLen:rdEnd]) {
			return nil, false
		}
		off = rdEnd
		hasOPT = true
	}
	if off != len(msg) {
		return nil, false
	}

	// The name is only borrowed for the calls below, none of which keeps
	// it (plan.Decide and map lookups); name is reused for the next packet.
	qname := unsafe.String(&name[0], n)
	cp, err := s.planFor(from.Addr().Unmap())
	if err != nil {
		return nil, false
	}
	dec := cp.plan.Decide(plan.Destination{Host: qname[:n-1], Protocol: "dns"})
	if dec.Action != plan.ActionAllow || dec.WouldDeny {
		return nil, false
	}
	key := cacheKey{name: qname, qtype: qtype}
	if do {
		key.bits |= keyDO
	}
	if msg[3]&0x10 != 0 {
		key.bits |= keyCD
	}
	e, ok := s.cache.get(key)
	now := time.Now().UnixNano()
	if !ok || !e.fresh(now) {
		return nil, false
	}
	if v := s.check(e, cp.plan, dec.Matched == plan.ActionAllow && dec.RuleID() != plan.DefaultRuleID); !v.ok || v.dec.WouldDeny || v.stripped != nil {
		return nil, false
	}
	limit := dns.MinMsgSize
	if hasOPT {
		limit = max(dns.MinMsgSize, min(int(bufSize), s.cfg.UDPSize))
	}
	if len(e.wire)+optRRLen > limit || len(e.wire) < qEnd {
		return nil, false
	}
	out = e.writeTo(out, now, 0)
	// The client's question, byte for byte (its case included); the
	// cached one is the same name in lower case, so the lengths agree.
	for i := headerLen; i < qEnd; i++ {
		if lowerASCII(out[i]) != lowerASCII(msg[i]) {
			return nil, false
		}
	}
	copy(out[headerLen:qEnd], msg[headerLen:qEnd])
	out[0], out[1] = msg[0], msg[1]
	b2 := byte(0x80) | msg[2]&0x01 // QR, opcode QUERY, RD as asked
	b3 := byte(0x80) | out[3]&0x0F // RA + rcode
	if out[3]&0x20 != 0 && (msg[3]&0x20 != 0 || do) {
		b3 |= 0x20 // AD only for clients that asked for it
	}
	b3 |= msg[3] & 0x10 // CD as asked
	out[2], out[3] = b2, b3
	if hasOPT {
		out = appendOPT(out, uint16(s.cfg.UDPSize), do)
	}
	s.metrics.CacheHits.Inc()
	s.metrics.query(idxAllow, qtype)
	return out, true
}

// plainOptions reports whether the OPT RDATA b is a well-formed list of
// options that need no parsing: NSID, COOKIE and PADDING, which dnsguard
// ignores (never echoes). Any other option sends the query down the slow
// path, where miekg/dns parses it (and answers FORMERR if it is malformed).
func plainOptions(b []byte) bool {
	for len(b) > 0 {
		if len(b) < 4 {
			return false
		}
		code, n := binary.BigEndian.Uint16(b), int(binary.BigEndian.Uint16(b[2:]))
		switch code {
		case dns.EDNS0NSID, dns.EDNS0COOKIE, dns.EDNS0PADDING:
		default:
			return false
		}
		if 4+n > len(b) {
			return false
		}
		b = b[4+n:]
	}
	return true
}
