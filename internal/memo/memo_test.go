package memo

import (
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestGetComputesOncePerKey(t *testing.T) {
	var m Memo[string, int]
	var calls atomic.Int32
	release := make(chan struct{})
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			v, err := m.Get("a", func() (int, error) {
				calls.Add(1)
				<-release
				return 42, nil
			})
			assert.NoError(t, err)
			assert.Equal(t, 42, v)
		})
	}
	for m.Len() == 0 { // wait until the first caller has claimed the key
		runtime.Gosched()
	}
	close(release)
	wg.Wait()
	assert.Equal(t, int32(1), calls.Load())
	v, err := m.Get("a", func() (int, error) { t.Fatal("recomputed a cached value"); return 0, nil })
	require.NoError(t, err)
	assert.Equal(t, 42, v)
	assert.Equal(t, 1, m.Len())
}

// The documented choice: an error reaches every caller waiting for that
// computation and is not cached; the next Get computes again.
func TestErrorsAreSharedThenRetried(t *testing.T) {
	var m Memo[int, string]
	boom := errors.New("transient")
	release := make(chan struct{})
	var calls atomic.Int32
	var wg, arrived sync.WaitGroup
	arrived.Add(5)
	for range 5 {
		wg.Go(func() {
			arrived.Done()
			_, err := m.Get(1, func() (string, error) {
				calls.Add(1)
				<-release
				return "", boom
			})
			assert.ErrorIs(t, err, boom)
		})
	}
	// Every caller has reached Get and the computation is in flight; give
	// the callers time to block on it before it fails (a caller that came
	// after the failure would rightly compute again: the error is not
	// cached).
	arrived.Wait()
	for m.Len() == 0 {
		runtime.Gosched()
	}
	time.Sleep(100 * time.Millisecond)
	close(release)
	wg.Wait()
	assert.Equal(t, int32(1), calls.Load(), "waiters share the failing computation")
	assert.Equal(t, 0, m.Len(), "the error is not cached")
	v, err := m.Get(1, func() (string, error) { return "ok", nil })
	require.NoError(t, err)
	assert.Equal(t, "ok", v)
}

func TestPanicDoesNotStrandWaiters(t *testing.T) {
	var m Memo[int, int]
	assert.Panics(t, func() { _, _ = m.Get(1, func() (int, error) { panic("bug") }) })
	v, err := m.Get(1, func() (int, error) { return 1, nil })
	require.NoError(t, err, "a panic is not cached as a zero value")
	assert.Equal(t, 1, v)
}
