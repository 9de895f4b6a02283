package inventory

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"
)

// DefaultDebounce is how long a Watcher waits after the last file event
// before it reloads: editors and Kubernetes ConfigMap updates produce
// several events per change.
const DefaultDebounce = 200 * time.Millisecond

// WatcherOptions tune a Watcher; the zero value is fine.
type WatcherOptions struct {
	// Debounce defaults to DefaultDebounce.
	Debounce time.Duration
	// Metrics may be nil.
	Metrics *Metrics
	// OnReload, when set, is called after every reload attempt with its
	// error (nil for success and for an unchanged file). It runs on the
	// watcher's goroutine.
	OnReload func(err error)
}

// Watcher keeps a Store in step with a static inventory file. A reload
// that fails (unreadable file, bad YAML, invalid inventory) keeps the last
// good snapshot, logs the error with file and line and counts it; a reload
// that changes nothing (same Fingerprint) does not notify subscribers.
type Watcher struct {
	path  string
	store *Store
	log   *zap.Logger
	opts  WatcherOptions

	mu      sync.Mutex // serialises Reload
	lastErr error
}

// NewWatcher returns a watcher for path feeding store. Load the file once
// with LoadFile before serving (fail closed on start), build the store from
// it, then Run the watcher.
func NewWatcher(path string, store *Store, log *zap.Logger, opts WatcherOptions) *Watcher {
	if opts.Debounce <= 0 {
		opts.Debounce = DefaultDebounce
	}
	return &Watcher{path: filepath.Clean(path), store: store, log: log.Named("inventory"), opts: opts}
}

// Reload reads and parses the file now and, if it is valid and differs from
// the current snapshot, replaces the store's snapshot. On error the store is
// left alone and the error returned (and logged, counted, passed to
// OnReload). Safe to call from a signal handler goroutine while Run runs.
func (w *Watcher) Reload() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	s, err := LoadFile(w.path)
	now := time.Now()
	switch {
	case err != nil:
		w.opts.Metrics.observe(ResultFailure, nil, now)
		w.log.Error("inventory reload failed; keeping the last good inventory",
			zap.String("path", w.path), zap.Error(err))
	case s.Fingerprint() == w.store.Current().Fingerprint():
		w.opts.Metrics.observe(ResultUnchanged, nil, now)
		w.log.Debug("inventory unchanged", zap.String("path", w.path))
	default:
		w.store.Replace(s)
		w.opts.Metrics.observe(ResultSuccess, s, now)
		w.log.Info("inventory reloaded", zap.String("path", w.path),
			zap.Int("workloads", s.Len()), zap.String("fingerprint", s.Fingerprint()))
	}
	w.lastErr = err
	if w.opts.OnReload != nil {
		w.opts.OnReload(err)
	}
	return err
}

// LastError is the error of the last reload attempt (nil after a success).
func (w *Watcher) LastError() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastErr
}

// Run watches the file's directory (so that editors' rename-over-write and
// Kubernetes' ConfigMap symlink swaps are seen) and reloads, debounced,
// after relevant events, until ctx is done. It reloads once at start to
// catch changes made since the caller loaded the file. It returns nil when
// ctx is done and an error only if the file system cannot be watched.
func (w *Watcher) Run(ctx context.Context) error {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("inventory: watch %s: %w", w.path, err)
	}
	defer fw.Close()

	// Watch the directory of the path as given and, when the file is a
	// symlink into another directory, that directory too.
	relevant := map[string]bool{w.path: true}
	dirs := map[string]bool{filepath.Dir(w.path): true}
	if target, err := filepath.EvalSymlinks(w.path); err == nil {
		relevant[target] = true
		dirs[filepath.Dir(target)] = true
	}
	for d := range dirs {
		if err := fw.Add(d); err != nil {
			return fmt.Errorf("inventory: watch %s: %w", d, err)
		}
	}

	_ = w.Reload() // reported inside

	var timer *time.Timer
	var fire <-chan time.Time
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-fw.Events:
			if !ok {
				return errors.New("inventory: file watcher closed")
			}
			name := filepath.Clean(ev.Name)
			// ConfigMap volumes swap a "..data" symlink; the file itself
			// sees no event.
			if !relevant[name] && !strings.HasPrefix(filepath.Base(name), "..") {
				continue
			}
			if timer == nil {
				timer = time.NewTimer(w.opts.Debounce)
				fire = timer.C
			} else {
				timer.Reset(w.opts.Debounce)
			}
		case err, ok := <-fw.Errors:
			if !ok {
				return errors.New("inventory: file watcher closed")
			}
			w.log.Warn("inventory file watcher error", zap.String("path", w.path), zap.Error(err))
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				// Events were lost: reload to be sure.
				if timer == nil {
					timer = time.NewTimer(w.opts.Debounce)
					fire = timer.C
				} else {
					timer.Reset(w.opts.Debounce)
				}
			}
		case <-fire:
			_ = w.Reload()
		}
	}
}
