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
		st.Hits += s.hits
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

// stripeCount returns how many stripes of counters a cache has: many per
// processor, so that goroutines running at the same time seldom share
// one; a stripe is one cache line.
func stripeCount() int {
	n := 1
	for n < 16*runtime.GOMAXPROCS(0) && n < 256 {
		n *= 2
	}
	return n
}

// stackBlock returns a number that stays the same for the calling
// goroutine from call to call and differs between goroutines that run at
// the same time: the 2 KiB block (the smallest stack) of its stack that
// holds this call's frame. A goroutine whose stack grows is moved and gets
// a new number; that only changes the stripe it counts on.
func stackBlock() uint64 {
	var x byte
	return uint64(uintptr(unsafe.Pointer(&x)) >> 11)
}

// counter returns the counters of the calling goroutine's stripe. The
// cache's random salt makes which goroutines share a stripe differ from
// cache to cache, rather than follow from where the runtime put their
// stacks, which is the same in every run of a program.
func (c *Cache[K, V]) counter() *counters {
	return &c.counters[((stackBlock()^c.salt)*0x9e3779b97f4a7c15)>>c.ctrShift]
}
