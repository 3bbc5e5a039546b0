package local

// queue is a ring of entries, newest first: its sentinel's next is the
// newest entry and its prev the oldest. The shard's lock guards it.
type queue[K comparable, V any] struct {
	ring entry[K, V]
	n    int
}

func (q *queue[K, V]) init() {
	q.ring.next, q.ring.prev = &q.ring, &q.ring
	q.ring.heapIndex = -1 // the sentinel is never in the deadline heap
	q.n = 0
}

// oldest returns the oldest entry, or nil if q is empty.
func (q *queue[K, V]) oldest() *entry[K, V] {
	if q.n == 0 {
		return nil
	}
	return q.ring.prev
}

func (q *queue[K, V]) pushFront(e *entry[K, V]) {
	e.prev = &q.ring
	e.next = q.ring.next
	e.next.prev = e
	q.ring.next = e
	q.n++
}

// toFront makes e, which is on q, its newest entry.
func (q *queue[K, V]) toFront(e *entry[K, V]) {
	if q.ring.next == e {
		return
	}
	e.prev.next = e.next
	e.next.prev = e.prev
	q.n--
	q.pushFront(e)
}

// remove takes e off q; e's links are cleared, which marks it removed.
func (q *queue[K, V]) remove(e *entry[K, V]) {
	e.prev.next = e.next
	e.next.prev = e.prev
	e.prev, e.next = nil, nil
	q.n--
}

// clear empties q, clearing the links of every entry on it.
func (q *queue[K, V]) clear() {
	for e := q.ring.next; e != &q.ring; {
		next := e.next
		e.prev, e.next = nil, nil // so that a hit that found it does not put it back
		e = next
	}
	q.init()
}
