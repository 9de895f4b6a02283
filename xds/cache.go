package xds

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"go.uber.org/zap"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// The resource types served, in dependency order.
const (
	typeListener = iota
	typeRoute
	typeCluster
	typeEndpoint
	typeSecret
	numTypes
)

var typeURLs = [numTypes]string{resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.SecretType}

var typeNames = [numTypes]string{"listener", "route", "cluster", "endpoint", "secret"}

func typeIndex(url string) int {
	for i, u := range typeURLs {
		if u == url {
			return i
		}
	}
	return -1
}

// fullState says whether a state-of-the-world response must carry every
// resource of the type (LDS, CDS) or may carry only some (RDS, EDS).
func fullState(typ int) bool { return typ == typeListener || typ == typeCluster }

// prepared is one resource marshalled once and shared by every node and
// stream that receives it.
type prepared struct {
	name string
	// msg is the resource as built; nil once dropped to save memory (sidecar
	// snapshots keep only the wire form), see message.
	msg     proto.Message
	any     *anypb.Any
	version string
	delta   *discoveryv3.Resource
	// digest is the SHA-256 of the wire form (version is its first 12
	// bytes); the chain-check memo is keyed by it.
	digest [sha256.Size]byte
}

func prepare(name string, m proto.Message) (*prepared, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("marshal %s: %w", name, err)
	}
	return preparedFrom(name, m, b), nil
}

func preparedFrom(name string, m proto.Message, b []byte) *prepared {
	sum := sha256.Sum256(b)
	v := hex.EncodeToString(sum[:12])
	a := &anypb.Any{TypeUrl: "type.googleapis.com/" + string(m.ProtoReflect().Descriptor().FullName()), Value: b}
	return &prepared{name: name, msg: m, any: a, version: v, delta: &discoveryv3.Resource{Name: name, Version: v, Resource: a}, digest: sum}
}

// prepareRoute marshals a route configuration from its parts: the
// configuration without virtual hosts, then each virtual host's wire form
// as a virtual_hosts field, taken from vhc when it built that host (the
// bytes of a base rule's virtual host are shared by every class). Protobuf
// parsers accept a repeated field's elements after the other fields; the
// result decodes to a message proto.Equal to rc.
func prepareRoute(rc *routev3.RouteConfiguration, vhc *vhostCache) (*prepared, error) {
	det := proto.MarshalOptions{Deterministic: true}
	shell, err := det.Marshal(withoutVirtualHosts(rc))
	if err != nil {
		return nil, fmt.Errorf("marshal %s: %w", rc.Name, err)
	}
	parts := make([][]byte, len(rc.VirtualHosts))
	size := len(shell)
	for i, vh := range rc.VirtualHosts {
		if e := vhc.lookup(vh); e != nil && e.err == nil {
			parts[i] = e.raw
		} else if parts[i], err = det.Marshal(vh); err != nil {
			return nil, fmt.Errorf("marshal %s: virtual host %s: %w", rc.Name, vh.GetName(), err)
		}
		size += protowire.SizeTag(virtualHostsField) + protowire.SizeBytes(len(parts[i]))
	}
	b := make([]byte, 0, size)
	b = append(b, shell...)
	for _, raw := range parts {
		b = protowire.AppendTag(b, virtualHostsField, protowire.BytesType)
		b = protowire.AppendBytes(b, raw)
	}
	return preparedFrom(rc.Name, rc, b), nil
}

// message returns the resource, decoding the wire form when msg was dropped.
func (p *prepared) message() (proto.Message, error) {
	if p.msg != nil {
		return p.msg, nil
	}
	return p.any.UnmarshalNew()
}

// Snapshot is one node's whole configuration, immutable once built. Nodes of
// one class (and outbound port, or proxyless targets) share one Snapshot.
type Snapshot struct {
	sets [numTypes]map[string]*prepared
	// Version is a content hash over every resource.
	Version string
	// Class is the plan fingerprint the snapshot was built from.
	Class string
}

