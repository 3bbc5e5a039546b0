// Package remote is tier's far tier: a [Store] keeps cache entries in Redis
// through a go-redis client the caller supplies.
//
// It guarantees that every key lives under "<namespace>:" (so namespaces
// "a" and "a:b" can name the same Redis key: "a:b:c"; keep namespaces
// apart); that a missing key
// is a miss, never an error (redis.Nil never leaves this package); that
// every operation is bounded by [Options.Timeout] and the caller's context;
// and that, with [Options.Channel], a write and its announcement on that
// channel happen in one Lua script, together or not at all (see
// [Store.Set] for the one case where they cannot).
//
// # Keys and values
//
// Cache keys may be any string, including the empty one and strings with
// spaces, newlines, braces or any bytes at all: Redis keys are binary-safe,
// and [Store.Key] only prepends the namespace. Braces in a key form a Redis
// Cluster hash tag as usual. Values are opaque bytes; encoding them, and
// recording their deadline inside them, is the caller's concern. A write
// always sets an expiry: an entry without one would stay in Redis forever.
//
// # Round trips
//
// A read is one GET; a batch read is one MGET on a single server, and GETs
// pipelined on a cluster, which go-redis splits by node and sends in
// parallel. A write is one script; so is a compare-and-set ([Store.Swap]).
//
// # Time limits and errors
//
// For the time limit to hold on the socket as well as in the client's pool
// and retries, the client must be built with ContextTimeoutEnabled: true;
// [New] refuses one that is not, with [ErrContextTimeoutDisabled]. go-redis
// turns a deadline into the socket's, but does not watch for cancellation
// while it waits for a reply: a caller who cancels gets context.Canceled
// once the reply or Options.Timeout comes. When the context ends, the
// error matches context.Canceled or context.DeadlineExceeded with
// errors.Is. Errors start with "remote:",
// name the operation and the key, and wrap the cause with %w.
package remote
