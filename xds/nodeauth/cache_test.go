package nodeauth

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
)

// countingReviewer answers like fakeReviewer and counts the calls; err,
// when set, is returned instead (an API server that cannot be asked).
type countingReviewer struct {
	ok    map[string]PodIdentity
	err   error
	calls int
}

func (c *countingReviewer) Review(ctx context.Context, token string) (PodIdentity, error) {
	c.calls++
	if c.err != nil {
		return PodIdentity{}, c.err
	}
	return fakeReviewer(c.ok).Review(ctx, token)
}

// jwt is an unsigned token whose only claim is exp (the cache reads exp;
// signatures are the API server's business).
func jwt(exp time.Time) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256"}`)) + "." + enc(fmt.Appendf(nil, `{"exp":%d,"aud":["egressguard"]}`, exp.Unix())) + ".c2ln"
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func cachedGuard(t *testing.T, rev Reviewer, clk *clock, size int) *Guard {
	t.Helper()
	cfg := Defaults()
	cfg.Mode, cfg.ReviewCacheTTL, cfg.ReviewCacheSize = ModeEnforce, time.Minute, size
	g, err := New(cfg, testInventory(t), rev, zap.NewNop(), nil)
	require.NoError(t, err)
	g.cache.now = clk.now
	return g
}

func TestReviewCache(t *testing.T) {
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	long, short := jwt(clk.t.Add(time.Hour)), jwt(clk.t.Add(10*time.Second))
	api := PodIdentity{Namespace: "prod", ServiceAccount: "api", Pod: "api-0"}
	rev := &countingReviewer{ok: map[string]PodIdentity{long: api, short: api, "opaque": api}}
	g := cachedGuard(t, rev, clk, 2)
	ctx := t.Context()

	t.Run("a success is reused until the TTL", func(t *testing.T) {
		for range 3 {
			id, err := g.review(ctx, long)
			require.NoError(t, err)
			assert.Equal(t, api, id)
		}
		assert.Equal(t, 1, rev.calls)
		clk.t = clk.t.Add(time.Minute)
		_, err := g.review(ctx, long)
		require.NoError(t, err)
		assert.Equal(t, 2, rev.calls, "expired at now+TTL: asked again")
	})
	t.Run("never past the token's own exp", func(t *testing.T) {
		rev.calls = 0
		short = jwt(clk.t.Add(10 * time.Second))
		rev.ok[short] = api
		_, err := g.review(ctx, short)
		require.NoError(t, err)
		clk.t = clk.t.Add(9 * time.Second)
		_, _ = g.review(ctx, short)
		assert.Equal(t, 1, rev.calls)
		clk.t = clk.t.Add(time.Second)
		_, _ = g.review(ctx, short)
		assert.Equal(t, 2, rev.calls, "the token's exp came before the TTL")
	})
	t.Run("a token without exp is kept for the TTL", func(t *testing.T) {
		_, ok := tokenExpiry("opaque")
		assert.False(t, ok)
		rev.calls = 0
		_, _ = g.review(ctx, "opaque")
		_, _ = g.review(ctx, "opaque")
		assert.Equal(t, 1, rev.calls)
	})
	t.Run("bounded: least recently used evicted", func(t *testing.T) {
		a, b, c := jwt(clk.t.Add(time.Hour)), jwt(clk.t.Add(time.Hour+time.Second)), jwt(clk.t.Add(time.Hour+2*time.Second))
		rev := &countingReviewer{ok: map[string]PodIdentity{a: api, b: api, c: api}}
		g := cachedGuard(t, rev, clk, 2)
		for _, tok := range []string{a, b, a, c} { // c evicts b, the least recently used
			_, err := g.review(ctx, tok)
			require.NoError(t, err)
		}
		assert.Equal(t, 3, rev.calls)
		assert.Equal(t, 2, g.cache.len())
		_, _ = g.review(ctx, a)
		_, _ = g.review(ctx, c)
		assert.Equal(t, 3, rev.calls, "a and c cached")
		_, _ = g.review(ctx, b)
		assert.Equal(t, 4, rev.calls, "b was evicted")
	})
	assert.Positive(t, testutil.ToFloat64(g.metrics.cache.WithLabelValues("hit")))
	assert.Positive(t, testutil.ToFloat64(g.metrics.cache.WithLabelValues("miss")))
}

func TestReviewCacheKeepsNoFailure(t *testing.T) {
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	tok := jwt(clk.t.Add(time.Hour))
	api := PodIdentity{Namespace: "prod", ServiceAccount: "api", Pod: "api-0"}

	t.Run("rejected", func(t *testing.T) {
		rev := &countingReviewer{ok: map[string]PodIdentity{}}
		g := cachedGuard(t, rev, clk, 10)
		for range 2 {
			_, err := g.review(t.Context(), tok)
			require.ErrorIs(t, err, ErrTokenRejected)
		}
		assert.Equal(t, 2, rev.calls, "a rejection is asked again, never cached")
		assert.Zero(t, g.cache.len())
		rev.ok[tok] = api // e.g. the pod exists now
		_, err := g.review(t.Context(), tok)
		require.NoError(t, err)
	})
	t.Run("API server unreachable", func(t *testing.T) {
		rev := &countingReviewer{err: errors.New("connection refused")}
		g := cachedGuard(t, rev, clk, 10)
		for range 2 {
			_, err := g.review(t.Context(), tok)
			require.Error(t, err)
		}
		assert.Equal(t, 2, rev.calls)
		assert.Zero(t, g.cache.len())
		assert.InDelta(t, 2.0, testutil.ToFloat64(g.metrics.reviews.WithLabelValues("error")), 0)
	})
	t.Run("an expired token is not cached", func(t *testing.T) {
		old := jwt(clk.t.Add(-time.Second))
		rev := &countingReviewer{ok: map[string]PodIdentity{old: api}}
		g := cachedGuard(t, rev, clk, 10)
		_, _ = g.review(t.Context(), old)
		assert.Zero(t, g.cache.len())
	})
}

func FuzzTokenExpiry(f *testing.F) {
	f.Add(jwt(time.Unix(1_800_000_000, 0)))
	f.Add("a.b.c")
	f.Add("e30.eyJleHAiOiIxIn0.x")
	f.Fuzz(func(t *testing.T, tok string) {
		_, _ = tokenExpiry(tok) // never panics
	})
}
