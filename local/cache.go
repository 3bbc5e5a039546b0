package local

import (
	"hash/maphash"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"
)

// Cache is a bounded LRU cache with per-entry expiry, safe for concurrent
// use. Create one with [New]; the zero value is not usable.
type Cache[K comparable, V any] struct {
	shards    []shard[K, V]
	shift     uint // a hash's top bits pick the shard: h >> shift
	stampMask uint64
	seed      maphash.Seed
	ttl       time.Duration
	onEvict   func(K, V, Cause)

	clock  Clock
	coarse *coarseClock // the default clock; nil when Options.Clock is set
	slack  int64        // deadlines are judged this early (see coarseClock)

	capacity  int64
	maxWeight int64         // 0: unbounded
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
	n := opts.shardCount()
	c := &Cache[K, V]{
		shards:  make([]shard[K, V], n),
		shift:   uint(64 - bits.TrailingZeros(uint(n))),
		seed:    maphash.MakeSeed(),
		ttl:     opts.TTL,
		onEvict: opts.OnEvict,
		clock:   opts.Clock,
	}
	c.capacity = int64(opts.Capacity)
	c.maxWeight = opts.MaxWeight
	stamps := 64
	for stamps < opts.Capacity/n && stamps < 4096 {
		stamps *= 2
	}
	c.stampMask = uint64(stamps - 1)
	for i := range c.shards {
		c.shards[i].init(stamps)
	}
	if c.clock == nil {
		c.coarse = newCoarseClock()
		c.slack = int64(coarseResolution)
	}
	return c, nil
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

// Get returns the value stored under key and marks it most recently used.
// An expired entry is removed and reported as absent.
func (c *Cache[K, V]) Get(key K) (v V, ok bool) {
	ok = c.GetInto(key, &v)
	return v, ok
}

// GetInto is [Cache.Get] that copies the value into *dst, which it leaves
// alone on a miss. For a value of more than a few words it is the faster
// of the two: the Go compiler moves a large result through the stack in a
// way that stalls the processor, and a copy into *dst avoids that.
func (c *Cache[K, V]) GetInto(key K, dst *V) bool {
	s, _ := c.locate(key)
	s.mu.Lock()
	e := s.m[key]
	if e == nil {
		s.misses++
		s.mu.Unlock()
		return false
	}
	if e.expires != 0 && e.expires <= c.now()+c.slack {
		s.misses++
		s.expirations++
		c.remove(s, e)
		s.mu.Unlock()
		c.notify1(e, CauseExpired)
		return false
	}
	s.hits++
	s.moveToFront(e)
	*dst = e.value
	s.mu.Unlock()
	return true
}

// Contains reports whether key is present and unexpired, without marking
// it used and without counting a hit or a miss.
func (c *Cache[K, V]) Contains(key K) bool {
	s, _ := c.locate(key)
	s.mu.Lock()
	e := s.m[key]
	ok := e != nil && (e.expires == 0 || e.expires > c.now()+c.slack)
	s.mu.Unlock()
	return ok
}

// GetIntoLeft is [Cache.GetInto] that also returns how long the entry has
// left to live (0 for an entry without a deadline), for callers that
// refresh entries before they expire.
func (c *Cache[K, V]) GetIntoLeft(key K, dst *V) (time.Duration, bool) {
	s, _ := c.locate(key)
	s.mu.Lock()
	e := s.m[key]
	if e == nil {
		s.misses++
		s.mu.Unlock()
		return 0, false
	}
	var left time.Duration
	if e.expires != 0 {
		now := c.now() + c.slack
		if e.expires <= now {
			s.misses++
			s.expirations++
			c.remove(s, e)
			s.mu.Unlock()
			c.notify1(e, CauseExpired)
			return 0, false
		}
		left = time.Duration(e.expires - now)
	}
	s.hits++
	s.moveToFront(e)
	*dst = e.value
	s.mu.Unlock()
	return left, true
}

// Peek returns the value stored under key without marking it used and
// without counting a hit or a miss.
func (c *Cache[K, V]) Peek(key K) (V, bool) {
	s, _ := c.locate(key)
	s.mu.Lock()
	e := s.m[key]
	if e == nil || (e.expires != 0 && e.expires <= c.now()+c.slack) {
		s.mu.Unlock()
		var zero V
		return zero, false
	}
	v := e.value
	s.mu.Unlock()
	return v, true
}

// TTL returns how long the entry under key has left to live, and whether
// the key is present. A present entry without a deadline reports 0.
func (c *Cache[K, V]) TTL(key K) (time.Duration, bool) {
	s, _ := c.locate(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.m[key]
	if e == nil {
		return 0, false
	}
	if e.expires == 0 {
		return 0, true
	}
	left := e.expires - c.now() - c.slack
	if left <= 0 {
		return 0, false
	}
	return time.Duration(left), true
}

// Set stores value under key with the default TTL and a weight of 1.
func (c *Cache[K, V]) Set(key K, value V) {
	c.store(key, value, 0, 1, modeSet, FillGuard{})
}

// SetWith stores value under key. A ttl of 0 means the default TTL
// (Options.TTL); weight counts against Options.MaxWeight and must be >= 0.
// It reports false, and drops any older value of key, when the entry is
// heavier than one shard may hold, or when ttl is negative.
func (c *Cache[K, V]) SetWith(key K, value V, ttl time.Duration, weight int64) bool {
	return c.store(key, value, ttl, weight, modeSet, FillGuard{})
}

// FillGuard marks the moment a load began. See [Cache.StartFill].
type FillGuard struct {
	seq uint64
}

// StartFill returns a guard to pass to [Cache.Fill] once a load that starts
// now has finished.
func (c *Cache[K, V]) StartFill() FillGuard {
	return FillGuard{seq: c.seq.Load()}
}

// Fill stores value under key as [Cache.SetWith] does, but only if no Set,
// SetWith or Delete of key, and no Purge, happened after g was taken. It
// reports whether the value was stored. A refused fill leaves the cache as
// it was; the caller may still use the value it loaded.
func (c *Cache[K, V]) Fill(g FillGuard, key K, value V, ttl time.Duration, weight int64) bool {
	return c.store(key, value, ttl, weight, modeFill, g)
}

// SetIfUnchanged stores value under key, as [Cache.SetWith] does, only if
// no Set, SetWith, SetIfUnchanged, Replace or Delete of key, and no Purge,
// happened after g was taken; it reports whether it stored the value.
// Unlike a Fill, a SetIfUnchanged that stores counts as a Set: fills
// guarded before it will not store key. It is how a writer puts its own
// write in the cache without undoing a newer change that reached the cache
// while it wrote, nor being undone by a fill of an older value.
func (c *Cache[K, V]) SetIfUnchanged(g FillGuard, key K, value V, ttl time.Duration, weight int64) bool {
	return c.store(key, value, ttl, weight, modeSetIfUnchanged, g)
}

// Replace stores value under key, as [Cache.SetWith] does, only if key is
// present; it reports whether it stored the value. Present or not, Replace
// counts as a Set of key: fills guarded before it will not store key. It
// is how news of a change is applied: keys the cache holds take the new
// value, and loads of the key under way do not store an older one.
func (c *Cache[K, V]) Replace(key K, value V, ttl time.Duration, weight int64) bool {
	return c.store(key, value, ttl, weight, modeReplace, FillGuard{})
}

// storeMode says when store stores and whether it stamps the key.
type storeMode uint8

const (
	modeSet            storeMode = iota // always; stamps
	modeFill                            // if the guard holds; does not stamp
	modeSetIfUnchanged                  // if the guard holds; stamps when it stores
	modeReplace                         // if the key is present; always stamps
)

func (c *Cache[K, V]) store(key K, value V, ttl time.Duration, weight int64, mode storeMode, g FillGuard) bool {
	if ttl == 0 {
		ttl = c.ttl
	}
	var expires int64
	now := c.now()
	if ttl > 0 {
		expires = now + int64(ttl)
		if expires == 0 {
			expires = 1
		}
	}
	s, h := c.locate(key)
	stamp := &s.stamps[h&c.stampMask]
	gone := c.evictions()

	s.mu.Lock()
	old := s.m[key]
	switch mode {
	case modeFill, modeSetIfUnchanged:
		if *stamp > g.seq || s.purged > g.seq {
			s.mu.Unlock()
			return false
		}
		if mode == modeSetIfUnchanged {
			*stamp = c.seq.Add(1)
		}
	case modeReplace:
		*stamp = c.seq.Add(1)
		if old == nil || (old.expires != 0 && old.expires <= now+c.slack) {
			s.mu.Unlock()
			return false
		}
	default:
		*stamp = c.seq.Add(1)
	}
	if ttl < 0 || weight < 0 || (c.maxWeight > 0 && weight > c.maxWeight) {
		if old != nil {
			c.remove(s, old)
			gone.add(old, CauseReplaced)
		}
		s.mu.Unlock()
		c.notify(&gone)
		return false
	}
	e := old
	if old != nil {
		gone.addValue(key, old.value, CauseReplaced)
		old.value = value
		s.weight += weight - old.weight
		c.weight.Add(weight - old.weight)
		old.weight = weight
		switch {
		case old.heapIndex >= 0 && expires != 0:
			old.expires = expires
			s.heapFix(old.heapIndex)
		case old.heapIndex >= 0:
			s.heapRemove(old.heapIndex)
			old.expires = 0
		case expires != 0:
			old.expires = expires
			s.heapPush(old)
		}
		s.moveToFront(old)
	} else {
		e = &entry[K, V]{key: key, value: value, expires: expires, weight: weight, heapIndex: -1}
		s.m[key] = e
		s.pushFront(e)
		s.weight += weight
		c.size.Add(1)
		c.weight.Add(weight)
		if expires != 0 {
			s.heapPush(e)
		}
	}
	c.reclaim(s, now+c.slack, &gone)
	// Make room from this shard's least recently used end, never evicting
	// the entry just stored (nor anything, if reclaim already removed it
	// because its TTL was within the clock's slack); if this shard has
	// nothing else, evictOther takes the room from the other shards.
	for c.over() && e.prev != nil && s.ring.prev != e {
		victim := s.ring.prev
		c.remove(s, victim)
		s.evictions++
		gone.add(victim, CauseCapacity)
	}
	s.mu.Unlock()
	c.notify(&gone)
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
		gone := c.evictions()
		s.mu.Lock()
		for c.over() && s.ring.prev != &s.ring {
			victim := s.ring.prev
			c.remove(s, victim)
			s.evictions++
			gone.add(victim, CauseCapacity)
		}
		s.mu.Unlock()
		c.notify(&gone)
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
func (c *Cache[K, V]) reclaim(s *shard[K, V], now int64, gone *evictions[K, V]) {
	for len(s.deadlines) > 0 && s.deadlines[0].expires <= now {
		e := s.deadlines[0]
		c.remove(s, e)
		s.expirations++
		gone.add(e, CauseExpired)
	}
}

// Delete removes key and reports whether it was present. Fills guarded by
// a FillGuard taken before Delete will not store key.
func (c *Cache[K, V]) Delete(key K) bool {
	s, h := c.locate(key)
	s.mu.Lock()
	s.stamps[h&c.stampMask] = c.seq.Add(1)
	e := s.m[key]
	if e != nil {
		c.remove(s, e)
	}
	s.mu.Unlock()
	if e != nil {
		c.notify1(e, CauseDeleted)
	}
	return e != nil
}

// Purge removes every entry. Fills guarded by a FillGuard taken before
// Purge will not store anything.
func (c *Cache[K, V]) Purge() {
	seq := c.seq.Add(1)
	for i := range c.shards {
		s := &c.shards[i]
		gone := c.evictions()
		s.mu.Lock()
		s.purged = seq
		if c.onEvict != nil {
			for e := s.ring.next; e != &s.ring; e = e.next {
				gone.add(e, CauseDeleted)
			}
		}
		c.size.Add(-int64(len(s.m)))
		c.weight.Add(-s.weight)
		clear(s.m)
		s.ring.next, s.ring.prev = &s.ring, &s.ring
		clear(s.deadlines)
		s.deadlines = s.deadlines[:0]
		s.weight = 0
		s.mu.Unlock()
		c.notify(&gone)
	}
}

// DeleteExpired removes every expired entry now and returns how many it
// removed. Expired entries are also removed by the writes to their shard
// and by reads of them, so calling it is needed only to free their memory
// sooner.
func (c *Cache[K, V]) DeleteExpired() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		gone := c.evictions()
		s.mu.Lock()
		c.reclaim(s, c.now()+c.slack, &gone)
		s.mu.Unlock()
		n += gone.n
		c.notify(&gone)
	}
	return n
}

// Len returns the number of entries, counting expired ones not yet removed.
func (c *Cache[K, V]) Len() int {
	return int(c.size.Load())
}

// Weight returns the total weight of the entries.
func (c *Cache[K, V]) Weight() int64 {
	return c.weight.Load()
}

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
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		st.Hits += s.hits
		st.Misses += s.misses
		st.Evictions += s.evictions
		st.Expirations += s.expirations
		s.mu.Unlock()
	}
	return st
}

// evictions collects the entries an operation removed, to report them to
// OnEvict once the shard's lock is released.
type evictions[K comparable, V any] struct {
	n    int
	keep bool // collect the entries for OnEvict, not only count them
	list []evicted[K, V]
}

type evicted[K comparable, V any] struct {
	key   K
	value V
	cause Cause
}

func (g *evictions[K, V]) add(e *entry[K, V], cause Cause) {
	g.addValue(e.key, e.value, cause)
}

func (g *evictions[K, V]) addValue(key K, value V, cause Cause) {
	g.n++
	if g.keep {
		g.list = append(g.list, evicted[K, V]{key, value, cause})
	}
}

func (c *Cache[K, V]) evictions() evictions[K, V] {
	return evictions[K, V]{keep: c.onEvict != nil}
}

func (c *Cache[K, V]) notify(g *evictions[K, V]) {
	if c.onEvict == nil {
		return
	}
	for _, e := range g.list {
		c.onEvict(e.key, e.value, e.cause)
	}
}

func (c *Cache[K, V]) notify1(e *entry[K, V], cause Cause) {
	if c.onEvict != nil {
		c.onEvict(e.key, e.value, cause)
	}
}
