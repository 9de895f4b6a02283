package dnsguard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gaissmai/bart"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/egressguard/egressguard/inventory"
	"github.com/egressguard/egressguard/policy/decisionlog"
	"github.com/egressguard/egressguard/policy/plan"
)

// PlanSource gives the compiled plan of a workload's class. The policy
// engine implements it; tests use a fixed plan.
type PlanSource interface {
	PlanFor(w *inventory.Workload) (*plan.Plan, error)
}

// Server is the policy-enforcing DNS resolver: UDP and TCP listeners on the
// same address, forwarding allowed queries to the upstreams through a
// shared cache. Create it with New, then Start; call Rebuild whenever the
// policy or the inventory changes.
type Server struct {
	cfg     Config
	log     *zap.Logger
	metrics *Metrics
	plans   PlanSource
	inv     inventory.Source
	sink    decisionlog.Sink

	fwd     *forwarder
	cache   *answerCache
	flight  flightGroup
	clients atomic.Pointer[clientTable]
	bufs    sync.Pool
	negTTL  uint32
	acl     *bart.Lite
	rrl     *rrl // nil: off
	exp     *exposureMetrics

	mu      sync.Mutex
	started bool
	udp     *udpServer
	tcp     *dns.Server
	udpAddr net.Addr
	tcpAddr net.Addr
	done    chan struct{}
}

// New builds a server from a validated configuration. log is the
// process's logger (New names it "dnsguard"). plans and inv are
// required; sink receives one decision record per non-allow answer and
// may be nil (no records); reg may be nil (metrics
// not registered). Upstreams are read from resolv.conf here when the
// configuration names none.
func New(cfg Config, plans PlanSource, inv inventory.Source, sink decisionlog.Sink, log *zap.Logger, reg prometheus.Registerer) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if plans == nil || inv == nil {
		return nil, errors.New("dnsguard: New: a PlanSource and an inventory.Source are required")
	}
	if log == nil {
		log = zap.NewNop()
	}
	log = log.Named("dnsguard")
	addrs, err := cfg.upstreamAddrs()
	if err != nil {
		return nil, err
	}
	m := NewMetrics(reg)
	acl, err := parseACL(cfg.AllowFrom)
	if err != nil {
		return nil, err
	}
	s := &Server{
		acl:     acl,
		exp:     newExposureMetrics(reg),
		cfg:     cfg,
		log:     log,
		metrics: m,
		plans:   plans,
		inv:     inv,
		sink:    sink,
		fwd:     newForwarder(addrs, cfg, m),
		negTTL:  uint32(cfg.NegativeTTL / time.Second),
	}
	if cfg.RRL.ResponsesPerSecond > 0 {
		s.rrl = newRRL(cfg.RRL)
	}
	s.cache = newAnswerCache(cfg.CacheSize, cfg.ServeStale, m.CacheEvictions.Inc)
	m.cacheLen = func() float64 { return float64(s.cache.len()) }
	s.clients.Store(newClientTable())
	s.bufs.New = func() any { b := make([]byte, 0, 1024); return &b }
	return s, nil
}

// Metrics returns the server's collectors.
func (s *Server) Metrics() *Metrics { return s.metrics }

// Start binds the UDP and TCP listeners (a port already in use is an
// error naming the address), probes the upstreams when configured to, and
// serves in the background until Shutdown. ctx bounds the start-up only.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("dnsguard: Start: already started")
	}
	if s.cfg.CheckUpstreams {
		warnings, err := s.fwd.probe(ctx)
		for _, w := range warnings {
			s.log.Warn("upstream did not answer the start-up probe", zap.String("detail", w))
		}
		if err != nil {
			return err
		}
	}
	pc, l, err := listen(s.cfg.Listen)
	if err != nil {
		return err
	}
	s.udpAddr, s.tcpAddr = pc.LocalAddr(), l.Addr()
	accept := func(h dns.Header) dns.MsgAcceptAction {
		a := dns.DefaultMsgAcceptFunc(h)
		if a != dns.MsgAccept {
			s.metrics.Malformed.Inc()
		}
		return a
	}
	invalid := func([]byte, error) { s.metrics.Malformed.Inc() }
	// TCP: the source ACL, and an accept loop that backs off on errors.
	acl := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		if !s.allowed(remoteIP(w)) {
			m := new(dns.Msg)
			m.SetRcode(r, dns.RcodeRefused)
			m.Question = nil
			_ = w.WriteMsg(m)
			return
		}
		s.ServeDNS(w, r)
	})
	l = &backoffListener{Listener: l, m: s.exp, log: s.log, sleep: time.Sleep}
	s.tcp = &dns.Server{Listener: l, Handler: acl, MsgAcceptFunc: accept, MsgInvalidFunc: invalid}
	var ready sync.WaitGroup
	ready.Add(1)
	s.tcp.NotifyStartedFunc = ready.Done
	s.done = make(chan struct{})
	go func() {
		defer close(s.done)
		if err := s.tcp.ActivateAndServe(); err != nil {
			s.log.Error("dns tcp listener stopped", zap.Error(err))
		}
	}()
	udpConn := pc.(*net.UDPConn)
	// A burst of cache hits must not overflow the kernel's default
	// receive buffer (about 200 KiB: a few hundred queries in flight).
	// Best effort: the kernel caps it at net.core.rmem_max.
	if err := udpConn.SetReadBuffer(udpSocketBuffer); err != nil {
		s.log.Warn("cannot enlarge the UDP receive buffer", zap.Error(err))
	}
	if err := udpConn.SetWriteBuffer(udpSocketBuffer); err != nil {
		s.log.Warn("cannot enlarge the UDP send buffer", zap.Error(err))
	}
	s.udp = &udpServer{s: s, pc: udpConn}
	s.udp.start(runtime.GOMAXPROCS(0))
	ready.Wait()
	s.started = true
	s.log.Info("dnsguard serving", zap.Stringer("udp", s.udpAddr), zap.Stringer("tcp", s.tcpAddr),
		zap.Int("upstreams", len(s.fwd.ups)), zap.String("block_response", string(s.cfg.BlockResponse)))
	return nil
}

