package tier

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tier-cache/tier/codec"
)

// failLoader is a loader whose source is down.
func failLoader(err error) LoaderFunc[string] {
	return func(context.Context, string) (string, error) { return "", err }
}

// A caller that gives up stops waiting at once, and the load it started
// goes on for the others, its context not cancelled.
func TestCallerCancellationDoesNotCancelTheLoad(t *testing.T) {
	_, client, _ := newMiniredis(t)
	c := newCache[string](t, Options{Redis: client})
	entered := make(chan struct{})
	release := make(chan struct{})
	loadErr := make(chan error, 1)
	loader := LoaderFunc[string](func(ctx context.Context, key string) (string, error) {
		close(entered)
		select {
		case <-release:
		case <-ctx.Done(): // wrongly cancelled, or the test ended
		}
		loadErr <- ctx.Err()
		return "loaded", nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := c.Get(ctx, "k", loader)
		done <- err
	}()
	within(t, entered, "the load")
	cancel()
	if err := within(t, done, "the cancelled caller"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller got %v, want context.Canceled", err)
	}
	close(release)
	// A second caller joins the same flight or finds its result.
	v, err := c.Get(context.Background(), "k", failLoader(errors.New("a second load must not run")))
	if err != nil || v != "loaded" {
		t.Fatalf("second Get = %q, %v", v, err)
	}
	if err := <-loadErr; err != nil {
		t.Fatalf("the load's context was cancelled with its first caller: %v", err)
	}
}

// A panicking loader fails its callers with ErrLoaderPanic; the key is not
// left stuck, and nothing is left in Redis.
func TestLoaderPanicBecomesError(t *testing.T) {
	m, client, _ := newMiniredis(t)
	for name, opts := range map[string]Options{"near only": {}, "Redis": {Redis: client}} {
		t.Run(name, func(t *testing.T) {
			c := newCache[string](t, opts)
			_, err := c.Get(context.Background(), "k", LoaderFunc[string](func(context.Context, string) (string, error) {
				panic("boom")
			}))
			if !errors.Is(err, ErrLoaderPanic) || !strings.Contains(err.Error(), "boom") {
				t.Fatalf("err = %v, want ErrLoaderPanic with the panic value", err)
			}
			if m.Exists("tier:k") {
				t.Fatal("a panicked load left its lease in Redis")
			}
			if v, err := c.Get(context.Background(), "k", constLoader("ok")); err != nil || v != "ok" {
				t.Fatalf("Get after a panic = %q, %v; the key must not stay stuck", v, err)
			}
			m.FlushAll()
		})
	}
}

// A loader's error reaches the caller wrapped with the key, and is not
// cached: the next Get loads again.
func TestLoaderErrorIsNotCached(t *testing.T) {
	_, client, _ := newMiniredis(t)
	c := newCache[string](t, Options{Redis: client})
	boom := errors.New("source down")
	_, err := c.Get(context.Background(), "k", failLoader(boom))
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), `"k"`) {
		t.Fatalf("err = %v, want the loader's error wrapped with the key", err)
	}
	if errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v matches ErrNotFound", err)
	}
	l := &countingLoader{}
	if v, err := c.Get(context.Background(), "k", l); err != nil || v != "k#1" {
		t.Fatalf("Get after a failed load = %q, %v", v, err)
	}
	if st := c.Stats(); st.LoadErrors != 1 || st.Loads != 2 {
		t.Fatalf("stats = %+v, want 1 load error of 2 loads", st)
	}
}

// A loader's ErrNotFound is cached for NotFoundTTL, near and in Redis as a
// tombstone, so that neither this replica nor another asks the source
// again until it expires.
func TestNegativeCaching(t *testing.T) {
	m, client, _ := newMiniredis(t)
	clock := newFakeClock()
	opts := Options{Redis: client, NotFoundTTL: 5 * time.Second, Jitter: -1, Clock: clock}
	a := newCache[string](t, opts)
	b := newCache[string](t, opts)
	var calls atomic.Int64
	missing := LoaderFunc[string](func(context.Context, string) (string, error) {
		calls.Add(1)
		return "", fmt.Errorf("no row: %w", ErrNotFound)
	})
	ctx := context.Background()
	for i, c := range []*Cache[string]{a, a, b} {
		r, err := c.Fetch(ctx, "ghost", missing)
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("read %d: err = %v, want ErrNotFound", i, err)
		}
		if want := []Source{SourceLoad, SourceNear, SourceFar}[i]; r.Source != want {
			t.Fatalf("read %d answered by %v, want %v", i, r.Source, want)
		}
	}
	if calls.Load() != 1 {
		t.Fatalf("loader calls = %d, want 1: the answer is cached in both tiers", calls.Load())
	}
	raw, err := m.Get("tier:ghost")
	if err != nil || !codec.IsTombstone([]byte(raw)) {
		t.Fatalf("Redis holds %q, %v; want a tombstone", raw, err)
	}
	if ttl := m.TTL("tier:ghost"); ttl != 5*time.Second {
		t.Fatalf("Redis TTL of the tombstone = %v, want NotFoundTTL 5s", ttl)
	}
	if v, ok := a.near.Peek("ghost"); !ok || !v.absent() {
		t.Fatalf("near entry = %+v, %v; want a cached not-found", v, ok)
	}
	clock.Advance(6 * time.Second)
	m.FastForward(6 * time.Second)
	if _, err := a.Get(ctx, "ghost", missing); !errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v", err)
	}
	if calls.Load() != 2 {
		t.Fatalf("loader calls = %d after NotFoundTTL, want 2", calls.Load())
	}
}

