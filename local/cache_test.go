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

// newFakeClock returns a clock that moves only when told to.
func newFakeClock() *clocktest.Fake { return clocktest.New() }

func newCache[V any](t testing.TB, opts Options[string, V]) *Cache[string, V] {
	t.Helper()
	c, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
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
	s.cache.Set(table, v)
	return v
}

// The seed's pytest, scenario by scenario.
func TestSeedHit(t *testing.T) {
	svc := &schemaService{cache: newCache(t, Options[string, map[string]string]{Capacity: 2})}
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
	clock := newFakeClock()
	svc := &schemaService{cache: newCache(t, Options[string, map[string]string]{Capacity: 2, TTL: time.Second, Clock: clock})}
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
	svc := &schemaService{cache: newCache(t, Options[string, map[string]string]{Capacity: 2})}
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

// lruModel is the reference an unsharded cache must match exactly.
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

func (m *lruModel) del(k string) {
	if i := slices.Index(m.keys, k); i >= 0 {
		m.keys = slices.Delete(m.keys, i, i+1)
		delete(m.vals, k)
	}
}

func TestExactLRUMatchesModel(t *testing.T) {
	for _, capacity := range []int{1, 2, 3, 17, 511} {
		t.Run(fmt.Sprint(capacity), func(t *testing.T) {
			c := newCache(t, Options[string, int]{Capacity: capacity})
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
					c.Set(k, i)
					m.set(k, i)
				default:
					c.Delete(k)
					m.del(k)
				}
				if c.Len() != len(m.keys) {
					t.Fatalf("op %d: Len = %d, model %d", i, c.Len(), len(m.keys))
				}
			}
		})
	}
}

func TestShardedCacheStaysBounded(t *testing.T) {
	c := newCache(t, Options[string, int]{Capacity: 10000})
	if len(c.shards) < 2 {
		t.Fatalf("a 10000-entry cache has %d shards; the default should shard it", len(c.shards))
	}
	for i := range 50000 {
		c.Set(fmt.Sprint(i), i)
		if i%997 == 0 && c.Len() > 10000 {
			t.Fatalf("Len = %d after %d sets, capacity 10000", c.Len(), i+1)
		}
	}
	if n := c.Len(); n != 10000 {
		t.Fatalf("Len = %d, want 10000: the bound is the cache's, not a shard's", n)
	}
	// Within a shard, order is exact LRU: the most recent writes all survive.
	for i := 49900; i < 50000; i++ {
		if _, ok := c.Peek(fmt.Sprint(i)); !ok {
			t.Fatalf("key %d (among the last 100 written) was evicted", i)
		}
	}
}

func TestPeekDoesNotTouchRecency(t *testing.T) {
	c := newCache(t, Options[string, int]{Capacity: 2})
	c.Set("a", 1)
	c.Set("b", 2)
	if v, ok := c.Peek("a"); !ok || v != 1 {
		t.Fatalf("Peek(a) = %d,%v", v, ok)
	}
	c.Set("c", 3) // a is still least recently used: Peek did not move it
	if _, ok := c.Peek("a"); ok {
		t.Fatal("a survived; Peek must not update recency")
	}
	if st := c.Stats(); st.Hits != 0 || st.Misses != 0 {
		t.Fatalf("Peek counted stats: %+v", st)
	}
}

func TestTTL(t *testing.T) {
	clock := newFakeClock()
	var evicted []string
	c := newCache(t, Options[string, int]{
		Capacity: 10, TTL: time.Minute, Clock: clock,
		OnEvict: func(k string, _ int, cause Cause) { evicted = append(evicted, k+":"+cause.String()) },
	})
	c.Set("default", 1)
	c.SetWith("short", 2, time.Second, 1)
	if ttl, ok := c.TTL("short"); !ok || ttl != time.Second {
		t.Fatalf("TTL(short) = %v,%v, want 1s", ttl, ok)
	}
	clock.Advance(time.Second)
	if _, ok := c.Get("short"); ok {
		t.Fatal("Get returned an entry at its deadline")
	}
	if _, ok := c.Peek("default"); !ok {
		t.Fatal("default-TTL entry expired after 1s of 1m")
	}
	clock.Advance(time.Minute)
	if _, ok := c.Peek("default"); ok {
		t.Fatal("Peek returned an expired entry")
	}
	if _, ok := c.TTL("default"); ok {
		t.Fatal("TTL reported an expired entry as present")
	}
	if n := c.DeleteExpired(); n != 1 {
		t.Fatalf("DeleteExpired = %d, want 1", n)
	}
	if c.Len() != 0 {
		t.Fatalf("Len = %d after reclaiming everything", c.Len())
	}
	want := []string{"short:expired", "default:expired"}
	if !slices.Equal(evicted, want) {
		t.Fatalf("evictions = %v, want %v", evicted, want)
	}
	if st := c.Stats(); st.Expirations != 2 || st.Misses != 1 {
		t.Fatalf("stats = %+v, want 2 expirations and 1 miss", st)
	}
}

