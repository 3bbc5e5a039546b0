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
	"near-100k|*": "At 100k entries every hit misses the CPU's caches, and tier's entries are bigger: the near tier holds a " +
		"nearEntry (the value and three fields, 72 bytes against 48), copied out on each hit. Measured apart, local.Cache alone " +
		"holding a 72-byte value costs about 120 ns a hit in this row's key order against 74 ns with the 48-byte User; the rest of " +
		"the gap to local.Cache alone (and to golang-lru, which keeps no deadline) is not explained yet.",
	"memory|*": "tier's row is 33 bytes an entry above local.Cache alone: its nearEntry adds 24 bytes to the value (absent, " +
		"staleAt, refreshAt), rounded up to the allocator's size class. local.Cache against the peers is not explained yet.",
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
