// Package nodeauth proves the node ID an xDS client claims before the
// control plane hands it that node's configuration.
//
// A node ID alone is a claim: any client that can reach the control plane
// could send a production pod's ID and receive its (wider) configuration.
// Guard is a gRPC stream interceptor that reads the node ID from a stream's
// first DiscoveryRequest (state of the world or delta) and requires
// evidence for it:
//
//   - a projected ServiceAccount token in the call credentials
//     ("authorization: Bearer <jwt>", audience Config.Audience): validated
//     with TokenReview (successes cached briefly, see reviewCache); the node ID must name the pod the token is bound to
//     (proxyless gRPC clients, and anything behind NAT);
//   - otherwise the connection's peer address: for a sidecar node ID
//     (inventory/kube.NodeID) the address in the ID must be the peer's, and
//     for a node the inventory knows, the peer address must belong to the
//     same workload as the node ID. This relies on pods being unable to
//     forge their source address across the CNI, and on no SNAT between
//     pods and the control plane.
//
// A node ID the inventory does not know is served (it resolves to the
// fail-closed default plan) unless its own address contradicts the peer.
// Evidence is checked again against every newer inventory before each
// response, so a node that becomes known later, or whose address moves, is
// never sent configuration its evidence does not cover.
//
// In ModeEnforce an unproven stream ends with PERMISSION_DENIED; in
// ModeReport it is served and recorded as a would-deny. Both are counted,
// logged and kept for Recent.
package nodeauth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/egressguard/egressguard/inventory"
	"github.com/egressguard/egressguard/inventory/kube"
)

// Evidence is what a stream's identity rests on.
type Evidence string

// Kinds of evidence.
const (
	EvidencePeer  Evidence = "peer"
	EvidenceToken Evidence = "token"
)

// Result is the verdict on a stream.
type Result string

// Results.
const (
	// ResultVerified: the evidence proves the node ID.
	ResultVerified Result = "verified"
	// ResultUnknown: the inventory does not know the node; it gets the
	// default plan, and nothing contradicts its claim.
	ResultUnknown Result = "unknown"
	// ResultDenied: unproven, refused (enforce).
	ResultDenied Result = "denied"
	// ResultWouldDeny: unproven, served (report).
	ResultWouldDeny Result = "would_deny"
)

// Refusal is one stream whose identity was not proven.
type Refusal struct {
	Time     time.Time `json:"time"`
	NodeID   string    `json:"node_id"`
	Peer     string    `json:"peer"`
	Evidence Evidence  `json:"evidence"`
	Reason   string    `json:"reason"`
	// Enforced is true when the stream was refused, false for a
	// would-deny in report mode.
	Enforced bool `json:"enforced"`
}

// Guard checks the identity of xDS streams. Create it with New.
type Guard struct {
	cfg     Config
	inv     inventory.Source
	rev     Reviewer
	cache   *reviewCache
	log     *zap.Logger
	metrics *metrics

	mu     sync.Mutex
	recent []Refusal // ring of cfg.Recent, next at head
	head   int
	full   bool
}

// New returns a Guard for cfg (which must be valid and enabled). rev
// validates tokens; nil means no API server: a stream presenting a token is
// then unproven. reg may be nil.
func New(cfg Config, inv inventory.Source, rev Reviewer, log *zap.Logger, reg prometheus.Registerer) (*Guard, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if !cfg.Enabled() {
		return nil, errors.New("xds.identity.mode: off installs no guard")
	}
	return &Guard{
		cfg: cfg, inv: inv, rev: rev, log: log.Named("nodeauth"), metrics: newMetrics(reg),
		cache:  newReviewCache(cfg.ReviewCacheTTL, cfg.ReviewCacheSize, time.Now),
		recent: make([]Refusal, cfg.Recent),
	}, nil
}

// ServerOptions are the gRPC server options that install the guard.
func (g *Guard) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ChainStreamInterceptor(g.StreamInterceptor)}
}

// Recent returns the last refusals and would-denies, newest first.
func (g *Guard) Recent() []Refusal {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := g.head
	if g.full {
		n = len(g.recent)
	}
	out := make([]Refusal, 0, n)
	for i := 1; i <= n; i++ {
		out = append(out, g.recent[(g.head-i+len(g.recent))%len(g.recent)])
	}
	return out
}

