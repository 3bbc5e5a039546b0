package local

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tier-cache/tier/internal/clocktest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newTestCache returns a cache for opts that the test closes.
func newTestCache[V any](t testing.TB, opts Options[string, V]) *Cache[string, V] {
	t.Helper()
	c, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// newShardedCache is newTestCache with n shards, whatever the capacity.
func newShardedCache[V any](t testing.TB, opts Options[string, V], n int) *Cache[string, V] {
	t.Helper()
	if err := opts.validate(); err != nil {
		t.Fatal(err)
	}
	c := newCache(opts, n)
	t.Cleanup(c.Close)
	return c
}

// schemaService is the seed's read-through SchemaService over a near cache.
type schemaService struct {
	cache *Cache[string, map[string]string]
	calls int
}

func (s *schemaService) get(table string) map[string]string {
	if v, ok := s.cache.Get(table); ok {
		return v
	}
	s.calls++
	v := map[string]string{"table": table, "cols": "a,b"}
	s.cache.Set(table, v, 0, 1)
	return v
}

// The seed's pytest, scenario by scenario.
func TestSeedHit(t *testing.T) {
	svc := &schemaService{cache: newTestCache(t, Options[string, map[string]string]{Capacity: 2})}
	if got := svc.get("users")["table"]; got != "users" {
		t.Fatalf("first get: table = %q", got)
	}
	if got := svc.get("users")["table"]; got != "users" {
		t.Fatalf("second get: table = %q", got)
	}
	if svc.calls != 1 {
		t.Fatalf("loader calls = %d, want 1 (second get must hit)", svc.calls)
	}
}

func TestSeedTTLExpiry(t *testing.T) {
	clock := clocktest.New()
	svc := &schemaService{cache: newTestCache(t, Options[string, map[string]string]{Capacity: 2, TTL: time.Second, Clock: clock})}
	svc.get("accounts")
	clock.Advance(999 * time.Millisecond)
	svc.get("accounts")
	if svc.calls != 1 {
		t.Fatalf("loader calls before the TTL = %d, want 1", svc.calls)
	}
	clock.Advance(time.Second)
	svc.get("accounts")
	if svc.calls != 2 {
		t.Fatalf("loader calls after the TTL = %d, want 2 (reloaded)", svc.calls)
	}
}

func TestSeedLRUEviction(t *testing.T) {
	svc := &schemaService{cache: newTestCache(t, Options[string, map[string]string]{Capacity: 2})}
	svc.get("a")
	svc.get("b")
	svc.get("a") // b is least recently used now
	svc.get("c") // evicts b
	if svc.calls != 3 {
		t.Fatalf("calls = %d, want 3", svc.calls)
	}
	if _, ok := svc.cache.Peek("b"); ok {
		t.Fatal("b still cached; it was the least recently used")
	}
	for _, k := range []string{"a", "c"} {
		if _, ok := svc.cache.Peek(k); !ok {
			t.Fatalf("%s was evicted; only b should be", k)
		}
	}
	svc.get("b") // miss, reload
	if svc.calls != 4 {
		t.Fatalf("calls = %d, want 4 (b reloaded)", svc.calls)
	}
}

// lruModel is the reference a cache of one shard must match exactly.
type lruModel struct {
	capacity int
	keys     []string // most recent first
	vals     map[string]int
}

func (m *lruModel) get(k string) (int, bool) {
	i := slices.Index(m.keys, k)
	if i < 0 {
		return 0, false
	}
	m.keys = slices.Insert(slices.Delete(m.keys, i, i+1), 0, k)
	return m.vals[k], true
}

func (m *lruModel) set(k string, v int) {
	if i := slices.Index(m.keys, k); i >= 0 {
		m.keys = slices.Delete(m.keys, i, i+1)
	}
	m.keys = slices.Insert(m.keys, 0, k)
	m.vals[k] = v
	if len(m.keys) > m.capacity {
		delete(m.vals, m.keys[len(m.keys)-1])
		m.keys = m.keys[:len(m.keys)-1]
	}
}

func (m *lruModel) del(k string) bool {
	i := slices.Index(m.keys, k)
	if i >= 0 {
		m.keys = slices.Delete(m.keys, i, i+1)
		delete(m.vals, k)
	}
	return i >= 0
}

func TestExactLRUMatchesModel(t *testing.T) {
	for _, capacity := range []int{1, 2, 3, 17, 511} {
		t.Run(fmt.Sprint(capacity), func(t *testing.T) {
			c := newTestCache(t, Options[string, int]{Capacity: capacity})
			if len(c.shards) != 1 {
				t.Fatalf("capacity %d got %d shards, want 1", capacity, len(c.shards))
			}
			m := &lruModel{capacity: capacity, vals: map[string]int{}}
			r := rand.New(rand.NewPCG(1, uint64(capacity)))
			for i := range 20000 {
				k := fmt.Sprint(r.IntN(capacity*2 + 2))
				switch op := r.IntN(10); {
				case op < 5:
					got, gok := c.Get(k)
					want, wok := m.get(k)
					if got != want || gok != wok {
						t.Fatalf("op %d: Get(%s) = %d,%v; model %d,%v", i, k, got, gok, want, wok)
					}
				case op < 9:
					c.Set(k, i, 0, 1)
					m.set(k, i)
				default:
					if got, want := c.Delete(k), m.del(k); got != want {
						t.Fatalf("op %d: Delete(%s) = %v; model %v", i, k, got, want)
					}
				}
				if c.Len() != len(m.keys) {
					t.Fatalf("op %d: Len = %d, model %d", i, c.Len(), len(m.keys))
				}
			}
			if c.shards[0].marking.Load() {
				t.Fatal("a goroutine alone made the lone shard give up exact order")
			}
			want := slices.Clone(m.keys)
			slices.Reverse(want)
			if got := lruOrder(c); !slices.Equal(got, want) {
				t.Fatalf("final order %v, model %v (least recent first)", got, want)
			}
		})
	}
}

func TestShardedCacheStaysBounded(t *testing.T) {
	c := newTestCache(t, Options[string, int]{Capacity: 10000})
	if len(c.shards) < 2 {
		t.Fatalf("a 10000-entry cache has %d shards; the default should shard it", len(c.shards))
	}
	for i := range 50000 {
		c.Set(fmt.Sprint(i), i, 0, 1)
		if i%997 == 0 && c.Len() > 10000 {
			t.Fatalf("Len = %d after %d sets, capacity 10000", c.Len(), i+1)
		}
	}
	if n := c.Len(); n != 10000 {
		t.Fatalf("Len = %d, want 10000: the bound is the cache's, not a shard's", n)
	}
	// Within a shard, writes keep exact LRU order: the most recent writes
	// all survive.
	for i := 49900; i < 50000; i++ {
		if _, ok := c.Peek(fmt.Sprint(i)); !ok {
			t.Fatalf("key %d (among the last 100 written) was evicted", i)
		}
	}
}

func TestPeekDoesNotTouchRecency(t *testing.T) {
	c := newTestCache(t, Options[string, int]{Capacity: 2})
	c.Set("a", 1, 0, 1)
	c.Set("b", 2, 0, 1)
	if v, ok := c.Peek("a"); !ok || v != 1 {
		t.Fatalf("Peek(a) = %d,%v", v, ok)
	}
	c.Set("c", 3, 0, 1) // a is still least recently used: Peek did not move it
	if _, ok := c.Peek("a"); ok {
		t.Fatal("a survived; Peek must not update recency")
	}
	if st := c.Stats(); st.Hits != 0 || st.Misses != 0 {
		t.Fatalf("Peek counted stats: %+v", st)
	}
}

func TestMaxWeight(t *testing.T) {
	c := newTestCache(t, Options[string, int]{Capacity: 100, MaxWeight: 100})
	for i := range 10 {
		c.Set(fmt.Sprint(i), i, 0, 30)
		if w := c.weight.Load(); w > 100 {
			t.Fatalf("weight %d over MaxWeight 100", w)
		}
	}
	if c.Len() != 3 || c.weight.Load() != 90 {
		t.Fatalf("Len %d weight %d, want 3 and 90", c.Len(), c.weight.Load())
	}
	for i := 7; i < 10; i++ {
		if _, ok := c.Peek(fmt.Sprint(i)); !ok {
			t.Fatalf("%d evicted; the three most recent should remain", i)
		}
	}
	if st := c.Stats(); st.Evictions != 7 {
		t.Fatalf("Evictions = %d, want 7", st.Evictions)
	}
}

// A write that cannot be stored drops the value its key had, so that the
// cache never keeps a value older than the one the caller meant to store.
func TestUnstorableSetDropsOldValue(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ttl    time.Duration
		weight int64
	}{
		{"heavier than MaxWeight", 0, 101},
		{"negative weight", 0, -1},
		{"negative ttl", -time.Second, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newTestCache(t, Options[string, int]{Capacity: 10, MaxWeight: 100})
			c.Set("k", 1, 0, 1)
			g := c.StartFill()
			c.Set("k", 2, tc.ttl, tc.weight)
			if _, ok := c.Peek("k"); ok {
				t.Fatal("the older value is still cached")
			}
			if c.Len() != 0 || c.weight.Load() != 0 {
				t.Fatalf("Len %d weight %d, want 0 and 0", c.Len(), c.weight.Load())
			}
			if c.Fill(g, "k", 3, 0, 1) {
				t.Fatal("the unstorable Set did not stamp its key: an older fill stored")
			}
		})
	}
}

