package redistest_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/tier-cache/tier/internal/redistest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// ctxT returns a context for a whole test: generous, since a loaded machine
// may take seconds to start and restart servers.
func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestStartSetGet(t *testing.T) {
	s := redistest.Start(t)
	host, _, err := net.SplitHostPort(s.Addr())
	if err != nil || host != "127.0.0.1" {
		t.Fatalf("Addr() = %q, want 127.0.0.1:<port>", s.Addr())
	}
	c := s.Client(t)
	ctx := ctxT(t)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	got, err := c.Get(ctx, "k").Result()
	if err != nil || got != "v" {
		t.Fatalf("GET = %q, %v; want \"v\", nil", got, err)
	}
}

func TestNoPersistence(t *testing.T) {
	s := redistest.Start(t)
	c := s.Client(t)
	ctx := ctxT(t)
	for _, param := range []string{"save", "appendonly"} {
		v, err := c.ConfigGet(ctx, param).Result()
		if err != nil {
			t.Fatalf("CONFIG GET %s: %v", param, err)
		}
		want := map[string]string{"save": "", "appendonly": "no"}[param]
		if v[param] != want {
			t.Errorf("CONFIG GET %s = %q, want %q", param, v[param], want)
		}
	}
}

func TestServersAreSeparate(t *testing.T) {
	a, b := redistest.Start(t), redistest.Start(t)
	if a.Addr() == b.Addr() {
		t.Fatalf("two servers share %s", a.Addr())
	}
	ctx := ctxT(t)
	if err := a.Client(t).Set(ctx, "k", "a", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := b.Client(t).Get(ctx, "k").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("GET on the other server: err = %v, want redis.Nil", err)
	}
}

func TestKillRestartSamePort(t *testing.T) {
	s := redistest.Start(t)
	addr := s.Addr()
	c := s.Client(t)
	ctx := ctxT(t)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}

	s.Kill(t)
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("PING succeeded after Kill")
	}
	s.Kill(t) // killing a stopped server is a no-op

	s.Restart(t)
	if s.Addr() != addr {
		t.Fatalf("restarted on %s, want %s", s.Addr(), addr)
	}
	// The same client reconnects; the data is gone since nothing was saved.
	if err := c.Get(ctx, "k").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("GET after restart: err = %v, want redis.Nil (no persistence)", err)
	}
}

func TestStopRestart(t *testing.T) {
	s := redistest.Start(t)
	c := s.Client(t)
	ctx := ctxT(t)
	s.Stop(t)
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("PING succeeded after Stop")
	}
	s.Restart(t)
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after restart: %v", err)
	}
}

func TestPlant(t *testing.T) {
	s := redistest.Start(t)
	raw := []byte("\x00\xff not \r\n valid")
	s.Plant(t, "ns:{odd} key", raw)
	got, err := s.Client(t).Get(ctxT(t), "ns:{odd} key").Bytes()
	if err != nil || string(got) != string(raw) {
		t.Fatalf("GET = %q, %v; want %q", got, err, raw)
	}
}

func TestClientHonoursContextDeadline(t *testing.T) {
	s := redistest.Start(t)
	c := s.Client(t)
	// BLPOP blocks on the server for 30s; the 50ms deadline must cut it
	// short, which it only does with ContextTimeoutEnabled.
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := c.BLPop(ctx, 30*time.Second, "nothing").Err()
	if err == nil || time.Since(start) > 10*time.Second {
		t.Fatalf("BLPOP returned %v after %v; want an error within the deadline", err, time.Since(start))
	}
}

func TestCluster(t *testing.T) {
	s := redistest.StartCluster(t)
	c := s.ClusterClient(t)
	ctx := ctxT(t)
	// Keys in different slots: each command alone works ...
	for _, k := range []string{"a", "b", "c"} {
		if err := c.Set(ctx, k, k, 0).Err(); err != nil {
			t.Fatalf("SET %s: %v", k, err)
		}
	}
	// ... but one command naming several is refused, as on a real cluster.
	err := s.Client(t).Del(ctx, "a", "b", "c").Err()
	if err == nil || !strings.Contains(err.Error(), "CROSSSLOT") {
		t.Fatalf("DEL across slots: err = %v, want CROSSSLOT", err)
	}

	s.Kill(t)
	s.Restart(t)
	if err := c.Set(ctx, "a", "again", 0).Err(); err != nil {
		t.Fatalf("SET after restart: %v", err)
	}
}

func TestPauseAndKillClients(t *testing.T) {
	s := redistest.Start(t)
	c := s.Client(t)
	ctx := context.Background()
	sub := c.Subscribe(ctx, "ch")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	s.KillClients(t, "pubsub")
	if _, err := sub.Receive(ctx); err == nil {
		t.Fatal("the subscription survived CLIENT KILL TYPE pubsub")
	}

	s.Pause(t, 2*time.Second)
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if err := c.Get(short, "k").Err(); err == nil || errors.Is(err, redis.Nil) {
		t.Fatalf("a GET during CLIENT PAUSE answered: %v", err)
	}
}

