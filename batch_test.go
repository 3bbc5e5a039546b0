package tier

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/tier-cache/tier/codec"
)

// batchRecorder is a batch loader that records its batches and loads
// "load:<key>" for every key but those in missing.
type batchRecorder struct {
	mu      sync.Mutex
	batches [][]string
	missing map[string]bool
}

func (b *batchRecorder) LoadMany(_ context.Context, keys []string) (map[string]string, error) {
	b.mu.Lock()
	b.batches = append(b.batches, slices.Clone(keys))
	b.mu.Unlock()
	out := map[string]string{}
	for _, k := range keys {
		if !b.missing[k] {
			out[k] = "load:" + k
		}
	}
	return out, nil
}

func (b *batchRecorder) calls() [][]string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.batches)
}

// GetMany answers near hits from the near tier, reads every near miss from
// Redis in one round trip, loads what is left in one batch, stores it in
// one round trip for the leases and one for the writes, and leaves keys
// without a value out of the map; duplicates count once.
func TestGetMany(t *testing.T) {
	_, client, counter := newMiniredis(t)
	ctx := context.Background()
	other := newCache[string](t, Options{Redis: client})
	for _, k := range []string{"f1", "f2", "f3"} {
		if err := other.Set(ctx, k, "far:"+k); err != nil {
			t.Fatal(err)
		}
	}
	c := newCache[string](t, Options{Redis: client})
	for _, k := range []string{"n1", "n2"} {
		if err := c.Set(ctx, k, "near:"+k); err != nil {
			t.Fatal(err)
		}
	}
	loader := &batchRecorder{missing: map[string]bool{"gone": true}}
	counter.reset()
	keys := []string{"n1", "f1", "l1", "n2", "f2", "l2", "f3", "gone", "l1", "n1"}
	got, err := c.GetMany(ctx, keys, loader)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"n1": "near:n1", "n2": "near:n2", "f1": "far:f1", "f2": "far:f2", "f3": "far:f3",
		"l1": "load:l1", "l2": "load:l2",
	}
	if !maps.Equal(got, want) {
		t.Fatalf("GetMany = %v\nwant %v", got, want)
	}
	if b := loader.calls(); len(b) != 1 || fmt.Sprint(b[0]) != "[l1 l2 gone]" {
		t.Fatalf("batch loads = %v, want one load of [l1 l2 gone]", b)
	}
	// One round trip to read the 6 near misses, one for the 3 leases, one
	// to write the 3 loads over them.
	if trips := counter.trips.Load(); trips != 3 || counter.count("MGET") != 1 || counter.count("GET") != 0 {
		t.Fatalf("GetMany took %d round trips (%v), want 3 with one MGET", trips, counter.commands)
	}
	if st := c.Stats(); st.NearHits != 2 || st.FarHits != 3 || st.Misses != 3 || st.Loads != 1 {
		t.Fatalf("stats = %+v, want 2 near hits, 3 far hits, 3 misses, 1 load", st)
	}
	// Everything is cached now, "gone" as not found, in both tiers.
	counter.reset()
	again, err := c.GetMany(ctx, keys, loader)
	if err != nil || len(loader.calls()) != 1 || !maps.Equal(again, want) {
		t.Fatalf("second GetMany = %v, %v, batches %d", again, err, len(loader.calls()))
	}
	if counter.trips.Load() != 0 {
		t.Fatalf("second GetMany went to Redis %d times (%v); all keys are near", counter.trips.Load(), counter.commands)
	}
	if _, err := c.Get(ctx, "gone", &countingLoader{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(gone) = %v, want ErrNotFound cached by GetMany", err)
	}
	fresh := newCache[string](t, Options{Redis: client})
	if got, err := fresh.GetMany(ctx, keys, loader); err != nil || !maps.Equal(got, want) || len(loader.calls()) != 1 {
		t.Fatalf("another replica's GetMany = %v, %v, after %d batches; want it all from Redis", got, err, len(loader.calls()))
	}
	if got, err := c.GetMany(ctx, nil, loader); err != nil || len(got) != 0 {
		t.Fatalf("GetMany of no keys = %v, %v", got, err)
	}
}

// A batch of far hits is one MGET, and no load.
func TestGetManyFarHitsAreOneMGET(t *testing.T) {
	_, client, counter := newMiniredis(t)
	writer := newCache[string](t, Options{Redis: client, Invalidation: InvalidationOptions{Disabled: true}})
	reader := newCache[string](t, Options{Redis: client, Invalidation: InvalidationOptions{Disabled: true}})
	ctx := context.Background()
	for _, k := range []string{"b", "c"} {
		if err := writer.Set(ctx, k, "v"+k); err != nil {
			t.Fatal(err)
		}
	}
	counter.reset()
	got, err := reader.GetMany(ctx, []string{"b", "c"}, BatchLoaderFunc[string](func(context.Context, []string) (map[string]string, error) {
		return nil, errors.New("far hits called the batch loader")
	}))
	if err != nil || !maps.Equal(got, map[string]string{"b": "vb", "c": "vc"}) {
		t.Fatalf("GetMany = %v, %v", got, err)
	}
	if trips := counter.trips.Load(); trips != 1 || fmt.Sprint(counter.commands) != "[MGET]" {
		t.Fatalf("a batch of far hits cost %d round trips: %v; want 1: [MGET]", trips, counter.commands)
	}
}

