package tier

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tier-cache/tier/internal/redistest"
)

// With StaleGrace, an expired value is served when its reload fails,
// from the near tier or from Redis; a deleted key never is.
func TestStaleGrace(t *testing.T) {
	m, client, _ := newMiniredis(t)
	clock := newFakeClock()
	var failing atomic.Bool
	var loads atomic.Int64
	loader := LoaderFunc[string](func(context.Context, string) (string, error) {
		loads.Add(1)
		if failing.Load() {
			return "", errors.New("source down")
		}
		return "v", nil
	})
	opts := Options{Redis: client, NearTTL: 10 * time.Second, FarTTL: 10 * time.Second, DisableJitter: true,
		StaleGrace: time.Minute, Clock: clock}
	c := newCache[string](t, opts)
	ctx := context.Background()
	if v, err := c.Get(ctx, "k", loader); err != nil || v != "v" {
		t.Fatalf("first Get = %q, %v", v, err)
	}
	clock.Advance(11 * time.Second)
	m.FastForward(11 * time.Second)
	failing.Store(true)
	r, err := c.Fetch(ctx, "k", loader)
	if err != nil || r.Value != "v" || !r.Stale || r.Source != SourceNear {
		t.Fatalf("Fetch of an expired key whose reload fails = %+v, %v; want the stale v from near", r, err)
	}
	if n := loads.Load(); n != 2 {
		t.Fatalf("%d loads, want 2: the expired key is reloaded", n)
	}
	// A replica with an empty near tier finds the stale copy in Redis.
	other := newCache[string](t, opts)
	if v, err := other.Get(ctx, "k", loader); err != nil || v != "v" {
		t.Fatalf("other replica = %q, %v; want the stale v from Redis", v, err)
	}
	if st := c.Stats(); st.StaleServed != 1 {
		t.Fatalf("StaleServed = %d, want 1", st.StaleServed)
	}
	// Past the grace, nothing stale is left.
	clock.Advance(time.Minute)
	m.FastForward(time.Minute)
	if _, err := c.Get(ctx, "k", loader); err == nil {
		t.Fatal("a value past its grace was served")
	}
	// Only expiry earns grace: a deleted key is never served stale.
	failing.Store(false)
	c.Get(ctx, "d", loader)
	clock.Advance(11 * time.Second)
	m.FastForward(11 * time.Second)
	if err := c.Delete(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	failing.Store(true)
	if v, err := c.Get(ctx, "d", loader); err == nil {
		t.Fatalf("a deleted key was served stale: %q", v)
	}
}

// With SoftTimeout, a caller holding a stale value waits that long for a
// slow reload, then gets the stale value; the reload goes on and lands.
func TestStaleGraceSoftTimeout(t *testing.T) {
	clock := newFakeClock()
	release := make(chan struct{})
	var slow atomic.Bool
	loader := LoaderFunc[string](func(ctx context.Context, key string) (string, error) {
		if slow.Load() {
			<-release
			return "new", nil
		}
		return "old", nil
	})
	c := newCache[string](t, Options{NearTTL: 10 * time.Second, DisableJitter: true,
		StaleGrace: time.Minute, SoftTimeout: 20 * time.Millisecond, Clock: clock})
	ctx := context.Background()
	c.Get(ctx, "k", loader)
	clock.Advance(11 * time.Second)
	slow.Store(true)
	if v, err := c.Get(ctx, "k", loader); err != nil || v != "old" {
		t.Fatalf("Get during a slow reload = %q, %v; want the stale old", v, err)
	}
	close(release)
	waitFor(t, "the reload to land", func() bool {
		e, ok := c.near.Peek("k")
		return ok && e.value == "new"
	})
	if v, _ := c.Get(ctx, "k", loader); v != "new" {
		t.Fatalf("after the reload: %q, want new", v)
	}
}

// The stale copy in Redis, on a real redis-server: the Lua swap of the
// reload must leave it when the load fails, and replace it when the load
// succeeds. (The value's header is judged by the fake clock; Redis keeps
// the key for FarTTL + StaleGrace of real time.)
func TestStaleGraceRealRedis(t *testing.T) {
	srv := redistest.Start(t)
	clock := newFakeClock()
	var failing atomic.Bool
	loader := LoaderFunc[string](func(context.Context, string) (string, error) {
		if failing.Load() {
			return "", errors.New("source down")
		}
		return "fresh", nil
	})
	opts := Options{Redis: srv.Client(t), Namespace: "stale", NearTTL: 10 * time.Second, FarTTL: 10 * time.Second,
		DisableJitter: true, StaleGrace: time.Minute, Clock: clock}
	a := newCache[string](t, opts)
	ctx := context.Background()
	if err := a.Set(ctx, "k", "old"); err != nil {
		t.Fatal(err)
	}
	clock.Advance(11 * time.Second)
	failing.Store(true)
	for i := range 2 { // a fresh replica each time: the stale copy stays in Redis
		opts.Redis = srv.Client(t)
		r, err := newCache[string](t, opts).Fetch(ctx, "k", loader)
		if err != nil || r.Value != "old" || !r.Stale || r.Source != SourceFar {
			t.Fatalf("replica %d: %+v, %v; want the stale old from Redis", i, r, err)
		}
	}
	failing.Store(false)
	opts.Redis = srv.Client(t)
	if r, err := newCache[string](t, opts).Fetch(ctx, "k", loader); err != nil || r.Value != "fresh" || r.Stale {
		t.Fatalf("after the source is back: %+v, %v; want a fresh load", r, err)
	}
	opts.Redis = srv.Client(t)
	if r, err := newCache[string](t, opts).Fetch(ctx, "k", loader); err != nil || r.Value != "fresh" || r.Source != SourceFar {
		t.Fatalf("the reload did not replace the stale copy in Redis: %+v, %v", r, err)
	}
}

// With StaleGrace, a cached "not found" still lives NotFoundTTL, in Redis
// too: a key the source has made since is loaded once it is over, not
// StaleGrace later.
func TestNotFoundEarnsNoGrace(t *testing.T) {
	m, client, _ := newMiniredis(t)
	clock := newFakeClock()
	var exists atomic.Bool
	loader := LoaderFunc[string](func(context.Context, string) (string, error) {
		if !exists.Load() {
			return "", ErrNotFound
		}
		return "made", nil
	})
	opts := Options{Redis: client, NotFoundTTL: 10 * time.Second, DisableJitter: true,
		StaleGrace: time.Hour, Clock: clock}
	a := newCache[string](t, opts)
	b := newCache[string](t, opts)
	ctx := context.Background()
	if _, err := a.Get(ctx, "k", loader); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of a missing key: %v", err)
	}
	if ttl := m.TTL("tier:k"); ttl <= 0 || ttl > 10*time.Second {
		t.Fatalf("the Redis tombstone lives %v, want NotFoundTTL (10s)", ttl)
	}
	exists.Store(true)
	clock.Advance(11 * time.Second)
	m.FastForward(11 * time.Second)
	for _, c := range []*Cache[string]{a, b} {
		if v, err := c.Get(ctx, "k", loader); err != nil || v != "made" {
			t.Fatalf("Get past NotFoundTTL = %q, %v; want the value the source made", v, err)
		}
	}
}

