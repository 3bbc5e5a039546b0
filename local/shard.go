package local

import (
	"sync"
	"sync/atomic"
)

// entry is one cached value. Get reads its first fields without a lock,
// so they never change once the entry is in its shard's table; the rest
// belong to the shard's lock.
type entry[K comparable, V any] struct {
	hash uint64
	// hits counts the hits since the entry last left the oldest end of
	// its queue, up to the shard's maxHits (see recordRead).
	hits    atomic.Uint32
	key     K
	value   V
	expires int64                       // clock reading at which it expires; 0: never
	link    atomic.Pointer[entry[K, V]] // next in the table's chain

	prev, next *entry[K, V] // on its queue; nil once removed
	small      bool         // on probation, in the small queue (see admission.go)
	weight     int64
	heapIndex  int // position in the shard's deadline heap; -1 when not in it
}

// shard is a table of entries, a queue of them in order of use (two with
// Admission) and a deadline heap. Get reads the table and records its hit
// without waiting for the lock (see recordRead); everything else happens
// under it. The bounds on count and weight are the cache's, across
// shards.
type shard[K comparable, V any] struct {
	_ [64]byte // the fields that every Get reads, on lines no write touches

	table   atomic.Pointer[table[K, V]]
	resizes atomic.Uint64 // odd while a resize relinks the table's entries
	marking atomic.Bool   // hits count on their entry rather than move it (see recordRead)
	maxHits uint32        // 1, or maxHits with Admission

	_ [64]byte

	mu        sync.Mutex
	count     int         // entries in table
	main      queue[K, V] // every entry, most recently used first; with Admission, those off probation
	small     queue[K, V] // with Admission, entries on probation
	smallMax  int         // with Admission, how many entries probation holds before it gives some up
	ghost     ghost       // with Admission, keys recently evicted from probation
	admission bool
	deadlines []*entry[K, V]
	weight    int64

	// stamps[i] is the sequence number of the last Set or Delete of a key
	// whose hash selects i; purged is that of the last Purge. See FillGuard.
	stamps []uint64
	purged uint64

	hits                   uint64 // those counted under the lock (see recordRead)
	evictions, expirations uint64

	_ [64]byte
}

// minBuckets is the size of a shard's table when it is created or purged.
const minBuckets = 8

// init prepares a shard that holds about share entries. A lone shard
// without admission keeps exact LRU order (see recordRead).
func (s *shard[K, V]) init(stamps, share int, lone, admission bool) {
	s.table.Store(newTable[K, V](minBuckets))
	s.marking.Store(!lone || admission)
	s.maxHits = 1
	s.main.init()
	s.small.init()
	if admission {
		s.admission = true
		s.maxHits = maxHits
		s.smallMax = max(share/10, 1)
		s.ghost = newGhost(share - s.smallMax)
	}
	s.stamps = make([]uint64, stamps)
}

// find returns the entry of key, whose hash is h, or nil. It takes no
// lock unless a resize ran while it looked and it found nothing: entries
// may have been moved out of its way, so it looks again under the lock.
func (s *shard[K, V]) find(h uint64, key K) *entry[K, V] {
	resizes := s.resizes.Load()
	e := s.table.Load().find(h, key)
	if e != nil || (resizes%2 == 0 && s.resizes.Load() == resizes) {
		return e
	}
	s.mu.Lock()
	e = s.table.Load().find(h, key)
	s.mu.Unlock()
	return e
}

// recordRead notes that e was read, without waiting for the lock.
//
// Moving e to the front of its queue would write the queue's head and
// the entries next to e, which other cores read, under a lock they all
// take. So a hit only adds one to e's count of hits, if it is below the
// shard's maxHits, and eviction gives counted entries another pass (see
// victim): without Admission, where maxHits is 1, that is CLOCK's second
// chance. A hit then writes nothing another core reads, and a hot key is
// read-only.
//
// The cache's only shard moves e to the front instead, for exact LRU
// order, if its lock is free, and counts the hit while it holds the lock;
// recordRead reports whether it did. The first time the lock is taken,
// by another goroutine, the shard switches to counts for good: its hits
// come from goroutines running at the same time, whose order is
// approximate anyway, and would contend on the lock.
func (s *shard[K, V]) recordRead(e *entry[K, V]) (counted bool) {
	if !s.marking.Load() {
		if s.mu.TryLock() {
			s.hits++
			s.touch(e)
			s.mu.Unlock()
			return true
		}
		s.marking.Store(true)
	}
	if n := e.hits.Load(); n < s.maxHits {
		e.hits.Store(n + 1)
	}
	return false
}

// touch moves e to the front of the main queue, if it is still on it (a
// hit may find an entry that a write removes before the hit is applied).
// Only a shard without Admission touches entries.
func (s *shard[K, V]) touch(e *entry[K, V]) {
	if e.prev != nil {
		s.main.toFront(e)
	}
}

