package local

import "sync"

// entry is one cached value. It sits on its shard's LRU ring and, when it
// has a deadline, in its shard's deadline heap.
type entry[K comparable, V any] struct {
	key        K
	value      V
	expires    int64 // clock reading at which it expires; 0: never
	weight     int64
	prev, next *entry[K, V]
	heapIndex  int // position in the shard's deadline heap; -1 when not in it
}

// shard is an exact LRU list of entries guarded by one mutex; the bounds
// on count and weight are the cache's, across shards.
type shard[K comparable, V any] struct {
	mu        sync.Mutex
	m         map[K]*entry[K, V]
	ring      entry[K, V] // sentinel: ring.next is the most recently used
	deadlines []*entry[K, V]
	weight    int64

	// stamps[i] is the sequence number of the last Set or Delete of a key
	// whose hash selects i; purged is that of the last Purge. See FillGuard.
	stamps []uint64
	purged uint64

	hits, misses, evictions, expirations uint64

	_ [64]byte // keep neighbouring shards' locks off this cache line
}

func (s *shard[K, V]) init(stamps int) {
	s.m = make(map[K]*entry[K, V])
	s.ring.next, s.ring.prev = &s.ring, &s.ring
	s.ring.heapIndex = -1 // the sentinel is never in the heap
	s.stamps = make([]uint64, stamps)
}

func (s *shard[K, V]) pushFront(e *entry[K, V]) {
	e.prev = &s.ring
	e.next = s.ring.next
	e.next.prev = e
	s.ring.next = e
}

func (s *shard[K, V]) unlink(e *entry[K, V]) {
	e.prev.next = e.next
	e.next.prev = e.prev
	e.prev, e.next = nil, nil
}

func (s *shard[K, V]) moveToFront(e *entry[K, V]) {
	if s.ring.next == e {
		return
	}
	e.prev.next = e.next
	e.next.prev = e.prev
	s.pushFront(e)
}

// remove takes e out of every structure of the shard.
func (s *shard[K, V]) remove(e *entry[K, V]) {
	delete(s.m, e.key)
	s.unlink(e)
	s.weight -= e.weight
	if e.heapIndex >= 0 {
		s.heapRemove(e.heapIndex)
	}
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

// heapFix restores the heap after the deadline of the entry at i changed.
func (s *shard[K, V]) heapFix(i int) {
	if !s.heapDown(i) {
		s.heapUp(i)
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
