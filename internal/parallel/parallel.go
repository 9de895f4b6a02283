// Package parallel runs independent pieces of work on a bounded number of
// goroutines: the one worker pool of the project's batch paths (policy
// diff, decision-log reading).
package parallel

import (
	"runtime"
	"sync/atomic"

	"golang.org/x/sync/errgroup"
)

// ForEach calls fn(i) for every i in [0, n) on at most limit goroutines at
// a time (limit <= 0: GOMAXPROCS) and waits for them. It returns the first
// error an fn returned; once one has failed, calls not yet started are
// skipped. Callers that need every index's outcome, or a deterministic
// choice among several errors, record them per index and return nil.
func ForEach(n, limit int, fn func(i int) error) error {
	if limit <= 0 {
		limit = runtime.GOMAXPROCS(0)
	}
	var g errgroup.Group
	g.SetLimit(limit)
	var failed atomic.Bool
	for i := range n {
		if failed.Load() {
			break
		}
		g.Go(func() error {
			if failed.Load() {
				return nil
			}
			if err := fn(i); err != nil {
				failed.Store(true)
				return err
			}
			return nil
		})
	}
	return g.Wait()
}

// Ranges splits [0, n) into at most parts contiguous [lo, hi) ranges of
// nearly equal size (parts <= 0: GOMAXPROCS), for ForEach over work too
// small per item to schedule one goroutine each.
func Ranges(n, parts int) [][2]int {
	if parts <= 0 {
		parts = runtime.GOMAXPROCS(0)
	}
	if n <= 0 {
		return nil
	}
	size := (n + max(1, min(parts, n)) - 1) / max(1, min(parts, n))
	out := make([][2]int, 0, (n+size-1)/size)
	for lo := 0; lo < n; lo += size {
		out = append(out, [2]int{lo, min(n, lo+size)})
	}
	return out
}
