package dnsguard

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/zap"

	"github.com/egressguard/egressguard/policy/plan"
)

// ServeDNS answers one query. The order matters and is the enforcement
// contract:
//
//  1. malformed or unsupported requests are answered FORMERR / NOTIMP /
//     BADVERS / REFUSED without touching the policy (miekg/dns already
//     dropped what it could not parse; those are counted);
//  2. the client's source IP picks its workload (inventory) and the plan
//     of its class (PlanSource), memoised until Rebuild;
//  3. the asked name is decided first, for every query type: deny and
//     redirect are answered without asking the upstream for the asked name;
//  4. allowed names are answered from the cache or the upstreams, and the
//     answer itself is checked (CNAME/DNAME/SVCB targets by name, A/AAAA
//     and SVCB hints by address, IPv6 that embeds IPv4 as that IPv4
//     address): a production hit replaces the whole answer with the deny
//     answer; an explicit allow of the asked name (an exception) covers
//     its own addresses;
//  5. records of an allowed answer that production names own, or MX/SRV/NS
//     records pointing to them, are stripped from every section.
func (s *Server) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	if r.Opcode != dns.OpcodeQuery {
		s.metrics.Malformed.Inc()
		s.writeRcode(w, r, dns.RcodeNotImplemented, nil)
		return
	}
	if len(r.Question) != 1 || r.Response {
		s.metrics.Malformed.Inc()
		s.writeRcode(w, r, dns.RcodeFormatError, nil)
		return
	}
	q := r.Question[0]
	opt := r.IsEdns0()
	if opt != nil && opt.Version() != 0 {
		s.writeRcode(w, r, dns.RcodeBadVers, nil)
		return
	}
	if q.Qclass != dns.ClassINET {
		s.metrics.query(idxRefused, q.Qtype)
		s.writeRcode(w, r, dns.RcodeRefused, nil)
		return
	}
	switch q.Qtype {
	case dns.TypeAXFR, dns.TypeIXFR, dns.TypeOPT:
		s.metrics.query(idxRefused, q.Qtype)
		s.writeRcode(w, r, dns.RcodeRefused, nil)
		return
	}

	cp, err := s.planFor(remoteIP(w))
	if err != nil {
		s.metrics.PlanErrors.Inc()
		s.metrics.query(idxServfail, q.Qtype)
		s.log.Error("no plan for DNS client", zap.Stringer("client", w.RemoteAddr()), zap.Error(err))
		s.writeRcode(w, r, dns.RcodeServerFailure, &dns.EDNS0_EDE{
			InfoCode: dns.ExtendedErrorCodeOther, ExtraText: "egressguard: no policy for this client (fail closed)",
		})
		return
	}

	host := policyName(q.Name)
	dest := plan.Destination{Host: host, Protocol: "dns"}
	dec := cp.plan.Decide(dest)
	if dec.WouldDeny {
		s.decided(cp, host, q.Qtype, dest, dec, "")
	}
	switch dec.Action {
	case plan.ActionDeny:
		s.metrics.query(idxDeny, q.Qtype)
		s.decided(cp, host, q.Qtype, dest, dec, "")
		s.writeDeny(w, r, denyText(host, dec, ""))
		return
	case plan.ActionRedirect:
		s.decided(cp, host, q.Qtype, dest, dec, "")
		s.redirect(w, r, cp, host, dec)
		return
	}

	if q.Qtype == dns.TypeANY {
		s.metrics.query(idxAllow, q.Qtype)
		s.writeANY(w, r)
		return
	}

	key := cacheKey{name: cacheName(q.Name), qtype: q.Qtype}
	if opt != nil && opt.Do() {
		key.bits |= keyDO
	}
	if r.CheckingDisabled {
		key.bits |= keyCD
	}
	now := time.Now().UnixNano()
	e, stale, err := s.resolve(key, now)
	if err != nil {
		s.metrics.query(idxServfail, q.Qtype)
		s.writeServfail(w, r, err)
		return
	}
	// An explicit allow for the asked name (an exception) covers the
	// addresses it resolves to, and only those: the sidecar decides the
	// same connection by its SNI or Host first, too.
	v := s.check(e, cp.plan, dec.Matched == plan.ActionAllow && dec.RuleID() != plan.DefaultRuleID)
	if !v.ok || v.dec.WouldDeny {
		d := plan.Destination{Host: v.host, IP: v.ip, Protocol: "dns"}
		s.decided(cp, host, q.Qtype, d, v.dec, v.what)
		if !v.ok {
			s.metrics.query(idxDeny, q.Qtype)
			s.writeDeny(w, r, denyText(host, v.dec, v.what))
			return
		}
	}
	if v.stripped != nil {
		d := plan.Destination{Host: v.strip.host, Protocol: "dns"}
		s.decided(cp, host, q.Qtype, d, v.strip.dec, "records of "+v.strip.host+" stripped")
		e = v.stripped
	}
	s.metrics.query(idxAllow, q.Qtype)
	s.writeEntry(w, r, opt, e, now, stale)
}

