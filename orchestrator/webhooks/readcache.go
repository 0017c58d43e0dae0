package webhooks

import (
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// readCache keeps what deliveries read from the store for a short while,
// so that the deliveries of one status change to several subscriptions
// read its run once, and the runs of one broadcast (which share a trigger)
// read their trigger once. It is bounded: two generations of at most max
// entries each; when the current one is full it becomes the old one and
// the former old one is dropped.
type readCache[V any] struct {
	ttl time.Duration
	max int

	mu       sync.Mutex
	cur, old map[string]cachedRead[V]
	// flight makes concurrent misses of one key share one read.
	flight singleflight.Group
	// missed, when set (tests only), is called after a read missed the
	// cache and before it joins or starts the key's flight.
	missed func(key string)
}

type cachedRead[V any] struct {
	v  V
	at time.Time
}

// newReadCache returns a cache of entries read within ttl; nil (which
// caches nothing) when ttl is not positive.
func newReadCache[V any](ttl time.Duration, max int) *readCache[V] {
	if ttl <= 0 {
		return nil
	}
	return &readCache[V]{ttl: ttl, max: max, cur: map[string]cachedRead[V]{}, old: map[string]cachedRead[V]{}}
}

// get returns key's value if it was read less than ttl before now.
func (c *readCache[V]) get(key string, now time.Time) (V, bool) {
	var zero V
	if c == nil {
		return zero, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.cur[key]
	if !ok {
		e, ok = c.old[key]
	}
	if !ok || now.Sub(e.at) >= c.ttl {
		return zero, false
	}
	return e.v, true
}

// put records key's value as read at now.
func (c *readCache[V]) put(key string, v V, now time.Time) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.cur) >= c.max {
		c.old, c.cur = c.cur, make(map[string]cachedRead[V], c.max)
	}
	c.cur[key] = cachedRead[V]{v: v, at: now}
}

// read returns key's value from the cache when usable says it may serve,
// else from load, whose value is cached when it succeeds. Concurrent reads
// of one key share one load (the deliveries of one change to several
// subscriptions run side by side); a read that missed the cache just as
// another read of the key finished uses what that one cached. A value of a
// shared load that this caller's usable refuses (the load began before
// what the caller needs was stored) is read again. A nil cache always
// loads.
func (c *readCache[V]) read(key string, usable func(V) bool, load func() (V, error)) (V, error) {
	if c == nil {
		return load()
	}
	if v, ok := c.get(key, time.Now()); ok && usable(v) {
		return v, nil
	}
	if c.missed != nil {
		c.missed(key)
	}
	loadAndPut := func() (V, error) {
		v, err := load()
		if err == nil {
			c.put(key, v, time.Now())
		}
		return v, err
	}
	r, err, _ := c.flight.Do(key, func() (any, error) {
		if v, ok := c.get(key, time.Now()); ok && usable(v) {
			return v, nil
		}
		return loadAndPut()
	})
	v := r.(V)
	if err == nil && !usable(v) {
		return loadAndPut()
	}
	return v, err
}
