package tier

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/tier-cache/tier/codec"
)

// Tests of messages whose application straddles a change of this replica:
// the subscription's goroutine has checked what the replica awaits and is
// decoding a pushed value when the change runs.

// blockCodec is JSON under a codec ID of its own whose Unmarshal of the
// string "old", once armed, signals entered and waits for release: it
// holds the subscription's goroutine inside the decode of a pushed value.
type blockCodec struct {
	armed   *atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func newBlockCodec() blockCodec {
	return blockCodec{armed: new(atomic.Bool), entered: make(chan struct{}), release: make(chan struct{})}
}

func (blockCodec) ID() uint8                     { return 200 }
func (blockCodec) Name() string                  { return "blockjson" }
func (blockCodec) Marshal(v any) ([]byte, error) { return codec.JSON{}.Marshal(v) }
func (b blockCodec) Unmarshal(data []byte, v any) error {
	if string(data) == `"old"` && b.armed.CompareAndSwap(true, false) {
		close(b.entered)
		<-b.release
	}
	return codec.JSON{}.Unmarshal(data, v)
}

// An InvalidateAll while another replica's push is being decoded: the
// push, older than the InvalidateAll, does not survive it, though a Get
// refilled the key meanwhile.
func TestPushStraddlingOwnInvalidateAll(t *testing.T) {
	m, client, _ := newMiniredis(t)
	bc := newBlockCodec()
	a := newCache[string](t, Options{Redis: client, Codec: bc})
	b := newCache[string](t, Options{Redis: client, Codec: newBlockCodec()})
	applied := events(a)
	ctx := context.Background()
	if v, err := a.Get(ctx, "k", constLoader("v0")); err != nil || v != "v0" {
		t.Fatal(v, err)
	}
	bc.armed.Store(true)
	if err := b.Set(ctx, "k", "old"); err != nil { // pushed; a holds k, so it decodes it
		t.Fatal(err)
	}
	<-bc.entered
	m.Del("tier:k") // Redis changed by other means
	if err := a.InvalidateAll(ctx); err != nil {
		t.Fatal(err)
	}
	if v, err := a.Get(ctx, "k", constLoader("reloaded")); err != nil || v != "reloaded" {
		t.Fatalf("Get after InvalidateAll = %q, %v", v, err)
	}
	close(bc.release)
	marker(t, a, applied, 1) // b's push, a's own "*" (no event), the marker
	if r, err := a.Fetch(ctx, "k", constLoader("unused")); err != nil || r.Value != "reloaded" {
		t.Fatalf("after InvalidateAll returned and every message arrived, a serves %q from %v, %v; want the reloaded value", r.Value, r.Source, err)
	}
}

// A Set of the writer while another replica's older push is being
// decoded: the older value does not replace the Set's.
func TestPushStraddlingOwnSet(t *testing.T) {
	_, client, _ := newMiniredis(t)
	bc := newBlockCodec()
	a := newCache[string](t, Options{Redis: client, Codec: bc})
	b := newCache[string](t, Options{Redis: client, Codec: newBlockCodec()})
	applied, hold := holdAfterFirst(a)
	defer close(hold)
	ctx := context.Background()
	if v, err := a.Get(ctx, "k", constLoader("v0")); err != nil || v != "v0" {
		t.Fatal(v, err)
	}
	bc.armed.Store(true)
	if err := b.Set(ctx, "k", "old"); err != nil {
		t.Fatal(err)
	}
	<-bc.entered
	if err := a.Set(ctx, "k", "mine"); err != nil {
		t.Fatal(err)
	}
	close(bc.release)
	await(t, applied, "keys") // b's push applied; the subscription waits on hold
	if r, err := a.Fetch(ctx, "k", constLoader("unused")); err != nil || r.Value != "mine" {
		t.Fatalf("the writer after its Set returned and an older message was applied: %q from %v, %v; want mine", r.Value, r.Source, err)
	}
}

// errAfterPublish makes the next PUBLISH, or pipeline of PUBLISHes (a
// Bus with a writer channel sends a PING and one to it first), report an
// error after it ran, as a reply lost to a timeout would.
type errAfterPublish struct{ armed atomic.Bool }

func (h *errAfterPublish) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *errAfterPublish) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		return h.after(next(ctx, cmd), cmd)
	}
}
func (h *errAfterPublish) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		return h.after(next(ctx, cmds), cmds...)
	}
}

