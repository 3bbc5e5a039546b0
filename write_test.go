package tier

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tier-cache/tier/internal/redistest"
)

// gate is a go-redis hook that holds the first command matching match,
// once armed: before it is sent, or after its reply came back (after set),
// until the test releases it. It is how these tests force an interleaving
// without sleeping.
type gate struct {
	match   func(redis.Cmder) bool
	after   bool
	armed   atomic.Bool
	fail    error // when set, the held command fails with it instead of running
	reached chan struct{}
	release chan struct{}
}

// newGate returns an armed gate on the commands named name (lower case)
// whose arguments include arg.
func newGate(name, arg string, after bool) *gate {
	g := &gate{after: after, reached: make(chan struct{}), release: make(chan struct{})}
	g.match = func(cmd redis.Cmder) bool {
		if !strings.EqualFold(cmd.Name(), name) {
			return false
		}
		for _, a := range cmd.Args()[1:] {
			if fmt.Sprint(a) == arg {
				return true
			}
		}
		return false
	}
	g.armed.Store(true)
	return g
}

func (g *gate) DialHook(next redis.DialHook) redis.DialHook { return next }

func (g *gate) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !g.match(cmd) || !g.armed.CompareAndSwap(true, false) {
			return next(ctx, cmd)
		}
		if g.after {
			err := next(ctx, cmd)
			close(g.reached)
			<-g.release
			return err
		}
		close(g.reached)
		<-g.release
		if g.fail != nil {
			cmd.SetErr(g.fail)
			return g.fail
		}
		return next(ctx, cmd)
	}
}

func (g *gate) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// wait waits until the held command has reached the gate.
func (g *gate) wait(t *testing.T) {
	t.Helper()
	select {
	case <-g.reached:
	case <-time.After(patience):
		t.Fatal("the command never reached the gate")
	}
}

// isScript matches the command that runs a write script, whichever form
// go-redis sent it in.
func scriptGate(key string) *gate {
	g := newGate("evalsha", key, false)
	match := g.match
	eval := newGate("eval", key, false).match
	g.match = func(cmd redis.Cmder) bool { return match(cmd) || eval(cmd) }
	return g
}

// async runs f on a goroutine and returns a channel with its result.
func async[T any](f func() T) <-chan T {
	ch := make(chan T, 1)
	go func() { ch <- f() }()
	return ch
}

func recv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(patience):
		t.Fatal("no result")
		panic("unreachable")
	}
}

// mustGet returns the value c's Get returns for key; the loader must not
// be needed.
func mustGet(t *testing.T, c *Cache[string], key string) string {
	t.Helper()
	v, err := c.Get(context.Background(), key, constLoader("loaded"))
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return v
}

// A Get that read Redis before a Set and fills after it: after the Set
// returns, the writer reads its own write, and the Get's older value is
// never kept near.
func TestSetWinsOverOlderRead(t *testing.T) {
	_, client, _ := newMiniredis(t)
	w := newCache[string](t, Options{Redis: client})
	ctx := context.Background()
	if err := w.Set(ctx, "k", "v1"); err != nil {
		t.Fatal(err)
	}
	w.DropNear("k")
	g := newGate("get", "tier:k", true)
	client.AddHook(g)
	old := async(func() string { return mustGet(t, w, "k") })
	g.wait(t) // the read of v1 is back, not yet filled
	if err := w.Set(ctx, "k", "v2"); err != nil {
		t.Fatal(err)
	}
	if v := mustGet(t, w, "k"); v != "v2" {
		t.Fatalf("Get after Set = %q, want v2 (it must not join the older read)", v)
	}
	close(g.release)
	if v := recv(t, old); v != "v1" {
		t.Fatalf("the older Get returned %q, want the v1 it read", v)
	}
	if v := mustGet(t, w, "k"); v != "v2" {
		t.Fatalf("Get after the older read filled = %q, want v2", v)
	}
}

