package parallel

import (
	"errors"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestForEachRunsEveryIndexWithinTheLimit(t *testing.T) {
	var running, peak atomic.Int32
	seen := make([]atomic.Int32, 200)
	require.NoError(t, ForEach(len(seen), 3, func(i int) error {
		n := running.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		seen[i].Add(1)
		running.Add(-1)
		return nil
	}))
	for i := range seen {
		assert.Equal(t, int32(1), seen[i].Load(), "index %d", i)
	}
	assert.LessOrEqual(t, peak.Load(), int32(3))
	require.NoError(t, ForEach(0, 0, func(int) error { t.Fatal("called for n = 0"); return nil }))
}

func TestForEachStopsAfterAnError(t *testing.T) {
	boom := errors.New("boom")
	var calls atomic.Int32
	err := ForEach(1000, 1, func(i int) error {
		calls.Add(1)
		if i == 10 {
			return boom
		}
		return nil
	})
	require.ErrorIs(t, err, boom)
	assert.Equal(t, int32(11), calls.Load(), "with one worker nothing after the failing index runs")
}

func TestRanges(t *testing.T) {
	for _, tc := range []struct{ n, parts, want int }{{0, 4, 0}, {1, 4, 1}, {7, 2, 2}, {8, 4, 4}, {10, 3, 3}, {3, 8, 3}} {
		rs := Ranges(tc.n, tc.parts)
		assert.Len(t, rs, tc.want, "n=%d parts=%d", tc.n, tc.parts)
		next := 0
		for _, r := range rs {
			assert.Equal(t, next, r[0], "contiguous")
			assert.Less(t, r[0], r[1], "not empty")
			next = r[1]
		}
		assert.Equal(t, tc.n, next, "covers [0, n)")
	}
	assert.NotEmpty(t, Ranges(5, 0), "parts <= 0 means GOMAXPROCS")
}
