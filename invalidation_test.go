package tier

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tier-cache/tier/internal/redistest"
)

// events records a cache's invalidation events for a test to wait on.
func events(c *Cache[string]) <-chan string {
	ch := make(chan string, 1000)
	f := func(e string) { ch <- e }
	c.busEvent.Store(&f)
	return ch
}

// await waits for the next event and checks it. The deadline only turns a
// hang into a failure; nothing is timed.
func await(t *testing.T, ch <-chan string, want string) {
	t.Helper()
	select {
	case got := <-ch:
		if got != want {
			t.Fatalf("event %q, want %q", got, want)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("no %q event", want)
	}
}

func constLoader(v string) LoaderFunc[string] {
	return func(context.Context, string) (string, error) { return v, nil }
}

func TestWritesInvalidateOtherReplicas(t *testing.T) {
	_, client, _ := newMiniredis(t)
	a := newCache[string](t, Options{Redis: client})
	b := newCache[string](t, Options{Redis: client})
	bEvents := events(b)
	ctx := context.Background()
	if err := a.Set(ctx, "k", "v1"); err != nil {
		t.Fatal(err)
	}
	await(t, bEvents, "keys") // a's Set, before b had a copy
	if r, _ := b.Fetch(ctx, "k", constLoader("unused")); r.Value != "v1" || r.Source != SourceFar {
		t.Fatalf("b: %+v", r)
	}
	if r, _ := b.Fetch(ctx, "k", constLoader("unused")); r.Source != SourceNear {
		t.Fatalf("b's second read from %v, want near", r.Source)
	}

	if err := a.Set(ctx, "k", "v2"); err != nil {
		t.Fatal(err)
	}
	await(t, bEvents, "keys")
	// The Set pushed its value: b, which held the key, took it near.
	if r, _ := b.Fetch(ctx, "k", constLoader("unused")); r.Value != "v2" || r.Source != SourceNear {
		t.Fatalf("b after a's Set: %+v, want v2 pushed to its near tier", r)
	}

	if err := a.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	await(t, bEvents, "keys")
	if r, _ := b.Fetch(ctx, "k", constLoader("reloaded")); r.Value != "reloaded" || r.Source != SourceLoad {
		t.Fatalf("b after a's Delete: %+v, want a load", r)
	}

	// Invalidate drops near copies and leaves Redis alone.
	if err := a.Invalidate(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	await(t, bEvents, "keys")
	if r, _ := b.Fetch(ctx, "k", constLoader("unused")); r.Value != "reloaded" || r.Source != SourceFar {
		t.Fatalf("b after Invalidate: %+v, want the Redis copy", r)
	}
	if st := a.Stats(); st.Invalidations != 0 {
		t.Fatalf("a applied %d invalidations of its own messages", st.Invalidations)
	}
	if st := b.Stats(); st.Invalidations != 2 || st.Updates != 2 {
		t.Fatalf("b applied %d invalidations and %d updates, want 2 and 2", st.Invalidations, st.Updates)
	}
}

func TestOperatorPublishDropsEveryReplica(t *testing.T) {
	_, client, _ := newMiniredis(t)
	replicas := []*Cache[string]{newCache[string](t, Options{Redis: client}), newCache[string](t, Options{Redis: client})}
	ctx := context.Background()
	var evs []<-chan string
	for _, c := range replicas {
		if _, err := c.Get(ctx, "user 42\n", constLoader("v")); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Get(ctx, "*", constLoader("star")); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, events(c))
	}
	// What an operator types: redis-cli PUBLISH tier:invalidate "user 42\n"
	if err := client.Publish(ctx, "tier:invalidate", "user 42\n").Err(); err != nil {
		t.Fatal(err)
	}
	for i, c := range replicas {
		await(t, evs[i], "keys")
		if _, ok := c.near.Peek("user 42\n"); ok {
			t.Fatalf("replica %d kept the key the operator dropped", i)
		}
		if _, ok := c.near.Peek("*"); !ok {
			t.Fatalf("replica %d dropped an unrelated key", i)
		}
	}
	// The key "*" needs the escape form; "*" alone drops everything.
	if err := client.Publish(ctx, "tier:invalidate", "=*").Err(); err != nil {
		t.Fatal(err)
	}
	for i, c := range replicas {
		await(t, evs[i], "keys")
		if _, ok := c.near.Peek("*"); ok {
			t.Fatalf("replica %d kept the key \"*\"", i)
		}
	}
	for _, c := range replicas {
		if _, err := c.Get(ctx, "x", constLoader("x")); err != nil {
			t.Fatal(err)
		}
	}
	if err := client.Publish(ctx, "tier:invalidate", "*").Err(); err != nil {
		t.Fatal(err)
	}
	for i, c := range replicas {
		await(t, evs[i], "all")
		if c.near.Len() != 0 {
			t.Fatalf("replica %d holds %d near entries after \"*\"", i, c.near.Len())
		}
	}
}

// An invalidation that arrives while a load of the same key is under way
// wins: the caller gets what was loaded, the near tier does not keep it.
func TestInvalidationDuringLoadWins(t *testing.T) {
	_, client, _ := newMiniredis(t)
	a := newCache[string](t, Options{Redis: client})
	b := newCache[string](t, Options{Redis: client})
	bEvents := events(b)
	finish := blockedGet(b, "k", "read before the change")
	if err := a.Invalidate(context.Background(), "k"); err != nil {
		t.Fatal(err)
	}
	await(t, bEvents, "keys")
	if v := finish(); v != "read before the change" {
		t.Fatalf("caller got %q", v)
	}
	if _, ok := b.near.Peek("k"); ok {
		t.Fatal("the near tier kept a value invalidated while it loaded")
	}
}

// The same race for a far read: the value read from Redis before the
// invalidation is returned but not kept.
func TestInvalidationDuringFarReadWins(t *testing.T) {
	m, client, _ := newMiniredis(t)
	a := newCache[string](t, Options{Redis: client})
	if err := a.Set(context.Background(), "k", "old"); err != nil {
		t.Fatal(err)
	}
	bClient := redis.NewClient(&redis.Options{Addr: m.Addr(), ContextTimeoutEnabled: true})
	t.Cleanup(func() { bClient.Close() })
	hook := &getHook{entered: make(chan struct{}), release: make(chan struct{})}
	hook.armed.Store(true)
	bClient.AddHook(hook)
	b := newCache[string](t, Options{Redis: bClient, FarTimeout: time.Minute})
	bEvents := events(b)
	done := make(chan Result[string])
	go func() {
		r, _ := b.Fetch(context.Background(), "k", constLoader("unused"))
		done <- r
	}()
	<-hook.entered
	if err := a.Set(context.Background(), "k", "new"); err != nil {
		t.Fatal(err)
	}
	await(t, bEvents, "keys")
	close(hook.release)
	if r := <-done; r.Value != "old" || r.Source != SourceFar {
		t.Fatalf("caller got %+v, want the old value it read", r)
	}
	if _, ok := b.near.Peek("k"); ok {
		t.Fatal("the near tier kept a far read invalidated while in flight")
	}
	if r, _ := b.Fetch(context.Background(), "k", constLoader("unused")); r.Value != "new" {
		t.Fatalf("next read %+v, want new", r)
	}
}

// The guarantee after a gap: a replica whose subscription was lost drops
// its near copies, serves none until the subscription is back, and then
// does not serve a value invalidated while it was away.
func TestGapDropsNearTierUntilResubscribed(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t)
	writer := newCache[string](t, Options{Redis: srv.Client(t), Namespace: "gap"})
	reader := newCache[string](t, Options{Redis: client, Namespace: "gap", HealthInterval: 100 * time.Millisecond})
	ev := events(reader)
	ctx := context.Background()
	if err := writer.Set(ctx, "k", "v1"); err != nil {
		t.Fatal(err)
	}
	await(t, ev, "keys")
	if r, _ := reader.Fetch(ctx, "k", constLoader("unused")); r.Value != "v1" {
		t.Fatalf("reader: %+v", r)
	}
	if _, ok := reader.near.Peek("k"); !ok {
		t.Fatal("reader did not keep a near copy")
	}
	// Kill the reader's subscription: an operator's message sent now is lost
	// to it, and so is the writer's.
	start := time.Now()
	if err := client.ClientKillByFilter(ctx, "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	await(t, ev, "down")
	t.Logf("subscription loss noticed after %v", time.Since(start))
	if reader.near.Len() != 0 {
		t.Fatalf("near tier holds %d entries while the subscription is down", reader.near.Len())
	}
	// A change made around the gap: its message may be lost to the reader.
	if err := writer.Set(ctx, "k", "v2"); err != nil {
		t.Fatal(err)
	}
	await(t, ev, "up")
	st := reader.Stats()
	if st.Losses != 1 || st.Reconnects != 1 {
		t.Fatalf("stats = %+v, want 1 loss and 1 reconnect", st)
	}
	if r, _ := reader.Fetch(ctx, "k", constLoader("unused")); r.Value != "v2" || r.Source != SourceFar {
		t.Fatalf("first read after the gap: %+v, want v2 from far (near dropped)", r)
	}
}

// While the subscription is silent (the server stops answering), the
// health check declares it lost within 2×HealthInterval and near copies
// stop being served; they come back only after the new subscription.
func TestSilentSubscriptionStopsNearServing(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t)
	const interval = 100 * time.Millisecond
	reader := newCache[string](t, Options{Redis: client, HealthInterval: interval, FarTimeout: 50 * time.Millisecond})
	ev := events(reader)
	ctx := context.Background()
	if _, err := reader.Get(ctx, "k", constLoader("v1")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := srv.Client(t).Do(ctx, "CLIENT", "PAUSE", "1000", "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	await(t, ev, "down")
	t.Logf("silent subscription declared lost after %v (bound 2×HealthInterval = %v plus the last quiet stretch)", time.Since(start), 2*interval)
	r, err := reader.Fetch(ctx, "k", constLoader("from source"))
	if err != nil || r.Source == SourceNear {
		t.Fatalf("read while the subscription is down: %+v, %v; must not come from the near tier", r, err)
	}
	if _, ok := reader.near.Peek("k"); ok {
		t.Fatal("a fill stored into the near tier while the subscription is down")
	}
	await(t, ev, "up")
}
