package trace

import "container/heap"

// OptimalHits returns the hits of Belady's optimal policy on the trace with
// room for capacity keys: on a miss, it keeps the keys whose next request
// comes soonest. It may also decline to store the missed key (when that
// key's next request comes later than every cached key's), as caches with
// an admission filter do, so it bounds every policy measured here.
func OptimalHits(t []uint32, capacity int) int {
	if capacity <= 0 || len(t) == 0 {
		return 0
	}
	const never = int32(1<<31 - 1)
	maxKey := uint32(0)
	for _, k := range t {
		maxKey = max(maxKey, k)
	}
	// next[i] is the position of the next request of t[i] after i.
	next := make([]int32, len(t))
	last := make([]int32, maxKey+1)
	for i := range last {
		last[i] = never
	}
	for i := len(t) - 1; i >= 0; i-- {
		next[i] = last[t[i]]
		last[t[i]] = int32(i)
	}
	// cached[k] is the next request of cached key k, or -1 if k is not
	// cached; the heap holds (next request, key) pairs, some stale.
	cached := last // reuse: every entry is overwritten below
	for i := range cached {
		cached[i] = -1
	}
	h := &nextHeap{}
	size, hits := 0, 0
	for i, k := range t {
		n := next[i]
		if cached[k] >= 0 {
			hits++
			cached[k] = n
			heap.Push(h, entry{n, k})
			continue
		}
		if n == never {
			continue // never requested again: storing it cannot help
		}
		if size == capacity {
			for cached[h.top().key] != h.top().next {
				heap.Pop(h) // stale
			}
			far := h.top()
			if far.next <= n {
				continue // every cached key is wanted sooner than k
			}
			heap.Pop(h)
			cached[far.key] = -1
			size--
		}
		cached[k] = n
		heap.Push(h, entry{n, k})
		size++
	}
	return hits
}

type entry struct {
	next int32
	key  uint32
}

// nextHeap is a max-heap on next.
type nextHeap []entry

func (h nextHeap) Len() int           { return len(h) }
func (h nextHeap) Less(i, j int) bool { return h[i].next > h[j].next }
func (h nextHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *nextHeap) Push(x any)        { *h = append(*h, x.(entry)) }
func (h *nextHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}
func (h nextHeap) top() entry { return h[0] }
