package tier

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// waitFor polls cond until it holds; the deadline only turns a hang into
// a failure.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// A hit in the last fifth of a near entry's life refreshes it in the
// background: from the loader when Redis's copy ends soon too, so that
// the key never misses; the caller gets the current value at once.
func TestRefreshAheadReloads(t *testing.T) {
	m, client, _ := newMiniredis(t)
	clock := newFakeClock()
	var loads atomic.Int64
	loader := LoaderFunc[string](func(context.Context, string) (string, error) {
		return fmt.Sprint("v", loads.Add(1)), nil
	})
	c := newCache[string](t, Options{Redis: client, NearTTL: 10 * time.Second, FarTTL: 10 * time.Second,
		DisableJitter: true, RefreshAhead: 0.2, Clock: clock})
	ctx := context.Background()
	if v, _ := c.Get(ctx, "k", loader); v != "v1" {
		t.Fatalf("first Get = %q", v)
	}
	clock.Advance(5 * time.Second)
	m.FastForward(5 * time.Second)
	if v, _ := c.Get(ctx, "k", loader); v != "v1" || c.Stats().Refreshes != 0 {
		t.Fatalf("a hit with half its life left: %q, %d refreshes; want v1 and none", v, c.Stats().Refreshes)
	}
	clock.Advance(4 * time.Second) // 1s left, under 20% of 10s
	m.FastForward(4 * time.Second)
	if v, _ := c.Get(ctx, "k", loader); v != "v1" {
		t.Fatalf("the hit that starts the refresh got %q, want the current v1", v)
	}
	waitFor(t, "the refresh", func() bool {
		e, ok := c.near.Peek("k")
		return ok && e.value == "v2"
	})
	clock.Advance(5 * time.Second) // past the first entry's deadline
	m.FastForward(5 * time.Second)
	if r, err := c.Fetch(ctx, "k", loader); err != nil || r.Value != "v2" || r.Source != SourceNear {
		t.Fatalf("after the old deadline: %+v, %v; want v2 from the near tier", r, err)
	}
	if n := loads.Load(); n != 2 {
		t.Fatalf("%d loads, want 2", n)
	}
	if got, _ := m.Get("tier:k"); !strings.Contains(got, "v2") {
		t.Fatalf("Redis holds %q, want the refreshed v2", got)
	}
	if st := c.Stats(); st.Refreshes != 1 || st.RefreshErrors != 0 || st.Misses != 1 {
		t.Fatalf("Stats = %+v, want 1 refresh, no error, and only the first Get as a miss", st)
	}
}

// When Redis's copy has plenty of life left, a refresh renews the near
// entry from it, without a load.
func TestRefreshAheadFromRedis(t *testing.T) {
	m, client, _ := newMiniredis(t)
	clock := newFakeClock()
	var loads atomic.Int64
	loader := LoaderFunc[string](func(context.Context, string) (string, error) {
		loads.Add(1)
		return "v", nil
	})
	c := newCache[string](t, Options{Redis: client, NearTTL: 10 * time.Second, FarTTL: time.Hour,
		DisableJitter: true, RefreshAhead: 0.2, Clock: clock})
	ctx := context.Background()
	c.Get(ctx, "k", loader)
	clock.Advance(9 * time.Second)
	m.FastForward(9 * time.Second)
	c.Get(ctx, "k", loader)
	waitFor(t, "the refresh", func() bool {
		left, ok := c.near.TTL("k")
		return c.Stats().Refreshes == 1 && ok && left > 5*time.Second
	})
	if n := loads.Load(); n != 1 {
		t.Fatalf("%d loads, want 1: the refresh should read Redis", n)
	}
}

// A refresh whose load fails is counted; callers never see its error.
func TestRefreshAheadErrorIsCounted(t *testing.T) {
	clock := newFakeClock()
	fail := atomic.Bool{}
	loader := LoaderFunc[string](func(context.Context, string) (string, error) {
		if fail.Load() {
			return "", fmt.Errorf("source down")
		}
		return "v", nil
	})
	c := newCache[string](t, Options{NearTTL: 10 * time.Second, DisableJitter: true, RefreshAhead: 0.2, Clock: clock})
	ctx := context.Background()
	c.Get(ctx, "k", loader)
	fail.Store(true)
	clock.Advance(9 * time.Second)
	if v, err := c.Get(ctx, "k", loader); err != nil || v != "v" {
		t.Fatalf("Get = %q, %v; want the current value and no error", v, err)
	}
	waitFor(t, "the failed refresh", func() bool { return c.Stats().RefreshErrors == 1 })
}

func TestRefreshAheadValidated(t *testing.T) {
	for _, f := range []float64{-0.1, 1} {
		if _, err := New[string](Options{RefreshAhead: f}); err == nil || !strings.Contains(err.Error(), "RefreshAhead") {
			t.Errorf("RefreshAhead %v: New = %v, want an error naming it", f, err)
		}
	}
}

// A refresh whose reload fails leaves Redis's still valid copy alone.
func TestRefreshAheadFailureKeepsRedisCopy(t *testing.T) {
	m, client, _ := newMiniredis(t)
	clock := newFakeClock()
	var fail atomic.Bool
	loader := LoaderFunc[string](func(context.Context, string) (string, error) {
		if fail.Load() {
			return "", fmt.Errorf("source down")
		}
		return "v", nil
	})
	c := newCache[string](t, Options{Redis: client, NearTTL: 10 * time.Second, FarTTL: 10 * time.Second,
		DisableJitter: true, RefreshAhead: 0.2, Clock: clock})
	ctx := context.Background()
	c.Get(ctx, "k", loader)
	clock.Advance(9 * time.Second)
	m.FastForward(9 * time.Second)
	fail.Store(true)
	c.Get(ctx, "k", loader)
	waitFor(t, "the failed refresh", func() bool { return c.Stats().RefreshErrors == 1 })
	if !m.Exists("tier:k") {
		t.Fatal("a failed refresh deleted Redis's valid copy")
	}
}
