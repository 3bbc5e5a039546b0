package tier

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tier-cache/tier/internal/redistest"
)

// taggingLoader loads "<key>#<n>" and tags it with tags.
func taggingLoader(loads *countingLoader, tags ...string) LoaderFunc[string] {
	return func(ctx context.Context, key string) (string, error) {
		Tag(ctx, key, tags...)
		return loads.Load(ctx, key)
	}
}

// noLoad is the loader of reads that must not load.
var noLoad = LoaderFunc[string](func(context.Context, string) (string, error) { return "", fmt.Errorf("loaded") })

// fetchFrom returns where c's Fetch of key answered from.
func fetchFrom(t *testing.T, c *Cache[string], key string, loader Loader[string]) Source {
	t.Helper()
	r, err := c.Fetch(context.Background(), key, loader)
	if err != nil {
		t.Fatalf("Fetch(%q): %v", key, err)
	}
	return r.Source
}

// A near-only cache: InvalidateTag makes the entries of the tag, and only
// them, misses.
func TestInvalidateTagNearOnly(t *testing.T) {
	c := newCache[string](t, Options{})
	ctx := context.Background()
	loads := &countingLoader{}
	fetchFrom(t, c, "a", taggingLoader(loads, "t1"))
	fetchFrom(t, c, "b", taggingLoader(loads, "t2"))
	if err := c.Set(ctx, "c", "set", "t1"); err != nil {
		t.Fatal(err)
	}
	if err := c.InvalidateTag(ctx, "t1"); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]Source{"a": SourceLoad, "b": SourceNear, "c": SourceLoad} {
		if got := fetchFrom(t, c, k, taggingLoader(loads, "t1")); got != want {
			t.Errorf("%s after InvalidateTag(t1) from %v, want %v", k, got, want)
		}
	}
}

// Across replicas: once InvalidateTag returns, the caller's replica misses
// the tagged entries at once, another replica once the message arrives,
// and Redis's copies are reloaded, not served, by a replica that had none.
func TestInvalidateTagAcrossReplicas(t *testing.T) {
	for _, be := range backendsFor(t) {
		t.Run(be.name, func(t *testing.T) {
			client := be.client(t)
			a := newCache[string](t, Options{Redis: client})
			b := newCache[string](t, Options{Redis: client})
			heard := events(b)
			ctx := context.Background()
			loads := &countingLoader{}
			for _, k := range []string{"k1", "k2"} {
				fetchFrom(t, b, k, taggingLoader(loads, "tenant:7"))
			}
			fetchFrom(t, b, "other", taggingLoader(loads, "tenant:8"))
			if err := a.Set(ctx, "set", "v", "tenant:7", "x"); err != nil {
				t.Fatal(err)
			}
			await(t, heard, "keys")
			if got := fetchFrom(t, b, "set", noLoad); got != SourceFar {
				t.Fatalf("b's first read of the tagged Set from %v, want far", got)
			}
			if got := fetchFrom(t, a, "k1", noLoad); got != SourceFar {
				t.Fatalf("a's first read of k1 from %v, want far", got)
			}
			if err := a.InvalidateTag(ctx, "tenant:7"); err != nil {
				t.Fatal(err)
			}
			if got := fetchFrom(t, a, "k1", taggingLoader(loads, "tenant:7")); got != SourceLoad {
				t.Fatalf("the invalidating replica's read of k1 from %v, want load", got)
			}
			await(t, heard, "tags")
			for k, want := range map[string]Source{"k2": SourceLoad, "set": SourceLoad, "other": SourceNear} {
				if got := fetchFrom(t, b, k, taggingLoader(loads, "tenant:7")); got != want {
					t.Errorf("b's read of %s after the message from %v, want %v", k, got, want)
				}
			}
			// A replica that never held them reads Redis: the copies written
			// before the invalidation are reloaded, those written after (k1,
			// k2 just now) are served.
			fresh := newCache[string](t, Options{Redis: client})
			for k, want := range map[string]Source{"k1": SourceFar, "k2": SourceFar, "set": SourceFar, "other": SourceFar} {
				if got := fetchFrom(t, fresh, k, taggingLoader(loads, "tenant:7")); got != want {
					t.Errorf("a new replica's read of %s from %v, want %v", k, got, want)
				}
			}
			if err := a.Set(ctx, "old", "v", "tenant:9"); err != nil {
				t.Fatal(err)
			}
			if err := a.InvalidateTag(ctx, "tenant:9"); err != nil {
				t.Fatal(err)
			}
			if got := fetchFrom(t, fresh, "old", taggingLoader(loads, "tenant:9")); got != SourceLoad {
				t.Errorf("a new replica's read of a value invalidated in Redis from %v, want load", got)
			}
		})
	}
}