// udpSocketBuffer is the receive and send buffer asked for the UDP socket.
const udpSocketBuffer = 4 << 20

// listen binds UDP and TCP on the same address. With port 0 the UDP port
// the OS picked is reused for TCP (retrying a few times if that TCP port
// happens to be taken).
func listen(addr string) (net.PacketConn, net.Listener, error) {
	ap, err := splitListen(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("dnsguard: listen: %w", err)
	}
	for attempt := 0; ; attempt++ {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, listenError("udp", addr, err)
		}
		host := ap.Addr().String()
		if ap.Addr() == netip.IPv6Unspecified() {
			host = "" // "" was given: all addresses, both families
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err == nil {
			return pc, l, nil
		}
		pc.Close()
		if ap.Port() != 0 || attempt >= 5 || !errors.Is(err, syscall.EADDRINUSE) {
			return nil, nil, listenError("tcp", addr, err)
		}
	}
}

func listenError(network, addr string, err error) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("dnsguard: listen %s %s: port already in use (another DNS server running?): %w", network, addr, err)
	}
	return fmt.Errorf("dnsguard: listen %s %s: %w", network, addr, err)
}

// Addr returns the bound UDP and TCP addresses (nil before Start).
func (s *Server) Addr() (udp, tcp net.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.udpAddr, s.tcpAddr
}

// Rebuild drops every client's cached plan resolution, so the next query
// from each client asks the inventory and the PlanSource again. Call it
// after every policy reload and inventory change. Queries in flight finish
// with the plan they started with (plans are immutable).
func (s *Server) Rebuild() {
	s.clients.Store(newClientTable())
	s.metrics.Rebuilds.Inc()
}

// Shutdown stops accepting queries, waits for the ones in flight to be
// answered (or ctx to end), and closes the upstream sockets.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.started {
		s.mu.Unlock()
		return nil
	}
	s.started = false
	udp, tcp, done := s.udp, s.tcp, s.done
	s.mu.Unlock()
	var errs []error
	if err := udp.shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("udp: %w", err))
	}
	if err := tcp.ShutdownContext(ctx); err != nil {
		errs = append(errs, fmt.Errorf("tcp: %w", err))
	}
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, ctx.Err())
	}
	s.fwd.close()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("dnsguard: shutdown: %w", err)
	}
	return nil
}

// clientTable memoises, per client IP, the workload and plan answered by
// the inventory and the PlanSource. Rebuild replaces the whole table.
type clientTable struct {
	mu sync.RWMutex
	m  map[netip.Addr]*clientPlan
}

type clientPlan struct {
	wl   *inventory.Workload
	plan *plan.Plan
}

// maxClients bounds the table; past it, it starts over (a scan of the
// address space must not grow memory).
const maxClients = 1 << 16

func newClientTable() *clientTable {
	return &clientTable{m: make(map[netip.Addr]*clientPlan)}
}

func (s *Server) planFor(ip netip.Addr) (*clientPlan, error) {
	t := s.clients.Load()
	t.mu.RLock()
	cp := t.m[ip]
	t.mu.RUnlock()
	if cp != nil {
		return cp, nil
	}
	wl := s.inv.Current().ResolveIP(ip)
	p, err := s.plans.PlanFor(wl)
	if err != nil {
		return nil, fmt.Errorf("dnsguard: plan for workload %s/%s (%s): %w", wl.Namespace, wl.Name, wl.Environment, err)
	}
	if p == nil {
		return nil, fmt.Errorf("dnsguard: plan for workload %s/%s (%s): no plan", wl.Namespace, wl.Name, wl.Environment)
	}
	cp = &clientPlan{wl: wl, plan: p}
	t.mu.Lock()
	if len(t.m) >= maxClients {
		t.m = make(map[netip.Addr]*clientPlan)
	}
	t.m[ip] = cp
	t.mu.Unlock()
	return cp, nil
}

// flightGroup collapses concurrent upstream fetches of the same key.
type flightGroup struct {
	mu sync.Mutex
	m  map[cacheKey]*flight
}

type flight struct {
	wg  sync.WaitGroup
	e   *entry
	err error
}

func (g *flightGroup) do(k cacheKey, fn func() (*entry, error)) (*entry, error) {
	g.mu.Lock()
	if g.m == nil {
		g.m = make(map[cacheKey]*flight)
	}
	if f, ok := g.m[k]; ok {
		g.mu.Unlock()
		f.wg.Wait()
		return f.e, f.err
	}
	f := &flight{}
	f.wg.Add(1)
	g.m[k] = f
	g.mu.Unlock()
	f.e, f.err = fn()
	f.wg.Done()
	g.mu.Lock()
	delete(g.m, k)
	g.mu.Unlock()
	return f.e, f.err
}
