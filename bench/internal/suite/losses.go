package suite

import "strings"

// lossReasons explain, per group ID prefix and peer, why tier loses where
// it does, as found by profiling. Rows not listed here say that no reason
// was recorded, so that a new loss is not explained by an old reason.
var lossReasons = map[string]string{}

// lossReason returns the recorded reason for a loss of group id to peer.
func lossReason(id, peer string) string {
	best := ""
	for k := range lossReasons {
		prefix, p, _ := strings.Cut(k, "|")
		if p == peer && strings.HasPrefix(id, prefix) && len(k) > len(best) {
			best = k
		}
	}
	return lossReasons[best]
}