// A suspended server (SIGSTOP) accepts connections and answers nothing;
// resumed, it answers the commands it held. Stop ends a suspended server
// without waiting for its SIGTERM timeout, and one left suspended is
// ended with the test.
func TestSuspendResume(t *testing.T) {
	s := redistest.Start(t)
	c := s.Client(t)
	ctx := ctxT(t)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	s.Suspend(t)
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if err := c.Get(short, "k").Err(); err == nil || errors.Is(err, redis.Nil) {
		t.Fatalf("a GET to a suspended server answered: %v", err)
	}
	s.Resume(t)
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("GET after Resume = %q, %v; want \"v\"", got, err)
	}

	s.Suspend(t)
	start := time.Now()
	s.Stop(t) // fails the test if SIGTERM is not handled within 10s
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Stop of a suspended server took %v", took)
	}
	redistest.Start(t).Suspend(t) // the cleanup kills it
}

// WaitAnswering returns once a CLIENT PAUSE ends, not before.
func TestWaitAnsweringAfterPause(t *testing.T) {
	s := redistest.Start(t)
	const pause = 1500 * time.Millisecond
	start := time.Now()
	s.Pause(t, pause)
	s.WaitAnswering(t)
	if took := time.Since(start); took < pause-100*time.Millisecond {
		t.Fatalf("WaitAnswering returned %v after a %v pause began", took, pause)
	}
}

// A TLS-only server: a client trusting the generated CA connects, and a
// client without TLS or trusting nothing does not.
func TestStartTLS(t *testing.T) {
	s := redistest.StartTLS(t)
	ctx := ctxT(t)
	c := s.Client(t)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET over TLS: %v", err)
	}
	s.Plant(t, "raw", []byte("x"))
	plain := redis.NewClient(&redis.Options{Addr: s.Addr(), ContextTimeoutEnabled: true, MaxRetries: -1})
	defer plain.Close()
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := plain.Ping(short).Err(); err == nil {
		t.Fatal("a plain-text client was served by the TLS-only server")
	}
	untrusting := s.Options()
	untrusting.TLSConfig.RootCAs = nil
	untrusting.MaxRetries = -1
	u := redis.NewClient(untrusting)
	defer u.Close()
	if err := u.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("a client that does not trust the CA: %v, want a certificate error", err)
	}
	s.Kill(t)
	s.Restart(t)
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING over TLS after restart: %v", err)
	}
}

// A cluster of three masters: every node agrees the cluster is healthy and
// knows three masters, the slots are spread over them, and a key in each
// node's slots is written through a cluster client and found on that node
// alone (the others redirect with MOVED).
func TestStartClusterOf(t *testing.T) {
	c := redistest.StartClusterOf(t, 3)
	ctx := ctxT(t)
	nodes := c.Nodes()
	if len(nodes) != 3 {
		t.Fatalf("%d nodes, want 3", len(nodes))
	}
	next := 0
	for i, n := range nodes {
		first, last := c.Slots(i)
		if first != next || last < first {
			t.Errorf("node %d owns slots %d-%d, want a range starting at %d", i, first, last, next)
		}
		next = last + 1
		direct := n.Client(t)
		info, err := direct.ClusterInfo(ctx).Result()
		if err != nil || !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_size:3\r\n") {
			t.Errorf("node %d: CLUSTER INFO = %q, %v; want state ok and 3 masters", i, info, err)
		}
		shards, err := direct.ClusterShards(ctx).Result()
		if err != nil || len(shards) != 3 {
			t.Errorf("node %d: CLUSTER SHARDS = %d shards, %v; want 3", i, len(shards), err)
		}
	}
	if next != 16384 {
		t.Errorf("the slots end at %d, want 16384", next)
	}

	cc := c.ClusterClient(t)
	direct0 := nodes[0].Client(t)
	for i := range nodes {
		first, last := c.Slots(i)
		var key string
		for k := 0; key == ""; k++ {
			cand := "key" + strconv.Itoa(k)
			slot, err := direct0.ClusterKeySlot(ctx, cand).Result()
			if err != nil {
				t.Fatalf("CLUSTER KEYSLOT %s: %v", cand, err)
			}
			if int(slot) >= first && int(slot) <= last {
				key = cand
				if c.Owner(int(slot)) != i {
					t.Errorf("Owner(%d) = %d, want %d", slot, c.Owner(int(slot)), i)
				}
			}
		}
		if err := cc.Set(ctx, key, "v"+strconv.Itoa(i), 0).Err(); err != nil {
			t.Fatalf("cluster SET %s: %v", key, err)
		}
		for j, n := range nodes {
			got, err := n.Client(t).Get(ctx, key).Result()
			switch {
			case j == i && (err != nil || got != "v"+strconv.Itoa(i)):
				t.Errorf("GET %s on its owner, node %d = %q, %v; want %q", key, j, got, err, "v"+strconv.Itoa(i))
			case j != i && (err == nil || !strings.HasPrefix(err.Error(), "MOVED")):
				t.Errorf("GET %s on node %d, which does not own it = %q, %v; want MOVED", key, j, got, err)
			}
		}
	}
}