// remoteIP returns the client's address without allocating.
func remoteIP(w dns.ResponseWriter) netip.Addr {
	switch a := w.RemoteAddr().(type) {
	case *net.UDPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	}
	return netip.Addr{}
}

func isTCP(w dns.ResponseWriter) bool {
	_, ok := w.RemoteAddr().(*net.TCPAddr)
	return ok
}

// resolve returns the answer for key from the cache, or from the upstreams
// (one fetch per key at a time). When every upstream fails it serves an
// expired entry still within the serve-stale window, if any.
func (s *Server) resolve(key cacheKey, now int64) (*entry, bool, error) {
	old, ok := s.cache.get(key)
	if ok && old.fresh(now) {
		s.metrics.CacheHits.Inc()
		return old, false, nil
	}
	s.metrics.CacheMisses.Inc()
	e, err := s.flight.do(key, func() (*entry, error) { return s.fetch(key) })
	if err != nil {
		if ok && now < old.expires+int64(s.cfg.ServeStale) {
			s.metrics.StaleAnswers.Inc()
			return old, true, nil
		}
		return nil, false, err
	}
	return e, false, nil
}

// fetch forwards key upstream and turns the answer into a cache entry.
func (s *Server) fetch(key cacheKey) (*entry, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.QueryTimeout)
	defer cancel()
	q := new(dns.Msg)
	q.SetQuestion(key.name, key.qtype)
	q.CheckingDisabled = key.bits&keyCD != 0
	q.SetEdns0(uint16(s.cfg.UDPSize), key.bits&keyDO != 0)
	r, err := s.fwd.forward(ctx, q)
	if err != nil {
		return nil, err
	}
	e, err := s.newEntry(q.Question[0], r, time.Now())
	if err != nil {
		return nil, &upstreamError{upstream: "answer", kind: failNetwork, err: err}
	}
	switch r.Rcode {
	case dns.RcodeSuccess, dns.RcodeNameError:
		s.cache.put(key, e)
	}
	return e, nil
}

// newEntry packs an upstream answer into the cache form and extracts what
// the policy checks.
func (s *Server) newEntry(q dns.Question, r *dns.Msg, now time.Time) (*entry, error) {
	m := new(dns.Msg)
	m.Id = 0
	m.Response = true
	m.Opcode = dns.OpcodeQuery
	m.Rcode = r.Rcode & 0xF
	m.RecursionAvailable = true
	m.AuthenticatedData = r.AuthenticatedData
	m.Question = []dns.Question{q}
	m.Answer = r.Answer
	m.Ns = r.Ns
	for _, rr := range r.Extra {
		if rr.Header().Rrtype != dns.TypeOPT {
			m.Extra = append(m.Extra, rr)
		}
	}
	e := &entry{rcode: m.Rcode, stored: now.UnixNano()}

	// TTL: the smallest positive TTL in the answer (capped), or the
	// negative TTL (RFC 2308: min of the SOA's TTL and MINIMUM, capped by
	// negative_ttl) for NXDOMAIN and NODATA.
	ttl := uint32(s.cfg.MaxTTL / time.Second)
	if len(m.Answer) > 0 && m.Rcode == dns.RcodeSuccess {
		for _, rr := range m.Answer {
			ttl = min(ttl, rr.Header().Ttl)
		}
	} else {
		ttl = s.negTTL
		for _, rr := range m.Ns {
			if soa, ok := rr.(*dns.SOA); ok {
				ttl = min(ttl, soa.Hdr.Ttl, soa.Minttl)
				soa.Hdr.Ttl = ttl
			}
		}
	}
	for _, rr := range m.Answer {
		rr.Header().Ttl = min(rr.Header().Ttl, uint32(s.cfg.MaxTTL/time.Second))
	}
	e.expires = now.Add(time.Duration(ttl) * time.Second).UnixNano()

	for _, sec := range [][]dns.RR{m.Answer, m.Extra} {
		for _, rr := range sec {
			e.collect(rr)
		}
	}
	e.owners = carriedNames(q.Name, m)
	m.Compress = true
	wire, err := m.Pack()
	if err != nil {
		return nil, fmt.Errorf("repack upstream answer: %w", err)
	}
	e.wire = wire
	e.ttls, err = ttlOffsets(wire)
	if err != nil {
		return nil, fmt.Errorf("index upstream answer: %w", err)
	}
	return e, nil
}