func TestOptionsValidation(t *testing.T) {
	cases := []struct {
		name  string
		opts  Options[string, int]
		field string
	}{
		{"zero capacity", Options[string, int]{}, "Capacity"},
		{"negative capacity", Options[string, int]{Capacity: -1}, "Capacity"},
		{"negative weight", Options[string, int]{Capacity: 1, MaxWeight: -1}, "MaxWeight"},
		{"negative TTL", Options[string, int]{Capacity: 1, TTL: -time.Second}, "TTL"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(tc.opts)
			if err == nil {
				c.Close()
				t.Fatal("New accepted invalid options")
			}
			if !errors.Is(err, ErrInvalidOptions) {
				t.Fatalf("error %v does not match ErrInvalidOptions", err)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("error %q does not name the field %s", err, tc.field)
			}
		})
	}
}

func TestShardCounts(t *testing.T) {
	for _, tc := range []struct{ capacity, shards int }{
		{1, 1}, {511, 1}, {512, 2}, {10000, 32}, {100000, 64}, {1 << 24, 64},
	} {
		if got := shardCount(tc.capacity); got != tc.shards {
			t.Errorf("capacity %d: %d shards, want %d", tc.capacity, got, tc.shards)
		}
	}
}

func TestStats(t *testing.T) {
	clock := clocktest.New()
	c := newTestCache(t, Options[string, int]{Capacity: 2, Clock: clock})
	c.Set("a", 1, time.Second, 1)
	c.Set("b", 2, 0, 1)
	c.Get("a")
	c.Get("a")
	c.Get("absent")
	c.Set("c", 3, 0, 1) // evicts b
	clock.Advance(time.Second)
	c.Get("a") // expired: a miss
	c.Set("d", 4, 0, 1)
	want := Stats{Hits: 2, Misses: 2, Evictions: 1, Expirations: 1}
	if st := c.Stats(); st != want {
		t.Fatalf("Stats = %+v, want %+v", st, want)
	}
}

