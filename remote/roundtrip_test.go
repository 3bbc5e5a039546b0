package remote_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tier-cache/tier/remote"
)

func TestOneRoundTripPerOperation(t *testing.T) {
	forEachBackendAndCluster(t, func(t *testing.T, e *env) {
		for _, wrap := range []struct {
			name string
			new  func(c redis.UniversalClient) redis.UniversalClient
		}{
			{name: "as is", new: func(c redis.UniversalClient) redis.UniversalClient { return c }},
			{name: "hidden", new: func(c redis.UniversalClient) redis.UniversalClient { return hidden{c} }},
		} {
			t.Run(wrap.name, func(t *testing.T) {
				c, rt := e.countingClient(t)
				s := mustNew(t, wrap.new(c), remote.Options{})
				ctx := testCtx(t)

				// Open the connections first: dialing and the handshake are
				// not part of any operation's cost. go-redis keeps a separate
				// pool for pipelines, so warm that one too.
				if err := c.Ping(ctx).Err(); err != nil {
					t.Fatal(err)
				}
				if _, err := c.Pipelined(ctx, func(p redis.Pipeliner) error { return p.Ping(ctx).Err() }); err != nil {
					t.Fatal(err)
				}

				keys := make([]string, 50)
				items := make(map[string]remote.Item)
				for i := range keys {
					keys[i] = fmt.Sprintf("key-%d", i)
					if i%2 == 0 {
						items[keys[i]] = remote.Item{Value: []byte(keys[i]), TTL: time.Minute}
					}
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
				measure("SetMany(25)", func() error { return s.SetMany(ctx, items) })
				measure("Set", func() error { return s.Set(ctx, "one", []byte("v"), time.Minute) })
				measure("Get hit", func() error { _, _, err := s.Get(ctx, "one"); return err })
				measure("Get miss", func() error { _, _, err := s.Get(ctx, "none"); return err })
				measure("GetMany(50)", func() error {
					m, err := s.GetMany(ctx, keys)
					if err == nil && len(m) != len(items) {
						err = fmt.Errorf("got %d items, want %d", len(m), len(items))
					}
					return err
				})
				measure("GetValue hit", func() error { _, _, err := s.GetValue(ctx, "one"); return err })
				measure("GetValues(50)", func() error {
					m, err := s.GetValues(ctx, keys)
					if err == nil && len(m) != len(items) {
						err = fmt.Errorf("got %d values, want %d", len(m), len(items))
					}
					return err
				})
				measure("Delete(10)", func() error { return s.Delete(ctx, keys[:10]...) })
				note := remote.Notice{Channel: "ch", Payloads: [][]byte{[]byte("a"), []byte("b")}}
				measure("AddMany(25)", func() error { _, err := s.AddMany(ctx, items); return err })
				measure("Add", func() error { _, err := s.Add(ctx, "two", []byte("v"), time.Minute); return err })
				if _, cluster := c.(*redis.ClusterClient); !cluster && wrap.name == "as is" {
					// On a cluster, or a client whose kind Store cannot see,
					// the notice follows the write: two round trips.
					// A script's first run on a server loads it (EVALSHA,
					// then EVAL): run each once before measuring.
					if err := s.SetNotify(ctx, "warm", []byte("v"), time.Minute, note); err != nil {
						t.Fatal(err)
					}
					if err := s.DeleteNotify(ctx, []string{"warm"}, note); err != nil {
						t.Fatal(err)
					}
					measure("SetNotify", func() error { return s.SetNotify(ctx, "one", []byte("v2"), time.Minute, note) })
					measure("DeleteNotify(10)", func() error { return s.DeleteNotify(ctx, keys[10:20], note) })
				}
			})
		}
	})
}
