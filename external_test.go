package tier

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tier-cache/tier/internal/redistest"
)

// enableKeyspaceEvents turns on the keyspace notifications that
// Invalidation.WatchExternalWrites needs.
func enableKeyspaceEvents(t *testing.T, srv *redistest.Server, flags string) {
	t.Helper()
	if err := srv.Client(t).ConfigSet(context.Background(), "notify-keyspace-events", flags).Err(); err != nil {
		t.Fatal(err)
	}
}

// With WatchExternalWrites, a write made outside tier (redis-cli SET,
// EXPIRE, DEL) drops the near copies on every replica.
func TestWatchExternalWrites(t *testing.T) {
	srv := redistest.Start(t)
	enableKeyspaceEvents(t, srv, "K$gx")
	ctx := context.Background()
	watch := Options{Namespace: "ext", Invalidation: InvalidationOptions{WatchExternalWrites: true}}
	var replicas []*Cache[string]
	var evs []<-chan string
	for range 2 {
		opts := watch
		opts.Redis = srv.Client(t)
		c := newCache[string](t, opts)
		replicas = append(replicas, c)
		evs = append(evs, events(c))
	}
	// A writer that sends no message: each replica hears of its Set only
	// through keyspace notifications, two of them (SET with PX notifies
	// "set" and "expire").
	writer := newCache[string](t, Options{Redis: srv.Client(t), Namespace: "ext", Invalidation: InvalidationOptions{Disabled: true}})
	// redis-cli where the machine has it, as an operator would; go-redis
	// otherwise.
	external := func(args ...string) {
		t.Helper()
		if cli, err := exec.LookPath("redis-cli"); err == nil {
			host, port, _ := strings.Cut(srv.Addr(), ":")
			out, err := exec.Command(cli, append([]string{"-h", host, "-p", port}, args...)...).CombinedOutput()
			if err != nil || strings.HasPrefix(string(out), "(error)") || strings.HasPrefix(string(out), "ERR") {
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
	for _, cmd := range [][]string{
		{"SET", "ext:k", "written by hand"},
		{"EXPIRE", "ext:k", "3600"},
		{"DEL", "ext:k"},
	} {
		if err := writer.Set(ctx, "k", "v"); err != nil {
			t.Fatal(err)
		}
		for i, c := range replicas {
			await(t, evs[i], "keys") // the Set's notifications
			await(t, evs[i], "keys")
			if r, err := c.Fetch(ctx, "k", constLoader("unused")); err != nil || r.Value != "v" || r.Source != SourceFar {
				t.Fatalf("replica %d: %+v, %v; want v from Redis", i, r, err)
			}
			if v, ok := nearValue(c, "k"); !ok || v != "v" {
				t.Fatalf("replica %d holds %q (%v) near, want v", i, v, ok)
			}
		}
		external(cmd...)
		for i, c := range replicas {
			await(t, evs[i], "keys")
			if _, ok := c.near.Peek("k"); ok {
				t.Fatalf("replica %d kept its near copy after %s", i, strings.Join(cmd, " "))
			}
		}
	}
	for i, c := range replicas {
		if n := c.bus.Stats().Keyspace; n != 9 {
			t.Fatalf("replica %d: %d keyspace notifications, want 9 (2 for each of 3 Sets, 3 commands)", i, n)
		}
		if st := c.Stats(); st.Invalidations != 9 || st.Malformed != 0 {
			t.Fatalf("replica %d: stats = %+v, want 9 invalidations", i, st)
		}
	}
	// The cache works as usual meanwhile.
	if v, err := replicas[0].Get(ctx, "other", constLoader("v")); err != nil || v != "v" {
		t.Fatalf("Get = %q, %v", v, err)
	}
}

// New checks that the server sends the notifications WatchExternalWrites
// needs, and says how to turn them on; "KA" is enough.
func TestWatchExternalWritesChecksTheServer(t *testing.T) {
	srv := redistest.Start(t)
	for _, flags := range []string{"", "K$", "Kg", "E$g"} {
		enableKeyspaceEvents(t, srv, flags)
		_, err := New[string](Options{Redis: srv.Client(t), Invalidation: InvalidationOptions{WatchExternalWrites: true}})
		if !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), "CONFIG SET notify-keyspace-events") ||
			!strings.Contains(err.Error(), "Invalidation.WatchExternalWrites") {
			t.Fatalf("New on a server with notify-keyspace-events %q = %v; want an error naming the option, with the command to run", flags, err)
		}
	}
	for _, flags := range []string{"KA", "K$g", "AKE"} {
		enableKeyspaceEvents(t, srv, flags)
		newCache[string](t, Options{Redis: srv.Client(t), Invalidation: InvalidationOptions{WatchExternalWrites: true}})
	}
}

// With WatchExternalWrites, a load's own lease is announced like any
// write and detaches its flight; with WaitForLoads, the Gets that arrive
// during the load wait for its value instead of loading again.
func TestWatchExternalWritesWithWaitForLoads(t *testing.T) {
	srv := redistest.Start(t)
	enableKeyspaceEvents(t, srv, "K$gx")
	ctx := context.Background()
	c := newCache[string](t, Options{Redis: srv.Client(t), Namespace: "ext", WaitForLoads: patience,
		Invalidation: InvalidationOptions{WatchExternalWrites: true}})
	applied := events(c)
	var loads atomic.Int64
	entered, release := make(chan struct{}), make(chan struct{})
	loader := LoaderFunc[string](func(ctx context.Context, _ string) (string, error) {
		if loads.Add(1) == 1 {
			close(entered)
			select {
			case <-release:
			case <-ctx.Done(): // the test ended early
				return "", ctx.Err()
			}
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
	within(t, entered, "the load")
	await(t, applied, "keys") // the lease's notification: the flight is detached
	for range 10 {
		go get()
	}
	close(release)
	for range 11 {
		if v := within(t, got, "a Get"); v != "v" {
			t.Fatalf("Get = %q, want v", v)
		}
	}
	if n := loads.Load(); n != 1 {
		t.Fatalf("%d loads for concurrent misses of one key, want 1", n)
	}
}
