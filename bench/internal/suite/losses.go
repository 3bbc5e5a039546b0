package suite

import "strings"

// lossReasons explain why tier loses where it does, as found by
// profiling, keyed by "<group ID prefix>|<peer>" ("*" for any peer); the
// longest matching prefix wins, an exact peer over "*". Rows not covered
// say that no reason was recorded, so that a new loss is not explained by
// an old reason.
var lossReasons = map[string]string{
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
