package tier

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// Each TTL loses a random fraction, up to Jitter, so that keys written
// together expire apart; in both tiers.
func TestTTLJitter(t *testing.T) {
	m, client, _ := newMiniredis(t)
	clock := newFakeClock()
	c := newCache[int](t, Options{Redis: client, Near: NearOptions{TTL: 100 * time.Second}, FarTTL: 100 * time.Second, Jitter: 0.5, Clock: clock})
	ctx := context.Background()
	distinct := map[time.Duration]bool{}
	const n = 50
	for i := range n {
		k := fmt.Sprint(i)
		if err := c.Set(ctx, k, i); err != nil {
			t.Fatal(err)
		}
		ttl := m.TTL("tier:" + k)
		if ttl > 100*time.Second || ttl < 50*time.Second {
			t.Fatalf("Redis TTL %v outside [50s, 100s]", ttl)
		}
		distinct[ttl] = true
	}
	if len(distinct) < 10 {
		t.Fatalf("only %d distinct Redis TTLs among %d keys: jitter is not applied", len(distinct), n)
	}
	near := func() (held int) {
		for i := range n {
			if _, ok := c.near.Peek(fmt.Sprint(i)); ok {
				held++
			}
		}
		return held
	}
	clock.Advance(50*time.Second - time.Millisecond)
	if h := near(); h != n {
		t.Fatalf("%d of %d near copies gone before NearTTL×(1-Jitter)", n-h, n)
	}
	clock.Advance(25 * time.Second)
	if h := near(); h == 0 || h == n {
		t.Fatalf("%d of %d near copies held three quarters into NearTTL: jitter is not applied near", h, n)
	}
	clock.Advance(25*time.Second + time.Millisecond)
	if h := near(); h != 0 {
		t.Fatalf("%d near copies outlived NearTTL", h)
	}
}

// No near copy outlives the Redis copy it came from: a far hit is kept
// near only for what is left of the value's TTL in Redis, as recorded in
// its header, however long NearTTL is.
func TestNearCopyNeverOutlivesFarCopy(t *testing.T) {
	// The replicas share a clock, as replicas synchronised by NTP do; the
	// deadline travels in the value's header.
	m, client, _ := newMiniredis(t)
	clock := newFakeClock()
	writer := newCache[string](t, Options{Redis: client, FarTTL: 3 * time.Second, Jitter: -1, Clock: clock})
	ctx := context.Background()
	if err := writer.Set(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	m.FastForward(time.Second)
	reader := newCache[string](t, Options{Redis: client, Near: NearOptions{TTL: time.Hour}, Jitter: -1, Clock: clock})
	r, err := reader.Fetch(ctx, "k", &countingLoader{})
	if err != nil || r.Source != SourceFar || r.Value != "v" {
		t.Fatalf("Fetch = %+v, %v, want a far hit", r, err)
	}
	clock.Advance(2*time.Second - time.Millisecond)
	if _, ok := reader.near.Peek("k"); !ok {
		t.Fatal("the near copy expired before the far one")
	}
	clock.Advance(time.Millisecond)
	if _, ok := reader.near.Peek("k"); ok {
		t.Fatal("the near copy outlived the far one")
	}

	// A far copy whose recorded deadline has passed (a reader whose clock
	// runs ahead of Redis's) is not served: it is reloaded and written
	// over.
	if err := writer.Set(ctx, "k2", "old"); err != nil {
		t.Fatal(err)
	}
	clock.Advance(4 * time.Second) // Redis, on its own clock, still holds k2
	if r, err := reader.Fetch(ctx, "k2", constLoader("new")); err != nil || r.Source != SourceLoad || r.Value != "new" {
		t.Fatalf("Fetch past the recorded deadline = %+v, %v; want a reload", r, err)
	}
	if got, _ := m.Get("tier:k2"); !strings.Contains(got, "new") {
		t.Fatalf("Redis holds %q after the reload, want new", got)
	}
}

// Whatever the TTLs, a value's near copy is gone by the time its Redis
// copy is: for loaded values, Set values and cached not-founds.
func TestNearTTLNeverExceedsFarTTLWritten(t *testing.T) {
	m, client, _ := newMiniredis(t)
	clock := newFakeClock()
	c := newCache[string](t, Options{Redis: client, NotFoundTTL: 10 * time.Second, FarTTL: 5 * time.Second, Clock: clock})
	ctx := context.Background()
	var keys []string
	for i := range 20 {
		absent, loaded, set := fmt.Sprint("absent-", i), fmt.Sprint("loaded-", i), fmt.Sprint("set-", i)
		if _, err := c.Get(ctx, absent, failLoader(ErrNotFound)); !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
		if _, err := c.Get(ctx, loaded, constLoader("v")); err != nil {
			t.Fatal(err)
		}
		if err := c.Set(ctx, set, "v"); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, absent, loaded, set)
	}
	far := map[string]time.Duration{}
	for _, k := range keys {
		if far[k] = m.TTL("tier:" + k); far[k] <= 0 {
			t.Fatalf("%s: Redis TTL %v", k, far[k])
		}
		if _, ok := c.near.Peek(k); !ok {
			t.Fatalf("%s: no near copy", k)
		}
	}
	slices.SortFunc(keys, func(a, b string) int { return int(far[a] - far[b]) })
	var elapsed time.Duration
	for _, k := range keys {
		clock.Advance(far[k] - elapsed)
		elapsed = far[k]
		if _, ok := c.near.Peek(k); ok {
			t.Fatalf("%s: the near copy outlives its Redis copy (%v)", k, far[k])
		}
	}
}
