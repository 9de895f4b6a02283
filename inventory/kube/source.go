// Package kube is an inventory.Source fed by the Kubernetes API: client-go
// shared informers on Pods and Namespaces, from which the whole inventory
// is rebuilt (debounced) on every change.
//
// Each rebuild lists the informers' caches and builds the snapshot from
// scratch with inventory.NewSnapshot, rather than patching the previous
// one: the result depends only on the current state of the cluster, never
// on the order in which add, update and delete events arrived. That is what
// makes pod IP reuse safe: when a pod dies and a new pod gets its address,
// the address maps to the new pod whether the old pod's delete is seen
// before or after the new pod's add (while both exist, the newer pod wins;
// see Conflict).
//
// Before the caches have synced, Current is an empty inventory: every
// caller is the default workload in the default environment (staging,
// guarded), so the guard fails closed.
//
// RBAC: list and watch on pods and namespaces, cluster-wide.
package kube

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/egressguard/egressguard/inventory"
)

// Defaults for Options.
const (
	DefaultDebounce    = 100 * time.Millisecond
	DefaultSyncTimeout = 60 * time.Second
)

// Options tune a Source; the zero value is fine.
type Options struct {
	// DefaultEnvironment is the environment of pods whose pod and
	// namespace carry no EnvironmentLabel, and of unknown callers.
	// "" means inventory.DefaultEnvironment.
	DefaultEnvironment string
	// ClusterDomain is used in sidecar node IDs (see NodeID);
	// "" means DefaultClusterDomain.
	ClusterDomain string
	// Debounce is the longest a change waits before the rebuild that
	// includes it; at most one rebuild runs per Debounce however fast
	// the cluster changes. Default DefaultDebounce.
	Debounce time.Duration
	// SyncTimeout bounds how long Run waits for the informers' initial
	// list. Default DefaultSyncTimeout.
	SyncTimeout time.Duration
	// Resync is the informers' resync period (0: none; every change
	// arrives as an event anyway).
	Resync time.Duration
	// NodeName, when set, limits the source to pods scheduled on that node
	// (a field selector on the watch, so the API server sends only those):
	// what a node-local dnsguard needs, at a fraction of the memory and
	// API-server load of a cluster-wide watch.
	NodeName string
	// Metrics may be nil.
	Metrics *Metrics
}

// Source is an inventory.Source kept in step with a Kubernetes cluster.
// Create it with New, then call Run once.
type Source struct {
	client kubernetes.Interface
	log    *zap.Logger
	opts   Options
	store  *inventory.Store

	dirty   chan struct{}
	started atomic.Bool
	synced  atomic.Bool

	// last is the output of the last published rebuild; published is
	// false until the first. Used on Run's goroutine only.
	last      []inventory.Workload
	published bool

	mu            sync.Mutex // guards lastConflicts
	lastConflicts map[Conflict]bool
}

var _ inventory.Source = (*Source)(nil)

// New returns a source reading pods and namespaces through client. It does
// nothing until Run; until its caches have synced, Current is an empty
// inventory with the default environment.
func New(client kubernetes.Interface, log *zap.Logger, opts Options) *Source {
	if opts.DefaultEnvironment == "" {
		opts.DefaultEnvironment = inventory.DefaultEnvironment
	}
	if opts.ClusterDomain == "" {
		opts.ClusterDomain = DefaultClusterDomain
	}
	if opts.Debounce <= 0 {
		opts.Debounce = DefaultDebounce
	}
	if opts.SyncTimeout <= 0 {
		opts.SyncTimeout = DefaultSyncTimeout
	}
	return &Source{
		client:        client,
		log:           log.Named("inventory.kube"),
		opts:          opts,
		store:         inventory.NewStore(inventory.Empty(opts.DefaultEnvironment)),
		dirty:         make(chan struct{}, 1),
		lastConflicts: make(map[Conflict]bool),
	}
}

// Current implements inventory.Source.
func (s *Source) Current() *inventory.Snapshot { return s.store.Current() }

// Subscribe implements inventory.Source: fn is called after each rebuild
// that changed the inventory (a rebuild with the same Fingerprint does not
// notify), on the source's goroutine, one subscriber after the other. fn
// must not block for long.
func (s *Source) Subscribe(fn func()) (cancel func()) { return s.store.Subscribe(fn) }