// A load that read the source before an InvalidateTag of one of its tags
// keeps its value in neither tier after the call returns; its callers get
// it all the same.
func TestInvalidateTagDuringLoad(t *testing.T) {
	_, client, _ := newMiniredis(t)
	a := newCache[string](t, Options{Redis: client})
	b := newCache[string](t, Options{Redis: client})
	entered, release := make(chan struct{}), make(chan struct{})
	done := async(func() string {
		v, _ := a.Get(context.Background(), "k", LoaderFunc[string](func(ctx context.Context, key string) (string, error) {
			close(entered)
			<-release
			Tag(ctx, key, "t")
			return "read before", nil
		}))
		return v
	})
	<-entered
	if err := b.InvalidateTag(context.Background(), "t"); err != nil {
		t.Fatal(err)
	}
	// a has not heard the message yet, and need not: the marker is in
	// Redis, read when the load makes its cell.
	close(release)
	if v := recv(t, done); v != "read before" {
		t.Fatalf("the caller got %q", v)
	}
	if _, ok := a.near.Peek("k"); ok {
		t.Fatal("a kept near a value read before its tag was invalidated")
	}
	loads := &countingLoader{}
	if got := fetchFrom(t, b, "k", taggingLoader(loads, "t")); got != SourceLoad {
		t.Fatalf("b's read from %v, want load: Redis must not hold the older value", got)
	}
}

// An InvalidateTag costs one script whatever the number of entries that
// carry the tag; a tagged far hit costs one GET once the tag's marker is
// known; the marker expires.
func TestInvalidateTagIsFlat(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t)
	counter := &commandCounter{}
	client.AddHook(counter)
	c := newCache[string](t, Options{Redis: client})
	ctx := context.Background()
	if err := c.InvalidateTag(ctx, "warm"); err != nil { // loads the script
		t.Fatal(err)
	}
	for _, n := range []int{1, 1000} {
		tag := fmt.Sprint("group-", n)
		for i := range n {
			if err := c.Set(ctx, fmt.Sprint(tag, ":", i), "v", tag); err != nil {
				t.Fatal(err)
			}
		}
		counter.reset()
		if err := c.InvalidateTag(ctx, tag); err != nil {
			t.Fatal(err)
		}
		if trips := counter.trips.Load(); trips != 1 {
			t.Fatalf("InvalidateTag of a tag on %d entries: %d round trips (%v), want 1", n, trips, counter.commands)
		}
	}
	if err := c.Set(ctx, "k", "v", "group-1"); err != nil {
		t.Fatal(err)
	}
	c.DropNear("k")
	counter.reset()
	if got := fetchFrom(t, c, "k", noLoad); got != SourceFar {
		t.Fatalf("read from %v, want far", got)
	}
	if trips := counter.trips.Load(); trips != 1 {
		t.Fatalf("a tagged far hit with its marker known: %d round trips, want 1", trips)
	}
	ttl, err := client.PTTL(ctx, c.far.MarkerKey("group-1")).Result()
	if err != nil || ttl <= 0 || ttl > c.markerTTL() {
		t.Fatalf("the marker's TTL is %v, %v; want within %v", ttl, err, c.markerTTL())
	}
}