// collect records what one answer RR leads to.
func (e *entry) collect(rr dns.RR) {
	switch rr := rr.(type) {
	case *dns.A:
		if ip, ok := netip.AddrFromSlice(rr.A); ok {
			e.ips = append(e.ips, ip.Unmap())
		}
	case *dns.AAAA:
		if ip, ok := netip.AddrFromSlice(rr.AAAA); ok {
			e.ips = append(e.ips, ip.Unmap())
		}
	case *dns.CNAME:
		e.names = append(e.names, policyName(rr.Target))
	case *dns.DNAME:
		e.names = append(e.names, policyName(rr.Target))
	case *dns.SVCB:
		e.collectSVCB(rr)
	case *dns.HTTPS:
		e.collectSVCB(&rr.SVCB)
	}
}

func (e *entry) collectSVCB(rr *dns.SVCB) {
	if rr.Target != "." && rr.Target != "" {
		e.names = append(e.names, policyName(rr.Target))
	}
	for _, kv := range rr.Value {
		var hints []net.IP
		switch kv := kv.(type) {
		case *dns.SVCBIPv4Hint:
			hints = kv.Hint
		case *dns.SVCBIPv6Hint:
			hints = kv.Hint
		}
		for _, h := range hints {
			if ip, ok := netip.AddrFromSlice(h); ok {
				e.ips = append(e.ips, ip.Unmap())
			}
		}
	}
}

// answerCheck is the outcome of matching an answer against a plan.
type answerCheck struct {
	ok   bool // the whole answer may be served
	dec  plan.Decision
	what string // "cname target x", "address 10.20.0.5"
	host string
	ip   netip.Addr
	// stripped is the entry without the records production names own (or
	// point to), nil when there are none; strip is the first such name.
	stripped *entry
	strip    struct {
		host string
		dec  plan.Decision
	}
}

// check matches an entry's targets and addresses against p. Only explicit
// rules count: a plan's default (a default-deny class, say) applies to
// names a client asks for, not to every CDN host or address an allowed name
// leads to. For an address, deny and redirect both mean "production".
// The result is memoised on the entry for the last plan that asked.
//
// When excepted is set (an explicit rule allows the asked name), the
// answer's addresses are not matched against CIDR rules: the exception
// reads "this host", and the host's own addresses are what it grants.
// Targets the answer leads to are still checked, and nothing else is
// opened: other names and bare addresses in the same network stay denied.
func (s *Server) check(e *entry, p *plan.Plan, excepted bool) answerCheck {
	if len(e.ips) == 0 && len(e.names) == 0 && len(e.owners) == 0 {
		return answerCheck{ok: true}
	}
	if v := e.verdict.Load(); v != nil && v.plan == p && v.excepted == excepted {
		return v.check
	}
	c := answerCheck{ok: true}
	// consider folds one decision in; it reports whether the answer is
	// denied (no need to look further).
	consider := func(d plan.Decision, host string, ip netip.Addr) bool {
		if d.Rule == nil || d.RuleID() == plan.DefaultRuleID || d.Matched == plan.ActionAllow {
			return false
		}
		what := "target " + host
		if ip.IsValid() {
			what = "address " + ip.String()
		}
		if d.Action != plan.ActionAllow {
			c = answerCheck{ok: false, dec: d, what: what, host: host, ip: ip}
			return true
		}
		if !c.dec.WouldDeny { // report mode: remember the first one
			c = answerCheck{ok: true, dec: d, what: what, host: host, ip: ip}
		}
		return false
	}
	denied := false
	for _, n := range e.names {
		if denied = consider(p.Decide(plan.Destination{Host: n, Protocol: "dns"}), n, netip.Addr{}); denied {
			break
		}
	}
	for _, ip := range e.ips {
		if denied || excepted {
			break
		}
		denied = consider(p.Decide(plan.Destination{IP: ip, Protocol: "dns"}), "", ip)
	}
	if !c.ok && c.dec.Action == plan.ActionRedirect {
		// A redirect rule matching a target or an address still means
		// production: the answer is denied, not rewritten.
		c.dec.Action = plan.ActionDeny
	}
	if c.ok {
		s.stripProduction(e, p, &c)
	}
	e.verdict.Store(&verdict{plan: p, excepted: excepted, check: c})
	return c
}

