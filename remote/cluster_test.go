package remote_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tier-cache/tier/internal/redistest"
	"github.com/tier-cache/tier/remote"
)

// On a cluster of three masters, batches reach every node that holds one
// of their keys, in one round trip per node, and come back in the order of
// the keys; announcements reach a subscriber of the channel wherever the
// keys live.
func TestClusterOfThree(t *testing.T) {
	cl := redistest.StartClusterOf(t, 3)
	ctx := testCtx(t)
	c := redis.NewClusterClient(cl.ClusterOptions())
	defer c.Close()
	rt := &roundTrips{}
	counted := cl.ClusterOptions()
	counted.Dialer = rt.dial
	cc := redis.NewClusterClient(counted)
	defer cc.Close()
	cc.AddHook(rt)

	keys := make([]string, 60)
	values := make([][]byte, len(keys))
	nodes := map[int]bool{}
	for i := range keys {
		keys[i] = fmt.Sprint("key-", i)
		values[i] = []byte("v" + keys[i])
		slot, err := c.ClusterKeySlot(ctx, "tier:"+keys[i]).Result()
		if err != nil {
			t.Fatal(err)
		}
		nodes[cl.Owner(int(slot))] = true
	}
	if len(nodes) != 3 {
		t.Fatalf("the keys live on %d nodes; want all 3", len(nodes))
	}

	a := &announcer{}
	s := mustNew(t, cc, remote.Options{Channel: "news", Announce: a.announce})
	measure := func(name string, op func() error) {
		t.Helper()
		if err := op(); err != nil { // loads scripts and go-redis's command table
			t.Fatalf("%s: %v", name, err)
		}
		rt.reset()
		if err := op(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if h, w := rt.hook.Load(), rt.wire.Load(); h != 1 || w != 3 {
			t.Errorf("%s cost %d round trips by hook, %d on the wire; want 1 and 3, one per node", name, h, w)
		}
	}
	measure("AddMany", func() error {
		added, err := s.AddMany(ctx, keys, values, time.Minute)
		if err == nil && slices.Contains(added, true) && slices.Contains(added, false) {
			err = fmt.Errorf("AddMany added %v; want all or none", added)
		}
		return err
	})
	measure("GetMany", func() error {
		got, err := s.GetMany(ctx, keys)
		for i := range got {
			if string(got[i]) != string(values[i]) {
				return fmt.Errorf("GetMany: %s = %q; want %q", keys[i], got[i], values[i])
			}
		}
		return err
	})
	measure("SwapMany", func() error {
		items := make([]remote.SwapItem, len(keys))
		for i, k := range keys {
			items[i] = remote.SwapItem{Key: k, Old: values[i], Value: values[i], TTL: time.Minute}
		}
		return s.SwapMany(ctx, items)
	})
	a.take()

	l := listen(t, c, "news", false)
	if err := s.Delete(ctx, keys...); err != nil {
		t.Fatal(err)
	}
	calls, want := a.take()
	if len(calls) != len(keys) {
		t.Fatalf("Delete of %d keys called Announce %d times; want once per key", len(keys), len(calls))
	}
	// PUBLISH on one node reaches the others over the cluster bus, so the
	// nodes' announcements interleave in any order.
	got := make([]string, 0, len(want))
	for range want {
		got = append(got, l.next(t))
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("the channel carried %q; want %q", got, want)
	}
	for i, v := range mustGetMany(t, s, keys) {
		if v != nil {
			t.Fatalf("after Delete, %s = %q", keys[i], v)
		}
	}

	sharded := mustNew(t, c, remote.Options{Channel: "news", Sharded: true, Announce: a.announce})
	sl := listen(t, c, "news", true)
	for _, k := range keys[:6] {
		mustSet(t, sharded, k, "v", time.Minute)
	}
	if err := sharded.Delete(ctx, keys[:6]...); err != nil {
		t.Fatal(err)
	}
	_, want = a.take()
	sl.expect(t, want)
}