func TestNoTTLNeverExpires(t *testing.T) {
	clock := newFakeClock()
	c := newCache(t, Options[string, int]{Capacity: 10, Clock: clock})
	c.Set("k", 1)
	clock.Advance(100 * 365 * 24 * time.Hour)
	if _, ok := c.Get("k"); !ok {
		t.Fatal("entry without a TTL expired")
	}
	if ttl, ok := c.TTL("k"); !ok || ttl != 0 {
		t.Fatalf("TTL = %v,%v, want 0,true", ttl, ok)
	}
}

func TestWritesReclaimExpiredEntries(t *testing.T) {
	clock := newFakeClock()
	c := newCache(t, Options[string, int]{Capacity: 100, Clock: clock})
	for i := range 50 {
		c.SetWith(fmt.Sprint(i), i, time.Second, 1)
	}
	c.SetWith("long", 0, time.Hour, 1)
	clock.Advance(2 * time.Second)
	c.Set("trigger", 1)
	if n := c.Len(); n != 2 {
		t.Fatalf("Len = %d after a write past 50 deadlines, want 2", n)
	}
}

func TestReplacingChangesDeadline(t *testing.T) {
	clock := newFakeClock()
	c := newCache(t, Options[string, int]{Capacity: 10, Clock: clock})
	c.SetWith("k", 1, time.Second, 1)
	c.SetWith("k", 2, time.Hour, 1)
	clock.Advance(time.Minute)
	if v, ok := c.Get("k"); !ok || v != 2 {
		t.Fatalf("Get = %d,%v, want 2 (the replacement's TTL is an hour)", v, ok)
	}
	c.Set("k", 3) // no TTL at all now
	clock.Advance(48 * time.Hour)
	if v, ok := c.Get("k"); !ok || v != 3 {
		t.Fatalf("Get = %d,%v, want 3 (no deadline)", v, ok)
	}
}

func TestEvictionCauses(t *testing.T) {
	type ev struct {
		key   string
		value int
		cause Cause
	}
	var got []ev
	c := newCache(t, Options[string, int]{Capacity: 2, OnEvict: func(k string, v int, cause Cause) {
		got = append(got, ev{k, v, cause})
	}})
	c.Set("a", 1)
	c.Set("a", 2)
	c.Set("b", 3)
	c.Set("c", 4)
	c.Delete("b")
	c.Purge()
	want := []ev{{"a", 1, CauseReplaced}, {"a", 2, CauseCapacity}, {"b", 3, CauseDeleted}, {"c", 4, CauseDeleted}}
	if !slices.Equal(got, want) {
		t.Fatalf("evictions = %v, want %v", got, want)
	}
}

func TestOnEvictRunsOutsideLocks(t *testing.T) {
	var c *Cache[string, int]
	calls := 0
	c = newCache(t, Options[string, int]{Capacity: 1, OnEvict: func(k string, _ int, _ Cause) {
		calls++
		// Each of these takes the lock of the shard that just evicted:
		// it would deadlock if the callback ran under it.
		c.Peek(k)
		c.Len()
		if k == "a" {
			c.Set("x", 0)
		}
	}})
	c.Set("a", 1)
	c.Set("b", 2) // evicts a; the callback stores x, which evicts b
	if calls != 2 {
		t.Fatalf("OnEvict ran %d times, want 2", calls)
	}
	if v, ok := c.Peek("x"); !ok || v != 0 {
		t.Fatal("the write made from OnEvict was lost")
	}
}

