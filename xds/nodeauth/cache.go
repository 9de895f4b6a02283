package nodeauth

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"sync"
	"time"
)

// reviewCache remembers successful token reviews so that a client that
// reconnects (grpc-go opens one ADS stream per xDS client, Envoy reconnects
// after every control-plane restart) does not cost a TokenReview per
// stream. Entries are keyed by the SHA-256 of the token (the token itself is
// never kept), bounded in number (least recently used evicted first), and
// expire at the earlier of the token's own exp claim and now+ttl. Only
// successes are cached: a rejected token, or an API server that could not be
// asked, is asked again next time, so a failure can never be remembered as a
// success and an outage is not remembered at all.
//
// The ttl bounds how long a token stays accepted after its pod is deleted
// (the API server would reject it from then on).
type reviewCache struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu      sync.Mutex
	entries map[[sha256.Size]byte]*list.Element
	lru     *list.List // of *cacheEntry, most recently used first
}

type cacheEntry struct {
	key     [sha256.Size]byte
	id      PodIdentity
	expires time.Time
}

func newReviewCache(ttl time.Duration, max int, now func() time.Time) *reviewCache {
	return &reviewCache{ttl: ttl, max: max, now: now, entries: map[[sha256.Size]byte]*list.Element{}, lru: list.New()}
}

// get returns the cached identity of token, if any and unexpired.
func (c *reviewCache) get(token string) (PodIdentity, bool) {
	key := sha256.Sum256([]byte(token))
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[key]
	if !ok {
		return PodIdentity{}, false
	}
	e := el.Value.(*cacheEntry)
	if !c.now().Before(e.expires) {
		c.lru.Remove(el)
		delete(c.entries, key)
		return PodIdentity{}, false
	}
	c.lru.MoveToFront(el)
	return e.id, true
}

// put remembers a successful review of token.
func (c *reviewCache) put(token string, id PodIdentity) {
	now := c.now()
	expires := now.Add(c.ttl)
	if exp, ok := tokenExpiry(token); ok && exp.Before(expires) {
		expires = exp
	}
	if !now.Before(expires) {
		return
	}
	key := sha256.Sum256([]byte(token))
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[key]; ok {
		c.lru.Remove(el)
	}
	c.entries[key] = c.lru.PushFront(&cacheEntry{key: key, id: id, expires: expires})
	for c.lru.Len() > c.max {
		oldest := c.lru.Back()
		c.lru.Remove(oldest)
		delete(c.entries, oldest.Value.(*cacheEntry).key)
	}
}

// len is the number of entries, expired ones included until they are met.
func (c *reviewCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// tokenExpiry reads the exp claim of a JWT without checking its signature.
// It is only used to shorten a cache entry of a token the API server has
// just accepted, never to accept one.
func tokenExpiry(token string) (time.Time, bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return time.Time{}, false
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}, false
	}
	var claims struct {
		Exp *json.Number `json:"exp"`
	}
	if err := json.Unmarshal(raw, &claims); err != nil || claims.Exp == nil {
		return time.Time{}, false
	}
	sec, err := claims.Exp.Int64()
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(sec, 0), true
}

// review validates token through the cache: a hit skips the API server.
func (g *Guard) review(ctx context.Context, token string) (PodIdentity, error) {
	if id, ok := g.cache.get(token); ok {
		g.metrics.cacheLookup(true)
		return id, nil
	}
	g.metrics.cacheLookup(false)
	id, err := g.rev.Review(ctx, token)
	g.metrics.reviewed(err)
	if err == nil {
		g.cache.put(token, id)
	}
	return id, err
}
