package dnsguard

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// failKind classifies why an upstream attempt failed; it picks the EDE code
// of the SERVFAIL a client gets when every upstream failed.
type failKind uint8

const (
	failTimeout  failKind = iota // no answer in time: EDE 22 No Reachable Authority
	failNetwork                  // refused, reset, closed mid-answer, garbage: EDE 23 Network Error
	failRcode                    // answered SERVFAIL or REFUSED
	failOverload                 // too many upstream queries in flight
)

var failKindNames = [...]string{failTimeout: "timeout", failNetwork: "network", failRcode: "rcode", failOverload: "overload"}

func (k failKind) String() string { return failKindNames[k] }

// upstreamError is one failed attempt.
type upstreamError struct {
	upstream string
	kind     failKind
	err      error
}

func (e *upstreamError) Error() string { return fmt.Sprintf("upstream %s: %v", e.upstream, e.err) }
func (e *upstreamError) Unwrap() error { return e.err }

// upstream is one resolver dnsguard forwards to. UDP sockets are connected
// and reused (a pool of idle ones); TCP is used only for truncated answers
// and is one connection per exchange.
type upstream struct {
	addr netip.AddrPort
	name string
	idle chan *net.UDPConn
	// Consecutive failures and until when the upstream is tried last.
	fails     atomic.Int32
	downUntil atomic.Int64
}

const (
	idleUDPConns = 256
	// downAfter consecutive timeouts/network errors move an upstream to
	// the back of the order for downFor.
	downAfter = 3
	downFor   = 5 * time.Second
)

func newUpstream(a netip.AddrPort) *upstream {
	return &upstream{addr: a, name: a.String(), idle: make(chan *net.UDPConn, idleUDPConns)}
}

func (u *upstream) getConn() (*net.UDPConn, error) {
	select {
	case c := <-u.idle:
		return c, nil
	default:
	}
	return net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(u.addr))
}

func (u *upstream) putConn(c *net.UDPConn) {
	select {
	case u.idle <- c:
	default:
		_ = c.Close()
	}
}

func (u *upstream) closeIdle() {
	for {
		select {
		case c := <-u.idle:
			_ = c.Close()
		default:
			return
		}
	}
}

func (u *upstream) markOK() {
	if u.fails.Load() != 0 {
		u.fails.Store(0)
		u.downUntil.Store(0)
	}
}

func (u *upstream) markFailed(now time.Time) {
	if u.fails.Add(1) >= downAfter {
		u.downUntil.Store(now.Add(downFor).UnixNano())
	}
}

// forwarder sends queries to the upstreams in order with failover.
type forwarder struct {
	ups     []*upstream
	timeout time.Duration
	udpSize uint16
	sem     chan struct{}
	metrics *Metrics
	bufs    sync.Pool
}

func newForwarder(addrs []netip.AddrPort, cfg Config, m *Metrics) *forwarder {
	f := &forwarder{
		timeout: cfg.UpstreamTimeout,
		udpSize: uint16(cfg.UDPSize),
		sem:     make(chan struct{}, cfg.MaxConcurrent),
		metrics: m,
	}
	for _, a := range addrs {
		f.ups = append(f.ups, newUpstream(a))
	}
	// UDP answers larger than what dnsguard advertises (at most
	// maxUDPSize) are cut by the kernel and then fail to parse: such an
	// upstream is broken or hostile.
	f.bufs.New = func() any { b := make([]byte, maxUDPSize); return &b }
	return f
}

func (f *forwarder) close() {
	for _, u := range f.ups {
		u.closeIdle()
	}
}

// order returns the upstreams to try: configured order, with the ones
// recently marked down moved to the back (still tried: they may be back).
func (f *forwarder) order(now time.Time, buf []*upstream) []*upstream {
	buf = buf[:0]
	t := now.UnixNano()
	for _, u := range f.ups {
		if u.downUntil.Load() <= t {
			buf = append(buf, u)
		}
	}
	for _, u := range f.ups {
		if u.downUntil.Load() > t {
			buf = append(buf, u)
		}
	}
	return buf
}

