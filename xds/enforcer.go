package xds

import (
	"errors"
	"fmt"
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
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/egressguard/egressguard/inventory"
	"github.com/egressguard/egressguard/policy/plan"
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

	rebuildMu sync.Mutex // one Rebuild at a time

	mu      sync.Mutex
	vhc     *vhostCache // virtual hosts of the current policy version
	nodes   map[string]*nodeState
	streams map[int64]string // stream ID → node ID
	classes map[string]*class
}

// NewEnforcer builds an enforcer. cfg must have passed Validate.
func NewEnforcer(plans PlanSource, inv inventory.Source, cfg Config, log *zap.Logger, m *Metrics) (*Enforcer, error) {
	if plans == nil || inv == nil {
		return nil, errors.New("xds: enforcer needs a plan source and an inventory source")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	return &Enforcer{
		plans:   plans,
		inv:     inv,
		cfg:     cfg,
		log:     log,
		metrics: m,
		cache:   newSnapCache(log.Named("cache"), m),
		vhc:     newVHostCache(true),
		nodes:   map[string]*nodeState{},
		streams: map[int64]string{},
		classes: map[string]*class{},
	}, nil
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
	e.streams[streamID] = id
	ns, ok := e.nodes[id]
	if ok {
		ns.streams++
		e.mu.Unlock()
		return nil
	}
	ns = &nodeState{id: id, kind: kindOf(n), port: e.outboundPort(n), streams: 1, targets: map[string]bool{}, rejected: map[string]bool{}}
	e.nodes[id] = ns
	e.metrics.connected.Set(float64(len(e.nodes)))
	e.mu.Unlock()

	w := e.inv.Current().ResolveNode(id)
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

// refreshNode resolves one node and publishes its snapshot.
func (e *Enforcer) refreshNode(id string) {
	e.mu.Lock()
	ns := e.nodes[id]
	if ns == nil {
		e.mu.Unlock()
		return
	}
	kind, port, targets := ns.kind, ns.port, sortedKeys(ns.targets)
	e.mu.Unlock()

	w := e.inv.Current().ResolveNode(id)
	p, err := e.plans.PlanFor(w)
	var snap *Snapshot
	if err == nil {
		snap, err = e.classFor(p).snapshot(e, kind, port, targets)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if ns = e.nodes[id]; ns == nil {
		return
	}
	ns.workload = w
	if err != nil {
		ns.lastErr = err.Error()
		e.log.Error("cannot build node configuration; the node keeps its last good one",
			zap.String("node", id), zap.Error(err))
		return
	}
	ns.planFP, ns.lastErr, ns.builtAt = p.Fingerprint(), "", time.Now()
	e.cache.SetSnapshot(id, snap)
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
	start := time.Now()

	e.mu.Lock()
	type job struct {
		id      string
		kind    nodeKind
		port    uint32
		targets []string
		w       *inventory.Workload
		p       *plan.Plan
		err     error
		snap    *Snapshot
	}
	jobs := make([]*job, 0, len(e.nodes))
	for id, ns := range e.nodes {
		jobs = append(jobs, &job{id: id, kind: ns.kind, port: ns.port, targets: sortedKeys(ns.targets)})
	}
	old := e.classes
	// A fresh virtual-host cache per rebuild: classes built now share the
	// new policy version's virtual hosts; the previous version's are freed
	// with the classes that used them.
	e.vhc = newVHostCache(true)
	e.mu.Unlock()

	inv := e.inv.Current()
	classes := map[string]*class{}
	for _, j := range jobs {
		j.w = inv.ResolveNode(j.id)
		j.p, j.err = e.plans.PlanFor(j.w)
		if j.err != nil {
			continue
		}
		fp := j.p.Fingerprint()
		if _, ok := classes[fp]; !ok {
			if c, ok := old[fp]; ok {
				classes[fp] = c
			} else {
				classes[fp] = newClass(j.p)
			}
		}
	}
	// Nodes that share a snapshot (same class, kind, port and targets) form
	// a group. Workers build one group's snapshot and publish it to the
	// group's nodes at once, so the first pushes go out while later classes
	// are still being built.
	type group struct {
		key  string
		jobs []*job
	}
	byKey := map[string]*group{}
	var groups []*group
	for _, j := range jobs {
		if j.err != nil {
			continue
		}
		k := fmt.Sprintf("%s\x00%d\x00%d\x00%s", j.p.Fingerprint(), j.kind, j.port, strings.Join(j.targets, "\n"))
		g, ok := byKey[k]
		if !ok {
			g = &group{key: k}
			byKey[k] = g
			groups = append(groups, g)
		}
		g.jobs = append(g.jobs, j)
	}
	// Biggest groups first: most nodes updated soonest.
	slices.SortStableFunc(groups, func(a, b *group) int { return len(b.jobs) - len(a.jobs) })
	failed := 0
	publish := func(js []*job) {
		e.mu.Lock()
		defer e.mu.Unlock()
		for _, j := range js {
			ns := e.nodes[j.id]
			if ns == nil {
				continue
			}
			ns.workload = j.w
			if j.err != nil {
				failed++
				ns.lastErr = j.err.Error()
				e.log.Error("cannot build node configuration; the node keeps its last good one",
					zap.String("node", j.id), zap.Error(j.err))
				continue
			}
			ns.planFP, ns.lastErr, ns.builtAt = j.p.Fingerprint(), "", time.Now()
			e.cache.SetSnapshot(j.id, j.snap)
		}
	}
	var failedPlans []*job
	for _, j := range jobs {
		if j.err != nil {
			failedPlans = append(failedPlans, j)
		}
	}
	publish(failedPlans)
	work := make(chan *group)
	var wg sync.WaitGroup
	for range max(1, runtime.GOMAXPROCS(0)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for g := range work {
				j0 := g.jobs[0]
				snap, err := classes[j0.p.Fingerprint()].snapshot(e, j0.kind, j0.port, j0.targets)
				for _, j := range g.jobs {
					j.snap, j.err = snap, err
				}
				publish(g.jobs)
			}
		}()
	}
	for _, g := range groups {
		work <- g
	}
	close(work)
	wg.Wait()

	e.mu.Lock()
	e.classes = classes
	e.metrics.classes.Set(float64(len(classes)))
	e.mu.Unlock()
	result := "success"
	if failed > 0 {
		result = "error"
	}
	e.metrics.rebuilds.WithLabelValues(result).Inc()
	e.metrics.rebuildTime.Observe(time.Since(start).Seconds())
	e.log.Info("rebuilt xDS snapshots", zap.Int("nodes", len(jobs)), zap.Int("classes", len(classes)),
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
			}, e.vhostCache())
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

// buildSidecar translates, validates and marshals a class's sidecar
// resources. vhc (shared by the classes of one policy version) builds,
// validates and marshals each distinct virtual host once. The snapshot
// keeps only the wire form of its resources.
func buildSidecar(p *plan.Plan, s NodeSettings, vhc *vhostCache) (*Snapshot, error) {
	res, err := translateSidecar(p, s, vhc)
	if err != nil {
		return nil, err
	}
	if err := validateWith(res, vhc); err != nil {
		return nil, err
	}
	items, err := prepareAll(res, vhc)
	if err != nil {
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
