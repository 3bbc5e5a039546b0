package tiertest_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tier-cache/tier"
	"github.com/tier-cache/tier/tiertest"
)

// The clock moves only when told, and moves the Redis TTLs with it.
func TestClockMovesBothTiers(t *testing.T) {
	r := tiertest.NewRedis(t)
	clock := tiertest.NewClock(r)
	start := clock.Now()
	if want := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC); !start.Equal(want) {
		t.Fatalf("a new clock reads %v, want %v", start, want)
	}
	ctx := context.Background()
	if err := r.Client().Set(ctx, "k", "v", time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	clock.Advance(999 * time.Millisecond)
	if !r.Exists("k") {
		t.Fatal("the key expired before its TTL")
	}
	clock.Advance(time.Millisecond)
	if r.Exists("k") {
		t.Fatal("the key outlived its TTL")
	}
	if got := clock.Now().Sub(start); got != time.Second {
		t.Fatalf("the clock moved %v, want 1s", got)
	}
	defer func() {
		if recover() == nil {
			t.Error("Advance(-1ns) did not panic")
		}
	}()
	clock.Advance(-1)
}

// A cache's near and far TTLs both run on the clock.
func TestClockExpiresBothTiersOfACache(t *testing.T) {
	r := tiertest.NewRedis(t)
	clock := tiertest.NewClock(r)
	c := tiertest.Replicas[string](t, 1, tier.Options{
		Redis: r.Client(), Clock: clock, Near: tier.NearOptions{TTL: time.Minute}, FarTTL: time.Hour, Jitter: -1,
	})[0]
	var loads atomic.Int64
	load := tier.LoaderFunc[string](func(context.Context, string) (string, error) {
		return fmt.Sprint("load ", loads.Add(1)), nil
	})
	for _, step := range []struct {
		advance time.Duration
		want    string
	}{
		{0, "load 1 from load"},
		{59 * time.Second, "load 1 from near"},
		{time.Minute, "load 1 from far"},
		{time.Hour, "load 2 from load"},
	} {
		clock.Advance(step.advance)
		res, err := c.Fetch(context.Background(), "k", load)
		if got := fmt.Sprintf("%s from %s", res.Value, res.Source); err != nil || got != step.want {
			t.Fatalf("after %v more: %q, %v; want %q", step.advance, got, err, step.want)
		}
	}
}

// Replicas fills in an embedded Redis that they share, and a fake clock.
func TestReplicasShareARedis(t *testing.T) {
	caches := tiertest.Replicas[string](t, 3, tier.Options{})
	ctx := context.Background()
	load := tier.LoaderFunc[string](func(context.Context, string) (string, error) { return "v", nil })
	for i, c := range caches {
		if h := c.Health(); h.Degraded {
			t.Errorf("replica %d: %v", i, h)
		}
		want := map[bool]tier.Source{true: tier.SourceLoad, false: tier.SourceFar}[i == 0]
		if res, err := c.Fetch(ctx, "k", load); err != nil || res.Source != want {
			t.Errorf("replica %d: Get from %v (%v), want %v", i, res.Source, err, want)
		}
	}
}

// After Sync, no replica serves what a change on another replaced,
// whichever change it was, however many times in a row.
func TestSyncAfterEachChange(t *testing.T) {
	ctx := context.Background()
	for _, change := range []struct {
		name string
		do   func(c *tier.Cache[int], v int) error
	}{
		{"Set", func(c *tier.Cache[int], v int) error { return c.Set(ctx, "k", v) }},
		{"Delete", func(c *tier.Cache[int], _ int) error { return c.Delete(ctx, "k") }},
		{"Invalidate", func(c *tier.Cache[int], _ int) error { return c.Invalidate(ctx, "k") }},
		{"InvalidateAll", func(c *tier.Cache[int], _ int) error { return c.InvalidateAll(ctx) }},
	} {
		t.Run(change.name, func(t *testing.T) {
			caches := tiertest.Replicas[int](t, 3, tier.Options{})
			var source atomic.Int64 // the source of truth
			load := tier.LoaderFunc[int](func(context.Context, string) (int, error) { return int(source.Load()), nil })
			for round := 1; round <= 20; round++ {
				for _, c := range caches {
					if _, err := c.Get(ctx, "k", load); err != nil { // each holds the old value near
						t.Fatal(err)
					}
				}
				source.Store(int64(round))
				writer := round % 3
				if err := change.do(caches[writer], round); err != nil {
					t.Fatal(err)
				}
				if change.name == "Invalidate" || change.name == "InvalidateAll" {
					// Redis still holds the old value: an operator's fix.
					if err := caches[0].Delete(ctx, "k"); err != nil {
						t.Fatal(err)
					}
				}
				tiertest.Sync(t, caches...)
				for i, c := range caches {
					res, err := c.Fetch(ctx, "k", load)
					// The writer of a Set reads its own write from near.
					fromNear := res.Source == tier.SourceNear && !(i == writer && change.name == "Set")
					if err != nil || res.Value != round || fromNear {
						t.Fatalf("round %d: replica %d got %d from %v (%v), want %d not from near", round, i, res.Value, res.Source, err, round)
					}
				}
			}
		})
	}
}

// Sync adds nothing a replica would count: OnPropagation sees each Set
// once, and Stats.Invalidations counts only the Sets heard.
func TestSyncCountsNothing(t *testing.T) {
	var lags atomic.Int64
	caches := tiertest.Replicas[string](t, 2, tier.Options{Invalidation: tier.InvalidationOptions{
		OnPropagation: func(time.Duration) { lags.Add(1) },
	}})
	ctx := context.Background()
	for range 3 {
		if err := caches[0].Set(ctx, "k", "v"); err != nil {
			t.Fatal(err)
		}
	}
	tiertest.Sync(t, caches...)
	tiertest.Sync(t, caches...)
	if n := lags.Load(); n != 3 {
		t.Errorf("OnPropagation called %d times, want 3: once per Set, heard by the other replica", n)
	}
	for i, want := range []uint64{0, 3} {
		if got := caches[i].Stats().Invalidations; got != want {
			t.Errorf("replica %d: Stats.Invalidations = %d, want %d", i, got, want)
		}
	}
}

// Sync has nothing to wait for without invalidation, nor for a near-only
// cache.
func TestSyncWithoutInvalidation(t *testing.T) {
	off := tiertest.Replicas[string](t, 2, tier.Options{Invalidation: tier.InvalidationOptions{Disabled: true}})
	tiertest.Sync(t, off...)
	nearOnly, err := tier.New[string](tier.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer nearOnly.Close()
	tiertest.Sync(t, nearOnly)
}