func (h *errAfterPublish) after(err error, cmds ...redis.Cmder) error {
	for _, c := range cmds {
		if c.Name() != "publish" && c.Name() != "ping" {
			return err
		}
	}
	if err == nil && h.armed.CompareAndSwap(true, false) {
		return errors.New("i/o timeout (reply lost)")
	}
	return err
}

// An InvalidateAll whose message went out although it reported an error
// does not cut short the wait of a later one: a push sent before the
// later InvalidateAll still does not survive it.
func TestFailedInvalidateAllDoesNotEndAnothersWait(t *testing.T) {
	m, _, _ := newMiniredis(t)
	hook := &errAfterPublish{}
	a := newCache[string](t, Options{Redis: hookedClient(t, m.Addr(), hook)})
	ctx := context.Background()
	applied, hold := holdSubscription(t, a)
	hook.armed.Store(true)
	if err := a.InvalidateAll(ctx); err == nil { // published, reported failed
		t.Fatal("InvalidateAll reported no error")
	}
	if err := a.Set(ctx, "k", "v1"); err != nil { // pushed; its message waits
		t.Fatal(err)
	}
	m.FlushAll() // Redis changed by other means
	if err := a.InvalidateAll(ctx); err != nil {
		t.Fatal(err)
	}
	if v, err := a.Get(ctx, "k", constLoader("reloaded")); err != nil || v != "reloaded" {
		t.Fatalf("Get after InvalidateAll = %q, %v", v, err)
	}
	close(hold)
	marker(t, a, applied, 1) // "*", v1's message, "*", the marker
	if r, err := a.Fetch(ctx, "k", constLoader("reloaded")); err != nil || r.Value != "reloaded" {
		t.Fatalf("after the second InvalidateAll returned and every message arrived, a serves %q from %v, %v; want the reloaded value", r.Value, r.Source, err)
	}
}

// DropNear and Invalidate of the writer do not end the wait for its Set's
// message: another replica's older push that arrives after them does not
// replace the value the writer reads back.
func TestDropDoesNotEndTheWait(t *testing.T) {
	for _, tc := range []struct {
		name string
		drop func(c *Cache[string])
	}{
		{"DropNear", func(c *Cache[string]) { c.DropNear("k") }},
		{"Invalidate", func(c *Cache[string]) { _ = c.Invalidate(context.Background(), "k") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, client, _ := newMiniredis(t)
			a := newCache[string](t, Options{Redis: client})
			b := newCache[string](t, Options{Redis: client})
			ctx := context.Background()
			applied, hold := holdSubscription(t, a)
			if err := b.Set(ctx, "k", "old"); err != nil { // its message waits at a
				t.Fatal(err)
			}
			if err := a.Set(ctx, "k", "mine"); err != nil {
				t.Fatal(err)
			}
			tc.drop(a)
			if v, err := a.Get(ctx, "k", constLoader("unused")); err != nil || v != "mine" {
				t.Fatalf("Get after the drop = %q, %v", v, err)
			}
			hold2 := holdAfter(a, applied)
			defer close(hold2)
			close(hold)
			await(t, applied, "keys") // b's older push; a's own message still waits
			if r, err := a.Fetch(ctx, "k", constLoader("unused")); err != nil || r.Value != "mine" {
				t.Fatalf("the writer after its Set returned reads %q from %v, %v; Redis holds mine", r.Value, r.Source, err)
			}
		})
	}
}

// DropNear keeps its promise, the next Get reads Redis, though the
// message of a Set of the key made before it arrives after it.
func TestDropNearAfterSetReadsRedis(t *testing.T) {
	_, client, _ := newMiniredis(t)
	a := newCache[string](t, Options{Redis: client})
	ctx := context.Background()
	applied, hold := holdSubscription(t, a)
	if err := a.Set(ctx, "k", "v"); err != nil { // its message waits
		t.Fatal(err)
	}
	a.DropNear("k")
	close(hold)
	marker(t, a, applied, 1) // the Set's message, then the marker
	if r, err := a.Fetch(ctx, "k", constLoader("unused")); err != nil || r.Value != "v" || r.Source != SourceFar {
		t.Fatalf("the first Get after DropNear = %+v, %v; want v from Redis", r, err)
	}
}
