package dnsguard

import (
	"encoding/binary"
	"hash/maphash"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/egressguard/egressguard/policy/plan"
)

// cacheKey identifies one cached upstream answer. The DO and CD bits of the
// query are part of it: they change what an upstream returns.
type cacheKey struct {
	name  string // cacheName form: lower case, fully qualified
	qtype uint16
	bits  uint8 // keyDO | keyCD
}

const (
	keyDO uint8 = 1 << iota
	keyCD
)

// maxCachedWire bounds one cached answer; larger (TCP-only) answers are
// passed through uncached so memory stays bounded by entries × this.
const maxCachedWire = 16 << 10

// entry is one upstream answer as dnsguard stores it: packed, with ID 0,
// no OPT record and a lower-case question, plus what the policy needs to
// check it. Entries are immutable once stored, apart from the verdict memo.
type entry struct {
	wire    []byte
	ttls    []uint16 // offsets of every RR's TTL field in wire
	rcode   int
	stored  int64 // unix nanoseconds
	expires int64 // unix nanoseconds
	// What the answer leads to, checked against the asking client's plan.
	ips   []netip.Addr // A, AAAA, SVCB/HTTPS ipv4hint/ipv6hint
	names []string     // CNAME and DNAME targets, SVCB/HTTPS target names
	// owners are the other names the response carries (owners of every RR
	// in every section, MX/SRV/NS targets): production ones are stripped.
	owners []string
	// verdict memoises the answer check for the last plan that asked, so a
	// cache hit from the same workload class does not re-match the answer.
	verdict atomic.Pointer[verdict]
}

// verdict is the memoised answer check of one entry against one plan.
type verdict struct {
	plan     *plan.Plan
	excepted bool
	check    answerCheck
}

func (e *entry) fresh(now int64) bool { return now < e.expires }

// writeTo appends the entry's wire form to dst with every TTL aged to now
// (never below zero, never above its stored value), or set to staleTTL
// when staleTTL > 0.
func (e *entry) writeTo(dst []byte, now int64, staleTTL uint32) []byte {
	start := len(dst)
	dst = append(dst, e.wire...)
	age := uint32(0)
	if now > e.stored {
		age = uint32((now - e.stored) / int64(time.Second))
	}
	for _, off := range e.ttls {
		p := dst[start+int(off):]
		if staleTTL > 0 {
			binary.BigEndian.PutUint32(p, staleTTL)
			continue
		}
		t := binary.BigEndian.Uint32(p)
		if t > age {
			t -= age
		} else {
			t = 0
		}
		binary.BigEndian.PutUint32(p, t)
	}
	return dst
}

const cacheShards = 32

type cacheShard struct {
	mu sync.RWMutex
	m  map[cacheKey]*entry
	_  [40]byte // keep shards on separate cache lines
}

// answerCache is a bounded, sharded map of upstream answers. Expired
// entries stay until evicted so they can be served stale.
type answerCache struct {
	seed     maphash.Seed
	perShard int
	stale    int64 // nanoseconds an expired entry stays usable
	shards   [cacheShards]cacheShard
	size     atomic.Int64
	evicted  func()
}

func newAnswerCache(size int, stale time.Duration, evicted func()) *answerCache {
	c := &answerCache{seed: maphash.MakeSeed(), stale: int64(stale), evicted: evicted}
	if size <= 0 {
		return c // perShard 0: caching disabled
	}
	c.perShard = (size + cacheShards - 1) / cacheShards
	for i := range c.shards {
		c.shards[i].m = make(map[cacheKey]*entry)
	}
	return c
}

func (c *answerCache) shard(k *cacheKey) *cacheShard {
	h := maphash.String(c.seed, k.name) ^ uint64(k.qtype)<<8 ^ uint64(k.bits)
	return &c.shards[h%cacheShards]
}

// get returns the entry for k, fresh or not (the caller decides whether a
// stale one may be served).
func (c *answerCache) get(k cacheKey) (*entry, bool) {
	if c.perShard == 0 {
		return nil, false
	}
	s := c.shard(&k)
	s.mu.RLock()
	e, ok := s.m[k]
	s.mu.RUnlock()
	return e, ok
}

// put stores e under k, evicting one entry when the shard is full:
// preferably one past its serve-stale window, else an arbitrary one (Go's
// randomised map iteration order makes that a random pick).
func (c *answerCache) put(k cacheKey, e *entry) {
	now := e.stored
	if c.perShard == 0 || len(e.wire) > maxCachedWire {
		return
	}
	s := c.shard(&k)
	s.mu.Lock()
	if _, exists := s.m[k]; !exists && len(s.m) >= c.perShard {
		victim, found := cacheKey{}, false
		n := 0
		for vk, ve := range s.m {
			if !found || now > ve.expires+c.stale {
				victim, found = vk, true
				if now > ve.expires+c.stale {
					break
				}
			}
			if n++; n >= 8 {
				break
			}
		}
		delete(s.m, victim)
		c.size.Add(-1)
		if c.evicted != nil {
			c.evicted()
		}
	}
	if _, exists := s.m[k]; !exists {
		c.size.Add(1)
	}
	s.m[k] = e
	s.mu.Unlock()
}

// len is the number of entries held.
func (c *answerCache) len() int { return int(c.size.Load()) }
