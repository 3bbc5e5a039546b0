package tier

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
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