// Synced reports whether the informers have synced and the first snapshot
// from the cluster has been published: a readiness signal.
func (s *Source) Synced() bool { return s.synced.Load() }

// Run starts the informers, waits (at most Options.SyncTimeout) for their
// caches to sync, publishes the first snapshot and then rebuilds the
// inventory after changes until ctx is done. It returns nil when ctx is
// done after a successful sync, an error if the caches did not sync in
// time or ctx ended first. All informer goroutines have stopped when Run
// returns. Run may be called only once.
func (s *Source) Run(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("kube: Run called twice")
	}
	runCtx, stop := context.WithCancel(ctx)
	factory := informers.NewSharedInformerFactory(s.client, s.opts.Resync)
	// Pods may be watched on one node only; namespaces are always watched
	// cluster-wide (a pod's environment may come from its namespace), so
	// pods get their own factory with the field selector.
	podFactory := factory
	if s.opts.NodeName != "" {
		podFactory = informers.NewSharedInformerFactoryWithOptions(s.client, s.opts.Resync,
			informers.WithTweakListOptions(func(o *metav1.ListOptions) {
				o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", s.opts.NodeName).String()
			}))
	}
	defer func() {
		stop()
		factory.Shutdown() // waits for the informers' goroutines
		podFactory.Shutdown()
	}()

	pods := podFactory.Core().V1().Pods()
	namespaces := factory.Core().V1().Namespaces()
	podInformer := pods.Informer()
	nsInformer := namespaces.Informer()
	if err := podInformer.SetTransform(slimPod); err != nil {
		return fmt.Errorf("kube: pod informer: %w", err)
	}
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { s.markDirty() },
		UpdateFunc: func(any, any) { s.markDirty() },
		DeleteFunc: func(any) { s.markDirty() },
	}
	podReg, err := podInformer.AddEventHandler(handler)
	if err != nil {
		return fmt.Errorf("kube: pod informer: %w", err)
	}
	nsReg, err := nsInformer.AddEventHandler(handler)
	if err != nil {
		return fmt.Errorf("kube: namespace informer: %w", err)
	}

	factory.Start(runCtx.Done())
	podFactory.Start(runCtx.Done())
	syncCtx, cancelSync := context.WithTimeout(runCtx, s.opts.SyncTimeout)
	// The registrations' HasSynced also wait until the handlers have seen
	// the initial list, so the drain below leaves no stale dirty mark.
	ok := cache.WaitForCacheSync(syncCtx.Done(), podReg.HasSynced, nsReg.HasSynced)
	cancelSync()
	if !ok {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("kube: stopped before the pod and namespace caches synced: %w", err)
		}
		return fmt.Errorf("kube: pod and namespace caches did not sync within %s: "+
			"check that the API server is reachable and that the service account may list and watch "+
			"pods and namespaces cluster-wide", s.opts.SyncTimeout)
	}
	s.log.Info("kubernetes inventory caches synced")

	rebuild := func() {
		p, _ := pods.Lister().List(labels.Everything())
		n, _ := namespaces.Lister().List(labels.Everything())
		if s.opts.NodeName != "" {
			// The API server applies the field selector; this keeps a
			// client that ignores it (a fake, a proxy) from widening the
			// inventory beyond the node.
			p = slices.DeleteFunc(p, func(pod *corev1.Pod) bool { return pod.Spec.NodeName != s.opts.NodeName })
		}
		s.rebuild(p, n)
	}
	// The first rebuild covers every event so far.
	select {
	case <-s.dirty:
	default:
	}
	rebuild()
	s.synced.Store(true)

	var timer *time.Timer
	var fire <-chan time.Time
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		select {
		case <-runCtx.Done():
			return nil
		case <-s.dirty:
			if fire == nil {
				timer = time.NewTimer(s.opts.Debounce)
				fire = timer.C
			}
		case <-fire:
			fire = nil
			rebuild()
		}
	}
}

func (s *Source) markDirty() {
	select {
	case s.dirty <- struct{}{}:
	default:
	}
}

