// Package soak drives tier replicas with random reads, writes, deletes and
// invalidations over a small hot key space, and checks every read against
// the history of writes.
//
// The [Checker] is the judge. Every write carries a version (a Delete is a
// write of "absent"), and the checker records when each operation started
// and ended. A read that returned the value of write x is a violation if
// some write y of the same key had completed, Slack before the read
// started, and x had completed before y started: x was overwritten in real
// time, so a read that began after the overwrite must not see it. Writes
// that overlap in time may land in either order, so versions alone decide
// nothing. A read of "absent" is judged the same way against the deletes
// (and the initial, empty state). Slack is the staleness the cache
// documents: with subscriptions up, one pub/sub delivery.
//
// The checker judges each read when it ends, with timestamps taken under
// its lock, so a write that completed before a read started is always
// recorded by then; it keeps writes, not reads, so a long soak costs tens
// of bytes per write.
//
// [Run] is the driver: it runs workers against any [Replica] (a tier.Cache
// in this process, or an HTTP service in another) and a shared [Source] of
// truth that the replicas' loaders read, and returns a [Report].
package soak
