package tier

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tier-cache/tier/internal/redistest"
)

// Set, Delete, Invalidate and InvalidateAll on one replica make the other
// drop its near copy when the message arrives; its next Get reads Redis.
func TestChangesReachOtherReplicas(t *testing.T) {
	for _, be := range backendsFor(t) {
		t.Run(be.name, func(t *testing.T) {
			client := be.client(t)
			a := newCache[string](t, Options{Redis: client})
			b := newCache[string](t, Options{Redis: client})
			heard := events(b)
			ctx := context.Background()
			fetch := func(loaded string) Result[string] {
				t.Helper()
				r, err := b.Fetch(ctx, "k", constLoader(loaded))
				if err != nil {
					t.Fatal(err)
				}
				return r
			}
			if err := a.Set(ctx, "k", "v1"); err != nil {
				t.Fatal(err)
			}
			await(t, heard, "keys")
			if r := fetch("unused"); r.Value != "v1" || r.Source != SourceFar {
				t.Fatalf("b: %+v, want v1 from Redis", r)
			}
			if r := fetch("unused"); r.Source != SourceNear {
				t.Fatalf("b's second read from %v, want near", r.Source)
			}

			if err := a.Set(ctx, "k", "v2"); err != nil {
				t.Fatal(err)
			}
			await(t, heard, "keys")
			if _, ok := b.near.Peek("k"); ok {
				t.Fatal("b still holds k after a's Set arrived")
			}
			if r := fetch("unused"); r.Value != "v2" || r.Source != SourceFar {
				t.Fatalf("b after a's Set: %+v, want v2 from Redis", r)
			}

			if err := a.Delete(ctx, "k"); err != nil {
				t.Fatal(err)
			}
			await(t, heard, "keys")
			if r := fetch("reloaded"); r.Value != "reloaded" || r.Source != SourceLoad {
				t.Fatalf("b after a's Delete: %+v, want a load", r)
			}

			// Invalidate drops near copies and leaves Redis alone.
			if err := a.Invalidate(ctx, "k"); err != nil {
				t.Fatal(err)
			}
			await(t, heard, "keys")
			if r := fetch("unused"); r.Value != "reloaded" || r.Source != SourceFar {
				t.Fatalf("b after Invalidate: %+v, want the Redis copy", r)
			}
			if err := a.InvalidateAll(ctx); err != nil {
				t.Fatal(err)
			}
			await(t, heard, "all")
			if n := b.near.Len(); n != 0 {
				t.Fatalf("b holds %d entries after InvalidateAll", n)
			}
			if st := b.Stats(); st.Invalidations != 5 {
				t.Fatalf("b applied %d invalidations, want 5", st.Invalidations)
			}
		})
	}
}

// A replica skips its own messages: its writes already did what the
// message would do, and its near copy of its own write stays.
func TestOwnMessagesAreSkipped(t *testing.T) {
	_, client, _ := newMiniredis(t)
	a := newCache[string](t, Options{Redis: client})
	b := newCache[string](t, Options{Redis: client})
	heard := events(a)
	ctx := context.Background()
	if err := a.Set(ctx, "k", "v1"); err != nil {
		t.Fatal(err)
	}
	// b's message, sent after a's Set returned, reaches a after a's own.
	if err := b.Invalidate(ctx, "other"); err != nil {
		t.Fatal(err)
	}
	await(t, heard, "keys")
	if own := a.bus.Stats().Own; own != 1 {
		t.Fatalf("a received %d messages of its own, want 1", own)
	}
	if r, err := a.Fetch(ctx, "k", constLoader("unused")); err != nil || r.Value != "v1" || r.Source != SourceNear {
		t.Fatalf("a after its own message: %+v, %v; want v1 from near", r, err)
	}
	if st := a.Stats(); st.Invalidations != 1 {
		t.Fatalf("a applied %d invalidations, want b's only", st.Invalidations)
	}
}

func TestOperatorPublishDropsEveryReplica(t *testing.T) {
	_, client, _ := newMiniredis(t)
	replicas := []*Cache[string]{newCache[string](t, Options{Redis: client}), newCache[string](t, Options{Redis: client})}
	ctx := context.Background()
	var evs []<-chan string
	for _, c := range replicas {
		for _, k := range []string{"user 42", "*", "x\n"} {
			if _, err := c.Get(ctx, k, constLoader("v")); err != nil {
				t.Fatal(err)
			}
		}
		evs = append(evs, events(c))
	}
	publish := func(payload string) {
		t.Helper()
		if err := client.Publish(ctx, "tier:invalidate", payload).Err(); err != nil {
			t.Fatal(err)
		}
	}
	held := func(c *Cache[string], k string) bool { _, ok := c.near.Peek(k); return ok }
	// What `echo "user 42" | redis-cli -x PUBLISH tier:invalidate` sends.
	publish("user 42\n")
	for i, c := range replicas {
		await(t, evs[i], "keys")
		if held(c, "user 42") || !held(c, "*") || !held(c, "x\n") {
			t.Fatalf("replica %d: the operator's key not dropped, or another one was", i)
		}
	}
	// The key "*", and a key that ends in a newline, need the "=" form.
	publish("=*")
	publish("=x\n")
	for i, c := range replicas {
		await(t, evs[i], "keys")
		await(t, evs[i], "keys")
		if held(c, "*") || held(c, "x\n") {
			t.Fatalf("replica %d kept a key published in the \"=\" form", i)
		}
		if _, err := c.Get(ctx, "y", constLoader("y")); err != nil {
			t.Fatal(err)
		}
	}
	publish("*")
	for i, c := range replicas {
		await(t, evs[i], "all")
		if n := c.near.Len(); n != 0 {
			t.Fatalf("replica %d holds %d near entries after \"*\"", i, n)
		}
	}
}