// A batch load that fails: GetMany returns what it found with the error,
// gives the leases back, and caches nothing of the failed keys; a
// panicking batch loader is an ErrLoaderPanic, the same.
func TestGetManyLoaderFailure(t *testing.T) {
	boom := errors.New("source down")
	for name, loader := range map[string]BatchLoaderFunc[string]{
		"error": func(context.Context, []string) (map[string]string, error) {
			return map[string]string{"x": "partial"}, boom
		},
		"panic": func(context.Context, []string) (map[string]string, error) { panic("batch boom") },
	} {
		t.Run(name, func(t *testing.T) {
			m, client, _ := newMiniredis(t)
			c := newCache[string](t, Options{Redis: client})
			ctx := context.Background()
			if err := c.Set(ctx, "near", "n"); err != nil {
				t.Fatal(err)
			}
			if err := newCache[string](t, Options{Redis: client}).Set(ctx, "far", "f"); err != nil {
				t.Fatal(err)
			}
			got, err := c.GetMany(ctx, []string{"near", "far", "x", "y"}, loader)
			if err == nil {
				t.Fatal("GetMany with a failing loader returned no error")
			}
			if name == "error" && !errors.Is(err, boom) || name == "panic" && !errors.Is(err, ErrLoaderPanic) {
				t.Fatalf("err = %v, want the loader's failure", err)
			}
			if !maps.Equal(got, map[string]string{"near": "n", "far": "f"}) {
				t.Fatalf("GetMany = %v, want the hits alone", got)
			}
			for _, k := range []string{"x", "y"} {
				if m.Exists("tier:" + k) {
					t.Fatalf("Redis holds %s after its load failed (a lease not given back?)", k)
				}
				if _, ok := c.near.Peek(k); ok {
					t.Fatalf("the near tier holds %s after its load failed", k)
				}
			}
			if st := c.Stats(); st.LoadErrors != 1 {
				t.Fatalf("LoadErrors = %d, want 1", st.LoadErrors)
			}
			l := &batchRecorder{}
			if got, err := c.GetMany(ctx, []string{"x", "y"}, l); err != nil || got["x"] != "load:x" || got["y"] != "load:y" {
				t.Fatalf("GetMany after the failure = %v, %v; want a new load", got, err)
			}
		})
	}
}

// A change of a key during a GetMany's batch load wins over the load, in
// both tiers: a Delete leaves nothing, a Set its value, on the replica
// that loads and in Redis; the keys nobody touched are stored.
func TestGetManyDuringChange(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(c *Cache[string]) error
		want   string // what Redis and the near tier hold for k afterwards; "" for nothing
	}{
		{"Delete", func(c *Cache[string]) error { return c.Delete(context.Background(), "k") }, ""},
		{"Set", func(c *Cache[string]) error { return c.Set(context.Background(), "k", "set") }, "set"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, client, _ := newMiniredis(t)
			f, _ := codec.New(codec.Options{})
			c := newCache[string](t, Options{Redis: client})
			entered, release := make(chan struct{}), make(chan struct{})
			done := make(chan map[string]string)
			go func() {
				got, _ := c.GetMany(context.Background(), []string{"k", "other"}, BatchLoaderFunc[string](
					func(context.Context, []string) (map[string]string, error) {
						close(entered)
						<-release
						return map[string]string{"k": "old", "other": "fine"}, nil
					}))
				done <- got
			}()
			within(t, entered, "the batch load")
			if err := tc.change(c); err != nil {
				t.Fatal(err)
			}
			close(release)
			if got := within(t, done, "GetMany"); got["k"] != "old" || got["other"] != "fine" {
				t.Fatalf("GetMany returned %v, want what it loaded", got)
			}
			var far string
			if raw, err := m.Get("tier:k"); err == nil {
				if err := f.Decode([]byte(raw), &far); err != nil {
					t.Fatalf("Redis holds %q for k: %v", raw, err)
				}
			}
			if far != tc.want {
				t.Fatalf("Redis holds %q for k after the %s and the load, want %q", far, tc.name, tc.want)
			}
			near, ok := nearValue(c, "k")
			if tc.want == "" && ok || tc.want != "" && near != tc.want {
				t.Fatalf("the near tier holds %q (%v) for k, want %q", near, ok, tc.want)
			}
			if r, err := c.Fetch(context.Background(), "k", constLoader("reloaded")); err != nil || r.Value == "old" {
				t.Fatalf("Fetch after the %s = %+v, %v; the batch's older value won", tc.name, r, err)
			}
			if v, ok := nearValue(c, "other"); !ok || v != "fine" {
				t.Fatalf("the near tier holds %q (%v) for other, want the loaded value", v, ok)
			}
			if got, _ := m.Get("tier:other"); !strings.Contains(got, "fine") {
				t.Fatalf("Redis holds %q for other, want the loaded value", got)
			}
		})
	}
}