// denyText is the EDE extra text of a deny answer: it names the rule.
func denyText(host string, dec plan.Decision, what string) string {
	var b strings.Builder
	b.WriteString("egressguard: ")
	if what != "" {
		fmt.Fprintf(&b, "answer for %s leads into production (%s); ", host, what)
	}
	fmt.Fprintf(&b, "blocked by rule %s", dec.RuleID())
	if reason := dec.Reason(); reason != "" {
		fmt.Fprintf(&b, ": %s", reason)
	}
	return b.String()
}

// writeEntry answers from a cache entry. The common case copies the packed
// answer into a pooled buffer and patches ID, flags, the question's case,
// TTLs and the OPT record in place; answers that need truncation, an EDE
// (stale) or carry escaped names take the general path.
func (s *Server) writeEntry(w dns.ResponseWriter, r *dns.Msg, opt *dns.OPT, e *entry, now int64, stale bool) {
	limit := s.sizeLimit(w, opt)
	qname := r.Question[0].Name
	if !stale && strings.IndexByte(qname, '\\') < 0 {
		bp := s.bufs.Get().(*[]byte)
		buf := e.writeTo((*bp)[:0], now, 0)
		if setQuestionCase(buf, qname) {
			binary.BigEndian.PutUint16(buf[0:], r.Id)
			b2 := byte(0x80)      // QR, opcode QUERY, AA clear
			if buf[2]&0x02 != 0 { // TC as stored
				b2 |= 0x02
			}
			if r.RecursionDesired {
				b2 |= 0x01
			}
			b3 := byte(0x80) | buf[3]&0x0F // RA + rcode
			if buf[3]&0x20 != 0 && (r.AuthenticatedData || (opt != nil && opt.Do())) {
				b3 |= 0x20
			}
			if r.CheckingDisabled {
				b3 |= 0x10
			}
			buf[2], buf[3] = b2, b3
			if opt != nil {
				buf = appendOPT(buf, uint16(s.cfg.UDPSize), opt.Do())
			}
			if len(buf) <= limit {
				_, _ = w.Write(buf)
				*bp = buf
				s.bufs.Put(bp)
				return
			}
		}
		*bp = buf
		s.bufs.Put(bp)
	}
	// General path.
	m := new(dns.Msg)
	var staleTTL uint32
	if stale {
		staleTTL = staleAnswerTTL
	}
	if err := m.Unpack(e.writeTo(nil, now, staleTTL)); err != nil {
		s.log.Error("cached answer does not unpack", zap.String("name", qname), zap.Error(err))
		s.writeServfail(w, r, err)
		return
	}
	m.Id = r.Id
	m.RecursionDesired = r.RecursionDesired
	m.CheckingDisabled = r.CheckingDisabled
	m.AuthenticatedData = m.AuthenticatedData && (r.AuthenticatedData || (opt != nil && opt.Do()))
	m.Question = []dns.Question{r.Question[0]}
	if opt != nil {
		var ede *dns.EDNS0_EDE
		if stale {
			ede = &dns.EDNS0_EDE{InfoCode: dns.ExtendedErrorCodeStaleAnswer, ExtraText: "egressguard: no upstream answered; serving an expired answer"}
		}
		m.Extra = append(m.Extra, s.replyOPT(opt, ede))
	}
	s.write(w, m, limit)
}

// staleAnswerTTL is the TTL of answers served stale (RFC 8767 §4).
const staleAnswerTTL = 30

// appendOPT appends an OPT RR without options and bumps ARCOUNT.
func appendOPT(buf []byte, size uint16, do bool) []byte {
	var flags uint16
	if do {
		flags = 0x8000
	}
	buf = append(buf, 0, 0, 41, byte(size>>8), byte(size), 0, 0, byte(flags>>8), byte(flags), 0, 0)
	binary.BigEndian.PutUint16(buf[10:], binary.BigEndian.Uint16(buf[10:])+1)
	return buf
}

