package tier

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tier-cache/tier/internal/redistest"
	"github.com/tier-cache/tier/invalidate"
)

// afterScriptHook runs wait after each notify write (see isNotifyWrite)
// has run, before its caller sees the reply.
type afterScriptHook struct{ wait func() }

func (h *afterScriptHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *afterScriptHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if isNotifyWrite([]redis.Cmder{cmd}) && err == nil { // not the NOSCRIPT of a first EVALSHA
			h.wait()
		}
		return err
	}
}
func (h *afterScriptHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		if isNotifyWrite(cmds) && err == nil {
			h.wait()
		}
		return err
	}
}

// The writer reads its own write from the near tier even when its own
// message came back before the write's reply: the message stores the
// value (the writer's own store is then refused, as older than it).
func TestOwnPushThatBeatsTheReplyStillFillsTheWriter(t *testing.T) {
	m, _, _ := newMiniredis(t)
	var aEvents <-chan string
	hook := &afterScriptHook{wait: func() { await(t, aEvents, "keys") }}
	a := newCache[string](t, Options{Redis: hookedClient(t, m.Addr(), hook)})
	aEvents = events(a)
	ctx := context.Background()
	if err := a.Set(ctx, "k", "v1"); err != nil {
		t.Fatal(err)
	}
	if e, ok := a.near.Peek("k"); !ok || e.value != "v1" {
		t.Fatalf("after Set, the writer's near tier has %+v, %v; want v1", e, ok)
	}
}

// A message of this replica's Set that arrives after the replica deleted
// the key does not bring the value back.
func TestLateOwnPushDoesNotResurrectADeletedKey(t *testing.T) {
	_, client, _ := newMiniredis(t)
	a := newCache[string](t, Options{Redis: client})
	ctx := context.Background()
	applied, hold := make(chan struct{}, 16), make(chan struct{})
	first := true
	f := func(e string) {
		applied <- struct{}{}
		if first { // hold the subscription after the first message
			first = false
			<-hold
		}
	}
	a.busEvent.Store(&f)
	if err := a.Set(ctx, "k", "v0"); err != nil {
		t.Fatal(err)
	}
	<-applied                                     // v0's message applied; the subscription is now held
	if err := a.Set(ctx, "k", "v1"); err != nil { // its message waits
		t.Fatal(err)
	}
	if err := a.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	close(hold)
	<-applied // v1's message
	// A marker after them: once it is applied, so is everything before.
	if err := client.Publish(ctx, a.bus.Channel(), "=marker").Err(); err != nil {
		t.Fatal(err)
	}
	<-applied
	if e, ok := a.near.Peek("k"); ok {
		t.Fatalf("a late message of a deleted Set brought back %+v", e)
	}
	if r, err := a.Fetch(ctx, "k", constLoader("loaded")); err != nil || r.Value != "loaded" {
		t.Fatalf("Fetch = %+v, %v; want a load", r, err)
	}
}

func TestPushLimits(t *testing.T) {
	for _, tc := range []struct {
		name       string
		opts       Options
		value      string
		wantPushed bool
	}{
		{"small value", Options{}, "v", true},
		{"over PushMaxBytes", Options{PushMaxBytes: 10}, strings.Repeat("x", 20), false},
		{"DisablePush", Options{DisablePush: true}, "v", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, client, _ := newMiniredis(t)
			tc.opts.Redis = client
			a, b := newCache[string](t, tc.opts), newCache[string](t, tc.opts)
			bEvents := events(b)
			ctx := context.Background()
			if _, err := b.Get(ctx, "k", constLoader("old")); err != nil {
				t.Fatal(err)
			}
			if err := a.Set(ctx, "k", tc.value); err != nil {
				t.Fatal(err)
			}
			await(t, bEvents, "keys")
			st := b.Stats()
			if pushed := st.Updates == 1 && st.Invalidations == 0; pushed != tc.wantPushed {
				t.Fatalf("b: %d updates, %d invalidations; want pushed %v", st.Updates, st.Invalidations, tc.wantPushed)
			}
			want := SourceFar
			if tc.wantPushed {
				want = SourceNear
			}
			if r, _ := b.Fetch(ctx, "k", constLoader("unused")); r.Value != tc.value || r.Source != want {
				t.Fatalf("b reads %+v, want %q from %v", r, tc.value, want)
			}
		})
	}
}

