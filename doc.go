// Package tier is a read-through cache in two tiers for services that run
// many replicas: a near tier in each process's memory in front of a far
// tier in Redis that all replicas share.
//
// It guarantees that a near hit costs no allocation and no global lock;
// that concurrent misses of one key in a process cause one Redis read and
// at most one load; that a near copy never outlives its Redis copy; that a
// value read while its key was Set, Deleted or dropped is returned to the
// callers that waited for it but not kept in the near tier; and that a
// Redis outage degrades to loading from the source, never to an error,
// with Redis used again as soon as it answers.
//
// # Freshness across replicas
//
// With Redis set, Set, Delete and Invalidate tell the other replicas, over
// the pub/sub channel "<Namespace>:invalidate" (package invalidate), about
// the keys they change. Set and Delete send that message with the write, in
// one MULTI/EXEC on a single server (atomic, so messages arrive in the order
// of the writes; one Lua script for a user who may not run transactions)
// and right after it on a cluster. On a single server, each replica also
// listens on a writer channel of its own, which a write publishes an empty
// message to just before its transaction, so that Redis sends the writer's own copy of
// the message after every other replica's (invalidate.Bus.WriterChannel).
// A Set's message
// carries the new value when it is at most Options.PushMaxBytes (single
// server only): a replica holding the key replaces its copy at once; other
// messages make replicas drop their copies, to read Redis on their next
// Get. Either way, a change also detaches the key's read or load under way,
// so a Get that starts after the change arrived never waits for a read
// that began before it.
//
// The guarantee: once Set, Delete or Invalidate has returned on one
// replica, every replica whose subscription is up drops or replaces its
// near copy when the message arrives, and no Get that starts after that
// returns the older value; no near copy outlives Options.NearTTL or its
// Redis copy (the deadline of a Redis copy travels in its header, so it is
// judged by the replicas' clocks, as exact as they agree). A Get that
// started before the message arrived may return the value it read before.
// A replica whose subscription is lost drops every near copy
// and stores none from the moment it notices (at once when the connection
// closes, within 2×Options.HealthInterval when the server stops answering)
// until the new subscription is confirmed; so after a gap it serves nothing
// cached before it, and before it notices, copies for at most that long.
// An operator drops a key on every replica with
// `redis-cli PUBLISH <Namespace>:invalidate <key>`, and every key with "*".
//
// # Reads
//
// [Cache.Get] looks in the near tier, then in Redis (one round trip, one
// plain GET), then calls the [Loader]; what it finds it stores in
// the tiers that lacked it. The load runs on a goroutine of its own, detached
// from the callers' cancellation and bounded by Options.LoadTimeout, so one
// caller giving up does not fail the others; each caller still returns when
// its own context ends. A loader that panics fails its callers with
// [ErrLoaderPanic] and leaves nothing stuck. A loader that returns
// [ErrNotFound] has that answer cached for Options.NotFoundTTL.
//
// Before a load, Get puts a lease under the key in Redis, and it writes
// the loaded value only over its own lease, in one script: a Set replaces
// the lease and a Delete removes it, so a load that read the source before
// either never writes the older value back. Other replicas read a lease as
// a miss; it expires after Options.LoadTimeout if its load never ends. A
// reload of corrupt bytes writes only over those bytes, in the same way;
// a load after a failed Redis read takes no lease and writes nothing there.
//
// [Cache.GetMany] reads many keys with one Redis round trip for all near
// misses and one call of a [BatchLoader] for the rest, with leases taken
// and written over in one round trip each.
//
// # Values in Redis
//
// Values are encoded by package codec (msgpack by default) behind a
// versioned header. Bytes in Redis that do not decode, whatever wrote them,
// are treated as a miss: counted in Stats.Corrupt, reloaded and
// overwritten. Each value's header records when it expires (see codec),
// which is how one GET yields both the value and its time left. Every TTL is shortened by a random fraction up to
// Options.Jitter so that keys written together do not expire together.
package tier