// A DropNear during a Set, and a Get that reads Redis before the write
// lands and fills after the drop: the Set's own store is refused, and the
// key is dropped, so the writer still reads its own write.
func TestSetWinsOverDropAndFillDuringIt(t *testing.T) {
	for _, be := range backendsFor(t) {
		t.Run(be.name, func(t *testing.T) {
			client := be.client(t)
			w := newCache[string](t, Options{Redis: client})
			ctx := context.Background()
			if err := w.Set(ctx, "k", "v1"); err != nil {
				t.Fatal(err)
			}
			g := scriptGate("tier:k")
			client.AddHook(g)
			set := async(func() error { return w.Set(ctx, "k", "v2") })
			g.wait(t) // the Set holds its guard; its write is not sent
			w.DropNear("k")
			if v := mustGet(t, w, "k"); v != "v1" { // reads Redis, fills v1
				t.Fatalf("Get during the Set = %q, want v1 from Redis", v)
			}
			if v, ok := nearValue(w, "k"); !ok || v != "v1" {
				t.Fatalf("near = %q, %v; the test needs the fill to land", v, ok)
			}
			close(g.release)
			if err := recv(t, set); err != nil {
				t.Fatal(err)
			}
			if v := mustGet(t, w, "k"); v != "v2" {
				t.Fatalf("Get after Set = %q, want v2", v)
			}
		})
	}
}

// Another replica's change of the key, heard during a Set: the writer's
// store is refused and the key dropped; its next Get reads Redis, which
// holds whichever write Redis applied last (here the writer's).
func TestSetWinsOverMessageDuringIt(t *testing.T) {
	_, client, _ := newMiniredis(t)
	w := newCache[string](t, Options{Redis: client})
	other := newCache[string](t, Options{Redis: client})
	heard := events(w)
	ctx := context.Background()
	g := scriptGate("tier:k")
	client.AddHook(g)
	set := async(func() error { return w.Set(ctx, "k", "mine") })
	g.wait(t)
	if err := other.Set(ctx, "k", "theirs"); err != nil {
		t.Fatal(err)
	}
	await(t, heard, "keys")
	if v := mustGet(t, w, "k"); v != "theirs" {
		t.Fatalf("Get during the Set = %q, want theirs", v)
	}
	close(g.release)
	if err := recv(t, set); err != nil {
		t.Fatal(err)
	}
	if v := mustGet(t, w, "k"); v != "mine" {
		t.Fatalf("Get after Set = %q, want mine (Redis applied it last)", v)
	}
}

// A Set that fails leaves no copy of the key near: neither the new value,
// which Redis lacks, nor the old one.
func TestFailedSetDropsTheKey(t *testing.T) {
	m, client, _ := newMiniredis(t)
	w := newCache[string](t, Options{Redis: client})
	ctx := context.Background()
	if err := w.Set(ctx, "k", "v1"); err != nil {
		t.Fatal(err)
	}
	g := scriptGate("tier:k")
	g.fail = errors.New("ERR injected")
	close(g.release)
	client.AddHook(g)
	if err := w.Set(ctx, "k", "v2"); err == nil || !strings.Contains(err.Error(), "injected") {
		t.Fatalf("Set = %v, want the injected error", err)
	}
	if _, ok := w.near.Peek("k"); ok {
		t.Fatal("the near tier holds k after a failed Set")
	}
	m.Set("tier:k", "\x01\x01\x00\xa2v3") // Redis is the authority now
	if v := mustGet(t, w, "k"); v != "v3" {
		t.Fatalf("Get after the failed Set = %q, want v3 from Redis", v)
	}
}

// A Get that read Redis before a Delete: after the Delete returns, the
// deleted value is not returned, and the older read keeps nothing near.
func TestDeleteWinsOverOlderRead(t *testing.T) {
	_, client, _ := newMiniredis(t)
	w := newCache[string](t, Options{Redis: client})
	ctx := context.Background()
	if err := w.Set(ctx, "k", "v1"); err != nil {
		t.Fatal(err)
	}
	w.DropNear("k")
	g := newGate("get", "tier:k", true)
	client.AddHook(g)
	old := async(func() string { return mustGet(t, w, "k") })
	g.wait(t)
	if err := w.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if v := mustGet(t, w, "k"); v != "loaded" {
		t.Fatalf("Get after Delete = %q, want a fresh load", v)
	}
	close(g.release)
	if v := recv(t, old); v != "v1" {
		t.Fatalf("the older Get returned %q, want v1", v)
	}
	if v, ok := nearValue(w, "k"); ok && v == "v1" {
		t.Fatal("the near tier kept the deleted value")
	}
}