// rebuild builds a snapshot from the caches' content and publishes it if
// it is valid and differs from the current one. An invalid one (which the
// builder should make impossible) is logged and counted and the last good
// snapshot kept.
func (s *Source) rebuild(pods []*corev1.Pod, namespaces []*corev1.Namespace) {
	now := time.Now()
	ws, conflicts := buildWorkloads(pods, namespaces, buildOptions{
		defaultEnv:    s.opts.DefaultEnvironment,
		clusterDomain: s.opts.ClusterDomain,
	})
	s.reportConflicts(conflicts)
	// buildWorkloads is deterministic, so comparing its output with the
	// last published one detects a no-op change (most pod updates: status
	// conditions, annotations) without building a snapshot or hashing it
	// (Snapshot.Fingerprint is three quarters of a rebuild's cost).
	if s.published && slices.EqualFunc(ws, s.last, workloadEqual) {
		s.opts.Metrics.observe(inventory.ResultUnchanged, nil, now)
		return
	}
	snap, err := inventory.NewSnapshot(s.opts.DefaultEnvironment, ws)
	if err != nil {
		s.opts.Metrics.observe(inventory.ResultFailure, nil, now)
		s.log.Error("kubernetes inventory rebuild failed; keeping the last good inventory", zap.Error(err))
		return
	}
	s.last, s.published = ws, true
	s.opts.Metrics.observe(inventory.ResultSuccess, snap, now)
	s.log.Debug("kubernetes inventory rebuilt", zap.Int("workloads", snap.Len()), zap.Int("pods", len(pods)))
	s.store.Replace(snap)
}

func workloadEqual(a, b inventory.Workload) bool {
	return a.Name == b.Name && a.Namespace == b.Namespace && a.Environment == b.Environment &&
		maps.Equal(a.Labels, b.Labels) && slices.Equal(a.IPs, b.IPs) && slices.Equal(a.NodeIDs, b.NodeIDs)
}

// reportConflicts counts every conflict of this rebuild and logs those
// that were not there at the previous rebuild (a conflict lasts until the
// old pod object is gone; one log line for it is enough).
func (s *Source) reportConflicts(cs []Conflict) {
	s.opts.Metrics.addConflicts(len(cs))
	s.mu.Lock()
	defer s.mu.Unlock()
	next := make(map[Conflict]bool, len(cs))
	for _, c := range cs {
		next[c] = true
		if !s.lastConflicts[c] {
			s.log.Warn("two live pods claim one IP; the newer keeps it and the older is left out",
				zap.Stringer("ip", c.IP), zap.String("kept", c.Kept), zap.String("dropped", c.Dropped))
		}
	}
	s.lastConflicts = next
}

// slimPod keeps only what the inventory reads from a pod, so the informer
// cache holds a fraction of each pod object.
func slimPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil // a tombstone: left alone
	}
	return &corev1.Pod{
		TypeMeta:   p.TypeMeta,
		ObjectMeta: metaSlim(p),
		Spec:       corev1.PodSpec{HostNetwork: p.Spec.HostNetwork, NodeName: p.Spec.NodeName, Containers: slimContainers(p)},
		Status: corev1.PodStatus{
			Phase:  p.Status.Phase,
			PodIP:  p.Status.PodIP,
			PodIPs: p.Status.PodIPs,
		},
	}, nil
}

// slimContainers keeps what HasSidecar reads of the containers: the
// sidecar's, by name only.
func slimContainers(p *corev1.Pod) []corev1.Container {
	for _, c := range p.Spec.Containers {
		if c.Name == proxyContainerName {
			return []corev1.Container{{Name: c.Name}}
		}
	}
	return nil
}

func metaSlim(p *corev1.Pod) metav1.ObjectMeta {
	var ann map[string]string
	if v, ok := p.Annotations[annotationInjected]; ok {
		ann = map[string]string{annotationInjected: v} // what HasSidecar reads
	}
	return metav1.ObjectMeta{
		Annotations:       ann,
		Name:              p.Name,
		Namespace:         p.Namespace,
		UID:               p.UID,
		ResourceVersion:   p.ResourceVersion,
		Labels:            p.Labels,
		OwnerReferences:   p.OwnerReferences,
		CreationTimestamp: p.CreationTimestamp,
		DeletionTimestamp: p.DeletionTimestamp,
	}
}

// lastConflictsSnapshot returns the conflicts of the last rebuild (tests).
func (s *Source) lastConflictsSnapshot() []Conflict {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Conflict, 0, len(s.lastConflicts))
	for c := range s.lastConflicts {
		out = append(out, c)
	}
	return out
}
