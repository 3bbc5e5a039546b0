package local

// Admission (Options.Admission) is S3-FIFO, after Yang et al., "FIFO
// queues are all you need for cache eviction" (SOSP 2023), in each shard:
//
//   - A new key goes on probation, at the front of the small queue,
//     unless the ghost remembers it, in which case it goes straight to
//     the main queue.
//   - A hit adds one to its entry's count of hits, up to 3.
//   - To make room, the small queue gives up its oldest entry while it
//     holds more than a tenth of the shard's share of the capacity (or
//     the main queue is empty): to the front of the main queue, with its
//     count reset, if it was hit on probation; else out of the cache,
//     into the ghost. Otherwise the main queue gives up its oldest entry:
//     to its own front, with one hit taken off, if it has any; else out.
//
// A key read once is thus gone after a short probation instead of
// pushing a key that is read again and again out of the cache, and a key
// that comes back soon after its probation ended gets a longer stay.

// maxHits is the most hits an entry counts with Admission; without it,
// one hit is all a second chance needs.
const maxHits = 3

// ghost remembers keys recently evicted from probation, by hash, in a
// fixed table of 32-bit fingerprints with no other memory: a key evicted
// later takes the slot of an older one, which is how the ghost forgets. A
// fingerprint shared by two keys can only let the wrong key skip
// probation.
type ghost struct {
	slots []uint32
}

func newGhost(n int) ghost { return ghost{slots: make([]uint32, max(n, 1))} }

// The slot comes from the low half of the hash, the fingerprint from the
// high half; 0 marks an empty slot.
func (g *ghost) slot(h uint64) *uint32 {
	return &g.slots[uint64(uint32(h))*uint64(len(g.slots))>>32]
}

func fingerprint(h uint64) uint32 { return uint32(h>>32) | 1 }

func (g *ghost) add(h uint64) { *g.slot(h) = fingerprint(h) }

// take reports whether the ghost remembers the key of hash h, and
// forgets it.
func (g *ghost) take(h uint64) bool {
	p := g.slot(h)
	if *p != fingerprint(h) {
		return false
	}
	*p = 0
	return true
}

func (g *ghost) clear() { clear(g.slots) }
