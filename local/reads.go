package local

import (
	"runtime"
	"sync/atomic"
	"unsafe"
)

// How hits reach the LRU ring without a lock. In a cache of one shard a
// hit appends its entry to the shard's read buffer, and the next write
// (or the hit that fills the buffer, if the lock is free) moves the
// buffered entries to the front in the order they were read, so the order
// is exact. In a cache of more shards a hit only sets the entry's
// referenced mark, if it is not set already, and eviction gives marked
// entries a second chance (see shard.victim): a hit then writes nothing
// that another core reads, and a hot key is read-only.

// readBufferSize is how many reads a buffer holds before it is drained.
const readBufferSize = 16

// readBuffer is a ring of recently read entries: any goroutine adds (it
// claims a slot by moving tail on, then fills it), and the holder of the
// shard's lock drains. An add that finds the ring full because the lock
// was busy, or loses the race for a slot to another goroutine, is dropped:
// recency is then approximate, never wrong. A goroutine alone is never
// dropped, so its reads are applied exactly.
type readBuffer[K comparable, V any] struct {
	tail  atomic.Uint64 // slots claimed so far
	head  atomic.Uint64 // slots drained so far
	slots [readBufferSize]atomic.Pointer[entry[K, V]]
}

// add records e, unless it is already the last read recorded (a repeat
// would not change the order). It reports whether the buffer is full and
// should be drained.
func (b *readBuffer[K, V]) add(e *entry[K, V]) (full bool) {
	t := b.tail.Load()
	if b.slots[(t-1)%readBufferSize].Load() == e {
		return false
	}
	n := t - b.head.Load()
	if n >= readBufferSize {
		return true
	}
	if !b.tail.CompareAndSwap(t, t+1) {
		return false
	}
	b.slots[t%readBufferSize].Store(e)
	return n+1 == readBufferSize
}

// drain calls apply for each recorded entry in the order they were added,
// up to the first slot claimed but not yet filled, and empties the slots.
// The caller holds the shard's lock.
func (b *readBuffer[K, V]) drain(apply func(*entry[K, V])) {
	h, t := b.head.Load(), b.tail.Load()
	for ; h != t; h++ {
		slot := &b.slots[h%readBufferSize]
		e := slot.Load()
		if e == nil {
			break
		}
		slot.Store(nil)
		apply(e)
	}
	b.head.Store(h)
}

// counters are the hits and misses counted by one stripe of goroutines,
// on a cache line of their own, so that cores do not count on one line.
type counters struct {
	hits, misses atomic.Uint64
	_            [48]byte
}

// stripeCount returns how many stripes of counters a cache has: a few per
// processor, so that goroutines running at the same time seldom share one.
func stripeCount() int {
	n := 1
	for n < 4*runtime.GOMAXPROCS(0) && n < 64 {
		n *= 2
	}
	return n
}

// goroutineHash returns a number that stays the same for the calling
// goroutine from call to call and mostly differs between goroutines: a
// mix of its stack's address. Bits below 2 KiB, the smallest stack, are
// dropped so that calls from different depths mostly agree. A goroutine
// whose stack grows is moved elsewhere and gets a new number; that only
// changes which stripe it counts on.
func goroutineHash() uint64 {
	var x byte
	return uint64(uintptr(unsafe.Pointer(&x))>>11) * 0x9e3779b97f4a7c15
}
