package local

import (
	"fmt"
	"testing"
	"time"

	"github.com/tier-cache/tier/internal/clocktest"
)

// Both kinds of cache: one shard (exact order) and several (marks and
// second chances).
var shardCases = []int{1, 8}

// And each with and without Admission.
var hitCases = []struct {
	name      string
	shards    int
	admission bool
}{
	{"1 shard", 1, false}, {"8 shards", 8, false},
	{"1 shard, admission", 1, true}, {"8 shards, admission", 8, true},
}

// A hit never waits for a lock: Gets finish while every shard's lock is
// held.
func TestHitNeverWaitsForALock(t *testing.T) {
	for _, tc := range hitCases {
		t.Run(tc.name, func(t *testing.T) {
			c := newShardedCache(t, Options[string, int]{Capacity: 100, TTL: time.Hour, Admission: tc.admission}, tc.shards)
			for i := range 10 {
				c.Set(fmt.Sprint(i), i, 0, 1)
			}
			for i := range c.shards {
				c.shards[i].mu.Lock()
			}
			done := make(chan error)
			go func() {
				for i := range 1000 {
					if v, ok := c.Get(fmt.Sprint(i % 10)); !ok || v != i%10 {
						done <- fmt.Errorf("Get(%d) = %d,%v", i%10, v, ok)
						return
					}
				}
				done <- nil
			}()
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Get blocked on a shard's lock")
			}
			for i := range c.shards {
				c.shards[i].mu.Unlock()
			}
		})
	}
}

func TestHitAllocatesNothing(t *testing.T) {
	for _, tc := range hitCases {
		c := newShardedCache(t, Options[string, [4]int]{Capacity: 100, TTL: time.Hour, Admission: tc.admission}, tc.shards)
		keys := make([]string, 20)
		for i := range keys {
			keys[i] = fmt.Sprint(i)
			c.Set(keys[i], [4]int{i}, 0, 1)
		}
		i := 0
		if n := testing.AllocsPerRun(1000, func() {
			c.Get(keys[i%len(keys)])
			i++
		}); n != 0 {
			t.Errorf("%s: a hit allocates %v times", tc.name, n)
		}
	}
}

// In a cache of several shards, an entry read since it last reached the
// least recently used end is not evicted while an unread one is there.
func TestSecondChance(t *testing.T) {
	c := newShardedCache(t, Options[string, int]{Capacity: 3}, 2)
	var keys []string // keys of shard 0
	for i := 0; len(keys) < 5; i++ {
		if s, _ := c.locate(fmt.Sprint(i)); s == &c.shards[0] {
			keys = append(keys, fmt.Sprint(i))
		}
	}
	a, b, cc, d, e := keys[0], keys[1], keys[2], keys[3], keys[4]
	c.Set(a, 0, 0, 1)
	c.Set(b, 0, 0, 1)
	c.Set(cc, 0, 0, 1)
	c.Get(a)
	c.Set(d, 0, 0, 1) // a, the oldest, was read: b goes
	if _, ok := c.Peek(b); ok {
		t.Fatal("b survived; it was the oldest entry not read")
	}
	if _, ok := c.Peek(a); !ok {
		t.Fatal("a was evicted although it was read")
	}
	c.Set(e, 0, 0, 1) // a's mark was spent: cc, then the oldest, goes
	if _, ok := c.Peek(cc); ok {
		t.Fatal("cc survived; it was the oldest entry")
	}
	if st := c.Stats(); st.Evictions != 2 {
		t.Fatalf("Evictions = %d, want 2", st.Evictions)
	}
}

func TestExpiredNeverReturned(t *testing.T) {
	for _, shards := range shardCases {
		t.Run(fmt.Sprint(shards, " shards"), func(t *testing.T) {
			clock := clocktest.New()
			c := newShardedCache(t, Options[string, int]{Capacity: 100, Clock: clock}, shards)
			for i := range 50 {
				c.Set(fmt.Sprint(i), i, time.Duration(i+1)*time.Second, 1)
			}
			for step := range 51 {
				for i := range 50 {
					_, got := c.Get(fmt.Sprint(i))
					_, peeked := c.Peek(fmt.Sprint(i))
					if want := i >= step; got != want || peeked != want {
						t.Fatalf("after %ds: key %d (ttl %ds) Get %v Peek %v, want %v", step, i, i+1, got, peeked, want)
					}
				}
				clock.Advance(time.Second)
			}
		})
	}
}

// A lone shard keeps exact order until a hit finds its lock taken, here
// by a write in progress; from then on it marks.
func TestLoneShardSwitchesToMarks(t *testing.T) {
	c := newTestCache(t, Options[string, int]{Capacity: 64})
	for i := range 40 {
		c.Set(fmt.Sprint(i), i, 0, 1)
	}
	for i := range 16 {
		c.Get(fmt.Sprint(i)) // 16..39 are now the oldest, then 0..15
	}
	s := &c.shards[0]
	if s.marking.Load() {
		t.Fatal("the shard switched with no other goroutine about")
	}
	s.mu.Lock()
	c.Get("39")
	s.mu.Unlock()
	if !s.marking.Load() {
		t.Fatal("the shard did not switch when a hit found its lock taken")
	}
	if _, h := c.locate("39"); s.find(h, "39").hits.Load() == 0 {
		t.Fatal("that hit did not mark its entry")
	}
	// Evicting 24 entries takes 16..38, passes over 39, whose mark gives
	// it a second chance, and takes 0.
	for i := 40; i < 64+24; i++ {
		c.Set(fmt.Sprint(i), i, 0, 1)
	}
	for _, k := range []string{"16", "38", "0"} {
		if _, ok := c.Peek(k); ok {
			t.Fatalf("%s survived", k)
		}
	}
	for _, k := range []string{"39", "1", "15"} {
		if _, ok := c.Peek(k); !ok {
			t.Fatalf("%s was evicted", k)
		}
	}
}
