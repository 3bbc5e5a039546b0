package redistest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// slotCount is the number of hash slots of every Redis Cluster.
const slotCount = 16384

// ErrNotInstalled is returned by [LaunchCluster] when redis-server is not on
// PATH. Tests turn it into a skip (or, under CI, a failure) with
// [RequireServer].
var ErrNotInstalled = errors.New(missingMessage)

// Cluster is a real Redis Cluster of several masters, each a redis-server
// on free 127.0.0.1 ports (client and cluster bus) with persistence off and
// a directory of its own for nodes.conf. The masters own contiguous,
// nearly equal ranges of the 16384 hash slots; there are no replicas.
type Cluster struct {
	dir   string
	nodes []*Server
	slots [][2]int // slots[i] is the first and last slot of nodes[i]
}

// StartClusterOf launches a cluster of the given number of masters, as
// [LaunchCluster] does, and shuts it down when the test ends, printing the
// nodes' logs if the test failed. Like [Start], it skips the test when
// redis-server is not on PATH, or fails it under CI.
//
// A cluster takes a few seconds to start; tests that can share one should
// launch it once, in TestMain, with [LaunchCluster].
func StartClusterOf(tb testing.TB, masters int) *Cluster {
	tb.Helper()
	RequireServer(tb)
	c, err := LaunchCluster(masters)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("cluster logs:\n%s", c.Log())
		}
		c.Close()
	})
	return c
}

// LaunchCluster starts masters redis-servers in cluster mode, assigns each
// an equal share of the hash slots, introduces them to each other (CLUSTER
// MEET), and waits (within 30s) until every node reports cluster_state:ok,
// knows every other node and sees all 16384 slots assigned. The caller must
// call [Cluster.Close]. It needs no testing.TB, so TestMain can share one
// cluster among the tests of a package; it returns [ErrNotInstalled] when
// redis-server is not on PATH.
func LaunchCluster(masters int) (*Cluster, error) {
	if masters < 1 || masters > slotCount {
		return nil, fmt.Errorf("redistest: a cluster of %d masters", masters)
	}
	bin, err := exec.LookPath(binary)
	if err != nil {
		return nil, ErrNotInstalled
	}
	dir, err := os.MkdirTemp("", "redistest-cluster-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir}
	for i := range masters {
		nodeDir := filepath.Join(dir, "node"+strconv.Itoa(i))
		if err := os.Mkdir(nodeDir, 0o700); err != nil {
			c.Close()
			return nil, err
		}
		s := &Server{
			bin:     bin,
			dir:     nodeDir,
			logPath: filepath.Join(nodeDir, "redis-server.log"),
			cluster: true,
			member:  true,
		}
		c.nodes = append(c.nodes, s)
		if err := s.startOnFreePort(); err != nil {
			c.Close()
			return nil, err
		}
		first := i * slotCount / masters
		last := (i+1)*slotCount/masters - 1
		c.slots = append(c.slots, [2]int{first, last})
	}
	if err := c.form(); err != nil {
		err = fmt.Errorf("redistest: form a cluster of %d masters: %w\nlogs:\n%s", masters, err, c.Log())
		c.Close()
		return nil, err
	}
	return c, nil
}

// form assigns the slots, joins the nodes and waits until all agree.
func (c *Cluster) form() error {
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	clients := make([]*redis.Client, len(c.nodes))
	for i, s := range c.nodes {
		clients[i] = redis.NewClient(s.Options())
		defer clients[i].Close()
	}
	for i, cl := range clients {
		// Distinct config epochs, as redis-cli --cluster create sets them,
		// spare the nodes a round of epoch-collision resolution.
		if err := cl.Do(ctx, "CLUSTER", "SET-CONFIG-EPOCH", i+1).Err(); err != nil {
			return fmt.Errorf("%s: CLUSTER SET-CONFIG-EPOCH: %w", c.nodes[i].Addr(), err)
		}
		if err := cl.ClusterAddSlotsRange(ctx, c.slots[i][0], c.slots[i][1]).Err(); err != nil {
			return fmt.Errorf("%s: CLUSTER ADDSLOTSRANGE: %w", c.nodes[i].Addr(), err)
		}
	}
	for _, s := range c.nodes[1:] {
		// MEET names the bus port, which is not the default port+10000.
		if err := clients[0].Do(ctx, "CLUSTER", "MEET", "127.0.0.1", s.port, s.busPort).Err(); err != nil {
			return fmt.Errorf("%s: CLUSTER MEET %s: %w", c.nodes[0].Addr(), s.Addr(), err)
		}
	}
	want := []string{
		"cluster_state:ok",
		"cluster_slots_assigned:" + strconv.Itoa(slotCount),
		"cluster_known_nodes:" + strconv.Itoa(len(c.nodes)),
		"cluster_size:" + strconv.Itoa(len(c.nodes)),
	}
	for i, cl := range clients {
		for {
			info, err := cl.ClusterInfo(ctx).Result()
			if err == nil && hasAll(info, want) {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s: cluster not ready within %v: CLUSTER INFO = %q, %v", c.nodes[i].Addr(), readyTimeout, info, err)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	return nil
}

// hasAll reports whether the CLUSTER INFO text info has every line of want.
func hasAll(info string, want []string) bool {
	lines := map[string]bool{}
	for _, l := range strings.Split(info, "\r\n") {
		lines[l] = true
	}
	for _, w := range want {
		if !lines[w] {
			return false
		}
	}
	return true
}

// Nodes returns the masters, in slot order: Nodes()[i] owns the slots
// [Cluster.Slots](i). Each is a [Server] that can be killed and restarted
// (it rejoins from its nodes.conf, empty) or paused.
func (c *Cluster) Nodes() []*Server { return append([]*Server(nil), c.nodes...) }

// Slots returns the first and last hash slot owned by the i-th node.
func (c *Cluster) Slots(i int) (first, last int) { return c.slots[i][0], c.slots[i][1] }

// Owner returns the index of the node that owns slot.
func (c *Cluster) Owner(slot int) int {
	for i, r := range c.slots {
		if slot >= r[0] && slot <= r[1] {
			return i
		}
	}
	return -1
}

// Addrs returns the nodes' addresses, "127.0.0.1:<port>".
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, s := range c.nodes {
		addrs[i] = s.Addr()
	}
	return addrs
}

// ClusterOptions returns fresh cluster client options naming every node,
// with ContextTimeoutEnabled set. Callers may change the returned value
// before building a client.
func (c *Cluster) ClusterOptions() *redis.ClusterOptions {
	return &redis.ClusterOptions{
		Addrs:                 c.Addrs(),
		ContextTimeoutEnabled: true,
	}
}

// ClusterClient returns a new cluster client built from
// [Cluster.ClusterOptions], closed when the test ends.
func (c *Cluster) ClusterClient(tb testing.TB) *redis.ClusterClient {
	tb.Helper()
	cl := redis.NewClusterClient(c.ClusterOptions())
	tb.Cleanup(func() { _ = cl.Close() })
	return cl
}

// Log returns the logs of every node, each under a header naming it.
func (c *Cluster) Log() string {
	var b strings.Builder
	for i, s := range c.nodes {
		fmt.Fprintf(&b, "--- node %d (%s) ---\n%s\n", i, s.Addr(), s.log())
	}
	return b.String()
}

// Close kills every node, waits for it to exit and removes the cluster's
// directory. It may be called more than once.
func (c *Cluster) Close() {
	for _, s := range c.nodes {
		s.kill()
	}
	if c.dir != "" {
		_ = os.RemoveAll(c.dir)
	}
}
