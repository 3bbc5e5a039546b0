package local

import (
	"hash/maphash"
	"math"
	"math/bits"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Cache is a bounded cache with per-entry expiry that evicts the least
// recently used entries first (exactly or approximately, see the package
// documentation), safe for concurrent use. Create one with [New]; the zero
// value is not usable.
type Cache[K comparable, V any] struct {
	_ [64]byte // the fields that every Get reads, on lines no write touches

	shards   []shard[K, V]
	shift    uint // a hash's top bits pick the shard: h >> shift
	seed     maphash.Seed
	counters []counters // hits and misses, one stripe of goroutines each
	salt     uint64     // and ctrShift: see counter
	ctrShift uint
	clock    Clock
	coarse   *coarseClock // the default clock; nil when Options.Clock is set
	slack    int64        // deadlines are judged this early (see coarseClock)

	ttl       time.Duration
	stampMask uint64
	capacity  int64
	maxWeight int64 // 0: unbounded

	_ [64]byte // keep the fields that writes change off the lines above

	size      atomic.Int64  // entries in all shards
	weight    atomic.Int64  // their total weight
	cursor    atomic.Uint32 // where evictOther starts looking
	seq       atomic.Uint64 // numbers Set, Delete and Purge for the fill guard
	closeOnce sync.Once
}

// New returns a cache configured by opts, or an error matching
// [ErrInvalidOptions] that names the offending field.
func New[K comparable, V any](opts Options[K, V]) (*Cache[K, V], error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	return newCache(opts, shardCount(opts.Capacity)), nil
}

// newCache returns a cache of n shards, a power of two, for valid opts.
func newCache[K comparable, V any](opts Options[K, V], n int) *Cache[K, V] {
	stripes := stripeCount()
	c := &Cache[K, V]{
		shards:   make([]shard[K, V], n),
		shift:    uint(64 - bits.TrailingZeros(uint(n))),
		seed:     maphash.MakeSeed(),
		ttl:      opts.TTL,
		clock:    opts.Clock,
		counters: make([]counters, stripes),
		salt:     rand.Uint64(),
		ctrShift: uint(64 - bits.TrailingZeros(uint(stripes))),
	}
	c.capacity = int64(opts.Capacity)
	c.maxWeight = opts.MaxWeight
	stamps := 64
	for stamps < opts.Capacity/n && stamps < 4096 {
		stamps *= 2
	}
	c.stampMask = uint64(stamps - 1)
	for i := range c.shards {
		c.shards[i].init(stamps, opts.Capacity/n, n == 1, opts.Admission)
	}
	if c.clock == nil {
		c.coarse = newCoarseClock()
		c.slack = int64(coarseResolution)
	}
	return c
}

// Close stops the goroutine of the default clock. The cache stays usable
// and reads the system clock exactly from then on. Close is idempotent.
func (c *Cache[K, V]) Close() {
	c.closeOnce.Do(func() {
		if c.coarse != nil {
			c.coarse.close()
		}
	})
}

func (c *Cache[K, V]) now() int64 {
	if c.coarse != nil {
		return c.coarse.read()
	}
	return c.clock.Now().UnixNano()
}

func (c *Cache[K, V]) locate(key K) (*shard[K, V], uint64) {
	h := maphash.Comparable(c.seed, key)
	return &c.shards[h>>c.shift], h
}

// Get returns the value stored under key and records the hit for the
// order of eviction. An expired entry is reported as absent. A hit
// allocates nothing and never waits for a lock shared by the whole cache.
func (c *Cache[K, V]) Get(key K) (v V, ok bool) {
	// Small enough to be inlined, so that the value is copied straight
	// from the entry to the caller's variable: returned from a call, a
	// struct value goes through registers that the caller stores and
	// reloads in a way that stalls the processor for longer than the rest
	// of the hit takes.
	if e := c.hit(key); e != nil {
		return e.value, true
	}
	return
}

// hit returns the live entry of key, recording the hit, or nil, counting
// the miss.
func (c *Cache[K, V]) hit(key K) *entry[K, V] {
	s, h := c.locate(key)
	e := s.find(h, key)
	if e == nil || c.expired(e) {
		c.counter().misses.Add(1)
		return nil
	}
	if !s.recordRead(e) {
		c.counter().hits.Add(1)
	}
	return e
}

// Peek returns the value stored under key, as Get does, but without
// recording anything.
func (c *Cache[K, V]) Peek(key K) (v V, ok bool) {
	if e := c.peek(key); e != nil {
		v, ok = e.value, true
	}
	return v, ok
}

func (c *Cache[K, V]) peek(key K) *entry[K, V] {
	s, h := c.locate(key)
	if e := s.find(h, key); e != nil && !c.expired(e) {
		return e
	}
	return nil
}

// expired reports whether e's deadline has passed.
func (c *Cache[K, V]) expired(e *entry[K, V]) bool {
	return e.expires != 0 && e.expires <= c.now()+c.slack
}

// Set stores value under key as its most recently used entry (with
// [Options.Admission], a new key goes on probation); fills guarded before
// it will not store key (see [FillGuard]). A ttl of 0
// means [Options.TTL]; weight counts against [Options.MaxWeight]. When
// ttl is negative, weight is negative, or weight is above a MaxWeight
// that is set, Set stores nothing and drops any value key had.
func (c *Cache[K, V]) Set(key K, value V, ttl time.Duration, weight int64) {
	c.store(key, value, ttl, weight, modeSet, FillGuard{})
}

// storeMode says when store stores and whether it stamps the key.
type storeMode uint8

const (
	modeSet            storeMode = iota // always; stamps
	modeFill                            // if the guard holds; does not stamp
	modeSetIfUnchanged                  // if the guard holds; stamps when it stores
)

func (c *Cache[K, V]) store(key K, value V, ttl time.Duration, weight int64, mode storeMode, g FillGuard) bool {
	if ttl == 0 {
		ttl = c.ttl
	}
	var expires int64
	now := c.now()
	if ttl > 0 {
		// Saturate: a TTL of centuries from a calendar clock's reading
		// means "practically never", not a deadline long past.
		expires = now + min(int64(ttl), math.MaxInt64-now)
		if expires == 0 {
			expires = 1
		}
	}
	s, h := c.locate(key)
	stamp := &s.stamps[h&c.stampMask]

	s.mu.Lock()
	if mode != modeSet && (*stamp > g.seq || s.purged > g.seq) {
		s.mu.Unlock()
		return false
	}
	if mode != modeFill {
		*stamp = c.seq.Add(1)
	}
	old := s.table.Load().find(h, key)
	if ttl < 0 || weight < 0 || (c.maxWeight > 0 && weight > c.maxWeight) {
		if old != nil {
			c.remove(s, old)
		}
		s.mu.Unlock()
		return false
	}
	e := &entry[K, V]{hash: h, key: key, value: value, expires: expires, weight: weight, heapIndex: -1}
	if old != nil {
		s.replace(old, e)
		c.weight.Add(weight - old.weight)
	} else {
		s.insert(e)
		c.size.Add(1)
		c.weight.Add(weight)
	}
	c.reclaim(s, now+c.slack)
	// Make room from this shard's least recently used end, never evicting
	// the entry just stored (nor anything, if reclaim already removed it
	// because its TTL was within the clock's slack); if this shard has
	// nothing else, evictOther takes the room from the other shards.
	for c.over() && e.prev != nil {
		v := s.victim(e)
		if v == nil {
			break
		}
		c.remove(s, v)
		s.evictions++
	}
	s.mu.Unlock()
	if c.over() {
		c.evictOther(s)
	}
	return true
}

// over reports whether the cache holds more than its bounds allow.
func (c *Cache[K, V]) over() bool {
	return c.size.Load() > c.capacity || (c.maxWeight > 0 && c.weight.Load() > c.maxWeight)
}

// evictOther evicts least recently used entries of shards other than
// from, one shard after another, until the cache is within its bounds.
// It is called without any lock held. While it runs, the cache can hold
// more than its bounds by at most one entry per concurrent writer.
func (c *Cache[K, V]) evictOther(from *shard[K, V]) {
	n := uint32(len(c.shards))
	start := c.cursor.Add(1)
	for i := range n {
		s := &c.shards[(start+i)%n]
		if s == from {
			continue
		}
		s.mu.Lock()
		for c.over() {
			v := s.victim(nil)
			if v == nil {
				break
			}
			c.remove(s, v)
			s.evictions++
		}
		s.mu.Unlock()
		if !c.over() {
			return
		}
	}
}

// remove takes e out of shard s, whose lock the caller holds.
func (c *Cache[K, V]) remove(s *shard[K, V], e *entry[K, V]) {
	s.remove(e)
	c.size.Add(-1)
	c.weight.Add(-e.weight)
}

// reclaim removes the entries of s whose deadline is at or before now.
func (c *Cache[K, V]) reclaim(s *shard[K, V], now int64) {
	for len(s.deadlines) > 0 && s.deadlines[0].expires <= now {
		c.remove(s, s.deadlines[0])
		s.expirations++
	}
}

// Delete removes key and reports whether it was present. Fills guarded
// before it will not store key (see [FillGuard]).
func (c *Cache[K, V]) Delete(key K) bool {
	s, h := c.locate(key)
	s.mu.Lock()
	s.stamps[h&c.stampMask] = c.seq.Add(1)
	e := s.table.Load().find(h, key)
	if e != nil {
		c.remove(s, e)
	}
	s.mu.Unlock()
	return e != nil
}

// Purge removes every entry. Fills guarded before it will not store
// anything (see [FillGuard]).
func (c *Cache[K, V]) Purge() {
	seq := c.seq.Add(1)
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		s.purged = seq
		c.size.Add(-int64(s.count))
		c.weight.Add(-s.weight)
		s.clear()
		s.mu.Unlock()
	}
}

// Len returns the number of entries, counting expired ones that no write
// has removed yet.
func (c *Cache[K, V]) Len() int {
	return int(c.size.Load())
}