func TestConcurrentUse(t *testing.T) {
	for _, capacity := range []int{64, 5000} {
		c := newTestCache(t, Options[string, int]{Capacity: capacity, TTL: time.Hour, MaxWeight: int64(capacity) * 4})
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				r := rand.New(rand.NewPCG(uint64(g), 7))
				for i := range 20000 {
					k := fmt.Sprint(r.IntN(capacity * 2))
					switch r.IntN(20) {
					case 0:
						c.Delete(k)
					case 1:
						g := c.StartFill()
						c.Fill(g, k, i, 0, 2)
					case 2:
						if i%1000 == 0 {
							c.Purge()
						}
					case 3:
						c.SetIfUnchanged(c.StartFill(), k, i, 0, 1)
					case 4, 5:
						c.Set(k, i, 0, int64(r.IntN(4)))
					case 6:
						c.Peek(k)
					default:
						if v, ok := c.Get(k); ok && v < 0 {
							t.Errorf("impossible value %d", v)
						}
					}
				}
			})
		}
		wg.Wait()
		if c.Len() > capacity || c.weight.Load() > int64(capacity)*4 {
			t.Fatalf("Len %d weight %d beyond capacity %d / weight %d", c.Len(), c.weight.Load(), capacity, capacity*4)
		}
	}
}
