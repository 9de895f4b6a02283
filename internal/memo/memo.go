// Package memo computes a value once per key and shares it with every
// caller that asks for the same key, at the same time or later.
//
// # Errors are retried, not cached
//
// When a computation fails, every caller already waiting for it gets its
// error, and the key is forgotten: the next Get computes it again. The
// project's memos live inside one immutable policy version, where the
// failures that matter are transient (a cancelled context, a Rego
// evaluation that ran out of time) and a cached error would outlive its
// cause until the next reload; a deterministic error (a plan the policy
// cannot produce for a class) costs a recomputation per request for that
// class, which the caller counts as an error metric. Successful values are
// kept for the life of the Memo.
package memo

import (
	"errors"
	"sync"
)

// Memo is a concurrent, compute-once map. The zero value is ready to use.
type Memo[K comparable, V any] struct {
	mu sync.RWMutex
	m  map[K]*entry[V]
}

type entry[V any] struct {
	done chan struct{}
	v    V
	err  error
}

// Get returns the value for k, calling compute if no value is cached and no
// other caller is computing it; concurrent callers for the same k wait for
// that one computation. A hit takes a read lock and does not allocate.
func (m *Memo[K, V]) Get(k K, compute func() (V, error)) (V, error) {
	m.mu.RLock()
	e := m.m[k]
	m.mu.RUnlock()
	if e != nil {
		<-e.done
		return e.v, e.err
	}
	m.mu.Lock()
	if e = m.m[k]; e != nil {
		m.mu.Unlock()
		<-e.done
		return e.v, e.err
	}
	if m.m == nil {
		m.m = make(map[K]*entry[V])
	}
	e = &entry[V]{done: make(chan struct{})}
	m.m[k] = e
	m.mu.Unlock()

	finished := false
	defer func() {
		if !finished { // compute panicked: waiters get an error, not a zero value
			e.err = ErrPanicked
		}
		if e.err != nil {
			m.mu.Lock()
			delete(m.m, k) // retry on the next Get (see the package comment)
			m.mu.Unlock()
		}
		close(e.done)
	}()
	e.v, e.err = compute()
	finished = true
	return e.v, e.err
}

// ErrPanicked is what callers waiting on a computation get when it panicked
// (the panic itself propagates in the goroutine that ran it).
var ErrPanicked = errors.New("memo: the computation panicked")

// Len is the number of keys cached or being computed.
func (m *Memo[K, V]) Len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.m)
}
