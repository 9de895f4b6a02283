package stagingca

import (
	"bytes"
	"context"
	"slices"
	"time"

	"go.uber.org/zap"
)

// Run re-reads the key files every few seconds and drops leaves due for
// renewal, ticking Changes after either, until ctx ends. A key rotation is a
// change of the files' contents (a Secret update through the kubelet's
// symlink swap included): the new keys are loaded and checked, the anchors
// rebuilt and every cached leaf dropped, so the next Leaf is signed by the
// new key. Files that do not load (half written, a key that does not match
// its certificate) keep the last good keys; that is logged and counted once
// per change of the files. With an ephemeral key only renewal runs.
func (a *Authority) Run(ctx context.Context) error {
	t := time.NewTicker(a.poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			a.reload()
			a.renew()
		}
	}
}

// reload loads the key files if their contents changed since the last read.
func (a *Authority) reload() {
	if a.cfg.KeyFile == "" {
		return
	}
	a.mu.RLock()
	seen := a.keys.raw
	a.mu.RUnlock()
	ks, raw, err := a.loadKeys()
	if raw == nil || slices.EqualFunc(raw, seen, bytes.Equal) {
		// Unreadable for a moment (a rotation in progress) or unchanged.
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	var st *state
	if err == nil {
		st, err = a.build(ks, a.st.hosts)
	}
	if err != nil {
		a.keys.raw = raw // report this content once
		a.m.reloads.WithLabelValues("error").Inc()
		a.log.Error("stagingca.rotation", zap.Error(err), zap.String("keeping", "the last good keys"))
		return
	}
	a.keys, a.st = ks, st
	clear(a.leaves)
	a.m.setAnchor(st)
	a.m.reloads.WithLabelValues("ok").Inc()
	if a.permitted {
		a.warnExcess()
	}
	a.log.Info("stagingca.rotated", a.anchorFields(st)...)
	a.notify()
}

// renew drops cached leaves past two thirds of their lifetime and ticks
// Changes if there were any.
func (a *Authority) renew() {
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for h, c := range a.leaves {
		if !now.Before(c.renewAt) {
			delete(a.leaves, h)
			n++
		}
	}
	if n > 0 {
		a.log.Debug("stagingca.renewal", zap.Int("leaves", n))
		a.notify()
	}
}
