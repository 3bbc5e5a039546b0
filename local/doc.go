// Package local is the near tier of tier: a concurrency-safe, always-bounded
// LRU cache with per-entry expiry, kept in the memory of one process.
//
// It guarantees that it never holds more than [Options.Capacity] entries (nor,
// when [Options.MaxWeight] is set, more than that total weight); that an entry is
// never returned once its clock reads at or past the entry's deadline; that a
// hit allocates nothing and locks only the one shard that holds its key; and
// that a value filled through [Cache.Fill] is stored only if no Set, Delete or
// Purge touched its key after the matching [Cache.StartFill].
//
// # Order of eviction
//
// A cache is split into shards, each with its own lock and its own exact LRU
// list. A cache with fewer than 512 entries of capacity has one shard (unless
// [Options.Shards] says otherwise), so it evicts in exact least-recently-used
// order: with capacity 2, Set a, Set b, Get a, Set c evicts b. A larger cache
// has up to 64 shards; each holds an equal part of the capacity and evicts
// its own least recently used entry, so the cache as a whole keeps LRU order
// within each shard and approximately across them. Set Options.Shards to 1 for
// exact global order at the price of one lock for every operation.
//
// # Time
//
// Deadlines are judged by [Options.Clock]. With no Clock the cache reads the
// monotonic system clock through a value that a goroutine of its own refreshes
// every millisecond while the cache is in use (it parks after a second
// without reads and [Cache.Close] stops it), because reading the system clock
// on every hit would cost more than the rest of the hit. To cover that step,
// the default clock treats an entry as expired one millisecond before its
// deadline; an entry could be served after its deadline only if that
// goroutine were starved of CPU for longer than a millisecond. Pass
// [SystemClock] for an exact read on every access, or a fake clock in tests.
//
// # Fill guard
//
// A read-through cache loads a value outside any lock and stores it when
// the load returns. If the key was deleted or invalidated in the meantime,
// storing the loaded value would bring back what the invalidation removed.
// [Cache.StartFill] takes a [FillGuard] before the load; [Cache.Fill] stores the
// result only if no Set or Delete of that key, and no Purge, happened since.
// Invalidations are recorded in a fixed table of stamps indexed by key hash,
// so the guard costs no memory per deleted key; two keys that share a stamp
// can make a fill be refused needlessly (Fill reports it), never stored wrongly.
package local
