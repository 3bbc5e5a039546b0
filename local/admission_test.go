package local

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"
)

// zipfTrace returns n requests over keys 0..keys-1 drawn from a Zipf
// distribution with exponent s.
func zipfTrace(n, keys int, s float64) []string {
	r := rand.New(rand.NewPCG(1, 2))
	z := rand.NewZipf(r, s, 1, uint64(keys-1))
	t := make([]string, n)
	for i := range t {
		t[i] = strconv.FormatUint(z.Uint64(), 10)
	}
	return t
}

// replay reads each key of t and fills it on a miss, as a read-through
// cache does, and returns the hit ratio.
func replay(c *Cache[string, int], t []string) float64 {
	hits := 0
	for _, k := range t {
		if _, ok := c.Get(k); ok {
			hits++
		} else {
			c.Fill(c.StartFill(), k, 0, 0, 1)
		}
	}
	return float64(hits) / float64(len(t))
}

func TestAdmissionRaisesHitRatio(t *testing.T) {
	trace := zipfTrace(200_000, 20_000, 1.1)
	for _, capacity := range []int{200, 1000, 2000} {
		t.Run(strconv.Itoa(capacity), func(t *testing.T) {
			lru := replay(newTestCache(t, Options[string, int]{Capacity: capacity}), trace)
			s3 := replay(newTestCache(t, Options[string, int]{Capacity: capacity, Admission: true}), trace)
			t.Logf("hit ratio: LRU %.4f, Admission %.4f", lru, s3)
			if s3 < lru+0.01 {
				t.Fatalf("Admission hit ratio %.4f, LRU %.4f: want at least a point more", s3, lru)
			}
		})
	}
}

// Keys read once, however many, do not push out keys read again.
func TestAdmissionResistsScans(t *testing.T) {
	for _, admission := range []bool{false, true} {
		c := newTestCache(t, Options[string, int]{Capacity: 100, Admission: admission})
		for i := range 50 {
			c.Set(fmt.Sprint("hot-", i), i, 0, 1)
		}
		for i := range 50 {
			c.Get(fmt.Sprint("hot-", i))
		}
		for i := range 1000 {
			c.Fill(c.StartFill(), fmt.Sprint("scan-", i), i, 0, 1)
		}
		kept := 0
		for i := range 50 {
			if _, ok := c.Peek(fmt.Sprint("hot-", i)); ok {
				kept++
			}
		}
		if admission && kept != 50 {
			t.Errorf("Admission: a scan of 1000 keys evicted %d of 50 keys that were read again", 50-kept)
		}
		if !admission && kept != 0 {
			t.Errorf("LRU kept %d keys older than the last 100 written", kept)
		}
		if c.Len() != 100 {
			t.Errorf("Len = %d, want 100", c.Len())
		}
	}
}

// A key evicted from probation unread is remembered: stored again soon,
// it skips probation.
func TestAdmissionGhost(t *testing.T) {
	c := newTestCache(t, Options[string, int]{Capacity: 20, Admission: true})
	s := &c.shards[0]
	for i := range 21 {
		c.Set(strconv.Itoa(i), i, 0, 1) // the 21st evicts 0, unread
	}
	if _, ok := c.Peek("0"); ok {
		t.Fatal("0 was not evicted")
	}
	c.Set("0", 0, 0, 1)
	_, h := c.locate("0")
	if e := s.find(h, "0"); e == nil || e.small {
		t.Fatal("a key the ghost remembers went on probation again")
	}
	c.Set("fresh", 0, 0, 1)
	if _, h := c.locate("fresh"); !s.find(h, "fresh").small {
		t.Fatal("a new key skipped probation")
	}
	// The ghost's memory is fixed, however many keys go through it.
	n := len(s.ghost.slots)
	for i := range 10_000 {
		c.Set(fmt.Sprint("churn-", i), i, 0, 1)
	}
	if len(s.ghost.slots) != n || n != 18 {
		t.Fatalf("ghost has %d slots (had %d), want 18: nine per ten entries off probation", len(s.ghost.slots), n)
	}
}

// With Admission, Set and Fill still store, so a goroutine reads its own
// writes, and the bounds hold.
func TestAdmissionStoresAndBounds(t *testing.T) {
	for _, shards := range shardCases {
		c := newShardedCache(t, Options[string, int]{Capacity: 64, MaxWeight: 100, Admission: true}, shards)
		for i := range 1000 {
			k := strconv.Itoa(i)
			if i%2 == 0 {
				c.Set(k, i, 0, int64(i%5))
			} else if !c.Fill(c.StartFill(), k, i, 0, int64(i%5)) {
				t.Fatalf("%d shards: Fill of %s refused", shards, k)
			}
			if v, ok := c.Get(k); !ok || v != i {
				t.Fatalf("%d shards: Get(%s) = %d,%v right after storing it", shards, k, v, ok)
			}
			if c.Len() > 64 || c.weight.Load() > 100 {
				t.Fatalf("%d shards: Len %d weight %d beyond the bounds", shards, c.Len(), c.weight.Load())
			}
		}
	}
}

func TestAdmissionConcurrentUse(t *testing.T) {
	for _, capacity := range []int{64, 5000} {
		c := newTestCache(t, Options[string, int]{Capacity: capacity, TTL: time.Hour, Admission: true})
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				r := rand.New(rand.NewPCG(uint64(g), 9))
				for i := range 20000 {
					k := strconv.Itoa(r.IntN(capacity * 3))
					switch r.IntN(20) {
					case 0:
						c.Delete(k)
					case 1, 2:
						c.Set(k, i, 0, 1)
					case 3:
						if i%2000 == 0 {
							c.Purge()
						}
					default:
						if _, ok := c.Get(k); !ok {
							c.Fill(c.StartFill(), k, i, 0, 1)
						}
					}
				}
			})
		}
		wg.Wait()
		if c.Len() > capacity {
			t.Fatalf("Len %d beyond capacity %d", c.Len(), capacity)
		}
		n := 0
		for i := range c.shards {
			s := &c.shards[i]
			s.mu.Lock()
			n += s.main.n + s.small.n
			if s.main.n+s.small.n != s.count {
				t.Errorf("shard %d: queues hold %d+%d entries, table %d", i, s.main.n, s.small.n, s.count)
			}
			s.mu.Unlock()
		}
		if n != c.Len() {
			t.Fatalf("queues hold %d entries, Len %d", n, c.Len())
		}
	}
}