func TestMaxWeight(t *testing.T) {
	c := newCache(t, Options[string, int]{Capacity: 100, MaxWeight: 100, Shards: 1})
	for i := range 10 {
		if !c.SetWith(fmt.Sprint(i), i, 0, 30) {
			t.Fatalf("SetWith %d refused", i)
		}
		if w := c.Weight(); w > 100 {
			t.Fatalf("weight %d over MaxWeight 100", w)
		}
	}
	if c.Len() != 3 || c.Weight() != 90 {
		t.Fatalf("Len %d weight %d, want 3 and 90", c.Len(), c.Weight())
	}
	c.Set("heavy", 1)
	if c.SetWith("heavy", 2, 0, 101) {
		t.Fatal("an entry heavier than MaxWeight was stored")
	}
	if _, ok := c.Peek("heavy"); ok {
		t.Fatal("the refused write left the older value of its key in place")
	}
	if c.SetWith("neg", 1, 0, -1) {
		t.Fatal("a negative weight was accepted")
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
		{"shards not a power of two", Options[string, int]{Capacity: 100, Shards: 3}, "Shards"},
		{"too many shards", Options[string, int]{Capacity: 1000, Shards: 512}, "Shards"},
		{"shards above capacity", Options[string, int]{Capacity: 2, Shards: 4}, "Shards"},
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

func TestDefaultShardCounts(t *testing.T) {
	for _, tc := range []struct{ capacity, shards int }{
		{1, 1}, {511, 1}, {512, 2}, {10000, 32}, {100000, 64}, {1 << 24, 64},
	} {
		o := Options[string, int]{Capacity: tc.capacity}
		if got := o.shardCount(); got != tc.shards {
			t.Errorf("capacity %d: %d shards, want %d", tc.capacity, got, tc.shards)
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	for _, capacity := range []int{64, 5000} {
		c := newCache(t, Options[string, int]{Capacity: capacity, TTL: time.Hour, MaxWeight: int64(capacity) * 4})
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
					case 3, 4, 5:
						c.SetWith(k, i, 0, int64(r.IntN(4)))
					default:
						if v, ok := c.Get(k); ok && v < 0 {
							t.Errorf("impossible value %d", v)
						}
					}
				}
			})
		}
		wg.Wait()
		if c.Len() > capacity || c.Weight() > int64(capacity)*4 {
			t.Fatalf("Len %d weight %d beyond capacity %d / weight %d", c.Len(), c.Weight(), capacity, capacity*4)
		}
	}
}

func TestCloseStopsClockGoroutine(t *testing.T) {
	c, err := New(Options[string, int]{Capacity: 10, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	c.Set("k", 1)
	c.Close()
	c.Close() // idempotent
	goleak.VerifyNone(t)
	if v, ok := c.Get("k"); !ok || v != 1 {
		t.Fatalf("after Close: Get = %d,%v; the cache stays usable", v, ok)
	}
	// The stopped clock falls back to exact reads: it keeps moving.
	first := c.now()
	for c.now() == first {
	}
}

func TestDefaultClockParksAndWakes(t *testing.T) {
	cc := newCoarseClock()
	// Stopped, the clock holds the parked marker for good, as a parked one
	// does until woken: a read must go to the system clock itself (and keep
	// moving) and leave a wake-up for the goroutine. Stopping it first keeps
	// its ticks from racing with the reads below.
	cc.close()
	if cc.now.Load() != 0 {
		t.Fatal("a stopped clock does not hold the parked marker")
	}
	a := cc.read()
	if a == 0 {
		t.Fatal("read returned the parked marker")
	}
	for cc.read() == a {
	}
	select {
	case <-cc.wake:
	default:
		t.Fatal("a read of the parked clock did not leave a wake-up")
	}
}

// An entry whose TTL is within the default clock's slack is reclaimed by the
// store that inserts it. If the cache is over its bound at that moment
// (another shard's writer in flight, simulated here), the eviction loop
// must not walk past the shard's last entry into the list's sentinel.
func TestTinyTTLWhileOverBound(t *testing.T) {
	c := newCache(t, Options[string, int]{Capacity: 4})
	c.Set("a", 1)
	c.size.Add(10) // as if writers elsewhere had the cache over its bound
	if !c.SetWith("tiny", 2, time.Microsecond, 1) {
		t.Fatal("SetWith refused")
	}
	c.size.Add(-10)
	if _, ok := c.Get("tiny"); ok {
		t.Fatal("an entry past its deadline was returned")
	}
	if c.Len() < 0 || c.Len() != len(c.shards[0].m) {
		t.Fatalf("Len %d, entries %d: the count drifted", c.Len(), len(c.shards[0].m))
	}
	c.Set("b", 3) // the shard's list must still be intact
	if _, ok := c.Get("b"); !ok {
		t.Fatal("the shard is broken after the tiny-TTL store")
	}
}

func TestGetInto(t *testing.T) {
	clock := newFakeClock()
	c := newCache(t, Options[string, int]{Capacity: 2, Clock: clock})
	c.SetWith("a", 1, time.Second, 1)
	c.Set("b", 2)
	dst := -1
	if !c.GetInto("a", &dst) || dst != 1 {
		t.Fatalf("GetInto(a) = %d", dst)
	}
	dst = -1
	if c.GetInto("missing", &dst) || dst != -1 {
		t.Fatalf("a miss wrote %d into dst", dst)
	}
	c.Set("c", 3) // a was used more recently than b: b goes
	if _, ok := c.Peek("b"); ok {
		t.Fatal("GetInto did not mark a as recently used")
	}
	clock.Advance(time.Second)
	if c.GetInto("a", &dst) || dst != -1 {
		t.Fatal("GetInto returned an expired entry")
	}
	if st := c.Stats(); st.Hits != 1 || st.Misses != 2 || st.Expirations != 1 {
		t.Fatalf("stats = %+v", st)
	}
}