// forward resolves q (one question) upstream. It returns the first usable
// answer, or every attempt's error joined.
func (f *forwarder) forward(ctx context.Context, q *dns.Msg) (*dns.Msg, error) {
	select {
	case f.sem <- struct{}{}:
		defer func() { <-f.sem }()
	default:
		return nil, &upstreamError{upstream: "all", kind: failOverload, err: errors.New("too many upstream queries in flight")}
	}
	var tried [8]*upstream
	var errs []error
	for _, u := range f.order(time.Now(), tried[:0]) {
		if ctx.Err() != nil {
			errs = append(errs, &upstreamError{upstream: u.name, kind: failTimeout, err: ctx.Err()})
			break
		}
		start := time.Now()
		r, err := f.exchange(ctx, u, q)
		f.metrics.observeUpstream(u.name, err, time.Since(start))
		if err == nil {
			if r.Rcode == dns.RcodeServerFailure || r.Rcode == dns.RcodeRefused {
				u.markOK() // it answered: it is up, just unhelpful for this name
				errs = append(errs, &upstreamError{upstream: u.name, kind: failRcode, err: fmt.Errorf("answered %s", dns.RcodeToString[r.Rcode])})
				continue
			}
			u.markOK()
			return r, nil
		}
		u.markFailed(time.Now())
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// exchange is one attempt at one upstream: UDP, then TCP when the UDP
// answer is truncated.
func (f *forwarder) exchange(ctx context.Context, u *upstream, q *dns.Msg) (*dns.Msg, error) {
	deadline := time.Now().Add(f.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	q.Id = uint16(rand.Uint32())
	packed, err := q.Pack()
	if err != nil {
		return nil, &upstreamError{upstream: u.name, kind: failNetwork, err: fmt.Errorf("pack query: %w", err)}
	}
	r, err := f.exchangeUDP(u, q, packed, deadline)
	if err != nil {
		return nil, err
	}
	if !r.Truncated {
		return r, nil
	}
	f.metrics.TCPRetries.Inc()
	return f.exchangeTCP(u, q, packed, deadline)
}

func classify(u *upstream, err error) *upstreamError {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return &upstreamError{upstream: u.name, kind: failTimeout, err: errors.New("timeout")}
	}
	return &upstreamError{upstream: u.name, kind: failNetwork, err: err}
}

func (f *forwarder) exchangeUDP(u *upstream, q *dns.Msg, packed []byte, deadline time.Time) (*dns.Msg, error) {
	c, err := u.getConn()
	if err != nil {
		return nil, classify(u, err)
	}
	if err := c.SetDeadline(deadline); err != nil {
		_ = c.Close()
		return nil, classify(u, err)
	}
	if _, err := c.Write(packed); err != nil {
		_ = c.Close()
		return nil, classify(u, err)
	}
	bp := f.bufs.Get().(*[]byte)
	defer f.bufs.Put(bp)
	buf := *bp
	var junk error // something not DNS arrived from the upstream's address
	for {
		n, err := c.Read(buf)
		if err != nil {
			_ = c.Close()
			ue := classify(u, err)
			if junk != nil && ue.kind == failTimeout {
				ue = &upstreamError{upstream: u.name, kind: failNetwork, err: junk}
			}
			return nil, ue
		}
		r, ok, err := matchResponse(q, buf[:n])
		if err != nil {
			// Garbage from the upstream's address: not a DNS server, or
			// corrupt. Count it and keep waiting for the real answer
			// until the deadline, so a spoofed packet cannot win.
			f.metrics.UpstreamMalformed.Inc()
			junk = err
			continue
		}
		if !ok {
			continue // a late answer to an earlier query on this socket
		}
		u.putConn(c)
		return r, nil
	}
}

func (f *forwarder) exchangeTCP(u *upstream, q *dns.Msg, packed []byte, deadline time.Time) (*dns.Msg, error) {
	d := net.Dialer{Deadline: deadline}
	conn, err := d.Dial("tcp", u.addr.String())
	if err != nil {
		return nil, classify(u, err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(deadline); err != nil {
		return nil, classify(u, err)
	}
	out := make([]byte, 2+len(packed))
	binary.BigEndian.PutUint16(out, uint16(len(packed)))
	copy(out[2:], packed)
	if _, err := conn.Write(out); err != nil {
		return nil, classify(u, err)
	}
	var l [2]byte
	if _, err := io.ReadFull(conn, l[:]); err != nil {
		return nil, classify(u, fmt.Errorf("tcp: read length: %w", err))
	}
	body := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(conn, body); err != nil {
		return nil, classify(u, fmt.Errorf("tcp: answer cut short: %w", err))
	}
	r, ok, err := matchResponse(q, body)
	if err != nil || !ok {
		// Over TCP nothing else can be in flight on this connection.
		if err == nil {
			err = errors.New("tcp: answer does not match the query")
		}
		f.metrics.UpstreamMalformed.Inc()
		return nil, &upstreamError{upstream: u.name, kind: failNetwork, err: err}
	}
	return r, nil
}

// matchResponse unpacks b and checks it answers q. It returns ok=false
// (and no error) for a well-formed DNS message that answers another query
// (ignore it), and an error for bytes that are not a DNS answer at all.
func matchResponse(q *dns.Msg, b []byte) (*dns.Msg, bool, error) {
	if len(b) < headerLen {
		return nil, false, fmt.Errorf("answered %d bytes, shorter than a DNS header: not a DNS server?", len(b))
	}
	r := new(dns.Msg)
	if err := r.Unpack(b); err != nil {
		return nil, false, fmt.Errorf("answered something that is not DNS (%.16q...): %w", b, err)
	}
	if r.Id != q.Id {
		return nil, false, nil
	}
	if !r.Response {
		return nil, false, errors.New("answered a DNS message without the QR bit")
	}
	if len(r.Question) == 0 && (r.Rcode == dns.RcodeFormatError || r.Rcode == dns.RcodeRefused ||
		r.Rcode == dns.RcodeServerFailure || r.Rcode == dns.RcodeNotImplemented) {
		// Some servers drop the question on errors; accept that.
		return r, true, nil
	}
	if len(r.Question) != 1 || !strings.EqualFold(r.Question[0].Name, q.Question[0].Name) ||
		r.Question[0].Qtype != q.Question[0].Qtype || r.Question[0].Qclass != q.Question[0].Qclass {
		return nil, false, nil
	}
	return r, true, nil
}

// probe checks that every upstream is a DNS server, by asking each for the
// root NS set. It fails when an upstream answers with something that is not
// DNS or refuses the connection, and when no upstream answers at all.
func (f *forwarder) probe(ctx context.Context) ([]string, error) {
	var (
		errs     []error
		warnings []string
		answered int
	)
	for _, u := range f.ups {
		q := new(dns.Msg)
		q.SetQuestion(".", dns.TypeNS)
		q.RecursionDesired = true
		q.SetEdns0(f.udpSize, false)
		_, err := f.exchange(ctx, u, q)
		var ue *upstreamError
		switch {
		case err == nil:
			answered++
		case errors.As(err, &ue) && ue.kind == failTimeout:
			warnings = append(warnings, fmt.Sprintf("upstream %s did not answer a probe query within %s", u.name, f.timeout))
		default:
			errs = append(errs, fmt.Errorf("dnsguard: upstream %s is not a usable DNS server: %w", u.name, errors.Unwrap(err)))
		}
	}
	if len(errs) == 0 && answered == 0 {
		errs = append(errs, fmt.Errorf("dnsguard: no upstream answered a probe query (%s)", strings.Join(warnings, "; ")))
	}
	return warnings, errors.Join(errs...)
}
