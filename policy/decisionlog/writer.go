package decisionlog

import (
	"bytes"
	"encoding/json"
	"io"
	"sync"
	"sync/atomic"
)

// Writer is a Sink that writes each record as one JSON line to an
// io.Writer (a file, a RotatingFile, stdout). Each line reaches the
// io.Writer in a single Write call, so lines never interleave. Errors are
// counted (Errors, LastError, Metrics), never returned to the caller of Log.
type Writer struct {
	mu  sync.Mutex // serialises writes to w
	w   io.Writer
	m   *Metrics
	buf sync.Pool

	written atomic.Uint64
	errors  atomic.Uint64
	lastErr atomic.Pointer[error]
}

var _ Sink = (*Writer)(nil)

// NewWriter returns a Writer on w; m may be nil.
func NewWriter(w io.Writer, m *Metrics) *Writer {
	return &Writer{w: w, m: m, buf: sync.Pool{New: func() any { return new(bytes.Buffer) }}}
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
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil { // Encode appends the newline
		w.fail(ErrorKindMarshal, err)
		return
	}
	w.mu.Lock()
	_, err := w.w.Write(buf.Bytes())
	w.mu.Unlock()
	if err != nil {
		w.fail(ErrorKindWrite, err)
		return
	}
	w.written.Add(1)
	w.m.wrote()
}

func (w *Writer) fail(kind string, err error) {
	w.errors.Add(1)
	w.lastErr.Store(&err)
	w.m.failed(kind)
}

// Written is the number of records written.
func (w *Writer) Written() uint64 { return w.written.Load() }

// Errors is the number of records lost to marshal or write errors.
func (w *Writer) Errors() uint64 { return w.errors.Load() }

// LastError is the most recent marshal or write error, nil if none.
func (w *Writer) LastError() error {
	if p := w.lastErr.Load(); p != nil {
		return *p
	}
	return nil
}
