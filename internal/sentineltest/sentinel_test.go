package sentineltest_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/tier-cache/tier"
	"github.com/tier-cache/tier/internal/redistest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const masterName = "tiermaster"

// setup starts a master, a replica of it and a sentinel watching them.
func setup(t *testing.T) (master, replica, sentinel *redistest.Server) {
	t.Helper()
	master = redistest.Start(t)
	replica = redistest.Start(t)
	replica.ReplicaOf(t, master)
	sentinel = redistest.StartSentinel(t, masterName, master)
	return master, replica, sentinel
}

// failoverClient returns a go-redis failover client through the sentinel,
// closed when the test ends.
func failoverClient(t *testing.T, sentinel *redistest.Server) *redis.Client {
	t.Helper()
	c := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName:            masterName,
		SentinelAddrs:         []string{sentinel.Addr()},
		ContextTimeoutEnabled: true,
	})
	t.Cleanup(func() { c.Close() })
	return c
}

func newCache(t *testing.T, client redis.UniversalClient) *tier.Cache[string] {
	t.Helper()
	c, err := tier.New[string](tier.Options{Redis: client, Namespace: "sent"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

var notFound = tier.LoaderFunc[string](func(context.Context, string) (string, error) {
	return "", tier.ErrNotFound
})

func failLoader(t *testing.T) tier.Loader[string] {
	return tier.LoaderFunc[string](func(_ context.Context, key string) (string, error) {
		t.Errorf("loader called for %q", key)
		return "", errors.New("unexpected load")
	})
}

// eventually polls cond until it holds, failing the test after d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitNear polls until a second read of a probe key comes from the near
// tier, which a cache uses once its subscription is confirmed.
func waitNear(t *testing.T, c *tier.Cache[string], key string) {
	t.Helper()
	loader := tier.LoaderFunc[string](func(context.Context, string) (string, error) { return "x", nil })
	eventually(t, 20*time.Second, "the cache uses its near tier", func() bool {
		_, _ = c.Get(t.Context(), key, loader)
		r, err := c.Fetch(t.Context(), key, loader)
		return err == nil && r.Source == tier.SourceNear
	})
	if err := c.Delete(t.Context(), key); err != nil {
		t.Fatal(err)
	}
}

// exercise shows two replicas working together: a Set on a is read by b,
// a Set that replaces a value b holds near reaches b, and so do a Delete
// and an Invalidate.
func exercise(t *testing.T, a, b *tier.Cache[string], key string) {
	t.Helper()
	ctx := t.Context()
	if err := a.Set(ctx, key, "v1"); err != nil {
		t.Fatalf("Set: %v", err)
	}
	eventually(t, 5*time.Second, "b reads v1 from its near tier", func() bool {
		r, err := b.Fetch(ctx, key, failLoader(t))
		return err == nil && r.Value == "v1" && r.Source == tier.SourceNear
	})
	if err := a.Set(ctx, key, "v2"); err != nil {
		t.Fatalf("Set: %v", err)
	}
	eventually(t, 5*time.Second, "b sees v2 after a's Set", func() bool {
		v, err := b.Get(ctx, key, failLoader(t))
		return err == nil && v == "v2"
	})
	before := b.Stats().Invalidations
	if err := a.Invalidate(ctx, key); err != nil {
		t.Fatalf("Invalidate: %v", err)
	}
	eventually(t, 5*time.Second, "b counts a's invalidation", func() bool {
		return b.Stats().Invalidations > before
	})
	if r, err := b.Fetch(ctx, key, failLoader(t)); err != nil || r.Value != "v2" || r.Source != tier.SourceFar {
		t.Errorf("b after Invalidate: Fetch = %q from %v, %v; want v2 from far", r.Value, r.Source, err)
	}
	if err := a.Delete(ctx, key); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	eventually(t, 5*time.Second, "b reads not found after a's Delete", func() bool {
		_, err := b.Get(ctx, key, notFound)
		return errors.Is(err, tier.ErrNotFound)
	})
}

// tier on failover clients works as on a plain client, and keeps working
// after SENTINEL FAILOVER promotes the replica: writes go to the new
// master and invalidations flow again.
func TestFailoverClient(t *testing.T) {
	master, replica, sentinel := setup(t)
	a := newCache(t, failoverClient(t, sentinel))
	b := newCache(t, failoverClient(t, sentinel))
	waitNear(t, a, "warm-a")
	waitNear(t, b, "warm-b")
	exercise(t, a, b, "before")

	// The replica has the master's data: the writes went to the master.
	ctx := t.Context()
	if err := a.Set(ctx, "kept", "across the failover"); err != nil {
		t.Fatal(err)
	}
	rc := replica.Client(t)
	eventually(t, 5*time.Second, "the write reaches the replica", func() bool {
		return rc.Exists(ctx, "sent:kept").Val() == 1
	})

	sc := redis.NewSentinelClient(&redis.Options{Addr: sentinel.Addr()})
	t.Cleanup(func() { sc.Close() })
	if err := sc.Failover(ctx, masterName).Err(); err != nil {
		t.Fatalf("SENTINEL FAILOVER: %v", err)
	}
	start := time.Now()
	eventually(t, 30*time.Second, "the sentinel names the replica as master", func() bool {
		addr, err := sc.GetMasterAddrByName(ctx, masterName).Result()
		return err == nil && fmt.Sprintf("%s:%s", addr[0], addr[1]) == replica.Addr()
	})
	promoted := time.Since(start)
	// The sentinel turns the old master into a replica when it next reads
	// its INFO, up to 10s later.
	eventually(t, 30*time.Second, "the old master has become a replica", func() bool {
		info, err := master.Client(t).Info(ctx, "replication").Result()
		return err == nil && strings.Contains(info, "role:slave")
	})
	t.Logf("replica promoted %v after SENTINEL FAILOVER; old master demoted after %v", promoted.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))

	// Writes may fail (READONLY, closed connections) until each client has
	// heard of the switch; then they go to the new master.
	eventually(t, 30*time.Second, "a Set succeeds after the failover", func() bool {
		return a.Set(ctx, "after", "new master") == nil
	})
	if v, err := rc.Get(ctx, "sent:after").Result(); err != nil || v == "" {
		t.Fatalf("the write after the failover is not on the new master: %q, %v", v, err)
	}
	if got, err := b.Get(ctx, "kept", failLoader(t)); err != nil || got != "across the failover" {
		t.Errorf("b reads a value written before the failover = %q, %v", got, err)
	}
	waitNear(t, a, "rewarm-a")
	waitNear(t, b, "rewarm-b")
	exercise(t, a, b, "after-failover")
	for i, c := range []*tier.Cache[string]{a, b} {
		st := c.Stats()
		t.Logf("replica %d: far errors %d, losses %d, reconnects %d, invalidations %d", i, st.FarErrors, st.Losses, st.Reconnects, st.Invalidations)
	}
}