func newSnapshot(class string, items [numTypes][]*prepared) *Snapshot {
	s := &Snapshot{Class: class}
	h := sha256.New()
	for t := range numTypes {
		s.sets[t] = make(map[string]*prepared, len(items[t]))
		for _, p := range items[t] {
			s.sets[t][p.name] = p
		}
		names := make([]string, 0, len(s.sets[t]))
		for n := range s.sets[t] {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			fmt.Fprintf(h, "%d\x00%s\x00%s\x00", t, n, s.sets[t][n].version)
		}
	}
	s.Version = hex.EncodeToString(h.Sum(nil)[:12])
	return s
}

// Names lists the snapshot's resource names of one type URL, sorted,
// without decoding anything.
func (s *Snapshot) Names(typeURL string) []string {
	t := typeIndex(typeURL)
	if t < 0 {
		return nil
	}
	out := make([]string, 0, len(s.sets[t]))
	for n := range s.sets[t] {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Resources returns the snapshot's resources of one type URL, by name,
// decoding those kept only in wire form (sidecar snapshots): for debugging
// and tests, not for hot paths.
func (s *Snapshot) Resources(typeURL string) map[string]proto.Message {
	t := typeIndex(typeURL)
	if t < 0 {
		return nil
	}
	out := make(map[string]proto.Message, len(s.sets[t]))
	for n, p := range s.sets[t] {
		if m, err := p.message(); err == nil {
			out[n] = m
		}
	}
	return out
}

// NackRecord is the last rejection a node reported for one type.
type NackRecord struct {
	Version string    `json:"version"`
	Detail  string    `json:"detail"`
	At      time.Time `json:"at"`
	Count   uint64    `json:"count"`
}

// AckRecord is the last acceptance a node reported for one type: the
// digest of the resource versions it acknowledged, and when.
type AckRecord struct {
	Version string    `json:"version"`
	At      time.Time `json:"at"`
}

type cacheNode struct {
	snap      *Snapshot
	setAt     time.Time
	watches   map[int64]*cacheWatch
	acks      [numTypes]*AckRecord
	nacks     [numTypes]*NackRecord
	nackTotal uint64
	unknown   map[string]bool
}

type cacheWatch struct {
	typ   int
	sotw  *discoveryv3.DiscoveryRequest
	delta *discoveryv3.DeltaDiscoveryRequest
	sub   cachev3.Subscription
	ch    chan cachev3.Response
	dch   chan cachev3.DeltaResponse
}

// snapCache implements go-control-plane's cache.Cache over per-node
// Snapshots. Unlike the stock SnapshotCache it
//   - decides what to send from what the stream has already been sent (the
//     subscription's returned versions), never from the request's
//     version_info: a NACK (which carries the last *accepted* version) is
//     not answered with the same rejected resources again (the stock cache
//     re-sends at once, go-control-plane #962); the next change is sent;
//   - never waits for a full set of names (the ADS-mode hang with grpc-go,
//     go-control-plane #1389): it answers with what exists;
//   - marshals every resource once per snapshot build and shares the bytes
//     across all streams.
type snapCache struct {
	log     *zap.Logger
	metrics *Metrics

	mu     sync.Mutex
	nodes  map[string]*cacheNode
	nextID int64
}

func newSnapCache(log *zap.Logger, m *Metrics) *snapCache {
	return &snapCache{log: log, metrics: m, nodes: map[string]*cacheNode{}}
}

var _ cachev3.Cache = (*snapCache)(nil)

func (c *snapCache) node(id string) *cacheNode {
	n, ok := c.nodes[id]
	if !ok {
		n = &cacheNode{watches: map[int64]*cacheWatch{}}
		c.nodes[id] = n
	}
	return n
}

// SetSnapshot publishes a node's snapshot and answers the node's open
// watches that it changes. Publishing the same snapshot again is a no-op.
func (c *snapCache) SetSnapshot(id string, s *Snapshot) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.node(id)
	if n.snap == s || (n.snap != nil && s != nil && n.snap.Version == s.Version) {
		n.snap = s
		return
	}
	n.snap = s
	n.setAt = time.Now()
	for wid, w := range n.watches {
		if c.tryRespond(id, n, w) {
			delete(n.watches, wid)
		}
	}
}

// Snapshot returns the node's current snapshot (nil if none).
func (c *snapCache) Snapshot(id string) *Snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n, ok := c.nodes[id]; ok {
		return n.snap
	}
	return nil
}

