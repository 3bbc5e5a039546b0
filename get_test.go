package tier

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// schema is the value of the seed scenarios: a table's columns.
type schema struct {
	Table string
	Cols  []string
}

func schemaLoader(calls *atomic.Int64) LoaderFunc[schema] {
	return func(_ context.Context, table string) (schema, error) {
		calls.Add(1)
		return schema{Table: table, Cols: []string{"a", "b"}}, nil
	}
}

// within receives from ch, or fails the test if nothing comes within
// patience: it turns a hang into a failure.
func within[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(patience):
		t.Fatalf("waited in vain for %s", what)
		panic("unreachable")
	}
}

// The seed's scenario: the second read of a key is a near hit, and the
// source is asked once.
func TestSeedHitCounting(t *testing.T) {
	_, client, _ := newMiniredis(t)
	var calls atomic.Int64
	svc := newCache[schema](t, Options{Redis: client, Near: NearOptions{Capacity: 2}})
	ctx := context.Background()
	for range 2 {
		s, err := svc.Get(ctx, "users", schemaLoader(&calls))
		if err != nil || s.Table != "users" || !slices.Equal(s.Cols, []string{"a", "b"}) {
			t.Fatalf("Get = %+v, %v", s, err)
		}
	}
	if calls.Load() != 1 {
		t.Fatalf("loader calls = %d, want 1", calls.Load())
	}
	if st := svc.Stats(); st.NearHits != 1 || st.Loads != 1 || st.Misses != 1 || st.FarHits != 0 {
		t.Fatalf("stats = %+v, want 1 near hit, 1 miss, 1 load, no far hit", st)
	}
}

// The seed's TTL scenario: the near copy expires on the fake clock and the
// far copy in Redis on miniredis's; each expiry sends the read one tier
// down.
func TestSeedTTLExpiry(t *testing.T) {
	m, client, _ := newMiniredis(t)
	clock := newFakeClock()
	var calls atomic.Int64
	svc := newCache[schema](t, Options{
		Redis: client, Near: NearOptions{Capacity: 2, TTL: time.Second}, FarTTL: 10 * time.Second,
		Jitter: -1, Clock: clock,
	})
	ctx := context.Background()
	get := func() Source {
		t.Helper()
		r, err := svc.Fetch(ctx, "accounts", schemaLoader(&calls))
		if err != nil || r.Value.Table != "accounts" {
			t.Fatalf("Fetch = %+v, %v", r, err)
		}
		return r.Source
	}
	if s := get(); s != SourceLoad {
		t.Fatalf("first read from %v, want load", s)
	}
	if s := get(); s != SourceNear {
		t.Fatalf("second read from %v, want near", s)
	}
	clock.Advance(2 * time.Second) // near copy expired; Redis copy has 8s left
	m.FastForward(2 * time.Second)
	if s := get(); s != SourceFar {
		t.Fatalf("read after the near TTL from %v, want far", s)
	}
	if s := get(); s != SourceNear {
		t.Fatalf("read after a far hit from %v, want near", s)
	}
	clock.Advance(20 * time.Second)
	m.FastForward(20 * time.Second)
	if s := get(); s != SourceLoad {
		t.Fatalf("read after both TTLs from %v, want load", s)
	}
	if calls.Load() != 2 {
		t.Fatalf("loader calls = %d, want 2 (reloaded after both TTLs)", calls.Load())
	}
}

// The seed's LRU scenario: an entry evicted from the near tier is read
// back from Redis, not from the loader.
func TestSeedLRUEvictionReadsRedis(t *testing.T) {
	_, client, _ := newMiniredis(t)
	var calls atomic.Int64
	svc := newCache[schema](t, Options{Redis: client, Near: NearOptions{Capacity: 2}})
	ctx := context.Background()
	for _, k := range []string{"a", "b", "a", "c"} { // c evicts b, the least recently used
		if _, err := svc.Get(ctx, k, schemaLoader(&calls)); err != nil {
			t.Fatal(err)
		}
	}
	if calls.Load() != 3 {
		t.Fatalf("loader calls = %d, want 3", calls.Load())
	}
	if r, _ := svc.Fetch(ctx, "a", schemaLoader(&calls)); r.Source != SourceNear {
		t.Fatalf("a (recently used) came from %v, want near", r.Source)
	}
	r, err := svc.Fetch(ctx, "b", schemaLoader(&calls))
	if err != nil || r.Value.Table != "b" || r.Source != SourceFar {
		t.Fatalf("Fetch(b) = %+v, %v; want the evicted b from far", r, err)
	}
	if calls.Load() != 3 {
		t.Fatalf("loader calls = %d, want still 3", calls.Load())
	}
	if st := svc.Stats(); st.Evictions == 0 {
		t.Fatalf("Evictions = 0 after overflowing a 2-entry near tier: %+v", st)
	}
}