// A batch load that read the source before another replica's Delete does
// not write the deleted key back into Redis; the keys nobody touched are
// stored, and a key without a value is cached as not found.
func TestSlowBatchLoadDoesNotResurrectDeletedKey(t *testing.T) {
	m, client, _ := newMiniredis(t)
	loading := newCache[string](t, Options{Redis: client})
	deleting := newCache[string](t, Options{Redis: client})
	entered, release := make(chan struct{}), make(chan struct{})
	done := make(chan map[string]string)
	go func() {
		got, _ := loading.GetMany(context.Background(), []string{"k", "other", "gone"}, BatchLoaderFunc[string](
			func(context.Context, []string) (map[string]string, error) {
				close(entered)
				<-release
				return map[string]string{"k": "old", "other": "fine"}, nil
			}))
		done <- got
	}()
	within(t, entered, "the batch load")
	if !m.Exists("tier:k") {
		t.Fatal("the batch load took no lease under k")
	}
	if err := deleting.Delete(context.Background(), "k"); err != nil {
		t.Fatal(err)
	}
	close(release)
	if got := within(t, done, "GetMany"); got["k"] != "old" || got["other"] != "fine" {
		t.Fatalf("GetMany returned %v", got)
	}
	if m.Exists("tier:k") {
		got, _ := m.Get("tier:k")
		t.Fatalf("Redis holds %q for k after Delete", got)
	}
	if got, _ := m.Get("tier:other"); !strings.Contains(got, "fine") {
		t.Fatalf("Redis holds %q for other, want the loaded value", got)
	}
	if got, _ := m.Get("tier:gone"); !codec.IsTombstone([]byte(got)) {
		t.Fatalf("Redis holds %q for gone, want the batch's not-found answer", got)
	}
}

// GetMany under a context that has ended returns its error, without taking
// it for a Redis outage or calling the loader with it.
func TestGetManyCancelledContext(t *testing.T) {
	_, client, _ := newMiniredis(t)
	c := newCache[string](t, Options{Redis: client})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	l := &batchRecorder{}
	if _, err := c.GetMany(ctx, []string{"a", "b"}, l); !errors.Is(err, context.Canceled) {
		t.Fatalf("GetMany under a cancelled context: %v, want context.Canceled", err)
	}
	if st := c.Stats(); len(l.calls()) != 0 || st.FarErrors != 0 {
		t.Fatalf("%d loads and %d far errors, want none", len(l.calls()), st.FarErrors)
	}
}

// A GetMany whose context ends during its batch load gives its leases
// back before it returns: right after, Redis holds nothing under the keys
// (a lease left behind would make every replica's loads of them write
// nothing until LoadTimeout).
func TestGetManyCancelledDuringLoadReleasesLeases(t *testing.T) {
	m, client, _ := newMiniredis(t)
	c := newCache[string](t, Options{Redis: client})
	ctx, cancel := context.WithCancel(context.Background())
	entered := make(chan struct{})
	done := make(chan error)
	go func() {
		_, err := c.GetMany(ctx, []string{"a", "b"}, BatchLoaderFunc[string](
			func(ctx context.Context, keys []string) (map[string]string, error) {
				close(entered)
				<-ctx.Done()
				return nil, ctx.Err()
			}))
		done <- err
	}()
	within(t, entered, "the batch load")
	for _, k := range []string{"a", "b"} {
		if !m.Exists("tier:" + k) {
			t.Fatalf("the batch load took no lease under %s", k)
		}
	}
	cancel()
	if err := within(t, done, "GetMany after its context ended"); !errors.Is(err, context.Canceled) {
		t.Fatalf("GetMany = %v, want context.Canceled", err)
	}
	for _, k := range []string{"a", "b"} {
		if m.Exists("tier:" + k) {
			raw, _ := m.Get("tier:" + k)
			t.Fatalf("right after GetMany returned, Redis holds %q under %s", raw, k)
		}
	}
	// Another replica loads and stores the keys at once.
	other := newCache[string](t, Options{Redis: client})
	if v, err := other.Get(context.Background(), "a", constLoader("v")); err != nil || v != "v" {
		t.Fatalf("Get = %q, %v", v, err)
	}
	if got, _ := m.Get("tier:a"); !strings.Contains(got, "v") {
		t.Fatalf("Redis holds %q for a after another replica's load", got)
	}
}

// The same for GetMany: leases whose reply was lost are given back when
// the batch load ends.
func TestGetManyLeasesWithLostReplyAreGivenBack(t *testing.T) {
	m, _, _ := newMiniredis(t)
	c := newCache[string](t, Options{Redis: newLosingClient(t, m.Addr())})
	got, err := c.GetMany(context.Background(), []string{"a", "b"}, &batchRecorder{})
	if err != nil || got["a"] != "load:a" || got["b"] != "load:b" {
		t.Fatalf("GetMany = %v, %v", got, err)
	}
	for _, k := range []string{"a", "b"} {
		if raw, err := m.Get("tier:" + k); err == nil && isLease([]byte(raw)) {
			t.Fatalf("right after GetMany returned, Redis holds the lease %q under %s: it stays for LoadTimeout", raw, k)
		}
	}
}