// Forget drops a node that has no stream left.
func (c *snapCache) Forget(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n, ok := c.nodes[id]; ok && len(n.watches) == 0 {
		delete(c.nodes, id)
	}
}

// NodeStatus is the debug view of one node's protocol state.
type NodeStatus struct {
	Version   string                 `json:"version"`
	SetAt     time.Time              `json:"published_at"`
	Watches   int                    `json:"open_watches"`
	NACKs     uint64                 `json:"nacks_total"`
	LastNACKs map[string]*NackRecord `json:"last_nacks,omitempty"`
	// LastACKs is the last ACK per resource type (any stream of the node).
	LastACKs map[string]*AckRecord `json:"last_acks,omitempty"`
}

func (c *snapCache) status(id string) (NodeStatus, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.nodes[id]
	if !ok {
		return NodeStatus{}, false
	}
	st := NodeStatus{SetAt: n.setAt, Watches: len(n.watches), NACKs: n.nackTotal, LastNACKs: map[string]*NackRecord{}, LastACKs: map[string]*AckRecord{}}
	if n.snap != nil {
		st.Version = n.snap.Version
	}
	for t, r := range n.nacks {
		if r != nil {
			cp := *r
			st.LastNACKs[typeNames[t]] = &cp
		}
	}
	for t, r := range n.acks {
		if r != nil {
			cp := *r
			st.LastACKs[typeNames[t]] = &cp
		}
	}
	return st, true
}

// CreateWatch implements cache.ConfigWatcher for state of the world.
func (c *snapCache) CreateWatch(req *cachev3.Request, sub cachev3.Subscription, ch chan cachev3.Response) (func(), error) {
	return c.createWatch(req, sub, &cacheWatch{sotw: req, sub: sub, ch: ch})
}

// CreateDeltaWatch implements cache.ConfigWatcher for incremental xDS.
func (c *snapCache) CreateDeltaWatch(req *cachev3.DeltaRequest, sub cachev3.Subscription, ch chan cachev3.DeltaResponse) (func(), error) {
	return c.createWatch(req, sub, &cacheWatch{delta: req, sub: sub, dch: ch})
}

// watchRequest is what state-of-the-world and delta requests have in common.
type watchRequest interface {
	GetNode() *corev3.Node
	GetTypeUrl() string
	GetErrorDetail() *rpcstatus.Status
	GetResponseNonce() string
}

// createWatch records the ACK or NACK carried by req (a request answering a
// response, with or without error_detail), then answers w at once when the
// node's snapshot has something the stream has not been sent, or parks it.
func (c *snapCache) createWatch(req watchRequest, sub cachev3.Subscription, w *cacheWatch) (func(), error) {
	id := req.GetNode().GetId()
	if id == "" {
		return nil, errors.New("xds: request without node id")
	}
	typ := typeIndex(req.GetTypeUrl())
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.node(id)
	if typ < 0 {
		c.noteUnknown(id, n, req.GetTypeUrl())
		return func() {}, nil
	}
	switch {
	case req.GetErrorDetail() != nil:
		c.noteNACK(id, n, typ, sub.ReturnedResources(), req.GetErrorDetail().GetMessage())
	case req.GetResponseNonce() != "":
		n.acks[typ] = &AckRecord{Version: returnedDigest(sub.ReturnedResources()), At: time.Now()}
	}
	w.typ = typ
	if c.tryRespond(id, n, w) {
		return func() {}, nil
	}
	return c.addWatch(id, n, w), nil
}

func (c *snapCache) addWatch(id string, n *cacheNode, w *cacheWatch) func() {
	c.nextID++
	wid := c.nextID
	n.watches[wid] = w
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if cur, ok := c.nodes[id]; ok {
			delete(cur.watches, wid)
		}
	}
}