// A change heard while a load of the key is under way wins: the callers
// get what was loaded, the near tier does not keep it, and a Get that
// starts after the change does not wait for that load.
func TestChangeDuringLoadWins(t *testing.T) {
	_, client, _ := newMiniredis(t)
	a := newCache[string](t, Options{Redis: client})
	b := newCache[string](t, Options{Redis: client})
	heard := events(b)
	finish := blockedGet(b, "k", "read before the change")
	if err := a.Set(context.Background(), "k", "new"); err != nil {
		t.Fatal(err)
	}
	await(t, heard, "keys")
	if v := mustGet(t, b, "k"); v != "new" {
		t.Fatalf("a Get after the change = %q, want new (not the older load)", v)
	}
	if v := finish(); v != "read before the change" {
		t.Fatalf("the waiting caller got %q", v)
	}
	if v := mustGet(t, b, "k"); v != "new" {
		t.Fatalf("a Get after the older load ended = %q, want new", v)
	}
}

// The same race for a far read: the value read from Redis before the
// change is returned to the callers waiting for it, never kept.
func TestChangeDuringFarReadWins(t *testing.T) {
	_, client, _ := newMiniredis(t)
	a := newCache[string](t, Options{Redis: client})
	if err := a.Set(context.Background(), "k", "old"); err != nil {
		t.Fatal(err)
	}
	b := newCache[string](t, Options{Redis: client})
	heard := events(b)
	g := newGate("get", "tier:k", true)
	client.AddHook(g)
	old := async(func() Result[string] {
		r, _ := b.Fetch(context.Background(), "k", constLoader("unused"))
		return r
	})
	g.wait(t)
	if err := a.Set(context.Background(), "k", "new"); err != nil {
		t.Fatal(err)
	}
	await(t, heard, "keys")
	close(g.release)
	if r := recv(t, old); r.Value != "old" || r.Source != SourceFar {
		t.Fatalf("the caller got %+v, want the old value it read", r)
	}
	if r, _ := b.Fetch(context.Background(), "k", constLoader("unused")); r.Value != "new" {
		t.Fatalf("next read %+v, want new", r)
	}
}

// After a gap: a replica whose subscription was lost drops its near
// copies, keeps what it loads during the gap for at most DegradedNearTTL,
// and after the new subscription serves nothing cached before it.
func TestGapDropsNearTier(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t)
	clock := newFakeClock()
	writer := newCache[string](t, Options{Redis: srv.Client(t), Namespace: "gap"})
	reader := newCache[string](t, Options{Redis: client, Namespace: "gap", Clock: clock, Jitter: -1,
		Invalidation: InvalidationOptions{HealthInterval: 100 * time.Millisecond, DegradedNearTTL: time.Second}})
	heard := events(reader)
	ctx := context.Background()
	if err := writer.Set(ctx, "k", "v1"); err != nil {
		t.Fatal(err)
	}
	await(t, heard, "keys")
	if v := mustGet(t, reader, "k"); v != "v1" {
		t.Fatalf("reader: %q", v)
	}
	if err := client.ClientKillByFilter(ctx, "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	await(t, heard, "down")
	if n := reader.near.Len(); n != 0 {
		t.Fatalf("near tier holds %d entries once the subscription is lost", n)
	}
	if h := reader.Health(); !h.Degraded || h.Subscription.State != StateDown || h.NearTTL != time.Second {
		t.Fatalf("Health = %+v, want degraded with a near TTL of 1s", h)
	}
	// A change made during the gap: its message is lost to the reader.
	if err := writer.Set(ctx, "k", "v2"); err != nil {
		t.Fatal(err)
	}
	await(t, heard, "up")
	if st := reader.Stats(); st.Losses != 1 || st.Reconnects != 1 {
		t.Fatalf("stats = %+v, want 1 loss and 1 reconnect", st)
	}
	if r, _ := reader.Fetch(ctx, "k", constLoader("unused")); r.Value != "v2" || r.Source != SourceFar {
		t.Fatalf("first read after the gap: %+v, want v2 from Redis", r)
	}
}

