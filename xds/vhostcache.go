package xds

import (
	"sync"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"

	"github.com/egressguard/egressguard/policy/plan"
)

// vhostKey identifies a virtual host by what it is built from. Classes that
// share a base layer share its rules (the same *plan.Rule), so a base rule's
// virtual host is built, validated and marshalled once per policy version,
// not once per class and port.
type vhostKey struct {
	rule    *plan.Rule
	kind    verdictKind
	name    string
	domains string // sorted, comma-joined
}

type vhostEntry struct {
	once sync.Once
	vh   *routev3.VirtualHost
	raw  []byte // deterministic wire form (eager caches only)
	err  error  // validation or marshal error (eager caches only)
}

// vhostCache memoises virtual hosts. An eager cache (the enforcer's)
// validates (ValidateAll and every Any inside) and marshals each one when
// it is built, so route configurations can be checked and assembled from
// the parts; a lazy one (TranslateSidecar) only shares the objects.
type vhostCache struct {
	eager bool

	// anys remembers the Anys that passed deep validation for the same
	// policy version (validateWith).
	anys anyMemo
	// chains, when set, memoises CheckFilterChains by listener content
	// across policy versions (the enforcer's; validateWith).
	chains *chainMemo

	mu    sync.Mutex
	byKey map[vhostKey]*vhostEntry
	byPtr map[*routev3.VirtualHost]*vhostEntry
}

func newVHostCache(eager bool) *vhostCache {
	return &vhostCache{eager: eager, byKey: map[vhostKey]*vhostEntry{}, byPtr: map[*routev3.VirtualHost]*vhostEntry{}}
}

func (c *vhostCache) get(k vhostKey, build func() *routev3.VirtualHost) *vhostEntry {
	c.mu.Lock()
	e, ok := c.byKey[k]
	if !ok {
		e = &vhostEntry{}
		c.byKey[k] = e
	}
	c.mu.Unlock()
	e.once.Do(func() {
		e.vh = build()
		if c.eager {
			e.err = ValidateDeep(e.vh, "virtual_host "+e.vh.Name)
			if e.err == nil {
				e.raw, e.err = proto.MarshalOptions{Deterministic: true}.Marshal(e.vh)
			}
		}
		c.mu.Lock()
		c.byPtr[e.vh] = e
		c.mu.Unlock()
	})
	return e
}

// lookup returns the entry of a virtual host this cache built (eager caches
// only; nil otherwise).
func (c *vhostCache) lookup(vh *routev3.VirtualHost) *vhostEntry {
	if c == nil || !c.eager {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byPtr[vh]
}

// Len is the number of distinct virtual hosts built.
func (c *vhostCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.byKey)
}