// Read-your-own-writes under plain scheduling: one goroutine Sets a key to
// 1, 2, 3, … and checks after each Set that a Get on the same replica
// returns that value or a later one, while other goroutines Get the key,
// drop it near and Set it to older values on another replica.
func TestReadYourOwnWritesUnderStress(t *testing.T) {
	for _, be := range backendsFor(t) {
		t.Run(be.name, func(t *testing.T) {
			client := be.client(t)
			w := newCache[int](t, Options{Redis: client})
			ctx := context.Background()
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for i := range 4 {
				wg.Go(func() {
					for {
						select {
						case <-stop:
							return
						default:
						}
						if i == 0 {
							w.DropNear("k")
							continue
						}
						w.Get(ctx, "k", LoaderFunc[int](func(context.Context, string) (int, error) { return 0, nil }))
					}
				})
			}
			rounds := 2000
			if be.name == "miniredis" {
				rounds = 300
			}
			for n := 1; n <= rounds; n++ {
				if err := w.Set(ctx, "k", n); err != nil {
					t.Fatal(err)
				}
				got, err := w.Get(ctx, "k", LoaderFunc[int](func(context.Context, string) (int, error) { return -1, nil }))
				if err != nil || got < n {
					close(stop)
					wg.Wait()
					t.Fatalf("after Set(%d), Get = %d, %v", n, got, err)
				}
			}
			close(stop)
			wg.Wait()
		})
	}
}

// No state grows with writes while the subscription is down: 50,000 Sets
// of distinct keys by a user who may not subscribe leave the heap where it
// was, but for the bounded near tier.
func TestNoGrowthWhileUnsubscribed(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client(t)
	ctx := context.Background()
	if err := admin.Do(ctx, "ACL", "SETUSER", "nosub", "on", ">pw", "~tier:*", "&tier:invalidate", "+@all", "-subscribe").Err(); err != nil {
		t.Fatal(err)
	}
	o := srv.Options()
	o.Username, o.Password = "nosub", "pw"
	client := redis.NewClient(o)
	t.Cleanup(func() { client.Close() })
	c, err := New[[]byte](Options{Redis: client, Near: NearOptions{Capacity: 100}, FarTimeout: generous})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if h := c.Health(); h.Subscription.State != StateDown {
		t.Fatalf("subscription %v, want down (the user may not subscribe)", h.Subscription.State)
	}
	value := make([]byte, 1024)
	set := func(from, to int) {
		for i := from; i < to; i++ {
			if err := c.Set(ctx, fmt.Sprint("k", i), value); err != nil {
				t.Fatal(err)
			}
		}
	}
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	set(0, 1000) // fill the near tier and the pools
	before := heap()
	set(1000, 51_000)
	after := heap()
	if after > before && after-before > 4<<20 {
		t.Fatalf("the heap grew by %d KiB over 50,000 Sets", (after-before)>>10)
	}
	if n := c.near.Len(); n > 100 {
		t.Fatalf("near tier holds %d entries, over its capacity", n)
	}
}

// backend is a Redis server for tests that must hold on both.
type backend struct {
	name   string
	client func(t *testing.T) *redis.Client
}

// backendsFor returns miniredis and a real redis-server.
func backendsFor(t *testing.T) []backend {
	return []backend{
		{"miniredis", func(t *testing.T) *redis.Client { _, c, _ := newMiniredis(t); return c }},
		{"redis-server", func(t *testing.T) *redis.Client { return redistest.Start(t).Client(t) }},
	}
}