// On a cluster a write and its message cannot share a transaction, so
// messages could arrive out of the order of the writes: Set announces
// by bare invalidations only.
func TestNoPushOnCluster(t *testing.T) {
	srv := redistest.StartCluster(t)
	a := newCache[string](t, Options{Redis: srv.ClusterClient(t)})
	b := newCache[string](t, Options{Redis: srv.ClusterClient(t)})
	bEvents := events(b)
	ctx := context.Background()
	if _, err := b.Get(ctx, "k", constLoader("old")); err != nil {
		t.Fatal(err)
	}
	if err := a.Set(ctx, "k", "new"); err != nil {
		t.Fatal(err)
	}
	await(t, bEvents, "keys")
	if st := b.Stats(); st.Updates != 0 || st.Invalidations != 1 {
		t.Fatalf("b: %d updates, %d invalidations; want a bare invalidation", st.Updates, st.Invalidations)
	}
	if r, _ := b.Fetch(ctx, "k", constLoader("unused")); r.Value != "new" || r.Source != SourceFar {
		t.Fatalf("b reads %+v, want new from Redis", r)
	}
}

// A pushed value that does not decode drops the key and is counted; it
// never reaches a caller.
func TestCorruptPushDropsTheKey(t *testing.T) {
	_, client, _ := newMiniredis(t)
	b := newCache[string](t, Options{Redis: client})
	bEvents := events(b)
	ctx := context.Background()
	if _, err := b.Get(ctx, "k", constLoader("v")); err != nil {
		t.Fatal(err)
	}
	frame := invalidate.AppendFrame(nil, invalidate.Message{
		Keys: []string{"k"}, Values: [][]byte{[]byte("\x01\x01\x00\xc1garbage")}, Namespace: "tier", Origin: invalidate.ID{7},
	})
	if err := client.Publish(ctx, b.bus.Channel(), frame).Err(); err != nil {
		t.Fatal(err)
	}
	await(t, bEvents, "keys")
	if _, ok := b.near.Peek("k"); ok {
		t.Fatal("a corrupt push left the old near copy")
	}
	if st := b.Stats(); st.Corrupt != 1 {
		t.Fatalf("Corrupt = %d, want 1", st.Corrupt)
	}
	if v, err := b.Get(ctx, "k", constLoader("unused")); err != nil || v != "v" {
		t.Fatalf("Get = %q, %v; want the Redis copy", v, err)
	}
}

// A pushed value keeps the deadline its writer recorded: the near copy it
// replaces does not outlive the Redis copy.
func TestPushKeepsTheFarDeadline(t *testing.T) {
	_, client, _ := newMiniredis(t)
	clock := newFakeClock()
	a := newCache[string](t, Options{Redis: client, FarTTL: 2 * time.Second, DisableJitter: true, Clock: clock})
	b := newCache[string](t, Options{Redis: client, NearTTL: time.Hour, Clock: clock})
	bEvents := events(b)
	ctx := context.Background()
	if _, err := b.Get(ctx, "k", constLoader("old")); err != nil {
		t.Fatal(err)
	}
	if err := a.Set(ctx, "k", "new"); err != nil {
		t.Fatal(err)
	}
	await(t, bEvents, "keys")
	ttl, ok := b.near.TTL("k")
	if !ok || ttl > 2*time.Second {
		t.Fatalf("b's pushed copy lives %v, %v; want at most the 2s of the Redis copy", ttl, ok)
	}
}