// Fetch implements cache.ConfigFetcher: REST polling is not served.
func (c *snapCache) Fetch(context.Context, *cachev3.Request) (cachev3.Response, error) {
	return nil, errors.New("xds: REST fetch is not supported; use a gRPC stream")
}

func (c *snapCache) noteUnknown(id string, n *cacheNode, url string) {
	if n.unknown == nil {
		n.unknown = map[string]bool{}
	}
	if !n.unknown[url] {
		n.unknown[url] = true
		c.log.Warn("node asked for a resource type that is not served; it will get no answer for it",
			zap.String("node", id), zap.String("type_url", url))
	}
	c.metrics.unknownTypes.Inc()
}

// noteNACK counts a rejection and logs it once per (node, type, version).
func (c *snapCache) noteNACK(id string, n *cacheNode, typ int, returned map[string]string, detail string) {
	version := returnedDigest(returned) // what the stream was sent and rejected
	n.nackTotal++
	c.metrics.nacks.WithLabelValues(typeNames[typ]).Inc()
	r := n.nacks[typ]
	if r == nil || r.Version != version || r.Detail != detail {
		c.log.Warn("node rejected configuration (NACK); it keeps its last accepted config and will not be sent this version again",
			zap.String("node", id), zap.String("type", typeNames[typ]), zap.String("version", version),
			zap.String("detail", detail))
		r = &NackRecord{Version: version, Detail: detail}
		n.nacks[typ] = r
	}
	r.At = time.Now()
	r.Count++
}

// tryRespond answers w from the node's snapshot if the stream lacks some of
// it. It reports whether it answered (the watch is then spent). Sends never
// block: the server keeps at most one watch per type and stream, and its
// channels hold one response per type.
func (c *snapCache) tryRespond(id string, n *cacheNode, w *cacheWatch) bool {
	if n.snap == nil {
		return false
	}
	set := n.snap.sets[w.typ]
	returned := w.sub.ReturnedResources()
	ctx := context.WithValue(context.Background(), publishedAtKey{}, n.setAt)
	if w.sotw != nil {
		names := wanted(set, w.sub)
		need := w.sotw.GetResponseNonce() == "" && fullState(w.typ) // first answer, even if empty
		for _, name := range names {
			if returned[name] != set[name].version {
				need = true
				break
			}
		}
		if !need && fullState(w.typ) && len(returned) != len(names) {
			need = true
		}
		if !need && fullState(w.typ) {
			for name := range returned {
				if _, ok := set[name]; !ok {
					need = true
					break
				}
			}
		}
		if !need {
			return false
		}
		resp := &sotwResponse{req: w.sotw, ctx: ctx, returned: make(map[string]string, len(names)),
			resources: make([]*anypb.Any, 0, len(names))}
		for _, name := range names {
			p := set[name]
			resp.resources = append(resp.resources, p.any)
			resp.returned[name] = p.version
		}
		resp.version = responseVersion(set, names)
		select {
		case w.ch <- resp:
			c.metrics.pushes.WithLabelValues(typeNames[w.typ]).Inc()
		default:
			c.log.Error("xds: response channel full; dropping response", zap.String("node", id))
			return false
		}
		return true
	}
	// Delta.
	subscribed := w.sub.SubscribedResources()
	resp := &deltaResponse{req: w.delta, ctx: ctx, version: n.snap.Version, next: make(map[string]string, len(returned))}
	for name, v := range returned {
		resp.next[name] = v
	}
	for _, name := range wanted(set, w.sub) {
		p := set[name]
		if returned[name] != p.version {
			resp.resources = append(resp.resources, p.delta)
			resp.next[name] = p.version
		}
	}
	for name := range returned {
		if _, ok := set[name]; ok {
			continue
		}
		delete(resp.next, name)
		if _, sub := subscribed[name]; sub || w.sub.IsWildcard() {
			resp.removed = append(resp.removed, name)
		}
	}
	slices.Sort(resp.removed)
	first := w.delta.GetResponseNonce() == "" && w.sub.IsWildcard() && len(returned) == 0
	if len(resp.resources) == 0 && len(resp.removed) == 0 && !first {
		return false
	}
	select {
	case w.dch <- resp:
		c.metrics.pushes.WithLabelValues(typeNames[w.typ]).Inc()
	default:
		c.log.Error("xds: delta response channel full; dropping response", zap.String("node", id))
		return false
	}
	return true
}

