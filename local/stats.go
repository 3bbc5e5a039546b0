package local

import (
	"runtime"
	"sync/atomic"
	"unsafe"
)

// Stats counts what a cache has done since it was created.
type Stats struct {
	Hits        uint64 // Get found a live entry
	Misses      uint64 // Get found none, or an expired one
	Evictions   uint64 // entries removed to make room
	Expirations uint64 // entries removed because their deadline passed
}

// Stats returns the counters, summed over the shards.
func (c *Cache[K, V]) Stats() Stats {
	var st Stats
	for i := range c.counters {
		st.Hits += c.counters[i].hits.Load()
		st.Misses += c.counters[i].misses.Load()
	}
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		st.Evictions += s.evictions
		st.Expirations += s.expirations
		s.mu.Unlock()
	}
	return st
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