// StreamInterceptor is the grpc.StreamServerInterceptor that checks every
// stream whose first message is a DiscoveryRequest or DeltaDiscoveryRequest.
func (g *Guard) StreamInterceptor(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	s := &stream{ServerStream: ss, g: g}
	if p, ok := peer.FromContext(ss.Context()); ok {
		s.peer = peerAddr(p.Addr)
	}
	s.token, s.badAuth = bearerToken(ss.Context())
	err := handler(srv, s)
	if denied := s.deniedErr(); denied != nil {
		return denied
	}
	return err
}

// stream is one guarded stream. RecvMsg and SendMsg run on different
// goroutines, so its state is behind mu.
type stream struct {
	grpc.ServerStream
	g       *Guard
	peer    netip.Addr
	token   string
	badAuth string // a malformed authorization header

	mu       sync.Mutex
	checked  bool
	nodeID   string
	evidence Evidence
	snap     *inventory.Snapshot // inventory of the last check
	counted  bool                // the first verdict is counted
	failing  bool                // the last check failed (recorded once)
	denied   error
}

func (s *stream) deniedErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.denied
}

// RecvMsg checks the first request's node ID before the server sees it.
func (s *stream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.denied != nil {
		return s.denied
	}
	if s.checked {
		return nil
	}
	var id string
	switch r := m.(type) {
	case *discoveryv3.DiscoveryRequest:
		id = r.GetNode().GetId()
	case *discoveryv3.DeltaDiscoveryRequest:
		id = r.GetNode().GetId()
	default:
		return nil // not an xDS stream
	}
	if id == "" {
		return nil // the xDS server refuses a first request without a node ID
	}
	s.checked, s.nodeID = true, id
	s.firstCheck()
	return s.denied
}

// SendMsg checks the evidence again when the inventory changed since the
// last check, before anything more is sent.
func (s *stream) SendMsg(m any) error {
	s.mu.Lock()
	if s.denied == nil && s.checked && s.evidence == EvidencePeer {
		if snap := s.g.inv.Current(); snap != s.snap {
			s.snap = snap
			s.apply(s.g.checkPeer(snap, s.nodeID, s.peer))
		}
	}
	err := s.denied
	s.mu.Unlock()
	if err != nil {
		return err
	}
	return s.ServerStream.SendMsg(m)
}

// firstCheck decides on the stream's first request. Called with s.mu held.
func (s *stream) firstCheck() {
	g := s.g
	snap := g.inv.Current()
	s.snap = snap
	switch {
	case s.badAuth != "":
		s.evidence = EvidenceToken
		s.apply(ResultDenied, s.badAuth)
	case s.token != "":
		s.evidence = EvidenceToken
		if g.rev == nil {
			s.apply(ResultDenied, "a token was presented but no Kubernetes API server is configured to review it")
			return
		}
		ctx, cancel := context.WithTimeout(s.Context(), g.cfg.ReviewTimeout)
		id, err := g.review(ctx, s.token)
		cancel()
		if err != nil {
			s.apply(ResultDenied, err.Error())
			return
		}
		s.apply(g.checkToken(snap, s.nodeID, id))
	default:
		s.evidence = EvidencePeer
		s.apply(g.checkPeer(snap, s.nodeID, s.peer))
	}
}

// apply acts on a verdict: ResultDenied becomes a refusal (enforce) or a
// would-deny (report). A stream's first verdict is counted, and each time a
// later check starts failing; a stream that keeps failing is recorded once.
// Called with s.mu held.
func (s *stream) apply(r Result, reason string) {
	g := s.g
	if r != ResultDenied {
		if !s.counted {
			g.metrics.checked(s.evidence, r)
		}
		s.counted, s.failing = true, false
		return
	}
	if s.failing {
		return
	}
	s.counted, s.failing = true, true
	enforced := g.cfg.Mode == ModeEnforce
	if !enforced {
		r = ResultWouldDeny
	}
	g.metrics.checked(s.evidence, r)
	g.record(Refusal{Time: time.Now(), NodeID: s.nodeID, Peer: addrString(s.peer), Evidence: s.evidence, Reason: reason, Enforced: enforced})
	fields := []zap.Field{
		zap.String("node", s.nodeID), zap.String("peer", addrString(s.peer)),
		zap.String("evidence", string(s.evidence)), zap.String("reason", reason),
	}
	if !enforced {
		g.log.Warn("xDS node identity not proven; served (identity mode report)", fields...)
		return
	}
	g.log.Warn("xDS stream refused: node identity not proven", fields...)
	s.denied = status.Errorf(codes.PermissionDenied, "egressguard: node %q: identity not proven: %s", s.nodeID, reason)
}

