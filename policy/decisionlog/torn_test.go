package decisionlog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// fullDisk is a real file whose writes, while full is set, stop half-way
// with ENOSPC (as write(2) does when the disk fills mid-buffer), and whose
// Truncate fails while noTruncate is set.
type fullDisk struct {
	*os.File
	mu         *sync.Mutex
	full       *bool
	noTruncate *bool
}

func (f fullDisk) Write(p []byte) (int, error) {
	f.mu.Lock()
	full := *f.full
	f.mu.Unlock()
	if !full {
		return f.File.Write(p)
	}
	n, _ := f.File.Write(p[:len(p)/2])
	return n, syscall.ENOSPC
}

func (f fullDisk) Truncate(size int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if *f.noTruncate {
		return syscall.EIO
	}
	return f.File.Truncate(size)
}

// line is what the tests read back of a record.
type line struct {
	Input struct {
		Destination struct{ Host string } `json:"destination"`
	} `json:"input"`
}

// readLines returns the file's lines and fails on any that is not one
// whole JSON record.
func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var hosts []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var r line
		require.NoError(t, json.Unmarshal(sc.Bytes(), &r), "torn or merged line %q", sc.Text())
		hosts = append(hosts, r.Input.Destination.Host)
	}
	assert.True(t, len(b) == 0 || b[len(b)-1] == '\n', "the file ends inside a record")
	return hosts
}

func TestRotatingFileWholeRecordsAfterFullDisk(t *testing.T) {
	for _, truncateFailsFirst := range []bool{false, true} {
		path := filepath.Join(t.TempDir(), "decisions.log")
		var mu sync.Mutex
		full, noTruncate := false, false
		rf, err := OpenRotating(path, 1<<20, 2, nil)
		require.NoError(t, err)
		require.NoError(t, rf.f.Close())
		rf.openFile = func(name string) (file, error) {
			f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
			return fullDisk{File: f, mu: &mu, full: &full, noTruncate: &noTruncate}, err
		}
		require.NoError(t, rf.open())
		set := func(f, nt bool) { mu.Lock(); full, noTruncate = f, nt; mu.Unlock() }

		w := NewWriter(rf, nil, nil)
		w.Log(record(0))
		set(true, truncateFailsFirst)
		w.Log(record(1)) // torn on disk, then cut (or not yet)
		w.Log(record(2))
		set(false, truncateFailsFirst)
		w.Log(record(3)) // disk has room: refused while the torn part cannot be cut
		set(false, false)
		w.Log(record(4))
		require.NoError(t, rf.Close())

		want := []string{record(0).Input.Destination.Host, record(4).Input.Destination.Host}
		if !truncateFailsFirst {
			want = []string{record(0).Input.Destination.Host, record(3).Input.Destination.Host, record(4).Input.Destination.Host}
		}
		assert.Equal(t, want, readLines(t, path), "truncate fails first: %v", truncateFailsFirst)
		st := w.Status()
		assert.Equal(t, uint64(len(want)), st.Written)
		assert.Equal(t, uint64(5-len(want)), st.Errors)
	}
}

// tornWriter accepts half of a write and fails while fail is set, like a
// pipe or terminal that cannot be cut back.
type tornWriter struct {
	buf  bytes.Buffer
	fail bool
}

func (w *tornWriter) Write(p []byte) (int, error) {
	if w.fail {
		n, _ := w.buf.Write(p[:len(p)/2])
		return n, syscall.ENOSPC
	}
	return w.buf.Write(p)
}

func TestWriterNeverMergesAfterTornWrite(t *testing.T) {
	tw := &tornWriter{}
	w := NewWriter(tw, nil, nil)
	w.Log(record(0))
	tw.fail = true
	w.Log(record(1))
	tw.fail = false
	w.Log(record(2))
	lines := bytes.Split(bytes.TrimSuffix(tw.buf.Bytes(), []byte("\n")), []byte("\n"))
	require.Len(t, lines, 3)
	var r line
	require.NoError(t, json.Unmarshal(lines[0], &r))
	require.Error(t, json.Unmarshal(lines[1], &r), "the torn fragment is a line of its own")
	require.NoError(t, json.Unmarshal(lines[2], &r), "the next record is not merged with it")
	assert.Equal(t, record(2).Input.Destination.Host, r.Input.Destination.Host)
}

func TestWriterLogsFailuresRateLimited(t *testing.T) {
	core, logs := observer.New(zap.ErrorLevel)
	w := NewWriter(failingWriter{}, NewMetrics(nil), zap.New(core))
	for i := range 100 {
		w.Log(record(i))
	}
	entries := logs.FilterMessage("decision records are being lost").All()
	require.Len(t, entries, 1, "one line per interval, not one per record")
	st := w.Status()
	assert.Equal(t, uint64(100), st.Errors)
	assert.Equal(t, "disk full", st.LastError)
	assert.False(t, st.LastErrorAt.IsZero())
}

// blockingSink blocks every Log until release is closed.
type blockingSink struct {
	release chan struct{}
	mu      sync.Mutex
	got     int
}

func (s *blockingSink) Log(Record) {
	<-s.release
	s.mu.Lock()
	s.got++
	s.mu.Unlock()
}

func TestQueueNeverBlocksAndCountsDrops(t *testing.T) {
	next := &blockingSink{release: make(chan struct{})}
	m := NewMetrics(nil)
	q := NewQueue(next, 8, m)
	// The consumer takes at most one record and blocks in next.Log; the
	// rest fill the buffer; everything past it is dropped, not waited for.
	for i := range 100 {
		q.Log(record(i))
	}
	dropped := q.Dropped()
	assert.GreaterOrEqual(t, dropped, uint64(100-8-1))
	assert.InDelta(t, float64(dropped), counterValue(t, m.dropped), 0)
	close(next.release)
	require.NoError(t, q.Close())
	assert.Equal(t, 100-int(dropped), next.got, "Close flushes the queued records")
}

func TestQueueThenWriterOnFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.log")
	rf, err := OpenRotating(path, 1<<20, 1, nil)
	require.NoError(t, err)
	w := NewWriter(rf, nil, nil)
	q := NewQueue(w, 0, nil)
	for i := range 50 {
		q.Log(record(i))
	}
	require.NoError(t, q.Close())
	require.NoError(t, rf.Close())
	assert.Len(t, readLines(t, path), 50-int(q.Dropped()))
}

// BenchmarkDenyPathRecord is what one denied query pays to record itself,
// many deniers at once: sync writes the line to the file on the caller's
// goroutine (the old path), queue hands it to a Queue in front of the same
// Writer (records the writer cannot keep up with are dropped and counted).
func BenchmarkDenyPathRecord(b *testing.B) {
	for _, mode := range []string{"sync", "queue"} {
		b.Run(mode, func(b *testing.B) {
			rf, err := OpenRotating(filepath.Join(b.TempDir(), "bench.log"), 64<<20, 2, nil)
			require.NoError(b, err)
			defer rf.Close()
			var sink Sink = NewWriter(rf, nil, nil)
			var q *Queue
			if mode == "queue" {
				q = NewQueue(sink, 0, nil)
				sink = q
			}
			rec := record(1)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					sink.Log(rec)
				}
			})
			if q != nil {
				b.StopTimer()
				require.NoError(b, q.Close())
				b.ReportMetric(float64(q.Dropped())/float64(b.N), "dropped/op")
			}
		})
	}
}