// responseVersion is the version_info of a state-of-the-world response
// carrying these (sorted) names of a set: a hash of names and versions.
func responseVersion(set map[string]*prepared, names []string) string {
	h := sha256.New()
	for _, name := range names {
		fmt.Fprintf(h, "%s\x00%s\x00", name, set[name].version)
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// ResponseVersion is the version_info a state-of-the-world response of this
// snapshot carries for a subscription to names (nil: every resource of the
// type). Load tests use it to tell when a client holds a snapshot.
func (s *Snapshot) ResponseVersion(typeURL string, names []string) string {
	t := typeIndex(typeURL)
	if t < 0 {
		return ""
	}
	var sel []string
	for name := range s.sets[t] {
		if names == nil || slices.Contains(names, name) {
			sel = append(sel, name)
		}
	}
	slices.Sort(sel)
	return responseVersion(s.sets[t], sel)
}

// wanted lists the snapshot's names a subscription asks for, sorted.
func wanted(set map[string]*prepared, sub cachev3.Subscription) []string {
	var names []string
	if sub.IsWildcard() {
		names = make([]string, 0, len(set))
		for name := range set {
			names = append(names, name)
		}
	} else {
		for name := range sub.SubscribedResources() {
			if _, ok := set[name]; ok {
				names = append(names, name)
			}
		}
	}
	slices.Sort(names)
	return names
}

type publishedAtKey struct{}

type sotwResponse struct {
	req       *discoveryv3.DiscoveryRequest
	version   string
	resources []*anypb.Any
	returned  map[string]string
	ctx       context.Context
}

// GetDiscoveryResponse returns a fresh envelope (the server writes the
// nonce into it) around shared, pre-marshalled resources.
func (r *sotwResponse) GetDiscoveryResponse() (*discoveryv3.DiscoveryResponse, error) {
	return &discoveryv3.DiscoveryResponse{VersionInfo: r.version, Resources: r.resources, TypeUrl: r.req.GetTypeUrl()}, nil
}
func (r *sotwResponse) GetRequest() *discoveryv3.DiscoveryRequest { return r.req }
func (r *sotwResponse) GetVersion() (string, error)               { return r.version, nil }
func (r *sotwResponse) GetResponseVersion() string                { return r.version }
func (r *sotwResponse) GetReturnedResources() map[string]string   { return r.returned }
func (r *sotwResponse) GetContext() context.Context               { return r.ctx }

type deltaResponse struct {
	req       *discoveryv3.DeltaDiscoveryRequest
	version   string
	resources []*discoveryv3.Resource
	removed   []string
	next      map[string]string
	ctx       context.Context
	once      sync.Once
	out       *discoveryv3.DeltaDiscoveryResponse
}

func (r *deltaResponse) GetDeltaDiscoveryResponse() (*discoveryv3.DeltaDiscoveryResponse, error) {
	r.once.Do(func() {
		r.out = &discoveryv3.DeltaDiscoveryResponse{
			SystemVersionInfo: r.version,
			Resources:         r.resources,
			RemovedResources:  r.removed,
			TypeUrl:           r.req.GetTypeUrl(),
		}
	})
	return r.out, nil
}
func (r *deltaResponse) GetDeltaRequest() *discoveryv3.DeltaDiscoveryRequest { return r.req }
func (r *deltaResponse) GetSystemVersion() (string, error)                   { return r.version, nil }
func (r *deltaResponse) GetResponseVersion() string                          { return r.version }
func (r *deltaResponse) GetNextVersionMap() map[string]string                { return r.next }
func (r *deltaResponse) GetReturnedResources() map[string]string             { return r.next }
func (r *deltaResponse) GetContext() context.Context                         { return r.ctx }

// returnedDigest names a set of sent resource versions.
func returnedDigest(m map[string]string) string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	h := sha256.New()
	for _, n := range names {
		fmt.Fprintf(h, "%s\x00%s\x00", n, m[n])
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}