// With StaleGrace, GetMany treats a Redis copy past its TTL as Get does:
// it reloads it and writes over it, and serves it only when the reload
// fails.
func TestGetManyReloadsExpired(t *testing.T) {
	m, client, _ := newMiniredis(t)
	clock := newFakeClock()
	var failing atomic.Bool
	var loads atomic.Int64
	batch := BatchLoaderFunc[string](func(_ context.Context, keys []string) (map[string]string, error) {
		loads.Add(1)
		if failing.Load() {
			return nil, errors.New("source down")
		}
		out := map[string]string{}
		for _, k := range keys {
			out[k] = fmt.Sprintf("%s-%d", k, loads.Load())
		}
		return out, nil
	})
	opts := Options{Redis: client, NearTTL: 10 * time.Second, FarTTL: 10 * time.Second, DisableJitter: true,
		StaleGrace: time.Hour, Clock: clock}
	a := newCache[string](t, opts)
	b := newCache[string](t, opts)
	ctx := context.Background()
	if got, err := a.GetMany(ctx, []string{"k"}, batch); err != nil || got["k"] != "k-1" {
		t.Fatalf("first GetMany = %v, %v", got, err)
	}
	clock.Advance(30 * time.Minute) // past FarTTL, within the grace
	m.FastForward(30 * time.Minute)

	failing.Store(true)
	got, err := b.GetMany(ctx, []string{"k"}, batch)
	if err != nil || got["k"] != "k-1" {
		t.Fatalf("GetMany of an expired key whose reload fails = %v, %v; want the stale k-1 and no error", got, err)
	}
	if st := b.Stats(); st.StaleServed != 1 {
		t.Fatalf("StaleServed = %d, want 1", st.StaleServed)
	}
	got, err = b.GetMany(ctx, []string{"k", "other"}, batch)
	if err == nil || got["k"] != "k-1" {
		t.Fatalf("GetMany with a key that has nothing stale = %v, %v; want k's stale value and an error", got, err)
	}

	failing.Store(false)
	before := loads.Load()
	if got, err := b.GetMany(ctx, []string{"k"}, batch); err != nil || got["k"] == "k-1" {
		t.Fatalf("GetMany of an expired key with a working source = %v, %v; want a reloaded value", got, err)
	}
	if loads.Load() != before+1 {
		t.Fatalf("%d loads, want 1", loads.Load()-before)
	}
	if v, err := m.Get("tier:k"); err != nil || !strings.Contains(v, "k-") || strings.Contains(v, "k-1") {
		t.Fatalf("Redis holds %q, %v: want the reloaded value written over the expired one", v, err)
	}
}
