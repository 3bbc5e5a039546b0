package clustertest_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/tier-cache/tier"
	"github.com/tier-cache/tier/internal/redistest"
)

// masters is the size of the shared cluster.
const masters = 3

// shared is the cluster every test of the package uses, started once in
// TestMain; sharedErr is why it could not be started.
var (
	shared    *redistest.Cluster
	sharedErr error
)

func TestMain(m *testing.M) {
	shared, sharedErr = redistest.LaunchCluster(masters)
	code := m.Run()
	if shared != nil {
		if code != 0 {
			fmt.Fprintf(os.Stderr, "cluster logs:\n%s", shared.Log())
		}
		shared.Close()
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: errors on successful test run: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// cluster returns the shared cluster, or skips the test (fails it under
// CI) when redis-server is not installed.
func cluster(t *testing.T) *redistest.Cluster {
	t.Helper()
	redistest.RequireServer(t)
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return shared
}

// namespaces numbers the namespaces handed out by namespace.
var namespaces atomic.Int64

// namespace returns a namespace starting with base that no earlier test of
// this process used: the cluster outlives a test, so with -count=2 a
// second run would otherwise find the first run's entries in Redis.
func namespace(base string) string {
	return base + strconv.FormatInt(namespaces.Add(1), 10)
}

// ctxT returns a context for a whole test.
func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// newCache returns a tier.Cache of strings on client under namespace ns,
// closed when the test ends.
func newCache(t *testing.T, client redis.UniversalClient, ns string, opts tier.Options) *tier.Cache[string] {
	t.Helper()
	opts.Redis = client
	opts.Namespace = ns
	c, err := tier.New[string](opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// notFound is a loader for which every key is absent from the source.
var notFound = tier.LoaderFunc[string](func(context.Context, string) (string, error) {
	return "", tier.ErrNotFound
})

// failLoader fails the test if a read reaches the loader.
func failLoader(t *testing.T) tier.Loader[string] {
	return tier.LoaderFunc[string](func(_ context.Context, key string) (string, error) {
		t.Errorf("loader called for %q: the value should have come from a tier", key)
		return "", errors.New("unexpected load")
	})
}

// waitNear polls until a second read of a probe key comes from the near
// tier: a cache uses its near tier once its invalidation subscription is
// confirmed. The deadline turns a hang into a failure.
func waitNear[V any](t *testing.T, c *tier.Cache[V], key string) {
	t.Helper()
	ctx := ctxT(t)
	loader := tier.LoaderFunc[V](func(context.Context, string) (V, error) { var v V; return v, nil })
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := c.Get(ctx, key, loader); err != nil {
			t.Fatal(err)
		}
		if r, err := c.Fetch(ctx, key, loader); err == nil && r.Source == tier.SourceNear {
			if err := c.Delete(ctx, key); err != nil {
				t.Fatal(err)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cache did not use its near tier within 20s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// eventually polls cond every few milliseconds until it holds, and fails
// the test with what if it does not within 5s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 5s: %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// slotOf asks the cluster for the hash slot of the Redis key rk.
func slotOf(t *testing.T, cl *redistest.Cluster, rk string) int {
	t.Helper()
	c := redis.NewClient(cl.Nodes()[0].Options())
	defer c.Close()
	slot, err := c.ClusterKeySlot(ctxT(t), rk).Result()
	if err != nil {
		t.Fatalf("CLUSTER KEYSLOT %q: %v", rk, err)
	}
	return int(slot)
}

// keysPerNode returns n cache keys for each node of cl whose Redis keys,
// "<ns>:<key>", live in that node's slots: keys[i] are node i's.
func keysPerNode(t *testing.T, cl *redistest.Cluster, ns string, n int) [][]string {
	t.Helper()
	keys := make([][]string, len(cl.Nodes()))
	need := n * len(keys)
	for i := 0; need > 0; i++ {
		if i > 10000 {
			t.Fatalf("no spread of %d keys per node found in 10000 candidates", n)
		}
		k := "k" + strconv.Itoa(i)
		node := cl.Owner(slotOf(t, cl, ns+":"+k))
		if len(keys[node]) < n {
			keys[node] = append(keys[node], k)
			need--
		}
	}
	return keys
}

// rawOn reads the Redis key rk on the i-th node directly, with no cluster
// routing: its value if that node holds it, redis.Nil if the node owns the
// slot but not the key, a MOVED error if another node owns the slot.
func rawOn(t *testing.T, cl *redistest.Cluster, i int, rk string) (string, error) {
	t.Helper()
	c := redis.NewClient(cl.Nodes()[i].Options())
	defer c.Close()
	return c.Get(ctxT(t), rk).Result()
}

// nodeCounter is a go-redis hook, installed on every node client of one
// cluster client, that counts pipelines and commands per node address.
type nodeCounter struct {
	mu        sync.Mutex
	pipelines map[string]int // pipelines with a GET sent to each node
	commands  map[string]int // commands by "addr name", alone or in pipelines
}

func newNodeCounter(c *redis.ClusterClient) *nodeCounter {
	n := &nodeCounter{pipelines: map[string]int{}, commands: map[string]int{}}
	c.OnNewNode(func(node *redis.Client) {
		node.AddHook(nodeHook{n: n, addr: node.Options().Addr})
	})
	return n
}

// reset zeroes the counts.
func (n *nodeCounter) reset() {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.pipelines)
	clear(n.commands)
}

// getPipelines returns, per node address, how many pipelines carrying at
// least one GET went there: the reads of GetMany, not the setup of a new
// connection.
func (n *nodeCounter) getPipelines() map[string]int {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := map[string]int{}
	for k, v := range n.pipelines {
		out[k] = v
	}
	return out
}

// commandsSnapshot returns the command counts, by "addr name".
func (n *nodeCounter) commandsSnapshot() map[string]int {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := map[string]int{}
	for k, v := range n.commands {
		out[k] = v
	}
	return out
}

// commandsOn returns how many commands named name went to addr.
func (n *nodeCounter) commandsOn(addr, name string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.commands[addr+" "+strings.ToLower(name)]
}

// scriptsOn returns how many scripts (EVAL or EVALSHA) went to the node at addr.
func (n *nodeCounter) scriptsOn(addr string) int {
	return n.commandsOn(addr, "eval") + n.commandsOn(addr, "evalsha")
}

type nodeHook struct {
	n    *nodeCounter
	addr string
}

func (h nodeHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h nodeHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.mu.Lock()
		h.n.commands[h.addr+" "+cmd.Name()]++
		h.n.mu.Unlock()
		return next(ctx, cmd)
	}
}

func (h nodeHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.mu.Lock()
		gets := false
		for _, c := range cmds {
			h.n.commands[h.addr+" "+c.Name()]++
			gets = gets || c.Name() == "get"
		}
		if gets {
			h.n.pipelines[h.addr]++
		}
		h.n.mu.Unlock()
		return next(ctx, cmds)
	}
}
