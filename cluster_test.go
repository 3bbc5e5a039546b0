package tier

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tier-cache/tier/internal/redistest"
)

// clusterBusSent sums, over the nodes of cl, the cluster-bus messages of
// the kind ("publish" or "publishshard") that the nodes sent each other.
func clusterBusSent(t *testing.T, cl *redistest.Cluster, kind string) (total int64, perNode []int64) {
	t.Helper()
	field := "cluster_stats_messages_" + kind + "_sent:"
	for _, n := range cl.Nodes() {
		info, err := n.Client(t).ClusterInfo(context.Background()).Result()
		if err != nil {
			t.Fatal(err)
		}
		var v int64
		for _, line := range strings.Split(info, "\r\n") {
			if rest, ok := strings.CutPrefix(line, field); ok {
				v, _ = strconv.ParseInt(rest, 10, 64)
			}
		}
		perNode = append(perNode, v)
		total += v
	}
	return total, perNode
}

// On a 3-master cluster, both write forms work: with classic pub/sub a
// Set's script publishes on its key's node, with sharded pub/sub the
// SPUBLISH follows the script.
//
// On a 3-master cluster, invalidations reach every replica in both pub/sub
// modes; a classic PUBLISH is relayed to every other node over the cluster
// bus, a sharded one to none (the channel's shard has no replica here).
func TestShardedPubSubOnCluster(t *testing.T) {
	cl := redistest.StartClusterOf(t, 3)
	const rounds = 50
	for _, sharded := range []bool{false, true} {
		t.Run(fmt.Sprint("sharded=", sharded), func(t *testing.T) {
			ns := fmt.Sprint("s", sharded)
			opts := Options{Redis: cl.ClusterClient(t), Namespace: ns, Invalidation: InvalidationOptions{Sharded: sharded}}
			a := newCache[string](t, opts)
			opts.Redis = cl.ClusterClient(t)
			b := newCache[string](t, opts)
			bEvents := events(b)
			ctx := context.Background()
			kind := "publish"
			if sharded {
				kind = "publishshard"
			}
			before, _ := clusterBusSent(t, cl, kind)
			for i := range rounds {
				key := fmt.Sprint("k", i) // keys in many slots
				if _, err := b.Get(ctx, key, constLoader("old")); err != nil {
					t.Fatal(err)
				}
				if err := a.Set(ctx, key, "new"); err != nil {
					t.Fatal(err)
				}
				await(t, bEvents, "keys")
				if r, _ := b.Fetch(ctx, key, constLoader("unused")); r.Value != "new" {
					t.Fatalf("%s: b reads %+v after a's Set, want new", key, r)
				}
			}
			// A classic message is relayed to the other nodes as it is
			// published; wait until the counters show it rather than
			// read them once.
			var (
				relayed int64
				perNode []int64
			)
			deadline := time.Now().Add(patience)
			for {
				var after int64
				after, perNode = clusterBusSent(t, cl, kind)
				relayed = after - before
				if sharded || relayed >= rounds || time.Now().After(deadline) {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			t.Logf("%s pub/sub, 3 masters: %d invalidations delivered; %d %s messages relayed between nodes (%.1f per invalidation); per-node totals %v",
				map[bool]string{false: "classic", true: "sharded"}[sharded], rounds, relayed, kind, float64(relayed)/rounds, perNode)
			// Each classic message goes to the 2 other nodes, but the
			// count of a busy node's cluster-bus link may lag: ask for at
			// least one relay a message.
			if !sharded && relayed < rounds {
				t.Errorf("classic: %d relays for %d messages; want each relayed to the other nodes", relayed, rounds)
			}
			if sharded && relayed != 0 {
				t.Errorf("sharded: %d relays; want none without replicas", relayed)
			}
		})
	}
}
