package local

import "time"

// FillGuard marks the moment a load began, so that its result is stored
// only if nothing changed the key since. Take one with [Cache.StartFill]
// before the load and pass it to [Cache.Fill] after it.
type FillGuard struct {
	seq uint64
}

// StartFill returns a guard to pass to [Cache.Fill] or
// [Cache.SetIfUnchanged] once a load that starts now has finished.
func (c *Cache[K, V]) StartFill() FillGuard {
	return FillGuard{seq: c.seq.Load()}
}

// Fill stores value under key as [Cache.Set] does, but only if no Set,
// SetIfUnchanged or Delete of key, and no Purge, happened after g was
// taken; it reports whether it stored the value. A fill is not a change:
// it never refuses another fill. A refused fill leaves the cache as it
// was; the caller may still use the value it loaded.
func (c *Cache[K, V]) Fill(g FillGuard, key K, value V, ttl time.Duration, weight int64) bool {
	return c.store(key, value, ttl, weight, modeFill, g)
}

// SetIfUnchanged stores value under key, as [Cache.Fill] does, only if no
// Set, SetIfUnchanged or Delete of key, and no Purge, happened after g
// was taken; it reports whether it stored the value. Unlike a fill, a
// SetIfUnchanged that stores is a change: fills and SetIfUnchanged calls
// guarded before it will not store key. It is how a writer puts its own
// write in the cache without undoing a newer change that reached the
// cache while it wrote, nor being undone by a fill of an older value.
func (c *Cache[K, V]) SetIfUnchanged(g FillGuard, key K, value V, ttl time.Duration, weight int64) bool {
	return c.store(key, value, ttl, weight, modeSetIfUnchanged, g)
}
