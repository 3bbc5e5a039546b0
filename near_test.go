package tier

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// Without Redis, the near tier alone caches: evicted keys are loaded
// again, and Set and Delete work on it.
func TestNearOnly(t *testing.T) {
	c := newCache[string](t, Options{Near: NearOptions{Capacity: 2}})
	l := &countingLoader{}
	ctx := context.Background()
	for _, k := range []string{"a", "b", "a", "c", "b"} {
		if _, err := c.Get(ctx, k, l); err != nil {
			t.Fatal(err)
		}
	}
	if l.calls.Load() != 4 {
		t.Fatalf("loads = %d, want 4 (b reloaded after eviction)", l.calls.Load())
	}
	if err := c.Set(ctx, "s", "v"); err != nil {
		t.Fatal(err)
	}
	if r, err := c.Fetch(ctx, "s", l); err != nil || r.Value != "v" || r.Source != SourceNear {
		t.Fatalf("Fetch after Set = %+v, %v", r, err)
	}
	if err := c.Delete(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	if r, err := c.Fetch(ctx, "s", constLoader("reloaded")); err != nil || r.Value != "reloaded" || r.Source != SourceLoad {
		t.Fatalf("Fetch after Delete = %+v, %v", r, err)
	}
	if h := c.Health(); h.Redis.State != StateOff || h.Subscription.State != StateOff || h.Degraded {
		t.Fatalf("Health of a near-only cache = %+v", h)
	}
}

// With no Redis, a Set of a key the near tier holds replaces its value,
// and the value is what Get returns.
func TestNearOnlySetReplaces(t *testing.T) {
	c := newCache[int](t, Options{})
	ctx := context.Background()
	i := 0
	for range 100 {
		i++
		if err := c.Set(ctx, "k", i); err != nil {
			t.Fatal(err)
		}
	}
	if v, err := c.Get(ctx, "k", LoaderFunc[int](func(context.Context, string) (int, error) { return -1, nil })); v != i || err != nil {
		t.Errorf("Get = %d, %v; want the last Set's %d", v, err, i)
	}
	if n := c.near.Len(); n != 1 {
		t.Errorf("the near tier holds %d entries, want 1", n)
	}
}

// A near hit allocates nothing, with refresh and grace configured too, and
// for a value of a struct type.
func TestNearHitAllocatesNothing(t *testing.T) {
	_, client, _ := newMiniredis(t)
	ctx := context.Background()
	for name, opts := range map[string]Options{
		"Redis":               {Redis: client},
		"near only":           {},
		"refresh and grace":   {Redis: client, Refresh: RefreshOptions{Ahead: 0.1, StaleGrace: time.Minute}},
		"a NotFound answered": {Redis: client},
	} {
		t.Run(name, func(t *testing.T) {
			c := newCache[schema](t, opts)
			var calls atomic.Int64
			loader := schemaLoader(&calls)
			if name == "a NotFound answered" {
				loader = func(context.Context, string) (schema, error) { return schema{}, ErrNotFound }
			}
			c.Get(ctx, "k", loader)
			if n := testing.AllocsPerRun(100, func() {
				if r, _ := c.Fetch(ctx, "k", loader); r.Source != SourceNear {
					t.Fatalf("Fetch from %v, want near", r.Source)
				}
			}); n != 0 {
				t.Fatalf("a near hit made %v allocations, want 0", n)
			}
		})
	}
}

// With Near.Admission, keys read often survive a scan of keys read once,
// which evicts them from a recency-only near tier.
func TestNearAdmissionResistsScans(t *testing.T) {
	ctx := context.Background()
	for _, admission := range []bool{false, true} {
		c := newCache[string](t, Options{Near: NearOptions{Capacity: 100, Admission: admission}})
		loads := &countingLoader{}
		for range 5 {
			for i := range 10 {
				if _, err := c.Get(ctx, fmt.Sprint("hot", i), loads); err != nil {
					t.Fatal(err)
				}
			}
		}
		for i := range 1000 {
			c.Get(ctx, fmt.Sprint("scan", i), loads)
		}
		kept := 0
		for i := range 10 {
			if _, ok := c.near.Peek(fmt.Sprint("hot", i)); ok {
				kept++
			}
		}
		switch {
		case admission && kept < 9:
			t.Errorf("with admission, %d of 10 hot keys survived the scan, want nearly all", kept)
		case !admission && kept > 1:
			t.Errorf("without admission, %d of 10 hot keys survived a scan of 10× capacity; the test shows nothing", kept)
		}
	}
}
