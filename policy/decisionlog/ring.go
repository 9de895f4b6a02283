package decisionlog

import "sync"

// Ring is a Sink that keeps the last records in memory, for an admin page.
// Safe for concurrent use.
type Ring struct {
	mu    sync.Mutex
	buf   []Record
	next  int // index of the slot the next record goes to
	count int // records stored, at most len(buf)
	total uint64
}

var _ Sink = (*Ring)(nil)

// NewRing returns a ring keeping the last size records (at least 1).
func NewRing(size int) *Ring {
	return &Ring{buf: make([]Record, max(size, 1))}
}

// Log implements Sink.
func (r *Ring) Log(rec Record) {
	rec.Result = sanitize(rec.Result)
	r.mu.Lock()
	r.buf[r.next] = rec
	r.next = (r.next + 1) % len(r.buf)
	r.count = min(r.count+1, len(r.buf))
	r.total++
	r.mu.Unlock()
}

// Recent returns up to n of the most recent records, newest first (all
// that are kept when n <= 0). The slice is a copy.
func (r *Ring) Recent(n int) []Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n <= 0 || n > r.count {
		n = r.count
	}
	out := make([]Record, n)
	for i := range n {
		out[i] = r.buf[(r.next-1-i+2*len(r.buf))%len(r.buf)]
	}
	return out
}

// Total is the number of records ever logged to the ring.
func (r *Ring) Total() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.total
}