// sizeLimit is the largest answer the client can take: 64 KiB over TCP;
// over UDP its EDNS0 buffer size (at least 512, at most udp_size), or 512
// without EDNS0.
func (s *Server) sizeLimit(w dns.ResponseWriter, opt *dns.OPT) int {
	if isTCP(w) {
		return dns.MaxMsgSize
	}
	if opt == nil {
		return dns.MinMsgSize
	}
	return max(dns.MinMsgSize, min(int(opt.UDPSize()), s.cfg.UDPSize))
}

// replyOPT is the OPT record of an answer: dnsguard's own buffer size and
// the client's DO bit. None of the client's options is echoed.
func (s *Server) replyOPT(req *dns.OPT, ede *dns.EDNS0_EDE) *dns.OPT {
	o := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
	o.SetUDPSize(uint16(s.cfg.UDPSize))
	if req != nil && req.Do() {
		o.SetDo()
	}
	if ede != nil {
		o.Option = append(o.Option, ede)
	}
	return o
}

// write truncates m to limit (setting TC when records had to go) and sends
// it.
func (s *Server) write(w dns.ResponseWriter, m *dns.Msg, limit int) {
	m.Truncate(limit)
	m.Compress = true
	if err := w.WriteMsg(m); err != nil {
		s.log.Debug("write answer", zap.Error(err))
	}
}

// reply starts an answer to r with RA set and the client's question.
func (s *Server) reply(r *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(r)
	m.RecursionAvailable = true
	return m
}

// finish adds the OPT (with ede when the client speaks EDNS0) and writes.
func (s *Server) finish(w dns.ResponseWriter, r, m *dns.Msg, ede *dns.EDNS0_EDE) {
	opt := r.IsEdns0()
	if opt != nil {
		m.Extra = append(m.Extra, s.replyOPT(opt, ede))
	}
	s.write(w, m, s.sizeLimit(w, opt))
}

func (s *Server) writeRcode(w dns.ResponseWriter, r *dns.Msg, rcode int, ede *dns.EDNS0_EDE) {
	m := s.reply(r)
	if len(r.Question) > 1 {
		m.Question = nil
	}
	m.Rcode = rcode
	opt := r.IsEdns0()
	if rcode == dns.RcodeBadVers {
		// BADVERS is an extended rcode: it lives in the OPT record.
		m.Rcode = dns.RcodeBadVers
		o := s.replyOPT(opt, nil)
		m.Extra = append(m.Extra, o)
		s.write(w, m, dns.MinMsgSize)
		return
	}
	s.finish(w, r, m, ede)
}

// writeServfail answers SERVFAIL with EDE 22 (No Reachable Authority) when
// the upstreams only timed out, EDE 23 (Network Error) otherwise.
func (s *Server) writeServfail(w dns.ResponseWriter, r *dns.Msg, err error) {
	code := dns.ExtendedErrorCodeNoReachableAuthority
	var ue *upstreamError
	for _, e := range flatten(err) {
		if errors.As(e, &ue) && ue.kind != failTimeout {
			code = dns.ExtendedErrorCodeNetworkError
			break
		}
	}
	text := "egressguard: " + strings.ReplaceAll(err.Error(), "\n", "; ")
	if len(text) > 200 {
		text = text[:200]
	}
	s.writeRcode(w, r, dns.RcodeServerFailure, &dns.EDNS0_EDE{InfoCode: code, ExtraText: text})
}

func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// writeDeny sends the configured block answer with EDE 15 (Blocked).
func (s *Server) writeDeny(w dns.ResponseWriter, r *dns.Msg, text string) {
	m := s.reply(r)
	q := r.Question[0]
	switch s.cfg.BlockResponse {
	case BlockRefused:
		m.Rcode = dns.RcodeRefused
	case BlockSinkhole:
		hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: s.negTTL}
		switch q.Qtype {
		case dns.TypeA:
			hdr.Rrtype = dns.TypeA
			m.Answer = []dns.RR{&dns.A{Hdr: hdr, A: net.IPv4zero.To4()}}
		case dns.TypeAAAA:
			hdr.Rrtype = dns.TypeAAAA
			m.Answer = []dns.RR{&dns.AAAA{Hdr: hdr, AAAA: net.IPv6zero}}
		default:
			m.Ns = []dns.RR{s.syntheticSOA(q.Name)}
		}
	default:
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{s.syntheticSOA(q.Name)}
	}
	s.finish(w, r, m, &dns.EDNS0_EDE{InfoCode: dns.ExtendedErrorCodeBlocked, ExtraText: text})
}

