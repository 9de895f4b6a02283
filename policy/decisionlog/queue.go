package decisionlog

import (
	"sync"
	"sync/atomic"
)

// DefaultQueueSize is the records a Queue buffers when given size <= 0.
const DefaultQueueSize = 4096

// Queue is a Sink that hands records to another Sink (a Writer on a file)
// on its own goroutine through a bounded buffer, so that the deny path
// never waits for disk I/O: Log is a non-blocking channel send, and a
// record that finds the buffer full is dropped and counted
// (egressguard_decisionlog_dropped_total). Close flushes what is queued.
type Queue struct {
	ch      chan Record
	next    Sink
	m       *Metrics
	dropped atomic.Uint64
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
}

var _ Sink = (*Queue)(nil)

// NewQueue starts a queue of size records (DefaultQueueSize when <= 0) in
// front of next; m may be nil.
func NewQueue(next Sink, size int, m *Metrics) *Queue {
	if size <= 0 {
		size = DefaultQueueSize
	}
	q := &Queue{ch: make(chan Record, size), next: next, m: m, stop: make(chan struct{}), done: make(chan struct{})}
	go q.run()
	return q
}

func (q *Queue) run() {
	defer close(q.done)
	for {
		select {
		case r := <-q.ch:
			q.next.Log(r)
		case <-q.stop:
			for {
				select {
				case r := <-q.ch:
					q.next.Log(r)
				default:
					return
				}
			}
		}
	}
}

// Log implements Sink. It never blocks.
func (q *Queue) Log(r Record) {
	select {
	case q.ch <- r:
	default:
		q.dropped.Add(1)
		q.m.drop()
	}
}

// Dropped is the number of records dropped on a full queue.
func (q *Queue) Dropped() uint64 { return q.dropped.Load() }

// Close writes what is queued to the next sink and stops the queue;
// records logged after Close are not written.
func (q *Queue) Close() error {
	q.once.Do(func() { close(q.stop) })
	<-q.done
	return nil
}
