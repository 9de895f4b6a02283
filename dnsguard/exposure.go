package dnsguard

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/gaissmai/bart"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// dnsguard is not an open resolver: a source ACL answers REFUSED to
// clients outside it, response rate limiting (RRL, as BIND and CoreDNS's
// rrl plugin do) caps UDP answers per client netblock and name, and the
// TCP accept loop backs off on errors such as EMFILE instead of spinning.

// DefaultAllowFrom are the sources allowed by default: loopback and the
// private ranges (RFC 1918, RFC 6598 shared space, IPv6 ULA). Narrow it to
// the cluster's pod CIDRs in a deployment.
var DefaultAllowFrom = []string{"127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7"}

// RRLConfig is dns.rrl: response rate limiting for UDP answers.
type RRLConfig struct {
	// ResponsesPerSecond is the answers per second one bucket (client
	// netblock + query name) gets; 0 turns RRL off.
	ResponsesPerSecond int `yaml:"responses_per_second"`
	// Window is how many seconds of unused rate a bucket may bank (burst).
	Window int `yaml:"window"`
	// Slip: every Slip-th answer over the limit is sent truncated (TC=1,
	// no records) so a real client retries over TCP; the rest are dropped.
	// 0 drops all, 1 truncates all.
	Slip int `yaml:"slip"`
	// IPv4PrefixLength and IPv6PrefixLength group clients into netblocks.
	IPv4PrefixLength int `yaml:"ipv4_prefix_length"`
	IPv6PrefixLength int `yaml:"ipv6_prefix_length"`
	// LimitLoopback applies RRL to loopback clients too (off: a local
	// stub or `make run` is never limited).
	LimitLoopback bool `yaml:"limit_loopback"`
}

func defaultRRL() RRLConfig {
	return RRLConfig{Window: 5, Slip: 2, IPv4PrefixLength: 24, IPv6PrefixLength: 56}
}

func (c RRLConfig) validate(add func(field, format string, args ...any)) {
	if c.ResponsesPerSecond < 0 {
		add("rrl.responses_per_second", "must not be negative, got %d", c.ResponsesPerSecond)
	}
	if c.Window < 1 || c.Window > 3600 {
		add("rrl.window", "must be between 1 and 3600 seconds, got %d", c.Window)
	}
	if c.Slip < 0 || c.Slip > 10 {
		add("rrl.slip", "must be between 0 and 10, got %d", c.Slip)
	}
	if c.IPv4PrefixLength < 1 || c.IPv4PrefixLength > 32 {
		add("rrl.ipv4_prefix_length", "must be between 1 and 32, got %d", c.IPv4PrefixLength)
	}
	if c.IPv6PrefixLength < 1 || c.IPv6PrefixLength > 128 {
		add("rrl.ipv6_prefix_length", "must be between 1 and 128, got %d", c.IPv6PrefixLength)
	}
}

// parseACL parses dns.allow_from.
func parseACL(cidrs []string) (*bart.Lite, error) {
	acl := new(bart.Lite)
	var errs []error
	for i, s := range cidrs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			if a, aerr := netip.ParseAddr(s); aerr == nil {
				p = netip.PrefixFrom(a, a.BitLen())
			} else {
				errs = append(errs, fmt.Errorf("allow_from[%d]: %q is not a CIDR or an IP", i, s))
				continue
			}
		}
		acl.Insert(p.Masked())
	}
	return acl, errors.Join(errs...)
}

type exposureMetrics struct {
	refused      prometheus.Counter
	rrlDropped   prometheus.Counter
	rrlSlipped   prometheus.Counter
	acceptErrors prometheus.Counter
}

func newExposureMetrics(reg prometheus.Registerer) *exposureMetrics {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: name, Help: help})
	}
	m := &exposureMetrics{
		refused:      c("acl_refused_total", "Queries from sources outside dns.allow_from, answered REFUSED."),
		rrlDropped:   c("rrl_dropped_total", "UDP answers over the response rate limit, dropped."),
		rrlSlipped:   c("rrl_slipped_total", "UDP answers over the response rate limit, sent truncated (TC) instead."),
		acceptErrors: c("tcp_accept_errors_total", "TCP accept errors (EMFILE, ENFILE, ...), each followed by a back-off."),
	}
	if reg != nil {
		reg.MustRegister(m.refused, m.rrlDropped, m.rrlSlipped, m.acceptErrors)
	}
	return m
}

// allowed reports whether src may query; refused ones are counted.
func (s *Server) allowed(src netip.Addr) bool {
	if s.acl.Lookup(src.Unmap()) {
		return true
	}
	s.exp.refused.Inc()
	return false
}

