package xds

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/proto"

	"github.com/egressguard/egressguard/inventory"
	"github.com/egressguard/egressguard/policy/plan"
	"github.com/egressguard/egressguard/xds/nodeauth"
)

// PlanSource yields the compiled plan for a workload (policy.Engine
// satisfies it). It must fail closed: an error keeps the node's last good
// configuration.
type PlanSource interface {
	PlanFor(*inventory.Workload) (*plan.Plan, error)
}

// Node metadata keys egressguard reads. Only the outbound port is taken from
// the node; an environment it claims is logged, never trusted.
const (
	MetaOutboundPort = "EGRESSGUARD_OUTBOUND_PORT"
	MetaEnvironment  = "EGRESSGUARD_ENVIRONMENT"
)

type nodeKind uint8

const (
	kindSidecar nodeKind = iota
	kindProxyless
)

func (k nodeKind) String() string {
	if k == kindSidecar {
		return "sidecar"
	}
	return "proxyless-grpc"
}

type nodeState struct {
	id       string
	kind     nodeKind
	port     uint32
	streams  int
	targets  map[string]bool
	rejected map[string]bool
	workload *inventory.Workload
	planFP   string
	lastErr  string
	builtAt  time.Time
	// settled is the generation of the newest build whose outcome was
	// applied to this node (see settle).
	settled uint64
}

// class holds the resources of one plan (one workload class), shared by all
// its nodes and built at most once per plan fingerprint.
type class struct {
	plan *plan.Plan

	mu       sync.Mutex
	sidecar  map[uint32]*classBuild
	targets  map[string]*targetBuild
	composed map[string]*Snapshot
}

type classBuild struct {
	once sync.Once
	snap *Snapshot
	err  error
	// built is set (under the class's mu) once the build has finished.
	built bool
}

type targetBuild struct {
	once  sync.Once
	items [numTypes][]*prepared
	err   error
}

func newClass(p *plan.Plan) *class {
	return &class{plan: p, sidecar: map[uint32]*classBuild{}, targets: map[string]*targetBuild{}, composed: map[string]*Snapshot{}}
}

// Enforcer turns plans into per-node snapshots and publishes them. Node
// identity comes from inventory (by node ID); a node inventory does not know
// gets the default environment's plan.
type Enforcer struct {
	plans   PlanSource
	inv     inventory.Source
	cfg     Config
	log     *zap.Logger
	metrics *Metrics
	cache   *snapCache
	certs   Certificates // nil: no HTTPS interception

	rebuildMu sync.Mutex // one Rebuild at a time

	mu      sync.Mutex
	vhc     *vhostCache // virtual hosts of the current policy version
	chains  *chainMemo  // chain-check results by listener content, across rebuilds
	nodes   map[string]*nodeState
	streams map[int64]string // stream ID → node ID
	classes map[string]*class
	gen     uint64 // the last generation handed to a build (startBuild)
}

