package local

import (
	"fmt"
	"sync"
	"testing"
	"unsafe"
)

// Lookups that run while a writer grows a shard's table find every key
// that was present before they started.
func TestLookupsDuringResize(t *testing.T) {
	for _, shards := range []int{1, 8} {
		t.Run(fmt.Sprint(shards, " shards"), func(t *testing.T) {
			c := newShardedCache(t, Options[string, int]{Capacity: 1 << 16}, shards)
			present := make([]string, 64)
			for i := range present {
				present[i] = fmt.Sprint("present-", i)
				c.Set(present[i], i, 0, 1)
			}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for range 4 {
				wg.Go(func() {
					for n := 0; ; n++ {
						select {
						case <-stop:
							return
						default:
						}
						k := present[n%len(present)]
						if v, ok := c.Get(k); !ok || v != n%len(present) {
							t.Errorf("Get(%s) = %d,%v during a resize", k, v, ok)
							return
						}
						if _, ok := c.Peek(k); !ok {
							t.Errorf("Peek(%s) missed during a resize", k)
							return
						}
					}
				})
			}
			for i := range 1 << 13 { // several doublings of every shard's table
				c.Set(fmt.Sprint(i), i, 0, 1)
			}
			close(stop)
			wg.Wait()
		})
	}
}

// A hit that found an entry just before a Purge or Delete removed it must
// not put it back on the ring when it records the hit afterwards.
func TestTouchOfRemovedEntry(t *testing.T) {
	c := newTestCache(t, Options[string, int]{Capacity: 4})
	c.Set("a", 1, 0, 1)
	c.Set("b", 2, 0, 1)
	s, h := c.locate("a")
	a := s.find(h, "a")
	_, h = c.locate("b")
	b := s.find(h, "b")
	c.Purge()
	c.Set("c", 3, 0, 1)
	c.Delete("c")
	c.Set("d", 4, 0, 1)
	s.mu.Lock()
	s.touch(a)
	s.touch(b)
	s.mu.Unlock()
	wantOrder(t, c, []string{"d"})
	c.Set("e", 5, 0, 1)
	c.Set("f", 6, 0, 1)
	c.Set("g", 7, 0, 1)
	c.Set("h", 8, 0, 1) // evicts d, and must not reach a or b
	wantOrder(t, c, []string{"e", "f", "g", "h"})
}

// The table's header, read by every Get, fills a cache line, so that no
// object written by others shares it.
func TestTableHeaderFillsALine(t *testing.T) {
	if n := unsafe.Sizeof(table[string, int]{}); n != 64 {
		t.Fatalf("table header is %d bytes, want 64", n)
	}
}
