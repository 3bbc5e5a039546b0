package tier

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// settle waits until the flight of key under way in c, if any, has
// ended: a background refresh, or a reload that a caller stopped waiting
// for. A flight fills the tiers before it ends.
func settle[V any](t *testing.T, c *Cache[V], key string) {
	t.Helper()
	f, ok := c.flights.Load(key)
	if !ok {
		return // ended already
	}
	select {
	case <-f.(*flight[V]).done:
	case <-time.After(patience):
		t.Fatalf("the flight of %q never ended", key)
	}
}

// versionLoader loads "v1", "v2", ... and counts its calls.
type versionLoader struct {
	calls atomic.Int64
	fail  atomic.Bool
}

func (l *versionLoader) Load(context.Context, string) (string, error) {
	n := l.calls.Add(1)
	if l.fail.Load() {
		return "", errors.New("source down")
	}
	return fmt.Sprint("v", n), nil
}

// A hit in the last fifth of a near entry's life refreshes it in the
// background: from the loader when Redis's copy ends soon too, so that
// the key never misses; the caller gets the current value at once.
func TestRefreshAheadReloads(t *testing.T) {
	m, client, _ := newMiniredis(t)
	clock := newFakeClock()
	loader := &versionLoader{}
	c := newCache[string](t, Options{Redis: client, Near: NearOptions{TTL: 10 * time.Second}, FarTTL: 10 * time.Second,
		Jitter: -1, Refresh: RefreshOptions{Ahead: 0.2}, Clock: clock})
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
	if r, err := c.Fetch(ctx, "k", loader); err != nil || r.Value != "v1" || r.Source != SourceNear {
		t.Fatalf("the hit that starts the refresh got %+v, %v; want the current v1 from near", r, err)
	}
	settle(t, c, "k")
	clock.Advance(5 * time.Second) // past the first entry's deadline
	m.FastForward(5 * time.Second)
	if r, err := c.Fetch(ctx, "k", loader); err != nil || r.Value != "v2" || r.Source != SourceNear {
		t.Fatalf("after the old deadline: %+v, %v; want v2 from the near tier", r, err)
	}
	if n := loader.calls.Load(); n != 2 {
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
	loader := &versionLoader{}
	c := newCache[string](t, Options{Redis: client, Near: NearOptions{TTL: 10 * time.Second}, FarTTL: time.Hour,
		Jitter: -1, Refresh: RefreshOptions{Ahead: 0.2}, Clock: clock})
	ctx := context.Background()
	if _, err := c.Get(ctx, "k", loader); err != nil {
		t.Fatal(err)
	}
	clock.Advance(9 * time.Second)
	m.FastForward(9 * time.Second)
	if v, err := c.Get(ctx, "k", loader); err != nil || v != "v1" {
		t.Fatalf("Get = %q, %v", v, err)
	}
	settle(t, c, "k")
	clock.Advance(5 * time.Second) // past the first entry's deadline
	if r, err := c.Fetch(ctx, "k", loader); err != nil || r.Value != "v1" || r.Source != SourceNear {
		t.Fatalf("after the old deadline: %+v, %v; want v1 renewed in the near tier", r, err)
	}
	if n := loader.calls.Load(); n != 1 {
		t.Fatalf("%d loads, want 1: the refresh should read Redis", n)
	}
	if st := c.Stats(); st.Refreshes != 1 || st.FarHits != 1 {
		t.Fatalf("stats = %+v, want 1 refresh answered by Redis", st)
	}
}

// Hits in the refresh window while a refresh is under way start no other.
func TestRefreshAheadStartsOneRefresh(t *testing.T) {
	clock := newFakeClock()
	entered, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int64
	loader := LoaderFunc[string](func(ctx context.Context, _ string) (string, error) {
		if calls.Add(1) == 2 {
			close(entered)
			select {
			case <-release:
			case <-ctx.Done(): // the test ended early
				return "", ctx.Err()
			}
		}
		return "v", nil
	})
	c := newCache[string](t, Options{Near: NearOptions{TTL: 10 * time.Second}, Jitter: -1, Refresh: RefreshOptions{Ahead: 0.2}, Clock: clock})
	ctx := context.Background()
	if _, err := c.Get(ctx, "k", loader); err != nil {
		t.Fatal(err)
	}
	clock.Advance(9 * time.Second)
	if _, err := c.Get(ctx, "k", loader); err != nil {
		t.Fatal(err)
	}
	within(t, entered, "the refresh")
	for range 10 {
		if r, err := c.Fetch(ctx, "k", loader); err != nil || r.Source != SourceNear {
			t.Fatalf("a hit during the refresh = %+v, %v; want the near value at once", r, err)
		}
	}
	close(release)
	settle(t, c, "k")
	if n, st := calls.Load(), c.Stats(); n != 2 || st.Refreshes != 1 {
		t.Fatalf("%d loads and %d refreshes, want 2 and 1", n, st.Refreshes)
	}
	// The refreshed entry starts a new life: no refresh until its own window.
	clock.Advance(5 * time.Second)
	if _, err := c.Get(ctx, "k", loader); err != nil {
		t.Fatal(err)
	}
	settle(t, c, "k")
	if st := c.Stats(); st.Refreshes != 1 {
		t.Fatalf("%d refreshes, want still 1", st.Refreshes)
	}
}

// A refresh whose load fails is counted; callers never see its error, and
// the entry serves until it expires.
func TestRefreshAheadErrorIsCounted(t *testing.T) {
	clock := newFakeClock()
	loader := &versionLoader{}
	c := newCache[string](t, Options{Near: NearOptions{TTL: 10 * time.Second}, Jitter: -1, Refresh: RefreshOptions{Ahead: 0.2}, Clock: clock})
	ctx := context.Background()
	if _, err := c.Get(ctx, "k", loader); err != nil {
		t.Fatal(err)
	}
	loader.fail.Store(true)
	clock.Advance(9 * time.Second)
	if v, err := c.Get(ctx, "k", loader); err != nil || v != "v1" {
		t.Fatalf("Get = %q, %v; want the current value and no error", v, err)
	}
	settle(t, c, "k")
	if st := c.Stats(); st.RefreshErrors != 1 || st.Refreshes != 1 || st.LoadErrors != 1 {
		t.Fatalf("stats = %+v, want 1 refresh, failed", st)
	}
	clock.Advance(500 * time.Millisecond)
	if r, err := c.Fetch(ctx, "k", loader); err != nil || r.Value != "v1" || r.Source != SourceNear {
		t.Fatalf("Fetch after the failed refresh = %+v, %v; want v1 still served", r, err)
	}
	settle(t, c, "k")
	clock.Advance(time.Second)
	if _, err := c.Get(ctx, "k", loader); err == nil {
		t.Fatal("an entry past its TTL was served after its refreshes failed")
	}
}

// A refresh whose reload fails leaves Redis's still valid copy alone.
func TestRefreshAheadFailureKeepsRedisCopy(t *testing.T) {
	m, client, _ := newMiniredis(t)
	clock := newFakeClock()
	loader := &versionLoader{}
	c := newCache[string](t, Options{Redis: client, Near: NearOptions{TTL: 10 * time.Second}, FarTTL: 10 * time.Second,
		Jitter: -1, Refresh: RefreshOptions{Ahead: 0.2}, Clock: clock})
	ctx := context.Background()
	if _, err := c.Get(ctx, "k", loader); err != nil {
		t.Fatal(err)
	}
	clock.Advance(9 * time.Second)
	m.FastForward(9 * time.Second)
	loader.fail.Store(true)
	if v, err := c.Get(ctx, "k", loader); err != nil || v != "v1" {
		t.Fatalf("Get = %q, %v", v, err)
	}
	settle(t, c, "k")
	if st := c.Stats(); st.RefreshErrors != 1 {
		t.Fatalf("RefreshErrors = %d, want 1", st.RefreshErrors)
	}
	if got, err := m.Get("tier:k"); err != nil || !strings.Contains(got, "v1") {
		t.Fatalf("after a failed refresh Redis holds %q, %v; want its valid v1", got, err)
	}
	other := newCache[string](t, Options{Redis: client, Clock: clock})
	if r, err := other.Fetch(ctx, "k", loader); err != nil || r.Value != "v1" || r.Source != SourceFar {
		t.Fatalf("another replica reads %+v, %v; want v1 from Redis", r, err)
	}
}
