package decisionlog

import (
	"bytes"
	"encoding/json"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// errorLogEvery is how often a Writer logs while writes keep failing: the
// first failure at once, then one line per interval with the count lost.
const errorLogEvery = 10 * time.Second

// Writer is a Sink that writes each record as one JSON line to an
// io.Writer (a file, a RotatingFile, stdout). Each line reaches the
// io.Writer in a single Write call, so lines never interleave; after a
// write that stopped part-way (a full disk) the next line starts on a line
// of its own, never merged with the torn one (a RotatingFile removes the
// torn part itself). Errors are counted (Status, Metrics) and logged at
// most once per errorLogEvery, never returned to the caller of Log.
type Writer struct {
	mu   sync.Mutex // serialises writes to w
	w    io.Writer
	torn bool // the last write stopped part-way through a line
	m    *Metrics
	log  *zap.Logger
	buf  sync.Pool

	written atomic.Uint64
	errors  atomic.Uint64

	errMu      sync.Mutex
	lastErr    error
	lastErrAt  time.Time
	lastLogged time.Time
	unlogged   uint64
}

var _ Sink = (*Writer)(nil)

// NewWriter returns a Writer on w; m and log may be nil.
func NewWriter(w io.Writer, m *Metrics, log *zap.Logger) *Writer {
	if log == nil {
		log = zap.NewNop()
	}
	return &Writer{w: w, m: m, log: log, buf: sync.Pool{New: func() any { return new(bytes.Buffer) }}}
}

// Log implements Sink.
func (w *Writer) Log(r Record) {
	r.Result = sanitize(r.Result)
	buf := w.buf.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= 64<<10 { // don't keep rare huge buffers alive
			buf.Reset()
			w.buf.Put(buf)
		}
	}()
	buf.WriteByte('\n') // used only after a torn write
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil { // Encode appends the newline
		w.fail(ErrorKindMarshal, err)
		return
	}
	w.mu.Lock()
	line := buf.Bytes()[1:]
	if w.torn {
		line = buf.Bytes()
	}
	n, err := w.w.Write(line)
	if err != nil || n != len(line) {
		w.torn = n > 0 && n < len(line)
		w.mu.Unlock()
		if err == nil {
			err = io.ErrShortWrite
		}
		w.fail(ErrorKindWrite, err)
		return
	}
	w.torn = false
	w.mu.Unlock()
	w.written.Add(1)
	w.m.wrote()
}

func (w *Writer) fail(kind string, err error) {
	w.errors.Add(1)
	w.m.failed(kind)
	now := time.Now()
	w.errMu.Lock()
	w.lastErr, w.lastErrAt = err, now
	w.unlogged++
	if now.Sub(w.lastLogged) < errorLogEvery {
		w.errMu.Unlock()
		return
	}
	lost := w.unlogged
	w.lastLogged, w.unlogged = now, 0
	w.errMu.Unlock()
	w.log.Error("decision records are being lost", zap.String("kind", kind),
		zap.Uint64("lost_since_last_report", lost), zap.Duration("report_every", errorLogEvery), zap.Error(err))
}

// Status is a decision-log sink's health, for the admin API and page.
type Status struct {
	Written     uint64    `json:"written"`
	Errors      uint64    `json:"errors"`
	Dropped     uint64    `json:"dropped"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// Status reports the records written and lost and the last error.
func (w *Writer) Status() Status {
	st := Status{Written: w.written.Load(), Errors: w.errors.Load()}
	w.errMu.Lock()
	if w.lastErr != nil {
		st.LastError, st.LastErrorAt = w.lastErr.Error(), w.lastErrAt
	}
	w.errMu.Unlock()
	return st
}
