package decisionlog

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// ErrTooLarge is returned for a single write larger than a RotatingFile's
// maxBytes: accepting it would break the disk bound.
var ErrTooLarge = errors.New("decisionlog: write larger than the maximum file size")

// MinFileBytes is the smallest maxBytes OpenRotating accepts.
const MinFileBytes = 4096

// RotatingFile is an io.WriteCloser on path that rotates by size, keeping
// disk use bounded: the active file and the rotated ones (path.1 newest to
// path.<maxFiles-1> oldest) each hold at most maxBytes, so the whole set
// never exceeds maxFiles × maxBytes. Rotation happens between writes, never
// inside one: give it whole records (Writer does). Safe for concurrent use.
type RotatingFile struct {
	path     string
	maxBytes int64
	maxFiles int
	m        *Metrics

	// open opens the active file (os.OpenFile; tests inject failures).
	openFile func(name string) (file, error)

	mu     sync.Mutex
	f      file
	size   int64 // bytes of whole records in the active file
	torn   bool  // a write stopped part-way and the file is not yet cut back to size
	closed bool
}

// file is what a RotatingFile needs of an *os.File.
type file interface {
	io.WriteCloser
	Stat() (fs.FileInfo, error)
	Truncate(size int64) error
}

func openAppend(name string) (file, error) {
	return os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
}

// OpenRotating opens (appending to) or creates path. maxBytes is the size
// limit of each file (at least MinFileBytes), maxFiles the number of files
// kept including the active one (at least 1; with 1, a full file is
// removed and started afresh). Rotated files beyond maxFiles left by an
// earlier, larger setting are removed. m may be nil.
func OpenRotating(path string, maxBytes int64, maxFiles int, m *Metrics) (*RotatingFile, error) {
	if maxBytes < MinFileBytes {
		return nil, fmt.Errorf("decisionlog: max file size %d bytes is below the minimum %d", maxBytes, MinFileBytes)
	}
	if maxFiles < 1 {
		return nil, fmt.Errorf("decisionlog: max files %d must be at least 1", maxFiles)
	}
	r := &RotatingFile{path: path, maxBytes: maxBytes, maxFiles: maxFiles, m: m, openFile: openAppend}
	if err := r.removeStale(); err != nil {
		return nil, err
	}
	if err := r.open(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *RotatingFile) name(i int) string {
	if i == 0 {
		return r.path
	}
	return r.path + "." + strconv.Itoa(i)
}

func (r *RotatingFile) open() error {
	f, err := r.openFile(r.path)
	if err != nil {
		return fmt.Errorf("decisionlog: open %s: %w", r.path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("decisionlog: stat %s: %w", r.path, err)
	}
	r.f, r.size = f, st.Size()
	return nil
}

// removeStale deletes path.N for N >= maxFiles.
func (r *RotatingFile) removeStale() error {
	matches, err := filepath.Glob(r.path + ".*")
	if err != nil {
		return fmt.Errorf("decisionlog: %w", err)
	}
	for _, m := range matches {
		n, err := strconv.Atoi(strings.TrimPrefix(m, r.path+"."))
		if err != nil || n < r.maxFiles || strconv.Itoa(n) != strings.TrimPrefix(m, r.path+".") {
			continue
		}
		if err := os.Remove(m); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("decisionlog: remove stale %s: %w", m, err)
		}
	}
	return nil
}

// Write implements io.Writer. A write that does not fit in the active file
// rotates first; a write larger than maxBytes is refused (ErrTooLarge).
// A write is whole or absent: when one stops part-way (a full disk), the
// file is cut back to its size before it, and until that succeeds nothing
// more is written, so no torn line stays and none is merged with the next.
func (r *RotatingFile) Write(p []byte) (int, error) {
	if int64(len(p)) > r.maxBytes {
		return 0, ErrTooLarge
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0, fmt.Errorf("decisionlog: write %s: %w", r.path, os.ErrClosed)
	}
	if r.f == nil { // an earlier rotation failed half-way: retry
		if err := r.open(); err != nil {
			return 0, err
		}
	}
	if r.torn {
		if err := r.f.Truncate(r.size); err != nil {
			return 0, fmt.Errorf("decisionlog: cut the torn record from %s: %w", r.path, err)
		}
		r.torn = false
	}
	if r.size+int64(len(p)) > r.maxBytes {
		if err := r.rotate(); err != nil {
			return 0, err
		}
	}
	n, err := r.f.Write(p)
	if err == nil && n == len(p) {
		r.size += int64(n)
		return n, nil
	}
	if err == nil {
		err = io.ErrShortWrite
	}
	if n > 0 {
		r.torn = r.f.Truncate(r.size) != nil
	}
	return 0, fmt.Errorf("decisionlog: write %s: %w", r.path, err)
}

// rotate shifts path.i to path.i+1 (dropping the oldest) and starts a new
// active file. If a step fails, nothing is written until a later write
// manages to rotate: the disk bound holds even then.
func (r *RotatingFile) rotate() error {
	if err := r.f.Close(); err != nil {
		r.f = nil
		return fmt.Errorf("decisionlog: close %s: %w", r.path, err)
	}
	r.f = nil
	oldest := r.name(r.maxFiles - 1)
	if err := os.Remove(oldest); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("decisionlog: rotate: %w", err)
	}
	for i := r.maxFiles - 2; i >= 0; i-- {
		if err := os.Rename(r.name(i), r.name(i+1)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("decisionlog: rotate: %w", err)
		}
	}
	if err := r.open(); err != nil {
		return err
	}
	r.m.rotation()
	return nil
}

// Close closes the active file; later writes fail.
func (r *RotatingFile) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	if err != nil {
		return fmt.Errorf("decisionlog: close %s: %w", r.path, err)
	}
	return nil
}
