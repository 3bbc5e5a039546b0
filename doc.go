// Package tier is a read-through cache in two tiers for services that run
// many replicas: a near tier in each process's memory in front of a far
// tier in Redis that all replicas share.
//
// A [Cache.Get] looks in the near tier, then in Redis (one GET), then calls
// your [Loader], and stores what it found in the tiers that lacked it.
// Concurrent misses of one key in a process share one Redis read and at
// most one load. A near hit allocates nothing and takes no lock shared by
// every key.
//
// # The guarantee
//
//   - The writer reads its own write: once [Cache.Set] returns nil, the next
//     Get on the same replica returns the value set, or a later one; once
//     [Cache.Delete] returns nil, it does not return the deleted value.
//   - Every other replica stops serving the old value once the change's
//     message reaches it (one pub/sub hop); a Get that starts after that
//     reads Redis, which holds the new value.
//   - A replica that loses its subscription notices within
//     2×Options.Invalidation.HealthInterval, and then drops everything it
//     holds near; nothing cached before a gap is served after it.
//   - No read that began before a change is kept after it, in either tier,
//     whatever the interleaving: near fills are guarded, and a load writes
//     Redis only over a lease that a Set replaces and a Delete removes.
//   - No near copy outlives its Redis copy or Options.Near.TTL.
//
// Changes travel as drop-only messages on the channel
// "<Namespace>:invalidate" (package invalidate), published in the same
// Redis script as the write they announce; an operator drops a key on
// every replica with `redis-cli PUBLISH <Namespace>:invalidate <key>`, and
// everything with "*". docs/DESIGN.md proves the guarantee in a page.
//
// # Tags
//
// A value may carry tags: given to [Cache.Set], or attached by a loader
// with [Tag] while it loads. [Cache.InvalidateTag] makes every value of a
// tag that was read from the source before the call a miss, with the same
// bound as a key's invalidation (this replica at once, the others within
// one pub/sub hop, within 2×HealthInterval after a gap), and in Redis too:
// no replica serves such a copy from Redis afterwards. It costs one Redis
// script whatever the number of values that carry the tag: a per-tag
// marker is compared, on each read, with the tag clock when the value's
// load began. docs/DESIGN.md has the details.
//
// # When Redis fails
//
// A Redis outage degrades the cache; it never fails a read. After a few
// failures in a row that mean Redis is not answering, the cache stops
// waiting on it: reads go to the near tier and the loader, loads write
// nothing to Redis, and writes fail at once with [ErrUnavailable]. One
// background probe notices when Redis answers again, within
// HealthInterval, and the cache uses it again by itself. While Redis is
// unreachable or the subscription is down, a change made on another
// replica may be missed: each replica then keeps what it loads near for
// at most Options.Invalidation.DegradedNearTTL (2×HealthInterval by
// default), so a value it serves is at most that old. [Cache.Health] says
// which state the cache is in, and the log has one line when a link goes
// down, one when it is back, and at most one a minute in between.
//
// # Loads
//
// A load runs on a goroutine of its own, detached from the callers'
// cancellation and bounded by Options.LoadTimeout, so one caller giving up
// does not fail the others; each caller still returns when its own context
// ends. A loader that panics fails its callers with [ErrLoaderPanic] and
// leaves nothing stuck. A loader that returns [ErrNotFound] has that answer
// cached for Options.NotFoundTTL. [Cache.GetMany] reads many keys with one
// Redis round trip for all near misses and one call of a [BatchLoader] for
// the rest.
//
// # Refresh and stale values
//
// With Options.Refresh.Ahead, a hit in the last fraction of its entry's
// life starts one background refresh of the key, so a hot key never
// misses. With Refresh.StaleGrace, values stay that long past their TTL in
// both tiers; an expired hit reloads, and if the reload fails (or outlasts
// Refresh.SoftTimeout) the caller gets the expired value, marked
// [Result].Stale. A key that was Set or Deleted is never served stale.
//
// # Values in Redis
//
// Values are encoded by package codec (msgpack by default) behind a
// versioned header that also records when the value expires. Bytes in
// Redis that do not decode, whatever wrote them, are a miss: counted in
// Stats.Corrupt, reloaded and overwritten. Values returned by Get are
// shared with the near tier: do not modify them.
package tier