// OnPropagation hears the lag of each change another replica sends.
func TestOnPropagation(t *testing.T) {
	_, client, _ := newMiniredis(t)
	lags := make(chan time.Duration, 10)
	a := newCache[string](t, Options{Redis: client})
	b := newCache[string](t, Options{Redis: client, OnPropagation: func(d time.Duration) { lags <- d }})
	bEvents := events(b)
	ctx := context.Background()
	start := time.Now()
	if err := a.Set(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	await(t, bEvents, "keys")
	if lag := <-lags; lag < 0 || lag > time.Since(start) {
		t.Fatalf("lag %v, want within the %v since the Set began", lag, time.Since(start))
	}
	if err := a.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	await(t, bEvents, "keys")
	<-lags
}

// holdAfterFirst makes c's subscription, once it has applied its next
// message, wait until hold is closed; applied hears of every message c
// applies (see Cache.busEvent).
func holdAfterFirst(c *Cache[string]) (applied chan string, hold chan struct{}) {
	applied = make(chan string, 16)
	return applied, holdAfter(c, applied)
}

// holdSubscription makes c's subscription wait, until hold is closed, once
// it has applied the message of a Set of the key "other", and returns when
// it waits: the messages published from then on queue up behind it.
func holdSubscription(t *testing.T, c *Cache[string]) (applied chan string, hold chan struct{}) {
	t.Helper()
	applied, hold = holdAfterFirst(c)
	if err := c.Set(context.Background(), "other", "x"); err != nil {
		t.Fatal(err)
	}
	await(t, applied, "keys")
	return applied, hold
}

// holdAfter is holdAfterFirst with the applied channel of an earlier call:
// set while the subscription waits on an earlier hold, it holds it again
// after the one message that the earlier hold lets through.
func holdAfter(c *Cache[string], applied chan string) (hold chan struct{}) {
	hold = make(chan struct{})
	first := true
	f := func(e string) {
		applied <- e
		if first {
			first = false
			<-hold
		}
	}
	c.busEvent.Store(&f)
	return hold
}

// marker publishes an operator invalidation of the key "marker" on c's
// channel and waits until c has applied it, after the n messages before it
// that make events: then c has applied everything published before it.
func marker(t *testing.T, c *Cache[string], applied <-chan string, n int) {
	t.Helper()
	if err := c.opts.Redis.Publish(context.Background(), c.bus.Channel(), "marker").Err(); err != nil {
		t.Fatal(err)
	}
	for range n + 1 {
		await(t, applied, "keys")
	}
}

// A Set whose value is pushed, then a Set of the same key whose value is
// too large to push: the first Set's message, arriving late, is older than
// the second write, and the writer must not take it (nor keep anything
// that its own second message does not settle).
func TestLatePushAfterUnpushedSet(t *testing.T) {
	_, client, _ := newMiniredis(t)
	a := newCache[string](t, Options{Redis: client, PushMaxBytes: 100})
	ctx := context.Background()
	applied, hold := holdSubscription(t, a)
	if err := a.Set(ctx, "k", "v1"); err != nil { // pushed; its message waits
		t.Fatal(err)
	}
	big := strings.Repeat("B", 500) // over PushMaxBytes: a bare invalidation
	if err := a.Set(ctx, "k", big); err != nil {
		t.Fatal(err)
	}
	close(hold)
	marker(t, a, applied, 1) // v1's message, then the marker
	for i := range 3 {
		if r, err := a.Fetch(ctx, "k", constLoader("loaded")); err != nil || r.Value != big {
			t.Fatalf("Get %d once every message was applied = %.10q from %v, %v; want the later Set's value", i, r.Value, r.Source, err)
		}
	}
}

// A message about an older write that reaches the writer after its Set of
// the key returned, and before that Set's own message, does not replace
// the value the Set stored: the writer's own older Set, and another
// replica's Set that returned before this one began.
func TestOlderPushDoesNotReplaceNewerSet(t *testing.T) {
	for _, tc := range []struct {
		name  string
		older func(a, b *Cache[string]) error
	}{
		{"own", func(a, _ *Cache[string]) error { return a.Set(context.Background(), "k", "older") }},
		{"other replica's", func(_, b *Cache[string]) error { return b.Set(context.Background(), "k", "older") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, client, _ := newMiniredis(t)
			a := newCache[string](t, Options{Redis: client})
			b := newCache[string](t, Options{Redis: client})
			ctx := context.Background()
			applied, hold := holdSubscription(t, a)
			if err := tc.older(a, b); err != nil {
				t.Fatal(err)
			}
			if err := a.Set(ctx, "k", "newer"); err != nil {
				t.Fatal(err)
			}
			// Let the older message through, then hold again.
			hold2 := holdAfter(a, applied)
			close(hold)
			await(t, applied, "keys") // the older message, applied
			if v, err := a.Get(ctx, "k", constLoader("loaded")); err != nil || v != "newer" {
				t.Errorf("Get on the writer after its Set returned and an older message arrived = %q, %v; want newer", v, err)
			}
			close(hold2)
			marker(t, a, applied, 1) // the newer Set's message, then the marker
			if v, err := a.Get(ctx, "k", constLoader("loaded")); err != nil || v != "newer" {
				t.Errorf("Get on the writer once every message was applied = %q, %v; want newer", v, err)
			}
		})
	}
}

// Two concurrent Sets of one key on one replica, with values too large to
// push, whose Redis writes land in the other order than their near
// stores: once their messages are back, the writer serves what Redis
// holds.
func TestConcurrentUnpushedSetsOnOneReplica(t *testing.T) {
	m, _, _ := newMiniredis(t)
	hook := &txHook{entered: make(chan struct{}), release: make(chan struct{})}
	a := newCache[string](t, Options{Redis: hookedClient(t, m.Addr(), hook), PushMaxBytes: 16})
	applied := events(a)
	ctx := context.Background()
	v1, v2 := strings.Repeat("1", 100), strings.Repeat("2", 100)
	hook.armed.Store(true)
	done := make(chan error)
	go func() { done <- a.Set(ctx, "k", v1) }()
	<-hook.entered // Set(v1) has dropped the key and taken its guard; its write waits
	if err := a.Set(ctx, "k", v2); err != nil {
		t.Fatal(err)
	}
	close(hook.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if raw, _ := m.Get("tier:k"); !strings.Contains(raw, v1) {
		t.Fatal("Redis should hold v1, written last")
	}
	marker(t, a, applied, 0) // both Sets' messages (bare, no event), then the marker
	if v, err := a.Get(ctx, "k", constLoader("loaded")); err != nil || v != v1 {
		t.Fatalf("the writer serves %.5q..., %v; Redis holds v1, written last", v, err)
	}
}

// An own message about an older change of the key (a Delete, or a Set too
// large to push) is not taken for the awaited Set's: a message about an
// even older write that arrives after it still does not replace the
// writer's value.
func TestOlderOwnChangeIsNotTheAwaitedSet(t *testing.T) {
	big := func(c string) string { return strings.Repeat(c, 200) }
	for _, tc := range []struct {
		name  string
		first func(a *Cache[string]) error
	}{
		{"Delete", func(a *Cache[string]) error { return a.Delete(context.Background(), "k") }},
		{"unpushed Set", func(a *Cache[string]) error { return a.Set(context.Background(), "k", big("O")) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, client, _ := newMiniredis(t)
			a := newCache[string](t, Options{Redis: client, PushMaxBytes: 64})
			b := newCache[string](t, Options{Redis: client})
			ctx := context.Background()
			applied, hold := holdSubscription(t, a)
			publish := func(p string) {
				if err := client.Publish(ctx, a.bus.Channel(), p).Err(); err != nil {
					t.Fatal(err)
				}
			}
			if err := tc.first(a); err != nil { // an own bare message
				t.Fatal(err)
			}
			publish("stop1")
			if err := b.Set(ctx, "k", "older"); err != nil { // pushed
				t.Fatal(err)
			}
			publish("stop2")
			newest := big("N") // not pushed
			if err := a.Set(ctx, "k", newest); err != nil {
				t.Fatal(err)
			}
			hold1 := holdAfter(a, applied)
			close(hold)
			await(t, applied, "keys") // the first own message, then stop1
			hold2 := holdAfter(a, applied)
			close(hold1)
			await(t, applied, "keys") // b's older push
			if v, err := a.Get(ctx, "k", constLoader("loaded")); err != nil || v != newest {
				t.Errorf("Get on the writer after its Set returned = %.10q, %v; want its value", v, err)
			}
			close(hold2)
			marker(t, a, applied, 1) // stop2, the Set's own message, the marker
			if v, err := a.Get(ctx, "k", constLoader("loaded")); err != nil || v != newest {
				t.Errorf("Get on the writer once every message was applied = %.10q, %v; want its value", v, err)
			}
		})
	}
}

// A Set's message that arrives after a Delete of the key and a reload does
// not bring the deleted value back.
func TestLateOwnPushAfterDeleteAndReload(t *testing.T) {
	_, client, _ := newMiniredis(t)
	a := newCache[string](t, Options{Redis: client})
	ctx := context.Background()
	applied, hold := holdSubscription(t, a)
	if err := a.Set(ctx, "k", "deleted"); err != nil { // pushed; its message waits
		t.Fatal(err)
	}
	if err := a.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if v, err := a.Get(ctx, "k", constLoader("reloaded")); err != nil || v != "reloaded" {
		t.Fatalf("Get after Delete = %q, %v", v, err)
	}
	hold2 := holdAfter(a, applied)
	close(hold)
	await(t, applied, "keys") // the Set's message; the Delete's is held back
	if v, err := a.Get(ctx, "k", constLoader("reloaded")); err != nil || v != "reloaded" {
		t.Errorf("Get on the writer after its Delete returned = %q, %v; the deleted value came back", v, err)
	}
	close(hold2)
}

// The changes a replica awaits are forgotten when its subscription comes
// back, since their messages may have been lost in the gap: other
// replicas' pushes then reach its near tier again.
func TestAwaitedChangesForgottenAfterGap(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t)
	a := newCache[string](t, Options{Redis: client, Namespace: "gap"})
	b := newCache[string](t, Options{Redis: srv.Client(t), Namespace: "gap"})
	ev := events(a)
	ctx := context.Background()
	if err := client.ClientKillByFilter(ctx, "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	await(t, ev, "down")
	for i := range 10 { // their messages are published while a is not subscribed
		if err := a.Set(ctx, fmt.Sprint("k", i), "v1"); err != nil {
			t.Fatal(err)
		}
	}
	await(t, ev, "up")
	if r, err := a.Fetch(ctx, "k0", constLoader("unused")); err != nil || r.Value != "v1" {
		t.Fatalf("Fetch = %+v, %v", r, err)
	}
	if err := b.Set(ctx, "k0", "w"); err != nil {
		t.Fatal(err)
	}
	await(t, ev, "keys")
	if r, err := a.Fetch(ctx, "k0", constLoader("unused")); err != nil || r.Value != "w" || r.Source != SourceNear {
		t.Fatalf("after b's pushed Set, a's Fetch = %+v, %v; want w from near", r, err)
	}
	a.pendMu.Lock()
	n := len(a.pending)
	a.pendMu.Unlock()
	if n != 0 {
		t.Fatalf("%d changes still awaited after the gap", n)
	}
}

// A Set whose value is not pushed: once its own message is back, a read
// that fetched Redis before the write landed, and that another message's
// drop let fill afterwards, is not kept; the writer serves what Redis
// holds.
func TestOwnBareMessageStampsTheKey(t *testing.T) {
	m, client, _ := newMiniredis(t)
	tx := &txHook{entered: make(chan struct{}), release: make(chan struct{})}
	gh := &getHook{entered: make(chan struct{}), release: make(chan struct{})}
	ac := hookedClient(t, m.Addr(), tx)
	ac.AddHook(gh)
	a := newCache[string](t, Options{Redis: ac, PushMaxBytes: 100})
	b := newCache[string](t, Options{Redis: client, PushMaxBytes: 100})
	applied := events(a)
	ctx := context.Background()
	bigA, bigB := strings.Repeat("A", 500), strings.Repeat("B", 500)
	tx.armed.Store(true)
	setDone := make(chan error)
	go func() { setDone <- a.Set(ctx, "k", bigA) }()
	<-tx.entered // a's Set has taken its guard; its write waits
	if err := b.Set(ctx, "k", bigB); err != nil {
		t.Fatal(err)
	}
	await(t, applied, "keys") // b's message: it drops k on a, stamping it
	gh.armed.Store(true)
	getDone := make(chan struct{})
	go func() { a.Fetch(ctx, "k", constLoader("unused")); close(getDone) }()
	<-gh.entered // a's read has fetched bigB and waits to fill
	close(tx.release)
	if err := <-setDone; err != nil {
		t.Fatal(err)
	}
	marker(t, a, applied, 0) // a's own message is applied
	close(gh.release)
	<-getDone
	if r, err := a.Fetch(ctx, "k", constLoader("unused")); err != nil || r.Value != bigA {
		t.Fatalf("after a's Set returned and its message arrived, a serves %.5q... from %v, %v; Redis holds a's value", r.Value, r.Source, err)
	}
}

// An InvalidateAll awaits its own message: a message sent before it that
// arrives after it cannot store its value, neither an own Set's nor
// another replica's, whether or not a Get refilled the key in between.
func TestLateMessageAfterInvalidateAll(t *testing.T) {
	for _, refill := range []bool{false, true} {
		t.Run(fmt.Sprintf("refill=%v", refill), func(t *testing.T) {
			m, client, _ := newMiniredis(t)
			a := newCache[string](t, Options{Redis: client})
			ctx := context.Background()
			applied, hold := holdSubscription(t, a)
			if err := a.Set(ctx, "k", "v1"); err != nil { // pushed; its message waits
				t.Fatal(err)
			}
			m.FlushAll() // Redis changed by other means
			if err := a.InvalidateAll(ctx); err != nil {
				t.Fatal(err)
			}
			if refill {
				if v, err := a.Get(ctx, "k", constLoader("reloaded")); err != nil || v != "reloaded" {
					t.Fatalf("Get after InvalidateAll = %q, %v", v, err)
				}
			}
			close(hold)
			marker(t, a, applied, 1) // v1's message, the "*", the marker
			if r, err := a.Fetch(ctx, "k", constLoader("reloaded")); err != nil || r.Value != "reloaded" {
				t.Fatalf("Get after InvalidateAll and every message = %q from %v, %v; want what Redis or the source holds", r.Value, r.Source, err)
			}
		})
	}
}

// A Get that begins after this replica's Delete returned keeps what it
// loads, even when the Delete's own message arrives during the load: the
// Delete dropped the key again after its write, so the load read Redis
// after it, and the message need not drop the fill.
func TestGetAfterOwnDeleteKeepsItsFill(t *testing.T) {
	_, client, _ := newMiniredis(t)
	a := newCache[string](t, Options{Redis: client})
	ctx := context.Background()
	if err := a.Set(ctx, "k", "old"); err != nil {
		t.Fatal(err)
	}
	applied, hold := holdSubscription(t, a)
	if err := a.Delete(ctx, "k"); err != nil { // its message waits
		t.Fatal(err)
	}
	if v, err := a.Get(ctx, "k", constLoader("loaded")); err != nil || v != "loaded" {
		t.Fatalf("Get after Delete = %q, %v; want a load", v, err)
	}
	close(hold)
	marker(t, a, applied, 0) // the Delete's message (no event), then the marker
	if r, err := a.Fetch(ctx, "k", constLoader("again")); err != nil || r.Value != "loaded" || r.Source != SourceNear {
		t.Fatalf("once the Delete's message was applied: %q from %v, %v; want the loaded value from the near tier", r.Value, r.Source, err)
	}
}
