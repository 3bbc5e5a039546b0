// Package remote is tier's far tier: a [Store] keeps cache entries in Redis
// through a go-redis client the caller supplies. Every operation costs one
// network round trip (one per node touched on a cluster), however many keys
// it names; every key lives under "<namespace>:", so stores with different
// namespaces never see each other's entries; a missing key is a miss, never
// an error, and redis.Nil never leaves this package; and every read reports
// the time the entry has left to live in Redis, so a near copy made from it
// never outlives the far one.
//
// # Keys and values
//
// Cache keys may be any string, including the empty one and strings with
// spaces, newlines, braces or any bytes at all: Redis keys are binary-safe,
// and [Store.Key] only prepends the namespace. Braces in a key form a Redis
// Cluster hash tag as usual, which callers may use to keep related keys in
// one slot. Values are opaque bytes; encoding them is the caller's concern.
//
// A write always sets an expiry ([Store.Set] and [Store.SetMany] reject a
// TTL that is not positive), because an entry without one would stay in
// Redis forever. [Item.TTL] is zero only for a key something else wrote
// without expiry.
//
// # Time limits and errors
//
// Each operation is bounded by [Options.Timeout] and by the caller's context,
// whichever ends first. For that bound to hold on the socket as well as in
// the client's pool and retries, the client must be built with
// ContextTimeoutEnabled: true; [New] refuses one that is not, with
// [ErrContextTimeoutDisabled]. When the context ends, the error matches
// context.Canceled or context.DeadlineExceeded with errors.Is.
//
// Errors start with "remote:" and name the operation and the key, and wrap
// the cause with %w, so transport errors from go-redis can still be examined.
//
// # One round trip
//
// A read is GET and PTTL of each key in one pipeline: one write and one read
// on the connection. It is not a transaction, so another client may change
// the key between the two commands; a key deleted in that gap reads as a
// miss. A batch delete is one UNLINK on a standalone server; on a cluster or
// ring, where one multi-key command would fail with CROSSSLOT or reach the
// wrong shard, it is one UNLINK per key in one pipeline, which go-redis
// splits by node and sends to the nodes in parallel.
package remote