// During a gap, what a replica loads is kept near for DegradedNearTTL at
// most (by the fake clock), so the loader runs about once per key per
// bound, not once per Get; and nothing loaded during the gap survives it.
func TestDegradedNearTTL(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t)
	clock := newFakeClock()
	c := newCache[string](t, Options{Redis: client, Clock: clock, Jitter: -1,
		Invalidation: InvalidationOptions{HealthInterval: 100 * time.Millisecond, DegradedNearTTL: time.Second}})
	heard := events(c)
	if err := srv.Client(t).Do(context.Background(), "ACL", "SETUSER", "default", "resetchannels").Err(); err != nil {
		t.Fatal(err)
	}
	// The default user may no longer subscribe: the server closes the
	// subscription, and every new one is refused.
	await(t, heard, "down")
	loads := &countingLoader{}
	get := func() Result[string] {
		t.Helper()
		r, err := c.Fetch(context.Background(), "k", loads)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	first := get()
	if r := get(); r.Source != SourceNear || r.Value != first.Value {
		t.Fatalf("second read during the gap: %+v, want the first from near", r)
	}
	clock.Advance(1100 * time.Millisecond)
	if r := get(); r.Source == SourceNear {
		t.Fatalf("read past DegradedNearTTL: %+v, want it not from near", r)
	}
	if err := srv.Client(t).Do(context.Background(), "ACL", "SETUSER", "default", "allchannels").Err(); err != nil {
		t.Fatal(err)
	}
	await(t, heard, "up")
	if n := c.near.Len(); n != 0 {
		t.Fatalf("near tier holds %d entries loaded during the gap", n)
	}
}

// A silent subscription (the server stops answering) is declared lost
// within 2×HealthInterval of its last sign of life, and the replica drops
// its near copies.
func TestSilentSubscriptionIsALoss(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t)
	const interval = 100 * time.Millisecond
	reader := newCache[string](t, Options{Redis: client, Invalidation: InvalidationOptions{HealthInterval: interval}})
	heard := events(reader)
	if _, err := reader.Get(context.Background(), "k", constLoader("v1")); err != nil {
		t.Fatal(err)
	}
	if err := srv.Client(t).Do(context.Background(), "CLIENT", "PAUSE", "2000", "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	await(t, heard, "down")
	if _, ok := reader.near.Peek("k"); ok {
		t.Fatal("the near tier kept k once the subscription was declared lost")
	}
	await(t, heard, "up")
}

// OnPropagation gets the lag of each message from another replica, and
// nothing for the replica's own messages or an operator's, which carry no
// send time.
func TestOnPropagation(t *testing.T) {
	_, client, _ := newMiniredis(t)
	lags := make(chan time.Duration, 10)
	a := newCache[string](t, Options{Redis: client})
	b := newCache[string](t, Options{Redis: client, Invalidation: InvalidationOptions{OnPropagation: func(d time.Duration) { lags <- d }}})
	heard := events(b)
	ctx := context.Background()
	if err := a.Set(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	await(t, heard, "keys")
	if lag := <-lags; lag < 0 {
		t.Fatalf("lag %v", lag)
	}
	if err := b.Set(ctx, "own", "v"); err != nil {
		t.Fatal(err)
	}
	if err := client.Publish(ctx, "tier:invalidate", "operator").Err(); err != nil {
		t.Fatal(err)
	}
	await(t, heard, "keys") // the operator's, after b's own
	select {
	case lag := <-lags:
		t.Fatalf("a lag of %v for b's own or an operator's message", lag)
	default:
	}
}

// WaitReady returns once the subscription is confirmed, the context's
// error while it is not, and ErrClosed after Close; Sync returns once the
// changes announced before it have been applied.
func TestWaitReadyAndSync(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	a := newCache[string](t, Options{Redis: srv.Client(t)})
	b := newCache[string](t, Options{Redis: srv.Client(t)})
	if err := b.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if _, err := b.Get(ctx, "k", constLoader("old")); err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprint("v", i)
		if err := a.Set(ctx, "k", want); err != nil {
			t.Fatal(err)
		}
		if err := b.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		if v := mustGet(t, b, "k"); v != want {
			t.Fatalf("after Sync, b reads %q, want %q", v, want)
		}
	}
	heard := events(b)
	if err := srv.Client(t).Do(ctx, "ACL", "SETUSER", "default", "resetchannels").Err(); err != nil {
		t.Fatal(err)
	}
	await(t, heard, "down")
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := b.WaitReady(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitReady while the subscription is refused = %v, want the context's error", err)
	}
	// The connection closes first (EOF); the next attempt is refused.
	for deadline := time.Now().Add(patience); ; time.Sleep(10 * time.Millisecond) {
		h := b.Health()
		if h.Subscription.Err != nil && strings.Contains(h.Subscription.Err.Error(), "NOPERM") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Health = %+v, want the refusal as the subscription's error", h)
		}
	}
	b.Close()
	if err := b.WaitReady(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("WaitReady after Close = %v, want ErrClosed", err)
	}
	if err := b.Sync(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Sync after Close = %v, want ErrClosed", err)
	}
}