// An operator invalidates a tag with two commands: the marker set to an
// advanced clock, then "#:<tag>" on the channel, whose receivers read the
// marker from Redis.
func TestOperatorInvalidatesATag(t *testing.T) {
	_, client, _ := newMiniredis(t)
	c := newCache[string](t, Options{Redis: client, Namespace: "users"})
	heard := events(c)
	ctx := context.Background()
	loads := &countingLoader{}
	fetchFrom(t, c, "k", taggingLoader(loads, "tenant:7"))
	// redis-cli SET 'users:{users:tier-tags}:t:tenant:7' "$(redis-cli INCR 'users:{users:tier-tags}:clock')" PX 660000
	clock, err := client.Incr(ctx, "users:{users:tier-tags}:clock").Result()
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Set(ctx, "users:{users:tier-tags}:t:tenant:7", strconv.FormatInt(clock, 10), 660*time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	// redis-cli PUBLISH users:invalidate '#:tenant:7'
	if err := client.Publish(ctx, "users:invalidate", "#:tenant:7").Err(); err != nil {
		t.Fatal(err)
	}
	await(t, heard, "tags")
	if got := fetchFrom(t, c, "k", taggingLoader(loads, "tenant:7")); got != SourceLoad {
		t.Fatalf("read after the operator's invalidation from %v, want load", got)
	}
}

// A tagged near hit allocates nothing; the markers held are bounded, and
// an entry whose marker was pushed out is a miss, never served unchecked.
func TestTaggedHitsAndBoundedMarkers(t *testing.T) {
	c := newCache[string](t, Options{Near: NearOptions{Capacity: 2000}})
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v", "a", "b"); err != nil {
		t.Fatal(err)
	}
	loader := constLoader("loaded")
	if n := testing.AllocsPerRun(1000, func() { c.Get(ctx, "k", loader) }); n != 0 {
		t.Fatalf("a tagged near hit made %v allocations", n)
	}
	for i := range 3000 {
		if err := c.Set(ctx, fmt.Sprint("k", i), "v", fmt.Sprint("tag", i)); err != nil {
			t.Fatal(err)
		}
	}
	if n := c.Stats().TagMarkers; n > uint64(c.tags.max) {
		t.Fatalf("%d tag markers held, over the bound %d", n, c.tags.max)
	}
	misses := 0
	for i := range 3000 {
		if got := fetchFrom(t, c, fmt.Sprint("k", i), loader); got != SourceNear {
			misses++
		}
	}
	if misses < 3000-c.tags.max {
		t.Fatalf("%d of 3000 entries missed, want at least %d whose markers were pushed out", misses, 3000-c.tags.max)
	}
}

// A gap drops every tag marker with the near tier, and the tag clock is
// read again from Redis.
func TestGapDropsTagMarkers(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t)
	c := newCache[string](t, Options{Redis: client})
	heard := events(c)
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v", "t"); err != nil {
		t.Fatal(err)
	}
	if err := c.InvalidateTag(ctx, "t"); err != nil {
		t.Fatal(err)
	}
	await(t, heard, "tags") // its own message: a tag message names no origin, and a drop is idempotent
	before := c.tagClock.Load()
	if n := c.Stats().TagMarkers; n == 0 {
		t.Fatal("no tag marker held")
	}
	if err := client.ClientKillByFilter(ctx, "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	await(t, heard, "down")
	await(t, heard, "up")
	if n := c.Stats().TagMarkers; n != 0 {
		t.Fatalf("%d tag markers held after a gap", n)
	}
	if got := c.tagClock.Load(); got != before {
		t.Fatalf("tag clock %d after the gap, want %d read from Redis", got, before)
	}
}

// GetMany's batch loader tags what it loads; GetMany then treats the
// entries as Get does.
func TestGetManyTags(t *testing.T) {
	_, client, _ := newMiniredis(t)
	c := newCache[string](t, Options{Redis: client})
	ctx := context.Background()
	batch := BatchLoaderFunc[string](func(ctx context.Context, keys []string) (map[string]string, error) {
		out := map[string]string{}
		for _, k := range keys {
			Tag(ctx, k, "tag-"+k[:1])
			out[k] = "v-" + k
		}
		return out, nil
	})
	if _, err := c.GetMany(ctx, []string{"a1", "a2", "b1"}, batch); err != nil {
		t.Fatal(err)
	}
	if err := c.InvalidateTag(ctx, "tag-a"); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]Source{"a1": SourceLoad, "a2": SourceLoad, "b1": SourceNear} {
		if got := fetchFrom(t, c, k, constLoader("x")); got != want {
			t.Errorf("%s from %v, want %v", k, got, want)
		}
	}
}