// NewEnforcer builds an enforcer. cfg must have passed Validate.
func NewEnforcer(plans PlanSource, inv inventory.Source, cfg Config, log *zap.Logger, m *Metrics, opts ...Option) (*Enforcer, error) {
	if plans == nil || inv == nil {
		return nil, errors.New("xds: enforcer needs a plan source and an inventory source")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	e := &Enforcer{
		plans:   plans,
		inv:     inv,
		cfg:     cfg,
		log:     log,
		metrics: m,
		cache:   newSnapCache(log.Named("cache"), m),
		nodes:   map[string]*nodeState{},
		streams: map[int64]string{},
		classes: map[string]*class{},
		chains:  newChainMemo(m),
	}
	e.vhc = e.newVHostCache()
	for _, o := range opts {
		o(e)
	}
	return e, nil
}

// watchCertificates rebuilds the classes that intercept HTTPS whenever the
// staging CA's leaves change (rotation, renewal, a new host set), so their
// nodes get the new SDS secrets; it returns when ctx is done.
func (e *Enforcer) watchCertificates(ctx context.Context) {
	if e.certs == nil {
		return
	}
	changes := e.certs.Changes()
	for {
		select {
		case <-ctx.Done():
			return
		case <-changes:
			// Under rebuildMu, so no rebuild in flight reinstalls a class
			// built with the old leaves.
			e.rebuildMu.Lock()
			e.mu.Lock()
			classes := maps.Clone(e.classes)
			e.mu.Unlock()
			refreshed, rebuilt := 0, 0
			for fp, c := range classes {
				switch {
				case len(c.plan.Intercepts()) == 0:
				case c.refreshSecrets(e.certs):
					refreshed++
				default:
					rebuilt++
					e.mu.Lock()
					delete(e.classes, fp) // rebuilt afresh below
					e.mu.Unlock()
				}
			}
			e.log.Info("staging CA leaves changed: pushing the new leaves to the classes that intercept HTTPS",
				zap.Int("classes_refreshed", refreshed), zap.Int("classes_rebuilt", rebuilt))
			e.rebuild()
			e.rebuildMu.Unlock()
		}
	}
}

// newVHostCache is a fresh (eager) virtual-host cache for a policy version,
// sharing the enforcer's chain-check memo.
func (e *Enforcer) newVHostCache() *vhostCache {
	c := newVHostCache(true)
	c.chains = e.chains
	return c
}

func kindOf(n *corev3.Node) nodeKind {
	if n.GetUserAgentName() == "envoy" {
		return kindSidecar
	}
	return kindProxyless
}

func (e *Enforcer) outboundPort(n *corev3.Node) uint32 {
	f := n.GetMetadata().GetFields()[MetaOutboundPort]
	if f == nil {
		return e.cfg.OutboundPort
	}
	var p uint64
	var err error
	switch {
	case f.GetStringValue() != "":
		p, err = strconv.ParseUint(f.GetStringValue(), 10, 16)
	default:
		v := f.GetNumberValue()
		p = uint64(v)
		if v != float64(p) {
			err = errors.New("not an integer")
		}
	}
	if err != nil || p == 0 || p > 65535 {
		e.log.Warn("node metadata has an invalid outbound port; using the default",
			zap.String("node", n.GetId()), zap.String("key", MetaOutboundPort), zap.Any("value", f.AsInterface()))
		return e.cfg.OutboundPort
	}
	return uint32(p)
}

// streamNode registers the node of a stream's first request. It resolves
// and publishes the node's snapshot when the node is new.
func (e *Enforcer) streamNode(streamID int64, n *corev3.Node) error {
	id := n.GetId()
	if id == "" {
		return errors.New("node has no id")
	}
	e.mu.Lock()
	if prev, ok := e.streams[streamID]; ok {
		e.mu.Unlock()
		if prev != id {
			return fmt.Errorf("stream changed node id from %q to %q", prev, id)
		}
		return nil
	}
	ns, ok := e.nodes[id]
	if ok {
		// Several streams of one node are one node (grpc-go opens one per
		// channel), served one configuration: of one kind.
		if k := kindOf(n); k != ns.kind {
			e.mu.Unlock()
			return fmt.Errorf("node %q is connected as a %s; a %s needs a node ID of its own (a pod's gRPC client: %s...)",
				id, ns.kind, k, ProxylessNodePrefix)
		}
		e.streams[streamID] = id
		ns.streams++
		e.mu.Unlock()
		return nil
	}
	e.streams[streamID] = id
	ns = &nodeState{id: id, kind: kindOf(n), port: e.outboundPort(n), streams: 1, targets: map[string]bool{}, rejected: map[string]bool{}}
	e.nodes[id] = ns
	e.metrics.connected.Set(float64(len(e.nodes)))
	e.mu.Unlock()

	w := e.inv.Current().ResolveNode(nodeauth.InventoryNodeID(id))
	if claimed := n.GetMetadata().GetFields()[MetaEnvironment].GetStringValue(); claimed != "" && claimed != w.Environment {
		e.log.Warn("node claims an environment inventory does not give it; ignored",
			zap.String("node", id), zap.String("claimed", claimed), zap.String("inventory", w.Environment))
	}
	e.log.Info("node connected", zap.String("node", id), zap.String("kind", ns.kind.String()),
		zap.String("workload", w.Name), zap.String("namespace", w.Namespace), zap.String("environment", w.Environment))
	e.refreshNode(id)
	return nil
}

// streamClosed forgets a stream, and its node when it was the last one.
func (e *Enforcer) streamClosed(streamID int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	id, ok := e.streams[streamID]
	if !ok {
		return
	}
	delete(e.streams, streamID)
	ns := e.nodes[id]
	if ns == nil {
		return
	}
	ns.streams--
	if ns.streams <= 0 {
		delete(e.nodes, id)
		e.cache.Forget(id)
		e.metrics.connected.Set(float64(len(e.nodes)))
	}
}

// requested records listener names a proxyless node asks for; new ones get
// resources before the request's watch is created.
func (e *Enforcer) requested(streamID int64, typeURL string, names []string) {
	if typeURL != typeURLs[typeListener] || len(names) == 0 {
		return
	}
	e.mu.Lock()
	ns := e.nodes[e.streams[streamID]]
	if ns == nil || ns.kind != kindProxyless {
		e.mu.Unlock()
		return
	}
	added := false
	for _, name := range names {
		if name == "*" || ns.targets[name] || ns.rejected[name] {
			continue
		}
		if _, err := ParseTarget(name); err != nil {
			ns.rejected[name] = true
			e.log.Warn("proxyless node asked for a listener that is not a valid target; not served",
				zap.String("node", ns.id), zap.String("listener", name), zap.Error(err))
			continue
		}
		if len(ns.targets) >= e.cfg.MaxTargetsPerNode {
			ns.rejected[name] = true
			e.log.Warn("proxyless node asked for more targets than allowed; not served",
				zap.String("node", ns.id), zap.String("listener", name), zap.Int("limit", e.cfg.MaxTargetsPerNode))
			continue
		}
		ns.targets[name] = true
		added = true
	}
	id := ns.id
	e.mu.Unlock()
	if added {
		e.refreshNode(id)
	}
}

// nodeBuild is one build of one node's configuration. Its generation and
// its inputs from the node (kind, port, targets) are taken together under
// the enforcer's lock (startBuild); inventory and policy are read after
// that. So a build of a higher generation read inputs at least as new as
// one of a lower generation: a node's targets only grow, and inventory and
// plans only move forward.
type nodeBuild struct {
	ns      *nodeState
	gen     uint64
	kind    nodeKind
	port    uint32
	targets []string
	w       *inventory.Workload
	p       *plan.Plan
	snap    *Snapshot
	err     error
}

// startBuild takes the next generation and the node's inputs. The caller
// holds e.mu.
func (e *Enforcer) startBuild(ns *nodeState) *nodeBuild {
	e.gen++
	return &nodeBuild{ns: ns, gen: e.gen, kind: ns.kind, port: ns.port, targets: sortedKeys(ns.targets)}
}

// resolve reads the build's workload from inventory and its plan.
func (b *nodeBuild) resolve(inv *inventory.Snapshot, plans PlanSource) {
	b.w = inv.ResolveNode(nodeauth.InventoryNodeID(b.ns.id))
	b.p, b.err = plans.PlanFor(b.w)
}

// outcome is what settle did with a finished build.
type outcome uint8

const (
	outcomePublished outcome = iota
	outcomeKeptLastGood
	outcomeDropped
)

// settle applies a finished build to its node; the caller holds e.mu. It
// is the only place a node's configuration is published, and it keeps the
// package's publication invariant (see the package doc):
//   - a build is dropped when a build of a newer generation has already
//     been settled for its node (a node never goes back to older inputs),
//     or when its node is gone (or reconnected as a new node);
//   - otherwise a failed build publishes nothing: keepLastGood.
func (e *Enforcer) settle(b *nodeBuild) outcome {
	ns := b.ns
	if e.nodes[ns.id] != ns || b.gen <= ns.settled {
		e.metrics.droppedBuilds.Inc()
		return outcomeDropped
	}
	ns.settled = b.gen
	ns.workload = b.w
	if b.err != nil {
		e.keepLastGood(ns, b.err)
		return outcomeKeptLastGood
	}
	ns.planFP, ns.lastErr, ns.builtAt = b.p.Fingerprint(), "", time.Now()
	e.cache.SetSnapshot(ns.id, b.snap)
	return outcomePublished
}

// keepLastGood is the rule for a build that failed (no plan, or a
// translation or validation error): a node keeps its last good
// configuration. Nothing is published, so the node goes on being served
// the snapshot it has (a node that never had one gets no answer, which
// fails closed), and the error is recorded for the admin view and logged.
func (e *Enforcer) keepLastGood(ns *nodeState, err error) {
	ns.lastErr = err.Error()
	e.log.Error("cannot build node configuration; the node keeps its last good one",
		zap.String("node", ns.id), zap.Error(err))
}

// refreshNode builds one node's configuration and settles it.
func (e *Enforcer) refreshNode(id string) {
	e.mu.Lock()
	ns := e.nodes[id]
	if ns == nil {
		e.mu.Unlock()
		return
	}
	b := e.startBuild(ns)
	e.mu.Unlock()

	b.resolve(e.inv.Current(), e.plans)
	if b.err == nil {
		b.snap, b.err = e.classFor(b.p).snapshot(e, b.kind, b.port, b.targets)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.settle(b)
}

// NodeSnapshot returns the snapshot a connected node is being served (nil
// when the node is not connected or has none yet).
func (e *Enforcer) NodeSnapshot(id string) *Snapshot { return e.cache.Snapshot(id) }

func (e *Enforcer) vhostCache() *vhostCache {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.vhc
}

func (e *Enforcer) classFor(p *plan.Plan) *class {
	e.mu.Lock()
	defer e.mu.Unlock()
	fp := p.Fingerprint()
	c, ok := e.classes[fp]
	if !ok {
		c = newClass(p)
		e.classes[fp] = c
		e.metrics.classes.Set(float64(len(e.classes)))
	}
	return c
}

// Rebuild re-resolves every connected node (inventory may have moved it to
// another class) and publishes what changed. Call it after each policy or
// inventory change. Classes whose plan fingerprint did not change are not
// rebuilt and their nodes are not pushed to. A node whose plan or config
// fails keeps its last good snapshot.
func (e *Enforcer) Rebuild() {
	e.rebuildMu.Lock()
	defer e.rebuildMu.Unlock()
	e.rebuild()
}

// rebuild is Rebuild; the caller holds rebuildMu.
func (e *Enforcer) rebuild() {
	start := time.Now()

	e.mu.Lock()
	builds := make([]*nodeBuild, 0, len(e.nodes))
	for _, ns := range e.nodes {
		builds = append(builds, e.startBuild(ns))
	}
	old := maps.Clone(e.classes)
	// A fresh virtual-host cache per rebuild: classes built now share the
	// new policy version's virtual hosts; the previous version's are freed
	// with the classes that used them.
	e.vhc = e.newVHostCache()
	// Listeners checked by the previous rebuild stay memoised through this
	// one; older ones are forgotten.
	e.chains.rotate()
	e.mu.Unlock()

	inv := e.inv.Current()
	classes := map[string]*class{}
	var failedPlans []*nodeBuild
	for _, b := range builds {
		b.resolve(inv, e.plans)
		if b.err != nil {
			failedPlans = append(failedPlans, b)
			continue
		}
		fp := b.p.Fingerprint()
		if _, ok := classes[fp]; !ok {
			if c, ok := old[fp]; ok {
				classes[fp] = c
			} else {
				classes[fp] = newClass(b.p)
			}
		}
	}
	// Nodes that share a snapshot (same class, kind, port and targets) form
	// a group. Workers build one group's snapshot and publish it to the
	// group's nodes at once, so the first pushes go out while later classes
	// are still being built.
	type group struct {
		class  *class
		builds []*nodeBuild
	}
	byKey := map[string]*group{}
	var groups []*group
	for _, b := range builds {
		if b.err != nil {
			continue
		}
		k := fmt.Sprintf("%s\x00%d\x00%d\x00%s", b.p.Fingerprint(), b.kind, b.port, strings.Join(b.targets, "\n"))
		g, ok := byKey[k]
		if !ok {
			g = &group{class: classes[b.p.Fingerprint()]}
			byKey[k] = g
			groups = append(groups, g)
		}
		g.builds = append(g.builds, b)
	}
	// Install the classes (from here on classFor may add to the map): nodes
	// that connect or subscribe during the rebuild share them; the previous
	// policy version's classes are freed.
	nClasses := len(classes)
	e.mu.Lock()
	e.classes = classes
	e.metrics.classes.Set(float64(nClasses))
	e.mu.Unlock()
	// Biggest groups first: most nodes updated soonest.
	slices.SortStableFunc(groups, func(a, b *group) int { return len(b.builds) - len(a.builds) })
	failed := 0 // guarded by e.mu
	publish := func(bs []*nodeBuild) {
		e.mu.Lock()
		defer e.mu.Unlock()
		for _, b := range bs {
			if e.settle(b) == outcomeKeptLastGood {
				failed++
			}
		}
	}
	publish(failedPlans)
	var workers errgroup.Group
	workers.SetLimit(max(1, runtime.GOMAXPROCS(0)))
	for _, g := range groups {
		workers.Go(func() error {
			b0 := g.builds[0]
			snap, err := g.class.snapshot(e, b0.kind, b0.port, b0.targets)
			for _, b := range g.builds {
				b.snap, b.err = snap, err
			}
			publish(g.builds)
			return nil
		})
	}
	_ = workers.Wait() // a build's error belongs to its nodes: settle records it

	result := "success"
	if failed > 0 {
		result = "error"
	}
	e.metrics.rebuilds.WithLabelValues(result).Inc()
	e.metrics.rebuildTime.Observe(time.Since(start).Seconds())
	e.log.Info("rebuilt xDS snapshots", zap.Int("nodes", len(builds)), zap.Int("classes", nClasses),
		zap.Int("failed", failed), zap.Duration("took", time.Since(start)))
}

// snapshot returns the (shared) snapshot for a node of this class.
func (c *class) snapshot(e *Enforcer, kind nodeKind, port uint32, targets []string) (*Snapshot, error) {
	if kind == kindSidecar {
		c.mu.Lock()
		b, ok := c.sidecar[port]
		if !ok {
			b = &classBuild{}
			c.sidecar[port] = b
		}
		c.mu.Unlock()
		b.once.Do(func() {
			b.snap, b.err = buildSidecar(c.plan, NodeSettings{
				OutboundPort:           port,
				AccessLogPath:          e.cfg.AccessLogPath,
				ListenerFiltersTimeout: e.cfg.ListenerFiltersTimeout,
				Certificates:           e.certs,
			}, e.vhostCache())
			c.mu.Lock()
			b.built = true
			c.mu.Unlock()
		})
		return b.snap, b.err
	}
	key := strings.Join(targets, "\n")
	c.mu.Lock()
	if s, ok := c.composed[key]; ok {
		c.mu.Unlock()
		return s, nil
	}
	builds := make([]*targetBuild, len(targets))
	for i, t := range targets {
		b, ok := c.targets[t]
		if !ok {
			b = &targetBuild{}
			c.targets[t] = b
		}
		builds[i] = b
	}
	c.mu.Unlock()
	var items [numTypes][]*prepared
	seen := map[string]bool{}
	for i, b := range builds {
		b.once.Do(func() { b.items, b.err = buildTarget(c.plan, targets[i]) })
		if b.err != nil {
			return nil, fmt.Errorf("target %s: %w", targets[i], b.err)
		}
		for t := range numTypes {
			for _, p := range b.items[t] {
				k := typeNames[t] + "/" + p.name
				if !seen[k] {
					seen[k] = true
					items[t] = append(items[t], p)
				}
			}
		}
	}
	if err := checkReferences(resourcesOf(items)); err != nil {
		return nil, fmt.Errorf("xds: inconsistent proxyless snapshot: %w", err)
	}
	s := newSnapshot(c.plan.Fingerprint(), items)
	c.mu.Lock()
	c.composed[key] = s
	c.mu.Unlock()
	return s, nil
}

// refreshSecrets replaces the class's built sidecar snapshots by copies
// holding certs' current leaves, every other resource shared (a rotation
// or renewal changes nothing else). It reports false when the class must
// be rebuilt instead: a build not finished or failed, a leaf refused now,
// or an intercepted pattern without a secret (its leaf was refused before
// and its chain denies; it may be permitted now).
func (c *class) refreshSecrets(certs Certificates) bool {
	var want []string
	for _, r := range c.plan.Intercepts() {
		for _, h := range r.Hosts {
			want = append(want, InterceptSecretName(h))
		}
	}
	slices.Sort(want)
	want = slices.Compact(want)
	c.mu.Lock()
	defer c.mu.Unlock()
	fresh := make(map[uint32]*classBuild, len(c.sidecar))
	for port, b := range c.sidecar {
		if !b.built || b.err != nil {
			return false
		}
		names := b.snap.Names(typeURLs[typeSecret])
		if !slices.Equal(names, want) {
			return false
		}
		var items [numTypes][]*prepared
		for t := range numTypes {
			if t != typeSecret {
				items[t] = slices.Collect(maps.Values(b.snap.sets[t]))
			}
		}
		for _, name := range names {
			leaf, err := certs.Leaf(strings.TrimPrefix(name, InterceptSecretPrefix))
			if err != nil {
				return false
			}
			sec := leafSecret(name, leaf)
			if ValidateDeep(sec, "secret "+name) != nil {
				return false // the full build reports it
			}
			p, err := prepare(name, sec)
			if err != nil {
				return false
			}
			p.msg = nil
			items[typeSecret] = append(items[typeSecret], p)
		}
		nb := &classBuild{built: true}
		snap := newSnapshot(b.snap.Class, items)
		nb.once.Do(func() { nb.snap = snap })
		fresh[port] = nb
	}
	maps.Copy(c.sidecar, fresh)
	return true
}

// buildSidecar translates, validates and marshals a class's sidecar
// resources. vhc (shared by the classes of one policy version) builds,
// validates and marshals each distinct virtual host once. The snapshot
// keeps only the wire form of its resources.
func buildSidecar(p *plan.Plan, s NodeSettings, vhc *vhostCache) (*Snapshot, error) {
	res, err := translateSidecar(p, s, vhc)
	if err != nil {
		return nil, err
	}
	// Marshal first: the listeners' digests key the chain-check memo.
	items, err := prepareAll(res, vhc)
	if err != nil {
		return nil, err
	}
	digests := make(map[string][sha256.Size]byte, len(items[typeListener]))
	for _, it := range items[typeListener] {
		digests[it.name] = it.digest
	}
	if err := validateWith(res, vhc, digests); err != nil {
		return nil, err
	}
	for t := range numTypes {
		for _, it := range items[t] {
			it.msg = nil
		}
	}
	return newSnapshot(p.Fingerprint(), items), nil
}

func buildTarget(p *plan.Plan, target string) ([numTypes][]*prepared, error) {
	res, err := translateTarget(p, target)
	if err != nil {
		return [numTypes][]*prepared{}, err
	}
	if err := Validate(res); err != nil {
		return [numTypes][]*prepared{}, err
	}
	return prepareAll(res, nil)
}

func prepareAll(r *Resources, vhc *vhostCache) ([numTypes][]*prepared, error) {
	var out [numTypes][]*prepared
	var errs []error
	add := func(t int, name string, m proto.Message) {
		p, err := prepare(name, m)
		if err != nil {
			errs = append(errs, err)
			return
		}
		out[t] = append(out[t], p)
	}
	for _, l := range r.Listeners {
		add(typeListener, l.Name, l)
	}
	for _, rc := range r.Routes {
		p, err := prepareRoute(rc, vhc)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out[typeRoute] = append(out[typeRoute], p)
	}
	for _, c := range r.Clusters {
		add(typeCluster, c.Name, c)
	}
	for _, e := range r.Endpoints {
		add(typeEndpoint, e.ClusterName, e)
	}
	for _, s := range r.Secrets {
		add(typeSecret, s.Name, s)
	}
	return out, errors.Join(errs...)
}

func resourcesOf(items [numTypes][]*prepared) *Resources {
	r := &Resources{}
	for _, p := range items[typeListener] {
		r.Listeners = append(r.Listeners, p.msg.(*listenerv3.Listener))
	}
	for _, p := range items[typeRoute] {
		r.Routes = append(r.Routes, p.msg.(*routev3.RouteConfiguration))
	}
	for _, p := range items[typeCluster] {
		r.Clusters = append(r.Clusters, p.msg.(*clusterv3.Cluster))
	}
	for _, p := range items[typeEndpoint] {
		r.Endpoints = append(r.Endpoints, p.msg.(*endpointv3.ClusterLoadAssignment))
	}
	for _, p := range items[typeSecret] {
		r.Secrets = append(r.Secrets, p.msg.(*tlsv3.Secret))
	}
	return r
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