func (g *Guard) record(r Refusal) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.recent[g.head] = r
	g.head = (g.head + 1) % len(g.recent)
	if g.head == 0 {
		g.full = true
	}
}

// ProxylessNodePrefix starts the node ID of a proxyless gRPC client of a
// prepared pod: the pod's sidecar node ID with "grpc~" for "sidecar~"
// (xds.ProxylessNodePrefix is this constant).
const ProxylessNodePrefix = "grpc~"

// InventoryNodeID is the ID inventory knows a node by: a proxyless
// client's ID through its pod's sidecar ID, any other ID as it is. The xDS
// enforcer serves a node the workload of this ID and the guard checks the
// node's evidence against the same pod: both call this one function.
func InventoryNodeID(id string) string {
	if rest, ok := strings.CutPrefix(id, ProxylessNodePrefix); ok {
		return "sidecar~" + rest
	}
	return id
}

// checkToken: the node ID must name the pod the token is bound to.
func (g *Guard) checkToken(snap *inventory.Snapshot, nodeID string, id PodIdentity) (Result, string) {
	nodeID = InventoryNodeID(nodeID)
	ref, ok := kube.ParseNodeID(nodeID)
	if !ok {
		return ResultDenied, fmt.Sprintf("the token is bound to pod %s, and the node ID names no pod", id)
	}
	if ref.Namespace != id.Namespace || ref.Name != id.Pod {
		return ResultDenied, fmt.Sprintf("the token is bound to pod %s, the node ID names pod %s", id, ref)
	}
	if _, known := snap.LookupNode(nodeID); !known {
		return ResultUnknown, ""
	}
	return ResultVerified, ""
}

// checkPeer: the connection must come from the node's own address.
func (g *Guard) checkPeer(snap *inventory.Snapshot, nodeID string, from netip.Addr) (Result, string) {
	nodeID = InventoryNodeID(nodeID)
	if !from.IsValid() {
		return ResultDenied, "the connection has no IP peer address and no token was presented"
	}
	if ref, ok := kube.ParseNodeID(nodeID); ok && ref.IP != from {
		return ResultDenied, fmt.Sprintf("the node ID names pod %s at %s, the connection comes from %s", ref, ref.IP, from)
	}
	w, known := snap.LookupNode(nodeID)
	if !known {
		return ResultUnknown, ""
	}
	pw, ok := snap.LookupIP(from)
	if !ok {
		return ResultDenied, fmt.Sprintf("the node ID is workload %s, the inventory knows no workload at %s", workloadName(w), from)
	}
	if pw != w {
		return ResultDenied, fmt.Sprintf("the node ID is workload %s, the connection comes from %s of workload %s",
			workloadName(w), from, workloadName(pw))
	}
	return ResultVerified, ""
}

func workloadName(w *inventory.Workload) string {
	if w.Namespace == "" {
		return w.Name
	}
	return w.Namespace + "/" + w.Name
}

// bearerToken reads "authorization: Bearer <token>" from the stream's
// metadata. bad is set when an authorization header is there but is not
// one bearer token (never the header's value: it may be a credential).
func bearerToken(ctx context.Context) (token, bad string) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	switch {
	case len(vals) == 0:
		return "", ""
	case len(vals) > 1:
		return "", "more than one authorization header"
	}
	scheme, tok, ok := strings.Cut(vals[0], " ")
	tok = strings.TrimSpace(tok)
	if !ok || !strings.EqualFold(scheme, "bearer") || tok == "" {
		return "", "the authorization header is not a bearer token"
	}
	return tok, ""
}

func peerAddr(a net.Addr) netip.Addr {
	if a == nil {
		return netip.Addr{}
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap().WithZone("")
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}