// syntheticSOA is the SOA of the zone a deny answer speaks for: the parent
// of the asked name, so "this name does not exist" is consistent, with the
// negative TTL bounding how long downstream resolvers cache the denial.
func (s *Server) syntheticSOA(qname string) *dns.SOA {
	zone := "."
	if i, end := dns.NextLabel(qname, 0); !end {
		zone = qname[i:]
	}
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: s.negTTL},
		Ns:      "egressguard.invalid.",
		Mbox:    "hostmaster.egressguard.invalid.",
		Serial:  1,
		Refresh: 3600,
		Retry:   600,
		Expire:  86400,
		Minttl:  s.negTTL,
	}
}

// writeANY answers ANY minimally (RFC 8482 §4.2: one synthesised HINFO).
func (s *Server) writeANY(w dns.ResponseWriter, r *dns.Msg) {
	m := s.reply(r)
	m.Answer = []dns.RR{&dns.HINFO{
		Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeHINFO, Class: dns.ClassINET, Ttl: 3600},
		Cpu: "RFC8482",
	}}
	s.finish(w, r, m, nil)
}

// redirect answers a redirected name with a CNAME to the sandbox host
// followed by the sandbox's own answer for the same type, resolved (and
// checked) like any other answer.
func (s *Server) redirect(w dns.ResponseWriter, r *dns.Msg, cp *clientPlan, host string, dec plan.Decision) {
	q := r.Question[0]
	target := dec.Target()
	if target == nil || target.Host == "" {
		// A redirect without a target cannot be honoured: deny.
		s.metrics.query(idxDeny, q.Qtype)
		s.writeDeny(w, r, denyText(host, dec, "")+" (redirect rule without a sandbox host)")
		return
	}
	sandbox := dns.Fqdn(strings.ToLower(target.Host))
	text := fmt.Sprintf("egressguard: %s redirected to sandbox %s by rule %s", host, strings.TrimSuffix(sandbox, "."), dec.RuleID())
	if _, ok := plan.NoteTLSRedirect(dec, plan.Destination{Host: host, Protocol: "dns"}); ok {
		text += "; " + plan.FailClosedTLS
	}
	if target.Port != 0 {
		text += fmt.Sprintf("; sandbox port %d is enforced by the sidecar, not DNS", target.Port)
	}
	m := s.reply(r)
	m.Answer = []dns.RR{&dns.CNAME{
		Hdr:    dns.RR_Header{Name: q.Name, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: s.negTTL},
		Target: sandbox,
	}}
	if q.Qtype != dns.TypeCNAME && q.Qtype != dns.TypeANY {
		key := cacheKey{name: sandbox, qtype: q.Qtype}
		if opt := r.IsEdns0(); opt != nil && opt.Do() {
			key.bits |= keyDO
		}
		now := time.Now().UnixNano()
		e, _, err := s.resolve(key, now)
		if err != nil {
			s.metrics.query(idxServfail, q.Qtype)
			s.writeServfail(w, r, fmt.Errorf("resolve sandbox %s: %w", sandbox, err))
			return
		}
		if v := s.check(e, cp.plan, false); !v.ok {
			dest := plan.Destination{Host: v.host, IP: v.ip, Protocol: "dns"}
			s.decided(cp, host, q.Qtype, dest, v.dec, "sandbox "+v.what)
			s.metrics.query(idxDeny, q.Qtype)
			s.writeDeny(w, r, denyText(host, v.dec, "sandbox "+v.what))
			return
		}
		sm := new(dns.Msg)
		if err := sm.Unpack(e.writeTo(nil, now, 0)); err != nil {
			s.metrics.query(idxServfail, q.Qtype)
			s.writeServfail(w, r, err)
			return
		}
		m.Rcode = sm.Rcode
		for _, rr := range sm.Answer {
			rr.Header().Ttl = min(rr.Header().Ttl, s.negTTL)
			m.Answer = append(m.Answer, rr)
		}
		m.Ns = sm.Ns
	}
	s.metrics.query(idxRedirect, q.Qtype)
	s.finish(w, r, m, &dns.EDNS0_EDE{InfoCode: dns.ExtendedErrorCodeBlocked, ExtraText: text})
}
