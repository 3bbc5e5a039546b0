package local

import (
	"slices"
	"strconv"
	"testing"
)

// Exact-order scenarios in the spirit of hashicorp/golang-lru's tests: on
// a cache of one shard, a goroutine's sequence of operations leaves the
// entries in exact least-recently-used order.

// lruOrder returns the keys of a cache of one shard, least recently used
// first: the order in which they would be evicted.
func lruOrder[V any](c *Cache[string, V]) []string {
	s := &c.shards[0]
	s.mu.Lock()
	defer s.mu.Unlock()
	var keys []string
	for e := s.main.ring.prev; e != &s.main.ring; e = e.prev {
		keys = append(keys, e.key)
	}
	return keys
}

func keyRange(from, to int) []string {
	var keys []string
	for i := from; i < to; i++ {
		keys = append(keys, strconv.Itoa(i))
	}
	return keys
}

func wantOrder[V any](t *testing.T, c *Cache[string, V], want []string) {
	t.Helper()
	if got := lruOrder(c); !slices.Equal(got, want) {
		t.Fatalf("order (least recent first):\n got %v\nwant %v", got, want)
	}
}

// Writing twice the capacity keeps the second half, oldest first; reading
// them all in that order leaves it unchanged; deleting some leaves the
// others in place; reading one moves it to the most recent end.
func TestLRUOverfillReadDeleteRead(t *testing.T) {
	c := newTestCache(t, Options[string, int]{Capacity: 128})
	for i := range 256 {
		c.Set(strconv.Itoa(i), i, 0, 1)
	}
	if c.Len() != 128 {
		t.Fatalf("Len = %d, want 128", c.Len())
	}
	if st := c.Stats(); st.Evictions != 128 {
		t.Fatalf("Evictions = %d, want 128", st.Evictions)
	}
	wantOrder(t, c, keyRange(128, 256))
	for i := 128; i < 256; i++ {
		if v, ok := c.Get(strconv.Itoa(i)); !ok || v != i {
			t.Fatalf("Get(%d) = %d,%v", i, v, ok)
		}
	}
	wantOrder(t, c, keyRange(128, 256))
	for i := range 128 {
		if _, ok := c.Get(strconv.Itoa(i)); ok {
			t.Fatalf("%d was not evicted", i)
		}
	}
	for i := 128; i < 192; i++ {
		k := strconv.Itoa(i)
		if !c.Delete(k) {
			t.Fatalf("Delete(%d) found nothing", i)
		}
		if c.Delete(k) {
			t.Fatalf("a second Delete(%d) found it again", i)
		}
		if _, ok := c.Get(k); ok {
			t.Fatalf("%d is present after Delete", i)
		}
	}
	wantOrder(t, c, keyRange(192, 256))
	c.Get("192")
	wantOrder(t, c, append(keyRange(193, 256), "192"))
	c.Purge()
	if c.Len() != 0 {
		t.Fatalf("Len = %d after Purge", c.Len())
	}
	if _, ok := c.Get("200"); ok {
		t.Fatal("Purge left 200")
	}
	wantOrder(t, c, nil)
}

// The entries leave in the order they were written when none is read.
func TestLRUOldestLeavesFirst(t *testing.T) {
	c := newTestCache(t, Options[string, int]{Capacity: 128})
	for i := range 256 {
		c.Set(strconv.Itoa(i), i, 0, 1)
	}
	for i := 256; i < 260; i++ {
		c.Set(strconv.Itoa(i), i, 0, 1)
		gone := strconv.Itoa(i - 128)
		if _, ok := c.Peek(gone); ok {
			t.Fatalf("writing %d kept %s, the oldest", i, gone)
		}
		if _, ok := c.Peek(strconv.Itoa(i - 127)); !ok {
			t.Fatalf("writing %d evicted %d, which was not the oldest", i, i-127)
		}
	}
}

// A cache of one entry evicts on every write of another key, and only then.
func TestLRUCapacityOne(t *testing.T) {
	c := newTestCache(t, Options[string, int]{Capacity: 1})
	c.Set("1", 1, 0, 1)
	c.Set("1", 2, 0, 1)
	if st := c.Stats(); st.Evictions != 0 {
		t.Fatalf("Evictions = %d after writing one key twice", st.Evictions)
	}
	c.Set("2", 2, 0, 1)
	if st := c.Stats(); st.Evictions != 1 {
		t.Fatalf("Evictions = %d, want 1", st.Evictions)
	}
	wantOrder(t, c, []string{"2"})
}

// Writing a present key makes it the most recent, like a read.
func TestLRUWriteOfPresentKeyRefreshes(t *testing.T) {
	c := newTestCache(t, Options[string, struct{}]{Capacity: 2})
	c.Set("1", struct{}{}, 0, 1)
	wantOrder(t, c, []string{"1"})
	c.Set("2", struct{}{}, 0, 1)
	wantOrder(t, c, []string{"1", "2"})
	c.Set("1", struct{}{}, 0, 1)
	wantOrder(t, c, []string{"2", "1"})
	c.Set("3", struct{}{}, 0, 1)
	wantOrder(t, c, []string{"1", "3"})
	if st := c.Stats(); st.Evictions != 1 {
		t.Fatalf("Evictions = %d, want 1", st.Evictions)
	}
}

// Reads between two writes count in the order they happened, however many
// there are and however often a key repeats.
func TestLRUReadsBetweenWritesKeepTheirOrder(t *testing.T) {
	c := newTestCache(t, Options[string, int]{Capacity: 4})
	for _, k := range []string{"a", "b", "c", "d"} {
		c.Set(k, 0, 0, 1)
	}
	for _, k := range []string{"a", "b", "a", "c", "a", "b", "b"} {
		c.Get(k)
	}
	wantOrder(t, c, []string{"d", "c", "a", "b"})
	// Many reads between two writes.
	for i := range 1000 {
		c.Get([]string{"d", "c", "a", "b"}[i%4])
	}
	c.Get("c")
	wantOrder(t, c, []string{"d", "a", "b", "c"})
	c.Set("e", 0, 0, 1)
	wantOrder(t, c, []string{"a", "b", "c", "e"})
}

// A Fill, a SetIfUnchanged and a failed Get do what a Set or nothing does.
func TestLRUFillAndMissOrder(t *testing.T) {
	c := newTestCache(t, Options[string, int]{Capacity: 3})
	c.Set("a", 0, 0, 1)
	c.Fill(c.StartFill(), "b", 0, 0, 1)
	c.SetIfUnchanged(c.StartFill(), "c", 0, 0, 1)
	wantOrder(t, c, []string{"a", "b", "c"})
	c.Get("absent")
	c.Peek("a")
	wantOrder(t, c, []string{"a", "b", "c"})
	c.Fill(c.StartFill(), "a", 1, 0, 1)
	wantOrder(t, c, []string{"b", "c", "a"})
}
