package tier

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/vmihailenco/msgpack/v5"
	"go.uber.org/goleak"

	"github.com/tier-cache/tier/internal/redistest"
)

// Regression tests for races and edge cases found in review.

// A Get racing with Close must not register a flight after Close has
// started waiting for flights (a WaitGroup reuse panic, or a load running
// after Close returned).
func TestCloseRacingGets(t *testing.T) {
	for round := range 300 {
		c, err := New[string](Options{})
		if err != nil {
			t.Fatal(err)
		}
		var closed atomic.Bool
		var late, loads atomic.Int64
		loader := LoaderFunc[string](func(ctx context.Context, k string) (string, error) {
			loads.Add(1)
			if closed.Load() {
				late.Add(1)
			}
			return k, nil
		})
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for i := range 200 {
					c.Get(context.Background(), fmt.Sprint(round, g, i), loader)
				}
			})
		}
		for loads.Load() < 16 {
			runtime.Gosched()
		}
		c.Close()
		closed.Store(true)
		wg.Wait()
		if n := late.Load(); n > 0 {
			t.Fatalf("round %d: %d loads started after Close returned", round, n)
		}
	}
}

// txHook holds the next notify write (a Set's or Delete's write and its
// message, as a transaction or a script) until released, before it is
// sent.
type txHook struct {
	armed   atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func (h *txHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *txHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.hold([]redis.Cmder{cmd})
		return next(ctx, cmd)
	}
}
func (h *txHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.hold(cmds)
		return next(ctx, cmds)
	}
}

func (h *txHook) hold(cmds []redis.Cmder) {
	if isNotifyWrite(cmds) && h.armed.CompareAndSwap(true, false) {
		close(h.entered)
		<-h.release
	}
}

// isNotifyWrite reports whether cmds are a write and its message, as sent
// by remote.Store.SetNotify or DeleteNotify on a single server: one script,
// or MULTI, the write, its PUBLISHes and EXEC, after the PING and PUBLISH
// to the writer channel if any (and not the empty MULTI/EXEC that asks the
// server whether it runs transactions).
func isNotifyWrite(cmds []redis.Cmder) bool {
	if len(cmds) > 2 && cmds[0].Name() == "ping" && cmds[1].Name() == "publish" {
		cmds = cmds[2:]
	}
	switch {
	case len(cmds) == 1:
		name := cmds[0].Name()
		return name == "evalsha" || name == "eval"
	case len(cmds) > 2:
		return cmds[0].Name() == "multi" && cmds[len(cmds)-1].Name() == "exec"
	}
	return false
}

func hookedClient(t *testing.T, addr string, h redis.Hook) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	c.AddHook(h)
	t.Cleanup(func() { c.Close() })
	return c
}

