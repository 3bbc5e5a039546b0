package suite

import "strings"

// lossReasons explain why tier loses where it does, as found by
// profiling, keyed by "<group ID prefix>|<peer>" ("*" for any peer); the
// longest matching prefix wins, an exact peer over "*". Rows not covered
// say that no reason was recorded, so that a new loss is not explained by
// an old reason.
var lossReasons = map[string]string{
	"near|golang-lru": "golang-lru does the same work on a hit (one map lookup, one move to the front of an LRU list) " +
		"with one hash of the key and no expiry. tier hashes the key twice, once to pick its shard (`maphash.comparableHash`) " +
		"and once in the shard's map (`aeshashbody`), about 10% of the profile each at 10k; takes the shard's lock; checks " +
		"the entry's deadline; and Cache.Get adds its own checks over the near tier (compare the row of local.Cache alone). " +
		"At 100k entries half of tier's hit is the map's lookup itself (`maps.ctrlGroup.matchH2`, cache misses) and 15% the " +
		"move to the front (`moveToFront`). golang-lru has no TTL.",
	"near|*": "A tier hit does more than the peer's: it hashes the key twice, once to pick its shard " +
		"(`maphash.comparableHash`) and once in the shard's map (`aeshashbody`); takes the shard's lock; checks the " +
		"entry's deadline; moves the entry to the front of the shard's LRU list (`moveToFront`, 13–15% of the profile), " +
		"which writes two neighbouring entries, cache misses at 100k; and Cache.Get adds its own checks over the near " +
		"tier (compare the row of local.Cache alone).",
	"near|otter": "otter records a hit in a lossy striped buffer and never moves an entry on a read; tier moves the " +
		"entry to the front of its shard's LRU list under the shard's lock (`moveToFront`, 13% of the profile at 10k, 15% at " +
		"100k), which writes two neighbouring entries: at 100k entries those are cache misses, and with RunParallel the two " +
		"goroutines also meet on shard locks and on those cache lines.",
	"near-10k-mix|*":  mixReason,
	"near-100k-mix|*": mixReason,
	"far-hit|go-redis/cache": "Both are one GET. On top of it tier bounds the call with a deadline of its own " +
		"(for a context that cannot be cancelled, a timer shared by the operations of 1/64 of Options.FarTimeout), builds " +
		"the namespaced key, takes part in a flight (one lock of the cache's mutex before the read and one after), decodes " +
		"into a fresh value (a decoder compiled for the type) and fills the near tier (an entry): 10 allocations against " +
		"12. go-redis/cache, run without its local cache, sets no timeout and fills nothing. The gap is within this " +
		"machine's run-to-run spread (see min–max).",
	"hitratio|*": "tier's near tier is a plain LRU (its hit ratio equals golang-lru's) with no admission filter, so a key " +
		"requested once evicts a popular one. otter (W-TinyLFU), go-redis/cache's TinyLFU and ristretto keep a frequency " +
		"sketch and refuse newcomers rarer than the entry they would evict, which pays most on the flatter Zipf(1.01) and at " +
		"small capacities. This is the policy, not a cost a profile shows.",
	"memory|otter": "A tier entry is one allocation of 112 bytes (key, value, deadline, weight, two LRU links, an index in " +
		"the shard's deadline heap) plus its slot in the shard's map and in the deadline heap; otter keeps no list links " +
		"and no heap index. Within the target of 1.5× otter with a TTL.",
	"memory|otter, no TTL": "otter without a TTL keeps no deadline at all; tier always does (see the row with a TTL).",
	"memory|golang-lru": "golang-lru keeps no deadline and no heap index (tier's entry has both, 16 bytes, and a " +
		"slot in the deadline heap).",
}

const mixReason = "In the 90/10 mix a tier Set replaces the value in place under its shard's lock, moves the entry to " +
	"the front of the LRU list and re-sorts it in the shard's deadline heap, since its TTL starts again (`heapUp`, " +
	"`heapDown`, 7% of the profile); each hit moves its entry to the front under the lock too (`moveToFront`, 20%). " +
	"So hits and writes meet on the shard locks (`Mutex.Lock` and `Unlock`, 25%, and `procyield` spinning, 5%) and on " +
	"the LRU list's cache lines, where otter records reads in a lossy buffer and updates a value without moving it. A " +
	"near-only cache does not encode values (no NearMaxBytes)."

// lossReason returns the recorded reason for a loss of group id to peer.
func lossReason(id, peer string) string {
	best, bestLen := "", -1
	for k, v := range lossReasons {
		prefix, p, _ := strings.Cut(k, "|")
		if !strings.HasPrefix(id, prefix) || (p != peer && p != "*") {
			continue
		}
		n := 2 * len(prefix)
		if p == peer {
			n++
		}
		if n > bestLen {
			best, bestLen = v, n
		}
	}
	return best
}
