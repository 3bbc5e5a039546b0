package clustertest_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/tier-cache/tier"
)

// Set, Get and Delete of keys whose slots are on each of the three
// masters: each value lands on the node that owns its slot (and only
// there), a second replica on a client of its own reads it from Redis, and
// Delete removes it from that node.
func TestGetSetDeleteAcrossSlots(t *testing.T) {
	cl := cluster(t)
	ctx := ctxT(t)
	ns := namespace("gsd")
	a := newCache(t, cl.ClusterClient(t), ns, tier.Options{})
	b := newCache(t, cl.ClusterClient(t), ns, tier.Options{})
	waitNear(t, a, "warm-a")
	waitNear(t, b, "warm-b")
	perNode := keysPerNode(t, cl, ns, 2)

	for node, keys := range perNode {
		for _, k := range keys {
			want := "value of " + k
			if err := a.Set(ctx, k, want); err != nil {
				t.Fatalf("Set %q: %v", k, err)
			}
			for i := range cl.Nodes() {
				raw, err := rawOn(t, cl, i, ns+":"+k)
				switch {
				case i == node && (err != nil || raw == ""):
					t.Errorf("%q (slot %d) is not on node %d, which owns its slot: %q, %v", k, slotOf(t, cl, ns+":"+k), i, raw, err)
				case i != node && (err == nil || !strings.HasPrefix(err.Error(), "MOVED")):
					t.Errorf("%q read on node %d, which does not own its slot: %q, %v; want MOVED", k, i, raw, err)
				}
			}
			r, err := b.Fetch(ctx, k, failLoader(t))
			if err != nil || r.Value != want || r.Source != tier.SourceFar {
				t.Errorf("other replica: Fetch %q = %q from %v, %v; want %q from far", k, r.Value, r.Source, err, want)
			}
			if got, err := a.Get(ctx, k, failLoader(t)); err != nil || got != want {
				t.Errorf("writer: Get %q = %q, %v; want %q", k, got, err, want)
			}
		}
	}

	for node, keys := range perNode {
		if err := a.Delete(ctx, keys...); err != nil {
			t.Fatalf("Delete %q: %v", keys, err)
		}
		for _, k := range keys {
			if raw, err := rawOn(t, cl, node, ns+":"+k); !errors.Is(err, redis.Nil) {
				t.Errorf("after Delete, node %d still holds %q: %q, %v", node, k, raw, err)
			}
			// The other replica's near copy goes when the invalidation
			// arrives, one pub/sub delivery after Delete returns.
			eventually(t, "the other replica reads "+k+" as not found after Delete", func() bool {
				_, err := b.Get(ctx, k, notFound)
				return errors.Is(err, tier.ErrNotFound)
			})
		}
	}
	// One Delete naming keys on every node.
	var all []string
	for _, keys := range perNode {
		all = append(all, keys...)
	}
	for _, k := range all {
		if err := a.Set(ctx, k, "again"); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Delete(ctx, all...); err != nil {
		t.Fatalf("Delete across every node: %v", err)
	}
	for node, keys := range perNode {
		for _, k := range keys {
			if _, err := rawOn(t, cl, node, ns+":"+k); !errors.Is(err, redis.Nil) {
				t.Errorf("after one Delete across nodes, node %d still holds %q: %v", node, k, err)
			}
		}
	}
	if st := a.Stats(); st.FarErrors != 0 {
		t.Errorf("%d far errors", st.FarErrors)
	}
}

// GetMany of keys on every node returns the right values and costs one
// pipeline, so one network round, per node touched: the cluster client
// splits the batch by node and sends the parts in parallel. Counted with a
// hook on each node client of the reader's cluster client.
func TestGetManyOneRoundPerNode(t *testing.T) {
	cl := cluster(t)
	ctx := ctxT(t)
	ns := namespace("many")
	writer := newCache(t, cl.ClusterClient(t), ns, tier.Options{})
	client := redis.NewClusterClient(cl.ClusterOptions())
	t.Cleanup(func() { client.Close() })
	counter := newNodeCounter(client) // before the client makes its node clients
	reader := newCache(t, client, ns, tier.Options{Invalidation: tier.InvalidationOptions{Disabled: true}})

	perNode := keysPerNode(t, cl, ns, 4)
	want := map[string]string{}
	for _, keys := range perNode {
		for _, k := range keys {
			want[k] = "v-" + k
			if err := writer.Set(ctx, k, want[k]); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A first GetMany loads the reader's view of the slots and dials its
	// pipeline connections (HELLO and CLIENT SETINFO, themselves sent as
	// a pipeline on a new connection), so that the rounds counted below
	// are GetMany's own. Only pipelines that carry GETs are counted.
	var all []string
	for _, keys := range perNode {
		all = append(all, keys...)
	}
	if _, err := reader.GetMany(ctx, all, tier.BatchLoaderFunc[string](func(context.Context, []string) (map[string]string, error) { return nil, nil })); err != nil {
		t.Fatal(err)
	}
	addrs := cl.Addrs()

	for _, tc := range []struct {
		name  string
		nodes []int // whose keys are read
	}{
		{"every node", []int{0, 1, 2}},
		{"two nodes", []int{0, 2}},
		{"one node", []int{1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var keys []string
			for _, n := range tc.nodes {
				keys = append(keys, perNode[n]...)
			}
			reader.DropNear(keys...)
			counter.reset()
			got, err := reader.GetMany(ctx, keys, tier.BatchLoaderFunc[string](func(_ context.Context, ks []string) (map[string]string, error) {
				t.Errorf("batch loader called for %q: every key is in Redis", ks)
				return nil, nil
			}))
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range keys {
				if got[k] != want[k] {
					t.Errorf("GetMany[%q] = %q, want %q", k, got[k], want[k])
				}
			}
			if len(got) != len(keys) {
				t.Errorf("GetMany returned %d values for %d keys", len(got), len(keys))
			}
			pipes, cmds := counter.getPipelines(), counter.commandsSnapshot()
			t.Logf("pipelines per node: %v; commands: %v", pipes, cmds)
			touched := map[int]bool{}
			for _, n := range tc.nodes {
				touched[n] = true
			}
			for i, addr := range addrs {
				wantPipes := 0
				if touched[i] {
					wantPipes = 1
				}
				if pipes[addr] != wantPipes {
					t.Errorf("node %d (%s): %d pipelines, want %d", i, addr, pipes[addr], wantPipes)
				}
				if n := counter.commandsOn(addr, "get"); n != 4*wantPipes {
					t.Errorf("node %d (%s): %d GETs, want %d", i, addr, n, 4*wantPipes)
				}
			}
		})
	}
}

// Keys that share a hash tag, {user:1}, share a slot, so one node holds
// them all: tier's namespace prefix ("<ns>:") comes before the tag and does
// not change the slot, GetMany of the group is one round on one node, and
// a caller's own transaction over the group's Redis keys is accepted,
// where one over untagged keys on different nodes is refused (CROSSSLOT).
func TestHashTaggedGroup(t *testing.T) {
	cl := cluster(t)
	ctx := ctxT(t)
	ns := namespace("tag")
	client := redis.NewClusterClient(cl.ClusterOptions())
	t.Cleanup(func() { client.Close() })
	counter := newNodeCounter(client)
	c := newCache(t, client, ns, tier.Options{})
	waitNear(t, c, "warm")

	group := []string{"{user:1}:a", "{user:1}:b", "{user:1}:profile"}
	slot := slotOf(t, cl, "{user:1}")
	owner := cl.Owner(slot)
	for _, k := range group {
		if s := slotOf(t, cl, ns+":"+k); s != slot {
			t.Errorf("%q is in slot %d, not the tag's slot %d", ns+":"+k, s, slot)
		}
		if err := c.Set(ctx, k, "v-"+k); err != nil {
			t.Fatal(err)
		}
		if raw, err := rawOn(t, cl, owner, ns+":"+k); err != nil || raw == "" {
			t.Errorf("%q not on node %d, the owner of slot %d: %v", k, owner, slot, err)
		}
	}

	c.DropNear(group...)
	counter.reset()
	got, err := c.GetMany(ctx, group, tier.BatchLoaderFunc[string](func(_ context.Context, ks []string) (map[string]string, error) {
		t.Errorf("batch loader called for %q", ks)
		return nil, nil
	}))
	if err != nil || len(got) != len(group) {
		t.Fatalf("GetMany of the group = %v, %v", got, err)
	}
	pipes := counter.getPipelines()
	if len(pipes) != 1 || pipes[cl.Addrs()[owner]] != 1 {
		t.Errorf("GetMany of one tagged group: pipelines %v, want one, on node %d (%s)", pipes, owner, cl.Addrs()[owner])
	}

	// What hash tags are for: a multi-key transaction on the cluster.
	rks := make([]string, len(group))
	for i, k := range group {
		rks[i] = ns + ":" + k
	}
	if _, err := client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for _, rk := range rks {
			p.Exists(ctx, rk)
		}
		return nil
	}); err != nil {
		t.Errorf("MULTI/EXEC over one tagged group: %v", err)
	}
	direct := redis.NewClient(cl.Nodes()[owner].Options())
	defer direct.Close()
	if n, err := direct.Exists(ctx, rks...).Result(); err != nil || n != int64(len(rks)) {
		t.Errorf("one EXISTS naming the whole group on its node = %d, %v; want %d", n, err, len(rks))
	}
	spread := keysPerNode(t, cl, ns, 1)
	err = direct.Exists(ctx, ns+":"+spread[0][0], ns+":"+spread[1][0]).Err()
	if err == nil || !strings.Contains(err.Error(), "CROSSSLOT") {
		t.Errorf("one EXISTS across slots = %v, want CROSSSLOT", err)
	}

	// Delete of the group: one node, and every key gone.
	counter.reset()
	if err := c.Delete(ctx, group...); err != nil {
		t.Fatal(err)
	}
	// One write script per key (each unlinks its key and announces it),
	// all on the group's node.
	if n := counter.scriptsOn(cl.Addrs()[owner]); n != len(group) {
		t.Errorf("Delete of the group ran %d scripts on its node, want %d", n, len(group))
	}
	if n, err := direct.Exists(ctx, rks...).Result(); err != nil || n != 0 {
		t.Errorf("after Delete, EXISTS of the group = %d, %v; want 0", n, err)
	}
}

// Invalidation on a cluster: three replicas, each with a cluster client
// of its own, hold near copies of keys on every node; a Set, a Delete and
// an Invalidate on one replica reach the others, although the PUBLISHes
// are spread over the nodes and the subscriptions all sit on one of them
// (classic pub/sub is broadcast over the cluster bus).
func TestInvalidationReachesEveryReplica(t *testing.T) {
	cl := cluster(t)
	ctx := ctxT(t)
	ns := namespace("inv")
	writerClient := redis.NewClusterClient(cl.ClusterOptions())
	t.Cleanup(func() { writerClient.Close() })
	counter := newNodeCounter(writerClient)
	caches := []*tier.Cache[string]{newCache(t, writerClient, ns, tier.Options{})}
	for range 2 {
		caches = append(caches, newCache(t, cl.ClusterClient(t), ns, tier.Options{}))
	}
	for i, c := range caches {
		waitNear(t, c, fmt.Sprintf("warm-%d", i))
	}
	w, others := caches[0], caches[1:]
	perNode := keysPerNode(t, cl, ns, 4)
	var keys []string
	for _, ks := range perNode {
		keys = append(keys, ks...)
	}

	// Every replica holds a near copy of every key.
	for _, k := range keys {
		if err := w.Set(ctx, k, "v1"); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range others {
		for _, k := range keys {
			eventually(t, "replica reads v1 of "+k+" from its near tier", func() bool {
				r, err := c.Fetch(ctx, k, failLoader(t))
				return err == nil && r.Value == "v1" && r.Source == tier.SourceNear
			})
		}
	}

	counter.reset()
	for _, k := range keys {
		if err := w.Set(ctx, k, "v2"); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range others {
		for _, k := range keys {
			eventually(t, fmt.Sprintf("replica %d sees v2 of %s after a Set elsewhere", i+1, k), func() bool {
				v, err := c.Get(ctx, k, failLoader(t))
				return err == nil && v == "v2"
			})
		}
	}
	// Each Set's script runs, and publishes, on its key's node.
	publishers := map[string]int{}
	for _, addr := range cl.Addrs() {
		if n := counter.scriptsOn(addr); n > 0 {
			publishers[addr] = n
		}
	}
	t.Logf("write scripts (each with its PUBLISH) of %d Sets, per node: %v", len(keys), publishers)
	if len(publishers) < 2 {
		t.Errorf("every PUBLISH went to one node (%v): the test did not show delivery across nodes", publishers)
	}

	// Delete: the others' near copies go, and they read "not found".
	del := perNode[1]
	if err := w.Delete(ctx, del...); err != nil {
		t.Fatal(err)
	}
	for i, c := range others {
		for _, k := range del {
			eventually(t, fmt.Sprintf("replica %d sees %s deleted", i+1, k), func() bool {
				_, err := c.Get(ctx, k, notFound)
				return errors.Is(err, tier.ErrNotFound)
			})
		}
	}

	// Invalidate: Redis keeps the value, the others drop their near copies
	// and read it from Redis again.
	inv := perNode[2]
	before := make([]uint64, len(others))
	for i, c := range others {
		before[i] = c.Stats().Invalidations
	}
	if err := w.Invalidate(ctx, inv...); err != nil {
		t.Fatal(err)
	}
	for i, c := range others {
		eventually(t, fmt.Sprintf("replica %d counts the invalidation of %d keys", i+1, len(inv)), func() bool {
			return c.Stats().Invalidations >= before[i]+uint64(len(inv))
		})
		for _, k := range inv {
			r, err := c.Fetch(ctx, k, failLoader(t))
			if err != nil || r.Value != "v2" || r.Source != tier.SourceFar {
				t.Errorf("replica %d after Invalidate: Fetch %q = %q from %v, %v; want v2 from far", i+1, k, r.Value, r.Source, err)
			}
		}
	}
	for i, c := range caches {
		if st := c.Stats(); st.FarErrors != 0 || st.Losses != 0 || st.Malformed != 0 {
			t.Errorf("replica %d: far errors %d, losses %d, malformed %d; want none", i, st.FarErrors, st.Losses, st.Malformed)
		}
	}
}