// victim returns the entry to evict, or nil if there is none other than
// keep. The oldest entry of the main queue goes, once those with hits have
// been moved to its front, with one hit fewer; with Admission the small
// queue gives up its oldest instead while it holds more than smallMax
// entries (see admission.go).
func (s *shard[K, V]) victim(keep *entry[K, V]) *entry[K, V] {
	for {
		q := &s.main
		if s.small.n > s.smallMax || s.main.n == 0 {
			q = &s.small
		}
		e := q.oldest()
		if e != nil && e == keep {
			// keep was just put at the front of q, so it is alone there.
			if q == &s.main {
				q = &s.small
			} else {
				q = &s.main
			}
			e = q.oldest()
		}
		if e == nil {
			return nil
		}
		n := e.hits.Load()
		switch {
		case n > 0 && q == &s.main:
			e.hits.Store(n - 1)
			s.main.toFront(e)
		case n > 0: // read on probation: it joins the main queue
			e.hits.Store(0)
			s.small.remove(e)
			e.small = false
			s.main.pushFront(e)
		default:
			if q == &s.small {
				s.ghost.add(e.hash)
			}
			return e
		}
	}
}

// insert adds e, whose key is absent, as the most recently used entry,
// or with Admission on probation unless the ghost remembers its key.
func (s *shard[K, V]) insert(e *entry[K, V]) {
	t := s.table.Load()
	t.insert(e)
	s.count++
	if s.count > len(t.buckets) {
		s.resizes.Add(1)
		s.table.Store(t.grown())
		s.resizes.Add(1)
	}
	if s.admission && !s.ghost.take(e.hash) {
		e.small = true
		s.small.pushFront(e)
	} else {
		s.main.pushFront(e)
	}
	s.weight += e.weight
	if e.expires != 0 {
		s.heapPush(e)
	}
}

// replace puts e in the place of old, which holds the same key: in its
// queue, at the front, with its hits.
func (s *shard[K, V]) replace(old, e *entry[K, V]) {
	s.table.Load().replace(old, e)
	q := s.queueOf(old)
	q.remove(old)
	e.small = old.small
	e.hits.Store(old.hits.Load())
	q.pushFront(e)
	s.weight += e.weight - old.weight
	if old.heapIndex >= 0 {
		s.heapRemove(old.heapIndex)
	}
	if e.expires != 0 {
		s.heapPush(e)
	}
}

// remove takes e out of every structure of the shard.
func (s *shard[K, V]) remove(e *entry[K, V]) {
	s.table.Load().remove(e)
	s.count--
	s.queueOf(e).remove(e)
	s.weight -= e.weight
	if e.heapIndex >= 0 {
		s.heapRemove(e.heapIndex)
	}
}

func (s *shard[K, V]) queueOf(e *entry[K, V]) *queue[K, V] {
	if e.small {
		return &s.small
	}
	return &s.main
}

// clear removes every entry and forgets the ghost.
func (s *shard[K, V]) clear() {
	s.main.clear()
	s.small.clear()
	s.ghost.clear()
	s.table.Store(newTable[K, V](minBuckets))
	s.count = 0
	clear(s.deadlines)
	s.deadlines = s.deadlines[:0]
	s.weight = 0
}

// The deadline heap: a binary min-heap on entry.expires, so that expired
// entries are found without scanning the shard.

func (s *shard[K, V]) heapPush(e *entry[K, V]) {
	e.heapIndex = len(s.deadlines)
	s.deadlines = append(s.deadlines, e)
	s.heapUp(e.heapIndex)
}

func (s *shard[K, V]) heapRemove(i int) {
	last := len(s.deadlines) - 1
	removed := s.deadlines[i]
	if i != last {
		s.heapSwap(i, last)
	}
	s.deadlines[last] = nil
	s.deadlines = s.deadlines[:last]
	removed.heapIndex = -1
	if i != last {
		if !s.heapDown(i) {
			s.heapUp(i)
		}
	}
}

func (s *shard[K, V]) heapSwap(i, j int) {
	d := s.deadlines
	d[i], d[j] = d[j], d[i]
	d[i].heapIndex = i
	d[j].heapIndex = j
}

func (s *shard[K, V]) heapUp(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if s.deadlines[p].expires <= s.deadlines[i].expires {
			return
		}
		s.heapSwap(i, p)
		i = p
	}
}

func (s *shard[K, V]) heapDown(i int) bool {
	start := i
	n := len(s.deadlines)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		j := l
		if r := l + 1; r < n && s.deadlines[r].expires < s.deadlines[l].expires {
			j = r
		}
		if s.deadlines[i].expires <= s.deadlines[j].expires {
			break
		}
		s.heapSwap(i, j)
		i = j
	}
	return i > start
}
