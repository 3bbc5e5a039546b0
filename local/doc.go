// Package local is the near tier of tier: a concurrency-safe, bounded
// cache with per-entry expiry that evicts least recently used entries
// first, kept in the memory of one process.
//
// A [Cache] guarantees that:
//
//   - it never holds more than [Options.Capacity] entries, nor, when
//     [Options.MaxWeight] is set, more than that total weight;
//   - [Cache.Get] and [Cache.Peek] never return an entry whose deadline
//     has passed;
//   - a hit allocates nothing and never waits for a lock (in a cache of
//     one shard it takes the lock only if it is free, see Order of
//     eviction), except for a lookup that runs while its shard's table
//     grows and finds nothing, which looks again under the shard's lock;
//   - a value stored by [Cache.Fill] with a [FillGuard] is stored only if
//     no Set, SetIfUnchanged or Delete of its key, and no Purge, happened
//     after the guard was taken (see Fill guard below).
//
// # Order of eviction
//
// A cache with a capacity below 512 entries has one shard. A larger one is
// split into up to 64 shards by key hash, and each evicts from its own
// entries first.
//
// Each shard keeps its entries on a list in order of use, which its
// writes change under the shard's lock. A hit in a cache of one shard
// moves its entry to the front at once if the lock is free, so a sequence
// of calls from one goroutine sees exact least-recently-used order: with
// capacity 2, Set a, Set b, Get a, Set c evicts b. A hit in a cache of
// more shards takes no lock: it sets a mark on its entry, if it is not
// set already, and eviction passes over marked entries once, clearing the
// mark and moving them to the front (the CLOCK, or second-chance,
// approximation of LRU). An entry read since it last reached the end of
// the list is then never evicted before one that was not, but two entries
// read in that time count as equally recent. A cache of one shard
// switches to marks for good the first time a hit finds the lock taken,
// which only another goroutine, reading or writing at the same time, can
// cause: under concurrency its order is approximate too.
//
// With [Options.Admission], every shard runs S3-FIFO instead: a new key
// waits on probation in a small queue, and joins the main queue only if
// it is read again there, or if it left probation unread not long
// before; entries of the main queue count up to three hits, each of which
// buys one more pass. Keys read once leave early, so they do not push out
// keys read again and again: on skewed workloads the hit ratio is higher
// than LRU's, at the price of a table of 4-byte fingerprints of keys
// recently evicted from probation, nine for every ten entries of
// capacity. A hit then never takes a lock, even in a cache of one shard.
//
// Marks and counts are what let hits scale across cores. Moving an entry
// on the list, at once or later from a buffer of reads, writes the list's
// head and the entries next to it, which other cores are reading; a mark
// is written once and then only read, so a hot key read by every core
// stays in every core's cache. The hits and misses of [Cache.Stats] are
// counted per stripe of goroutines, for the same reason.
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
// An expired entry counts as absent at once and leaves memory with the next
// write to its shard.
//
// # Fill guard
//
// A read-through cache loads a value outside any lock and stores it when
// the load returns. If the key was changed or invalidated in the meantime,
// storing the loaded value would bring back what the change removed.
// [Cache.StartFill] takes a [FillGuard] before the load; [Cache.Fill] stores
// the result only if no Set, SetIfUnchanged or Delete of that key, and no
// Purge, happened since. A fill itself changes nothing: it never refuses
// another fill. [Cache.SetIfUnchanged] is a Fill that, when it stores,
// also counts as a change, for a writer storing its own write.
//
// Changes are recorded in a fixed table of stamps indexed by key hash, so
// the guard costs no memory per changed key; two keys that share a stamp
// can make a fill be refused needlessly (Fill reports it), never stored
// wrongly. A Purge refuses every fill guarded before it.
package local
