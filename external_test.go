package tier

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"

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
