package tier

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tier-cache/tier/internal/redistest"
)

// With WatchExternalWrites, a write made outside tier (redis-cli SET,
// EXPIRE, DEL) drops the near copies on every replica.
func TestWatchExternalWrites(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	if err := srv.Client(t).ConfigSet(ctx, "notify-keyspace-events", "K$gx").Err(); err != nil {
		t.Fatal(err)
	}
	b := newCache[string](t, Options{Redis: srv.Client(t), Namespace: "ext", WatchExternalWrites: true})
	// redis-cli where the machine has it, as an operator would; go-redis
	// otherwise.
	external := func(args ...string) {
		t.Helper()
		if cli, err := exec.LookPath("redis-cli"); err == nil {
			host, port, _ := strings.Cut(srv.Addr(), ":")
			out, err := exec.Command(cli, append([]string{"-h", host, "-p", port}, args...)...).CombinedOutput()
			if err != nil {
				t.Fatalf("redis-cli %v: %v: %s", args, err, out)
			}
			return
		}
		anyArgs := make([]any, len(args))
		for i, a := range args {
			anyArgs[i] = a
		}
		if err := srv.Client(t).Do(ctx, anyArgs...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// Each command reaches the near copy held just before it; a key that
	// tier itself never wrote, so that no write of its own drops it.
	for _, cmd := range [][]string{
		{"SET", "ext:k", "written by hand"},
		{"EXPIRE", "ext:k", "3600"},
		{"DEL", "ext:k"},
	} {
		b.near.Set("k", nearEntry[string]{value: "v"})
		external(cmd...)
		waitFor(t, "the near copy to go after "+strings.Join(cmd, " "), func() bool {
			_, ok := b.near.Peek("k")
			return !ok
		})
	}
	if n := b.bus.Stats().Keyspace; n != 3 {
		t.Fatalf("%d keyspace notifications, want 3", n)
	}
	// The cache works as usual meanwhile.
	if v, err := b.Get(ctx, "other", constLoader("v")); err != nil || v != "v" {
		t.Fatalf("Get = %q, %v", v, err)
	}
}

func TestWatchExternalWritesChecksTheServer(t *testing.T) {
	srv := redistest.Start(t)
	if err := srv.Client(t).ConfigSet(context.Background(), "notify-keyspace-events", "").Err(); err != nil {
		t.Fatal(err)
	}
	_, err := New[string](Options{Redis: srv.Client(t), WatchExternalWrites: true})
	if !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), "CONFIG SET notify-keyspace-events") {
		t.Fatalf("New on a server without keyspace notifications = %v; want an error with the command to run", err)
	}
	if _, err := New[string](Options{WatchExternalWrites: true}); !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("New without Redis = %v, want ErrInvalidOptions", err)
	}
}

// With WatchExternalWrites, a load's own lease is announced like any
// write and detaches its flight; with WaitForLoads, the Gets that arrive
// during the load wait for its value instead of loading again.
func TestWatchExternalWritesWithWaitForLoads(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	if err := srv.Client(t).ConfigSet(ctx, "notify-keyspace-events", "K$gx").Err(); err != nil {
		t.Fatal(err)
	}
	c := newCache[string](t, Options{Redis: srv.Client(t), Namespace: "ext", WatchExternalWrites: true,
		WaitForLoads: 20 * time.Second})
	applied := events(c)
	var loads atomic.Int64
	entered, release := make(chan struct{}), make(chan struct{})
	loader := LoaderFunc[string](func(context.Context, string) (string, error) {
		if loads.Add(1) == 1 {
			close(entered)
			<-release
		}
		return "v", nil
	})
	got := make(chan string, 11)
	get := func() {
		v, err := c.Get(ctx, "k", loader)
		if err != nil {
			v = err.Error()
		}
		got <- v
	}
	go get()
	<-entered
	await(t, applied, "keys") // the lease's notification: the flight is detached
	for range 10 {
		go get()
	}
	close(release)
	for range 11 {
		if v := <-got; v != "v" {
			t.Fatalf("Get = %q, want v", v)
		}
	}
	if n := loads.Load(); n != 1 {
		t.Fatalf("%d loads for concurrent misses of one key, want 1", n)
	}
}