// A nil loader, as a nil interface or a nil LoaderFunc, is an error that
// names the loader, not a panic; nothing is cached, in either tier.
func TestNilLoader(t *testing.T) {
	m, client, _ := newMiniredis(t)
	for name, opts := range map[string]Options{"near only": {}, "Redis": {Redis: client}} {
		t.Run(name, func(t *testing.T) {
			c := newCache[string](t, opts)
			ctx := context.Background()
			var nilInterface Loader[string]
			for lname, l := range map[string]Loader[string]{
				"nil interface":  nilInterface,
				"nil LoaderFunc": LoaderFunc[string](nil),
			} {
				_, err := c.Get(ctx, "k", l)
				if err == nil || !strings.Contains(err.Error(), "loader") {
					t.Fatalf("%s: Get = %v, want an error naming the loader", lname, err)
				}
				if _, err := c.Fetch(ctx, "k", l); err == nil {
					t.Fatalf("%s: Fetch succeeded", lname)
				}
			}
			if _, err := c.Wrap(nil)(ctx, "k"); err == nil || !strings.Contains(err.Error(), "loader") {
				t.Fatalf("Wrap(nil) = %v, want an error naming the loader", err)
			}
			var nilBatch BatchLoader[string]
			for _, l := range []BatchLoader[string]{nilBatch, BatchLoaderFunc[string](nil)} {
				if _, err := c.GetMany(ctx, []string{"k", "j"}, l); err == nil || !strings.Contains(err.Error(), "loader") {
					t.Fatalf("GetMany with a nil loader = %v, want an error naming the loader", err)
				}
			}
			if c.near.Len() != 0 || len(m.Keys()) != 0 {
				t.Fatalf("a nil loader cached something: %d near entries, Redis keys %q", c.near.Len(), m.Keys())
			}
			if st := c.Stats(); st.Loads != 0 {
				t.Fatalf("Loads = %d, want 0", st.Loads)
			}
			// The key is not stuck.
			if v, err := c.Get(ctx, "k", constLoader("v")); err != nil || v != "v" {
				t.Fatalf("Get with a loader after the nil ones = %q, %v", v, err)
			}
			m.FlushAll()
		})
	}
}

// The caller that starts a flight reads Redis under its own context: when
// that context ends during the read, it returns at once, not after
// FarTimeout, and the flight reads again for the callers that joined it.
func TestFirstCallerStopsWhenItsContextEnds(t *testing.T) {
	m, _, _ := newMiniredis(t)
	// Once armed, the next GET is held until its context ends, as by a
	// server that does not answer.
	var armed atomic.Bool
	reached := make(chan struct{})
	client := redis.NewClient(&redis.Options{Addr: m.Addr(), ContextTimeoutEnabled: true, MaxRetries: -1})
	client.AddHook(commandHook(func(ctx context.Context, cmd redis.Cmder, next redis.ProcessHook) error {
		if cmd.Name() == "get" && armed.CompareAndSwap(true, false) {
			close(reached)
			<-ctx.Done()
			return ctx.Err()
		}
		return next(ctx, cmd)
	}))
	t.Cleanup(func() { client.Close() })
	c := newCache[string](t, Options{Redis: client, FarTimeout: 2 * patience})
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	c.DropNear("k")
	armed.Store(true)

	first, cancel := context.WithCancel(ctx)
	firstDone := make(chan error, 1)
	go func() {
		_, err := c.Get(first, "k", failLoader(errors.New("the first caller must not load")))
		firstDone <- err
	}()
	within(t, reached, "the first caller's GET")
	type result struct {
		r   Result[string]
		err error
	}
	other := make(chan result, 1)
	go func() {
		r, err := c.Fetch(ctx, "k", failLoader(errors.New("a far hit must not load")))
		other <- result{r, err}
	}()
	cancel()
	if err := within(t, firstDone, "the first caller, its context cancelled"); !errors.Is(err, context.Canceled) {
		t.Fatalf("first caller got %v, want context.Canceled", err)
	}
	if got := within(t, other, "the other caller"); got.err != nil || got.r.Value != "v" || got.r.Source != SourceFar {
		t.Fatalf("other caller = %+v, %v; want v from Redis", got.r, got.err)
	}
}

// A panic during the first caller's read (a client hook's, here) goes on
// up that caller's stack, and leaves no flight behind that later callers
// would wait on for ever.
func TestPanicInTheFirstReadLeavesNoFlight(t *testing.T) {
	m, _, _ := newMiniredis(t)
	client := redis.NewClient(&redis.Options{Addr: m.Addr(), ContextTimeoutEnabled: true, MaxRetries: -1})
	var armed atomic.Bool // once set, the next GET panics
	client.AddHook(commandHook(func(ctx context.Context, cmd redis.Cmder, next redis.ProcessHook) error {
		if cmd.Name() == "get" && armed.CompareAndSwap(true, false) {
			panic("hook")
		}
		return next(ctx, cmd)
	}))
	t.Cleanup(func() { client.Close() })
	c := newCache[string](t, Options{Redis: client})
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	c.DropNear("k")
	armed.Store(true)
	panicked := make(chan any, 1)
	go func() {
		defer func() { panicked <- recover() }()
		c.Get(ctx, "k", failLoader(errors.New("unused")))
	}()
	if p := within(t, panicked, "the panicking Get"); p == nil {
		t.Fatal("the hook's panic did not reach the caller")
	}
	wctx, cancel := context.WithTimeout(ctx, patience)
	defer cancel()
	if v, err := c.Get(wctx, "k", failLoader(errors.New("a far hit must not load"))); err != nil || v != "v" {
		t.Fatalf("Get after the panic = %q, %v; want v", v, err)
	}
}
