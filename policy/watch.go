package policy

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"
)

// maxExpiryWait bounds the wait for the next exception expiry, so that a
// clock jump cannot postpone it indefinitely.
const maxExpiryWait = time.Hour

// Watch reloads the policy when a catalog file or a .rego file in the policy
// dir changes (events are debounced by Options.Debounce), and when the next
// exception expires. Directories are watched rather than files so that
// editors' rename-on-save and Kubernetes ConfigMap symlink swaps are seen.
// A failed reload keeps the last good policy (see Reload). Watch returns nil
// when ctx ends.
func (e *Engine) Watch(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("policy: watch: %w", err)
	}
	defer w.Close()
	files := map[string]bool{}
	dirs := map[string]bool{}
	for _, f := range e.opts.CatalogFiles {
		abs, err := filepath.Abs(f)
		if err != nil {
			return fmt.Errorf("policy: watch %s: %w", f, err)
		}
		files[abs] = true
		dirs[filepath.Dir(abs)] = true
	}
	policyDir := ""
	if e.opts.PolicyDir != "" {
		if policyDir, err = filepath.Abs(e.opts.PolicyDir); err != nil {
			return fmt.Errorf("policy: watch %s: %w", e.opts.PolicyDir, err)
		}
		dirs[policyDir] = true
	}
	for d := range dirs {
		if err := w.Add(d); err != nil {
			return fmt.Errorf("policy: watch %s: %w", d, err)
		}
	}
	relevant := func(name string) bool {
		abs, err := filepath.Abs(name)
		if err != nil {
			return false
		}
		base := filepath.Base(abs)
		switch {
		case files[abs], files[strings.TrimSuffix(abs, SignatureSuffix)]:
			return true
		case strings.HasPrefix(base, ".."): // ConfigMap ..data swap
			return true
		case filepath.Dir(abs) == policyDir && strings.HasSuffix(base, ".rego"):
			return true
		}
		return false
	}

	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	expiry := time.NewTimer(e.expiryWait())
	defer debounce.Stop()
	defer expiry.Stop()
	if e.changedSinceRead() {
		// Written between the last read and the watches above: no event
		// will come for it.
		debounce.Reset(e.opts.Debounce)
	}
	reload := func(why string) {
		if err := e.Reload(ctx); err == nil {
			e.log.Debug("policy reload checked", zap.String("trigger", why), zap.String("version", e.Version()))
		}
		expiry.Reset(e.expiryWait())
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if relevant(ev.Name) {
				debounce.Reset(e.opts.Debounce)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			e.log.Warn("policy file watch error", zap.Error(err))
		case <-debounce.C:
			reload("file change")
		case <-expiry.C:
			reload("exception expiry")
		}
	}
}

// changedSinceRead reports whether an operator file (or its signature)
// differs from the last stable read.
func (e *Engine) changedSinceRead() bool {
	seen := e.readStamps.Load()
	if seen == nil {
		return false
	}
	files := make([]CatalogFile, len(e.opts.CatalogFiles))
	for i, f := range e.opts.CatalogFiles {
		files[i].Name = f
	}
	return !sameStamps(*seen, stamps(files))
}

// expiryWait is how long until the next active exception expires.
func (e *Engine) expiryWait() time.Duration {
	next := e.cur.Load().nextExpiry
	if next.IsZero() {
		return maxExpiryWait
	}
	d := next.Sub(e.opts.Now())
	switch {
	case d < time.Second:
		return time.Second
	case d > maxExpiryWait:
		return maxExpiryWait
	}
	return d
}
