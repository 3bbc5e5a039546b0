package suite

import "strings"

// lossReasons explain why tier loses where it does, as found by
// profiling, keyed by "<group ID prefix>|<peer>" ("*" for any peer); the
// longest matching prefix wins, an exact peer over "*". Rows not covered
// say that no reason was recorded, so that a new loss is not explained by
// an old reason.
var lossReasons = map[string]string{
	"far-hit|go-redis/cache": "Both are one GET on the caller's goroutine. A tier far hit also joins the key's flight (its " +
		"struct, channel and sync.Map entry, so that concurrent misses share one read), bounds the read by FarTimeout " +
		"(context.WithTimeout: a context and a timer), decodes into a fresh value through the versioned header and fills the " +
		"near tier; go-redis/cache, run without its local cache, sets no timeout and fills nothing.",
	"near-100k|*": "At 100k entries a hit waits on memory: the table's bucket and the entry, as local.Cache alone shows. tier's " +
		"Cache.Get adds its own call around local's (the entry's meta and Close checked, the value copied out once more), " +
		"10 to 15 ns, as in the 10k rows. Beyond that, this row moves from run to run with where the heap puts the entries: " +
		"tier alone, `go test -run x -bench 'Report/near-100k-par$/tier' -count 5` in bench/, took 67 to 96 ns a hit, " +
		"local.Cache alone 53 to 77. golang-lru keeps no deadline, so its hit reads no clock.",
	"memory|*": "tier's row is local.Cache alone: a plain entry of tier's is the value and one pointer, which fit the same " +
		"size class. local.Cache's 178 bytes an entry are the entry, 144 (key 16, value 48, hash, hit count, deadline, chain " +
		"link, two queue links, weight for MaxWeight, index in the deadline heap), the table's bucket and the deadline " +
		"heap's slot, with the slack of their growth. What otter keeps an entry is not measured apart here.",
	"hitratio|*": "tier's default near tier evicts by recency alone (an approximate LRU, as golang-lru's), so a key requested once " +
		"pushes out a popular one; otter (W-TinyLFU) and ristretto (TinyLFU) keep a frequency sketch and refuse newcomers rarer " +
		"than the entry they would evict. Near.Admission (see its row) is tier's answer. This is the policy, not a cost a profile shows.",
}

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