// Many goroutines ask for one cold key: the loader runs once and Redis is
// read once.
func TestSingleFlight(t *testing.T) {
	for _, n := range []int{2, 1000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			_, client, counter := newMiniredis(t)
			c := newCache[string](t, Options{Redis: client})
			var calls, started atomic.Int64
			allStarted := make(chan struct{})
			loader := LoaderFunc[string](func(ctx context.Context, key string) (string, error) {
				calls.Add(1)
				<-allStarted // hold the load until every goroutine has asked
				return "v:" + key, nil
			})
			var wg sync.WaitGroup
			errs := make(chan error, n)
			for range n {
				wg.Go(func() {
					if started.Add(1) == int64(n) {
						close(allStarted)
					}
					v, err := c.Get(context.Background(), "hot", loader)
					if err == nil && v != "v:hot" {
						err = fmt.Errorf("got %q", v)
					}
					if err != nil {
						errs <- err
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			if calls.Load() != 1 {
				t.Fatalf("loader ran %d times for %d callers, want 1", calls.Load(), n)
			}
			if got := counter.count("GET"); got != 1 {
				t.Fatalf("Redis GETs = %d for %d callers, want 1", got, n)
			}
		})
	}
}

// A far hit is one round trip holding one plain GET: the value's deadline
// comes from its header, not a PTTL.
func TestFarHitIsOnePlainGet(t *testing.T) {
	_, client, counter := newMiniredis(t)
	writer := newCache[string](t, Options{Redis: client, Invalidation: InvalidationOptions{Disabled: true}})
	reader := newCache[string](t, Options{Redis: client, Invalidation: InvalidationOptions{Disabled: true}})
	ctx := context.Background()
	if err := writer.Set(ctx, "a", "va"); err != nil {
		t.Fatal(err)
	}
	counter.reset()
	if r, err := reader.Fetch(ctx, "a", &countingLoader{}); err != nil || r.Source != SourceFar || r.Value != "va" {
		t.Fatalf("Fetch = %+v, %v; want a far hit", r, err)
	}
	if trips := counter.trips.Load(); trips != 1 || fmt.Sprint(counter.commands) != "[GET]" {
		t.Fatalf("a far hit cost %d round trips: %v; want 1: [GET]", trips, counter.commands)
	}
	if st := reader.Stats(); st.FarHits != 1 || st.Misses != 0 || st.Loads != 0 {
		t.Fatalf("stats = %+v, want 1 far hit and no miss", st)
	}
}

// Wrap caches a function behind its own signature.
func TestWrap(t *testing.T) {
	c := newCache[string](t, Options{})
	var calls atomic.Int64
	lookup := func(_ context.Context, id string) (string, error) {
		calls.Add(1)
		if id == "0" {
			return "", ErrNotFound
		}
		return "user " + id, nil
	}
	cached := c.Wrap(lookup)
	for range 3 {
		if v, err := cached(context.Background(), "42"); err != nil || v != "user 42" {
			t.Fatalf("cached = %q, %v", v, err)
		}
		if _, err := cached(context.Background(), "0"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("cached(0) = %v, want ErrNotFound", err)
		}
	}
	if calls.Load() != 2 {
		t.Fatalf("wrapped function ran %d times, want 2 (once per key)", calls.Load())
	}
}

// Fetch says where each value came from.
func TestFetchSources(t *testing.T) {
	_, client, _ := newMiniredis(t)
	a := newCache[string](t, Options{Redis: client})
	b := newCache[string](t, Options{Redis: client})
	ctx := context.Background()
	for i, step := range []struct {
		c    *Cache[string]
		want Source
	}{{a, SourceLoad}, {a, SourceNear}, {b, SourceFar}, {b, SourceNear}} {
		r, err := step.c.Fetch(ctx, "k", constLoader("v"))
		if err != nil || r.Value != "v" || r.Source != step.want || r.Stale {
			t.Fatalf("step %d: Fetch = %+v, %v; want v from %v", i, r, err, step.want)
		}
	}
	for s, want := range map[Source]string{SourceNear: "near", SourceFar: "far", SourceLoad: "load", 9: "Source(9)"} {
		if s.String() != want {
			t.Errorf("Source(%d).String() = %q, want %q", uint8(s), s.String(), want)
		}
	}
}

// Get returns a near entry by itself only when it is a plain, fresh value
// (see fetch): an entry whose tag was invalidated, or that is past its TTL
// and kept for StaleGrace, is reloaded by Get as by Fetch.
func TestGetReloadsWhatFetchWould(t *testing.T) {
	ctx := context.Background()
	t.Run("tag invalidated", func(t *testing.T) {
		c := newCache[string](t, Options{})
		loads := &countingLoader{}
		if v, err := c.Get(ctx, "a", taggingLoader(loads, "t1")); err != nil || v != "a#1" {
			t.Fatalf("first Get = %q, %v", v, err)
		}
		if err := c.InvalidateTag(ctx, "t1"); err != nil {
			t.Fatal(err)
		}
		if v, err := c.Get(ctx, "a", taggingLoader(loads, "t1")); err != nil || v != "a#2" {
			t.Fatalf("Get after InvalidateTag = %q, %v; want the reloaded a#2", v, err)
		}
	})
	t.Run("past its TTL, within StaleGrace", func(t *testing.T) {
		clock := newFakeClock()
		c := newCache[string](t, Options{Near: NearOptions{TTL: 10 * time.Second}, Jitter: -1,
			Refresh: RefreshOptions{StaleGrace: time.Minute}, Clock: clock})
		loader := &versionLoader{}
		if v, err := c.Get(ctx, "k", loader); err != nil || v != "v1" {
			t.Fatalf("first Get = %q, %v", v, err)
		}
		clock.Advance(11 * time.Second)
		if v, err := c.Get(ctx, "k", loader); err != nil || v != "v2" {
			t.Fatalf("Get past the TTL = %q, %v; want the reloaded v2", v, err)
		}
	})
}