// On a cluster, the markers share a slot of their own, and a tagged value
// lives on its key's node: InvalidateTag is one script there, and reads
// check the markers they know.
func TestInvalidateTagOnCluster(t *testing.T) {
	cl := redistest.StartClusterOf(t, 3)
	a := newCache[string](t, Options{Redis: cl.ClusterClient(t), Namespace: "ct"})
	b := newCache[string](t, Options{Redis: cl.ClusterClient(t), Namespace: "ct"})
	heard := events(b)
	ctx := context.Background()
	loads := &countingLoader{}
	for i := range 20 {
		fetchFrom(t, b, fmt.Sprint("k", i), taggingLoader(loads, "t"))
	}
	if err := a.InvalidateTag(ctx, "t"); err != nil {
		t.Fatal(err)
	}
	await(t, heard, "tags")
	for i := range 20 {
		if got := fetchFrom(t, b, fmt.Sprint("k", i), taggingLoader(loads, "t")); got != SourceLoad {
			t.Fatalf("k%d after InvalidateTag from %v, want load", i, got)
		}
		if got := fetchFrom(t, a, fmt.Sprint("k", i), noLoad); got != SourceFar {
			t.Fatalf("a's read of k%d reloaded by b from %v, want far", i, got)
		}
	}
}

// A Get that starts after InvalidateTag returned does not wait for a load
// that began before it: the value that load returns may carry the tag.
func TestInvalidateTagDetachesLoads(t *testing.T) {
	for _, withRedis := range []bool{false, true} {
		t.Run(map[bool]string{false: "near only", true: "with Redis"}[withRedis], func(t *testing.T) {
			opts := Options{}
			if withRedis {
				_, opts.Redis, _ = newMiniredis(t)
			}
			c := newCache[string](t, opts)
			entered, release := make(chan struct{}), make(chan struct{})
			var calls atomic.Int32
			loader := LoaderFunc[string](func(ctx context.Context, key string) (string, error) {
				Tag(ctx, key, "t")
				if calls.Add(1) == 1 {
					close(entered)
					select {
					case <-release:
					case <-ctx.Done(): // the test failed, and Close ends the load
					}
					return "read before", nil
				}
				return "read after", nil
			})
			first := async(func() string {
				v, _ := c.Get(context.Background(), "k", loader)
				return v
			})
			<-entered
			if err := c.InvalidateTag(context.Background(), "t"); err != nil {
				t.Fatal(err)
			}
			later := async(func() string {
				v, _ := c.Get(context.Background(), "k", loader)
				return v
			})
			if v := within(t, later, "a Get after InvalidateTag"); v != "read after" {
				t.Fatalf("a Get after InvalidateTag got %q", v)
			}
			close(release)
			if v := recv(t, first); v != "read before" {
				t.Fatalf("the first caller got %q", v)
			}
			if v, err := c.Get(context.Background(), "k", loader); err != nil || v != "read after" {
				t.Fatalf("Get at the end = %q, %v", v, err)
			}
		})
	}
}

// Without Redis, a load that began before InvalidateTag of a tag that no
// entry carried yet does not keep its value near once it attaches the tag.
func TestInvalidateTagOfANewTagNearOnly(t *testing.T) {
	c := newCache[string](t, Options{})
	entered, release := make(chan struct{}), make(chan struct{})
	first := async(func() string {
		v, _ := c.Get(context.Background(), "k", LoaderFunc[string](func(ctx context.Context, key string) (string, error) {
			close(entered)
			<-release
			Tag(ctx, key, "new-tag")
			return "read before", nil
		}))
		return v
	})
	<-entered
	if err := c.InvalidateTag(context.Background(), "new-tag"); err != nil {
		t.Fatal(err)
	}
	close(release)
	if v := recv(t, first); v != "read before" {
		t.Fatalf("the caller got %q", v)
	}
	if _, ok := c.near.Peek("k"); ok {
		t.Fatal("kept near a value read before its tag was invalidated")
	}
}
