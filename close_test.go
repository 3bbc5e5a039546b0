package tier

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

// miniredisServing ignores the connection goroutines miniredis keeps for
// a client's pooled connections, which outlive a cache.
var miniredisServing = []goleak.Option{
	goleak.IgnoreAnyFunction("github.com/alicebob/miniredis/v2/server.(*Server).servePeer"),
	goleak.IgnoreAnyFunction("github.com/alicebob/miniredis/v2/server.(*Server).servePeer.func2"),
}

// After Close every call returns ErrClosed; a caller waiting for a load
// gets ErrClosed; Close is idempotent; nothing of the cache's is left
// running.
func TestClose(t *testing.T) {
	_, client, _ := newMiniredis(t)
	before := goleak.IgnoreCurrent() // what runs before the cache exists
	c, err := New[string](Options{Redis: client, FarTimeout: generous})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	entered := make(chan struct{})
	waiting := make(chan error)
	go func() {
		_, err := c.Get(ctx, "slow", LoaderFunc[string](func(ctx context.Context, _ string) (string, error) {
			close(entered)
			<-ctx.Done()
			return "", ctx.Err()
		}))
		waiting <- err
	}()
	within(t, entered, "the load")
	if _, err := c.Get(ctx, "k", &countingLoader{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	if err := within(t, waiting, "the waiting caller"); !errors.Is(err, ErrClosed) {
		t.Fatalf("a caller waiting on a load Close cancelled got %v, want ErrClosed", err)
	}
	calls := map[string]func() error{
		"Get of a near-cached key": func() error { _, err := c.Get(ctx, "k", &countingLoader{}); return err },
		"Fetch":                    func() error { _, err := c.Fetch(ctx, "other", &countingLoader{}); return err },
		"Set":                      func() error { return c.Set(ctx, "k", "v") },
		"Delete":                   func() error { return c.Delete(ctx, "k") },
		"Invalidate":               func() error { return c.Invalidate(ctx, "k") },
		"InvalidateAll":            func() error { return c.InvalidateAll(ctx) },
		"WaitReady":                func() error { return c.WaitReady(ctx) },
		"GetMany": func() error {
			_, err := c.GetMany(ctx, []string{"k"}, BatchLoaderFunc[string](func(context.Context, []string) (map[string]string, error) {
				return nil, nil
			}))
			return err
		},
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
	goleak.VerifyNone(t, append(miniredisServing, before)...)
}

// A Get racing with Close registers no flight after Close has started
// waiting for flights: no load starts after Close returned.
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

// Close while 100 goroutines call Get and Set: every call returns a value
// or ErrClosed, and nothing of the cache's is left running.
func TestCloseUnderLoad(t *testing.T) {
	_, client, _ := newMiniredis(t)
	before := goleak.IgnoreCurrent()
	c, err := New[string](Options{Redis: client, FarTimeout: generous})
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
	goleak.VerifyNone(t, append(miniredisServing, before)...)
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
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
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
		<-accepted
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	client := redis.NewClient(&redis.Options{Addr: ln.Addr().String(), ContextTimeoutEnabled: true, MaxRetries: -1, ReadTimeout: -1})
	t.Cleanup(func() { client.Close() })
	c, err := New[string](Options{Redis: client, FarTimeout: 50 * time.Millisecond,
		Invalidation: InvalidationOptions{HealthInterval: 100 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if v, err := c.Get(context.Background(), fmt.Sprint("k", i), constLoader("v")); err != nil || v != "v" {
			t.Fatalf("Get = %q, %v", v, err)
		}
	}
	if err := c.Set(context.Background(), "k", "v"); err == nil {
		t.Fatal("Set against a server that never answers succeeded")
	}
	closed := make(chan struct{})
	go func() { c.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(patience):
		t.Fatal("Close blocked")
	}
}