// refuse answers msg (a raw query) with REFUSED and no records.
func refuse(msg []byte) []byte {
	out := make([]byte, headerLen)
	copy(out, msg[:headerLen])
	out[2] = 0x80 | msg[2]&0x79 // QR, opcode and RD as asked
	out[3] = dns.RcodeRefused
	clear(out[4:]) // no question echoed: nothing for a reflector to amplify
	return out
}

// rrlVerdict is what RRL says about one answer.
type rrlVerdict uint8

const (
	rrlSend rrlVerdict = iota
	rrlSlip
	rrlDrop
)

type rrlKey struct {
	net  netip.Prefix
	name string
}

type rrlBucket struct {
	tokens float64
	last   time.Time
	over   int // answers over the limit, for slip
}

// maxRRLBuckets bounds RRL memory; past it, the table starts over.
const maxRRLBuckets = 1 << 16

type rrl struct {
	cfg RRLConfig
	now func() time.Time

	mu      sync.Mutex
	buckets map[rrlKey]*rrlBucket
}

func newRRL(cfg RRLConfig) *rrl {
	return &rrl{cfg: cfg, now: time.Now, buckets: map[rrlKey]*rrlBucket{}}
}

// check charges one answer for name to src's netblock.
func (r *rrl) check(src netip.Addr, name string) rrlVerdict {
	if r == nil || (src.IsLoopback() && !r.cfg.LimitLoopback) {
		return rrlSend
	}
	src = src.Unmap()
	bits := r.cfg.IPv4PrefixLength
	if src.Is6() {
		bits = r.cfg.IPv6PrefixLength
	}
	p, _ := src.Prefix(bits)
	k := rrlKey{p, name}
	now := r.now()
	rate := float64(r.cfg.ResponsesPerSecond)
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.buckets[k]
	if b == nil {
		if len(r.buckets) >= maxRRLBuckets {
			r.buckets = map[rrlKey]*rrlBucket{}
		}
		b = &rrlBucket{tokens: rate, last: now}
		r.buckets[k] = b
	}
	b.tokens = min(b.tokens+now.Sub(b.last).Seconds()*rate, rate*float64(r.cfg.Window))
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		b.over = 0
		return rrlSend
	}
	b.over++
	if r.cfg.Slip > 0 && b.over%r.cfg.Slip == 0 {
		return rrlSlip
	}
	return rrlDrop
}

// truncated is the slip answer: the query's header and question with QR
// and TC set and no records, so a real client retries over TCP.
func truncated(resp []byte) []byte {
	m := new(dns.Msg)
	if err := m.Unpack(resp); err != nil {
		return nil
	}
	m.Answer, m.Ns, m.Extra = nil, nil, nil
	m.Truncated = true
	b, err := m.Pack()
	if err != nil {
		return nil
	}
	return b
}

// acceptBackoff bounds the pause after a failed accept, as net/http's
// Server does (5 ms doubling to 1 s).
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

// backoffListener retries failed accepts after a growing pause, so a
// process out of file descriptors (EMFILE) does not spin a core: miekg/dns's
// accept loop retries temporary errors at once.
type backoffListener struct {
	net.Listener
	m     *exposureMetrics
	log   *zap.Logger
	sleep func(time.Duration)
}

func (l *backoffListener) Accept() (net.Conn, error) {
	var delay time.Duration
	for {
		c, err := l.Listener.Accept()
		if err == nil {
			return c, nil
		}
		var ne net.Error
		if errors.Is(err, net.ErrClosed) || !errors.As(err, &ne) {
			return nil, err
		}
		l.m.acceptErrors.Inc()
		delay = min(max(2*delay, acceptBackoffMin), acceptBackoffMax)
		if delay == acceptBackoffMax {
			l.log.Warn("dns tcp accept failing; backing off", zap.Duration("delay", delay), zap.Error(err))
		}
		l.sleep(delay)
	}
}

// rawQname returns the question name of a raw query, lower-cased, for RRL
// buckets ("" when it cannot be read: such packets share one bucket).
func rawQname(msg []byte) string {
	if len(msg) <= headerLen {
		return ""
	}
	b := make([]byte, 0, 64)
	for off := headerLen; off < len(msg); {
		l := int(msg[off])
		off++
		if l == 0 {
			return string(b)
		}
		if l > 63 || off+l > len(msg) {
			return ""
		}
		for _, c := range msg[off : off+l] {
			b = append(b, lowerASCII(c))
		}
		b = append(b, '.')
		off += l
	}
	return ""
}
