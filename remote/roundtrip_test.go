package remote_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tier-cache/tier/remote"
)

// Each operation costs one round trip, counted both by a go-redis hook
// (a command or a pipeline) and on the wire (a burst of writes then
// reads), whether New sees the client's kind or not; on the one-node
// cluster too, where batches are pipelined to the one node.
func TestOneRoundTripPerOperation(t *testing.T) {
	forEachBackendAndCluster(t, func(t *testing.T, e *env) {
		for _, kind := range clientKinds {
			t.Run(kind.name, func(t *testing.T) {
				c, rt := e.countingClient(t)
				a := &announcer{}
				s := mustNew(t, kind.wrap(c), remote.Options{Channel: "news", Announce: a.announce})
				ctx := testCtx(t)

				// Open a connection first: dialing and the handshake are not
				// part of any operation's cost. A script's first run on a
				// server loads it (EVALSHA refused, then EVAL): run each
				// once too.
				if err := c.Ping(ctx).Err(); err != nil {
					t.Fatal(err)
				}
				if _, err := c.Pipelined(ctx, func(p redis.Pipeliner) error { return p.Ping(ctx).Err() }); err != nil {
					t.Fatal(err)
				}
				mustSet(t, s, "warm", "v", time.Minute)
				if err := s.Delete(ctx, "warm"); err != nil {
					t.Fatal(err)
				}
				if _, err := s.Swap(ctx, "warm", []byte("x"), []byte("v"), time.Minute); err != nil {
					t.Fatal(err)
				}

				keys := make([]string, 50)
				values := make([][]byte, len(keys))
				for i := range keys {
					keys[i] = fmt.Sprintf("key-%d", i)
					values[i] = []byte(keys[i])
				}
				measure := func(name string, op func() error) {
					t.Helper()
					rt.reset()
					if err := op(); err != nil {
						t.Fatalf("%s: %v", name, err)
					}
					if h, w := rt.hook.Load(), rt.wire.Load(); h != 1 || w != 1 {
						t.Errorf("%s cost %d round trips by hook, %d on the wire; want 1", name, h, w)
					}
				}
				measure("AddMany(25)", func() error { _, err := s.AddMany(ctx, keys[:25], values[:25], time.Minute); return err })
				measure("Add", func() error { _, err := s.Add(ctx, "one", []byte("v"), time.Minute); return err })
				measure("Set", func() error { return s.Set(ctx, "one", []byte("v2"), time.Minute) })
				measure("Get hit", func() error { _, _, err := s.Get(ctx, "one"); return err })
				measure("Get miss", func() error { _, _, err := s.Get(ctx, "none"); return err })
				measure("GetMany(50)", func() error { _, err := s.GetMany(ctx, keys); return err })
				measure("Swap", func() error { _, err := s.Swap(ctx, "one", []byte("v2"), []byte("v3"), time.Minute); return err })
				measure("SwapMany(10)", func() error {
					items := make([]remote.SwapItem, 10)
					for i := range items {
						items[i] = remote.SwapItem{Key: keys[i], Old: values[i], Value: []byte("new"), TTL: time.Minute}
					}
					return s.SwapMany(ctx, items)
				})
				measure("Delete(1)", func() error { return s.Delete(ctx, "one") })
				measure("Delete(10)", func() error { return s.Delete(ctx, keys[:10]...) })
				measure("Ping", func() error { return s.Ping(ctx) })
				if calls, _ := a.take(); len(calls) == 0 {
					t.Error("Announce was never called: the writes measured were not the announcing ones")
				}
			})
		}
	})
}