// A read of this replica between Delete's near drop and its Redis write
// must not leave the deleted value in the near tier once Delete returned
// (the replica skips its own invalidation message).
func TestDeleteRacingOwnRead(t *testing.T) {
	m, _, _ := newMiniredis(t)
	hook := &txHook{entered: make(chan struct{}), release: make(chan struct{})}
	c := newCache[string](t, Options{Redis: hookedClient(t, m.Addr(), hook)})
	ctx := context.Background()
	if err := c.Set(ctx, "k", "old"); err != nil {
		t.Fatal(err)
	}
	c.DropNear("k")
	hook.armed.Store(true)
	done := make(chan error)
	go func() { done <- c.Delete(ctx, "k") }()
	<-hook.entered // the near copy is dropped, the UNLINK not yet sent
	if r, err := c.Fetch(ctx, "k", constLoader("unused")); err != nil || r.Value != "old" {
		t.Fatalf("concurrent read: %+v %v", r, err)
	}
	close(hook.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if r, _ := c.Fetch(ctx, "k", constLoader("reloaded")); r.Source == SourceNear {
		t.Fatalf("after Delete returned, Get = %+v: the deleted value came from the near tier", r)
	}
}

// getHook lets the next GET pipeline read Redis, then holds its answer.
type getHook struct {
	armed   atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func (h *getHook) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessHook holds the first GET (a far read) after its reply arrived.
func (h *getHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "get" && h.armed.CompareAndSwap(true, false) {
			err := next(ctx, cmd)
			close(h.entered)
			<-h.release
			return err
		}
		return next(ctx, cmd)
	}
}

func (h *getHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// A far read of this replica that fetched Redis before its own Set wrote
// must not replace the Set's value in the near tier: read your writes.
func TestSetRacingOwnFarRead(t *testing.T) {
	m, _, _ := newMiniredis(t)
	tx := &txHook{entered: make(chan struct{}), release: make(chan struct{})}
	get := &getHook{entered: make(chan struct{}), release: make(chan struct{})}
	client := hookedClient(t, m.Addr(), tx)
	client.AddHook(get)
	c := newCache[string](t, Options{Redis: client})
	ctx := context.Background()
	if err := c.Set(ctx, "k", "old"); err != nil {
		t.Fatal(err)
	}
	c.DropNear("k")
	tx.armed.Store(true)
	setDone := make(chan error)
	go func() { setDone <- c.Set(ctx, "k", "new") }()
	<-tx.entered // Set dropped the near copy; its write is held
	get.armed.Store(true)
	getDone := make(chan Result[string])
	go func() { r, _ := c.Fetch(ctx, "k", constLoader("unused")); getDone <- r }()
	<-get.entered // the read fetched "old" from Redis
	close(tx.release)
	if err := <-setDone; err != nil {
		t.Fatal(err)
	}
	close(get.release)
	<-getDone
	if r, _ := c.Fetch(ctx, "k", constLoader("unused")); r.Value != "new" {
		t.Fatalf("after Set(new) returned, Get = %+v", r)
	}
}

// A load that read the source before another replica's Set must not
// overwrite the Set's value in Redis.
func TestSlowLoadDoesNotOverwriteSet(t *testing.T) {
	_, client, _ := newMiniredis(t)
	a := newCache[string](t, Options{Redis: client})
	b := newCache[string](t, Options{Redis: client})
	finish := blockedGet(b, "k", "stale")
	if err := a.Set(context.Background(), "k", "fresh"); err != nil {
		t.Fatal(err)
	}
	if v := finish(); v != "stale" {
		t.Fatalf("the waiting caller got %q, want what its load returned", v)
	}
	third := newCache[string](t, Options{Redis: client})
	if v, _ := third.Get(context.Background(), "k", constLoader("unused")); v != "fresh" {
		t.Fatalf("after Set(fresh) and the slow load, replicas read %q", v)
	}
}

// No near copy outlives the Redis copy written with it: not a "not found",
// not a load with FarTTL shorter than NearTTL.
func TestNearTTLNeverExceedsFarTTLWritten(t *testing.T) {
	m, client, _ := newMiniredis(t)
	c := newCache[string](t, Options{Redis: client, NotFoundTTL: 10 * time.Second, FarTTL: 5 * time.Second, Clock: newFakeClock()})
	notFound := LoaderFunc[string](func(context.Context, string) (string, error) { return "", ErrNotFound })
	for i := range 40 {
		k := fmt.Sprint("absent-", i)
		c.Get(context.Background(), k, notFound)
		k2 := fmt.Sprint("loaded-", i)
		c.Get(context.Background(), k2, constLoader("v"))
		if err := c.Set(context.Background(), fmt.Sprint("set-", i), "v"); err != nil {
			t.Fatal(err)
		}
		for _, key := range []string{k, k2, fmt.Sprint("set-", i)} {
			near, ok := c.near.TTL(key)
			if far := m.TTL("tier:" + key); !ok || near > far {
				t.Fatalf("%s: near copy lives %v, Redis copy %v", key, near, far)
			}
		}
	}
}

type panicOnEncode struct{ X int }

func (panicOnEncode) EncodeMsgpack(*msgpack.Encoder) error { panic("encode boom") }

// A value whose encoding panics is returned uncached, not a crash of the
// flight goroutine.
func TestEncodePanicIsNotACrash(t *testing.T) {
	// NearMaxBytes makes even a near-only cache encode, to weigh values.
	c := newCache[panicOnEncode](t, Options{NearMaxBytes: 1 << 20})
	v, err := c.Get(context.Background(), "k", LoaderFunc[panicOnEncode](func(context.Context, string) (panicOnEncode, error) {
		return panicOnEncode{1}, nil
	}))
	if err != nil || v.X != 1 {
		t.Fatalf("Get = %+v, %v", v, err)
	}
	if st := c.Stats(); st.NotCached != 1 {
		t.Fatalf("NotCached = %d, want 1", st.NotCached)
	}
	if err := c.Set(context.Background(), "k", panicOnEncode{2}); err == nil {
		t.Fatal("Set of an unencodable value succeeded")
	}
}

// A near-only cache without NearMaxBytes stores values as they are: it
// never encodes them, so a Set costs no codec work.
func TestNearOnlyCacheDoesNotEncode(t *testing.T) {
	c := newCache[panicOnEncode](t, Options{})
	ctx := context.Background()
	if err := c.Set(ctx, "k", panicOnEncode{2}); err != nil {
		t.Fatalf("Set = %v; a near-only cache encoded the value", err)
	}
	if r, err := c.Fetch(ctx, "k", LoaderFunc[panicOnEncode](func(context.Context, string) (panicOnEncode, error) {
		t.Fatal("loaded a key just Set")
		return panicOnEncode{}, nil
	})); err != nil || r.Value.X != 2 || r.Source != SourceNear {
		t.Fatalf("Fetch = %+v, %v; want the Set value from the near tier", r, err)
	}
}

// Against a server that accepts connections and never answers, Gets are
// answered by the loader and Close returns.
func TestBlackholedRedis(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	client := redis.NewClient(&redis.Options{Addr: ln.Addr().String(), ContextTimeoutEnabled: true, MaxRetries: -1, ReadTimeout: -1})
	t.Cleanup(func() { client.Close() })
	c, err := New[string](Options{Redis: client, FarTimeout: 50 * time.Millisecond, HealthInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if v, err := c.Get(context.Background(), "k", constLoader("v")); err != nil || v != "v" {
			t.Fatalf("Get = %q, %v", v, err)
		}
	}
	closed := make(chan struct{})
	go func() { c.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(20 * time.Second): // a hang, not a timing
		t.Fatal("Close blocked")
	}
}

// Close while 100 goroutines call Get and Set: every call returns a value
// or ErrClosed, and nothing of the cache's is left running.
func TestCloseUnderLoad(t *testing.T) {
	_, client, _ := newMiniredis(t)
	before := goleak.IgnoreCurrent()
	c, err := New[string](Options{Redis: client, FarTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	errs := make(chan error, 100)
	var wg sync.WaitGroup
	for g := range 100 {
		wg.Go(func() {
			for i := 0; ; i++ {
				k := fmt.Sprint(i % 50)
				var err error
				if g%4 == 0 {
					err = c.Set(context.Background(), k, "v")
				} else {
					var v string
					v, err = c.Get(context.Background(), k, constLoader("v"))
					if err == nil && v != "v" {
						err = fmt.Errorf("got %q", v)
					}
				}
				calls.Add(1)
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for calls.Load() < 1000 {
		runtime.Gosched()
	}
	c.Close()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("a call returned %v, want a value or ErrClosed", err)
	}
	goleak.VerifyNone(t, before,
		goleak.IgnoreAnyFunction("github.com/alicebob/miniredis/v2/server.(*Server).servePeer"),
		goleak.IgnoreAnyFunction("github.com/alicebob/miniredis/v2/server.(*Server).servePeer.func2"))
}

// A load that read the source before a Delete must not write the deleted
// value back into Redis: its lease was removed by the Delete.
func TestSlowLoadDoesNotResurrectDeletedKey(t *testing.T) {
	m, client, _ := newMiniredis(t)
	loading := newCache[string](t, Options{Redis: client})
	deleting := newCache[string](t, Options{Redis: client})
	finish := blockedGet(loading, "k", "old")
	if !m.Exists("tier:k") {
		t.Fatal("the load took no lease under the key")
	}
	if err := deleting.Delete(context.Background(), "k"); err != nil {
		t.Fatal(err)
	}
	if v := finish(); v != "old" {
		t.Fatalf("the waiting caller got %q", v)
	}
	if m.Exists("tier:k") {
		got, _ := m.Get("tier:k")
		t.Fatalf("Redis holds %q for k after Delete", got)
	}
}

// While one replica loads, another sees its lease as a miss (not as
// corrupt bytes), loads too, and writes nothing over the lease; a failed
// load gives its lease back.
func TestLeaseIsAMissForOthers(t *testing.T) {
	m, client, _ := newMiniredis(t)
	a := newCache[string](t, Options{Redis: client})
	b := newCache[string](t, Options{Redis: client})
	finish := blockedGet(a, "k", "from a")
	if r, err := b.Fetch(context.Background(), "k", constLoader("from b")); err != nil || r.Value != "from b" || r.Source != SourceLoad {
		t.Fatalf("b during a's load: %+v, %v", r, err)
	}
	if st := b.Stats(); st.Corrupt != 0 {
		t.Fatalf("b counted a lease as corrupt: %+v", st)
	}
	finish()
	if got, _ := m.Get("tier:k"); !strings.Contains(got, "from a") {
		t.Fatalf("Redis holds %q; want a's value, written over its own lease", got)
	}
	_, err := a.Get(context.Background(), "e", LoaderFunc[string](func(context.Context, string) (string, error) {
		return "", errors.New("source down")
	}))
	if err == nil || m.Exists("tier:e") {
		t.Fatalf("after a failed load: err %v, Redis has e: %v", err, m.Exists("tier:e"))
	}
}

// The same for GetMany: a batch load racing with a Delete does not write
// the deleted key back, and the keys nobody touched are stored.
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
	<-entered
	if err := deleting.Delete(context.Background(), "k"); err != nil {
		t.Fatal(err)
	}
	close(release)
	if got := <-done; got["k"] != "old" || got["other"] != "fine" {
		t.Fatalf("GetMany returned %v", got)
	}
	if m.Exists("tier:k") {
		got, _ := m.Get("tier:k")
		t.Fatalf("Redis holds %q for k after Delete", got)
	}
	if got, _ := m.Get("tier:other"); !strings.Contains(got, "fine") {
		t.Fatalf("Redis holds %q for other, want the loaded value", got)
	}
	if !m.Exists("tier:gone") {
		t.Fatal("the batch's not-found answer was not cached in Redis")
	}
}

// A Get that starts after a change of its key arrived must not join a
// load that began before it: that load may have read what the change
// replaced. The change detaches the flight; the new Get reads Redis.
func TestGetAfterChangeDoesNotJoinOlderLoad(t *testing.T) {
	_, client, _ := newMiniredis(t)
	a := newCache[string](t, Options{Redis: client})
	b := newCache[string](t, Options{Redis: client})
	aEvents := events(a)
	ctx := context.Background()
	finish := blockedGet(a, "k", "old") // a load of the source's old value
	if err := b.Set(ctx, "k", "new"); err != nil {
		t.Fatal(err)
	}
	await(t, aEvents, "keys")
	// Joining the held load would wait for ever; the deadline turns that
	// into a failure.
	gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	r, err := a.Fetch(gctx, "k", constLoader("unused"))
	v := finish()
	if err != nil || r.Value != "new" || r.Source != SourceFar {
		t.Fatalf("a Get after the change arrived = %+v, %v; want new from Redis", r, err)
	}
	if v != "old" {
		t.Fatalf("the load's own caller got %q, want the old value it loaded", v)
	}
	if r, _ := a.Fetch(ctx, "k", constLoader("unused")); r.Value != "new" {
		t.Fatalf("after the old load finished: %+v, want new", r)
	}
}

// GetMany under a context that has ended returns its error, without taking
// it for a Redis outage or calling the loader with it.
func TestGetManyCancelledContext(t *testing.T) {
	_, client, _ := newMiniredis(t)
	c := newCache[string](t, Options{Redis: client})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	loads := 0
	batch := BatchLoaderFunc[string](func(context.Context, []string) (map[string]string, error) {
		loads++
		return nil, nil
	})
	if _, err := c.GetMany(ctx, []string{"a", "b"}, batch); !errors.Is(err, context.Canceled) {
		t.Fatalf("GetMany under a cancelled context: %v, want context.Canceled", err)
	}
	if st := c.Stats(); loads != 0 || st.FarErrors != 0 {
		t.Fatalf("%d loads and %d far errors, want none", loads, st.FarErrors)
	}
}

// WaitReady returns once the subscription is confirmed, the context's
// error while Redis does not answer, ErrClosed after Close, and nil at
// once without invalidation.
func TestWaitReady(t *testing.T) {
	srv := redistest.Start(t)
	srv.Stop(t)
	c := newCacheUnconfirmed[string](t, Options{Redis: srv.Client(t), Namespace: "ready", HealthInterval: 50 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := c.WaitReady(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitReady with Redis down = %v, want the context's deadline", err)
	}
	srv.Restart(t)
	wctx, wcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer wcancel()
	if err := c.WaitReady(wctx); err != nil {
		t.Fatalf("WaitReady once Redis is back = %v", err)
	}
	if _, err := c.Get(wctx, "k", constLoader("v")); err != nil {
		t.Fatal(err)
	}
	if r, err := c.Fetch(wctx, "k", constLoader("unused")); err != nil || r.Source != SourceNear {
		t.Fatalf("after WaitReady, the second Get = %+v, %v; want a near hit", r, err)
	}
	c.Close()
	if err := c.WaitReady(wctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("WaitReady after Close = %v, want ErrClosed", err)
	}
	nearOnly := newCache[string](t, Options{})
	if err := nearOnly.WaitReady(ctx); err != nil {
		t.Fatalf("WaitReady without Redis = %v", err)
	}
}

// newCacheUnconfirmed is newCache without waiting for the subscription.
func newCacheUnconfirmed[V any](t *testing.T, opts Options) *Cache[V] {
	t.Helper()
	c, err := New[V](opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
