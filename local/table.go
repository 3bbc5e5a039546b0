package local

import "sync/atomic"

// table is a shard's hash table: chains of entries hanging from a
// power-of-two array of buckets. Readers walk it without a lock; the
// shard's writers change it under the shard's lock, and every change is
// one atomic store of a pointer, so a reader sees each chain either
// before or after it.
//
// Entries are never changed once published (a new value is a new entry
// that takes the old one's place in its chain), and a removed entry keeps
// its link, so a reader standing on it still reaches the rest of the
// chain.
type table[K comparable, V any] struct {
	buckets []atomic.Pointer[entry[K, V]]
	mask    uint64
	// Every Get reads this header, so it fills a cache line of its own:
	// a small object of the program's next to it, written all the time,
	// would make every Get miss.
	_ [64 - 32]byte
}

func newTable[K comparable, V any](n int) *table[K, V] {
	return &table[K, V]{buckets: make([]atomic.Pointer[entry[K, V]], n), mask: uint64(n - 1)}
}

// find returns the entry of key, whose hash is h, or nil.
func (t *table[K, V]) find(h uint64, key K) *entry[K, V] {
	for e := t.buckets[h&t.mask].Load(); e != nil; e = e.link.Load() {
		if e.hash == h && e.key == key {
			return e
		}
	}
	return nil
}

// insert puts e, whose key is not in t, at the head of its chain.
func (t *table[K, V]) insert(e *entry[K, V]) {
	b := &t.buckets[e.hash&t.mask]
	e.link.Store(b.Load())
	b.Store(e)
}

// replace puts e in the place of old, which holds the same key.
func (t *table[K, V]) replace(old, e *entry[K, V]) {
	e.link.Store(old.link.Load())
	t.pointerTo(old).Store(e)
}

// remove takes e out of its chain; e keeps its link.
func (t *table[K, V]) remove(e *entry[K, V]) {
	t.pointerTo(e).Store(e.link.Load())
}

// pointerTo returns the bucket or link that points to e.
func (t *table[K, V]) pointerTo(e *entry[K, V]) *atomic.Pointer[entry[K, V]] {
	p := &t.buckets[e.hash&t.mask]
	for q := p.Load(); q != e; q = p.Load() {
		p = &q.link
	}
	return p
}

// grown returns a table with twice the buckets holding the entries of t,
// which it relinks: readers of t may be led astray while it runs, so the
// caller makes them check (see shard.find).
func (t *table[K, V]) grown() *table[K, V] {
	g := newTable[K, V](2 * len(t.buckets))
	for i := range t.buckets {
		for e := t.buckets[i].Load(); e != nil; {
			next := e.link.Load()
			g.insert(e)
			e = next
		}
	}
	return g
}
