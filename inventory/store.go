package inventory

import (
	"slices"
	"sync"
	"sync/atomic"
)

// Source is where enforcers get workload identity from. Implementations
// publish whole immutable snapshots: a reader calls Current once per
// request (or per rebuild) and uses that snapshot throughout, so it never
// sees half an update.
//
// The interface is deliberately small so that more sources fit behind it.
// The static file source is a Store fed by Watch. A Kubernetes source fits
// the same way: a client-go SharedInformer on Pods (and, for node IDs, the
// sidecar naming convention or an annotation) whose event handlers mark the
// inventory dirty; a single goroutine, after the informer has synced and
// debounced, lists the informer's cache, builds the []Workload (environment
// from a namespace or pod label, IPs from status.podIPs as /32 and /128,
// node IDs as the sidecar would announce them), calls NewSnapshot and
// Store.Replace. Validation errors (two pods claiming one IP during a
// restart) are then reported and the last good snapshot kept, exactly as
// for a broken file.
type Source interface {
	// Current returns the latest snapshot; never nil.
	Current() *Snapshot
	// Subscribe registers fn to be called after each change of Current.
	// The returned cancel function unregisters it (idempotent).
	Subscribe(fn func()) (cancel func())
}

// Store is a Source whose snapshot is replaced as a whole. The zero value
// is not usable; use NewStore.
type Store struct {
	cur atomic.Pointer[Snapshot]

	// replaceMu serialises Replace so subscribers see changes in order.
	replaceMu sync.Mutex

	mu   sync.Mutex
	subs map[uint64]func()
	next uint64
}

var _ Source = (*Store)(nil)

// NewStore returns a store holding s (an empty inventory with the default
// environment when s is nil).
func NewStore(s *Snapshot) *Store {
	if s == nil {
		s = Empty("")
	}
	st := &Store{subs: make(map[uint64]func())}
	st.cur.Store(s)
	return st
}

// NewStatic returns a store holding s that nothing replaces: the Source for
// tests and for a static file read once. It is NewStore under the name the
// wiring uses.
func NewStatic(s *Snapshot) *Store { return NewStore(s) }

// Current returns the latest snapshot; never nil.
func (st *Store) Current() *Snapshot { return st.cur.Load() }

// Replace publishes s and then calls every subscriber, in the goroutine of
// the caller, one after the other. A nil s is ignored. Replacing a snapshot
// by one with the same Fingerprint still notifies; callers that want to
// skip no-op changes compare fingerprints first (Watch does).
//
// Subscribers must not call Replace (it would deadlock); slow work should be
// handed to another goroutine.
func (st *Store) Replace(s *Snapshot) {
	if s == nil {
		return
	}
	st.replaceMu.Lock()
	defer st.replaceMu.Unlock()
	st.cur.Store(s)
	st.mu.Lock()
	fns := make([]func(), 0, len(st.subs))
	keys := make([]uint64, 0, len(st.subs))
	for k := range st.subs {
		keys = append(keys, k)
	}
	// Call in subscription order: deterministic for tests and logs.
	slices.Sort(keys)
	for _, k := range keys {
		fns = append(fns, st.subs[k])
	}
	st.mu.Unlock()
	for _, fn := range fns {
		fn()
	}
}

// Subscribe implements Source.
func (st *Store) Subscribe(fn func()) (cancel func()) {
	st.mu.Lock()
	id := st.next
	st.next++
	st.subs[id] = fn
	st.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			st.mu.Lock()
			delete(st.subs, id)
			st.mu.Unlock()
		})
	}
}
