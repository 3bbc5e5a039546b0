package remote_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/tier-cache/tier/internal/redistest"
	"github.com/tier-cache/tier/remote"
)

// TestMain shuts down the cluster the tests share, then checks that no
// goroutine outlived the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if shared.cluster != nil {
		shared.cluster.Close()
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// shared is a one-node Redis Cluster, started by the first test that needs
// it and emptied for each of the next: a cluster takes seconds to start,
// and no test here runs in parallel with another.
var shared struct {
	once    sync.Once
	cluster *redistest.Cluster
	err     error
}

// sharedCluster returns the shared cluster, empty (no keys, no cached
// scripts), or skips the test as redistest.Start does when redis-server is
// not installed.
func sharedCluster(tb testing.TB) *redistest.Cluster {
	tb.Helper()
	redistest.RequireServer(tb)
	shared.once.Do(func() { shared.cluster, shared.err = redistest.LaunchCluster(1) })
	if shared.err != nil {
		tb.Fatal(shared.err)
	}
	c := shared.cluster
	for _, n := range c.Nodes() {
		nc := redis.NewClient(n.Options())
		err := nc.FlushAll(testCtx(tb)).Err()
		if err == nil {
			err = nc.ScriptFlush(testCtx(tb)).Err()
		}
		_ = nc.Close()
		if err != nil {
			tb.Fatalf("empty the shared cluster: %v", err)
		}
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("cluster logs:\n%s", c.Log())
		}
	})
	return c
}

// backend is a kind of Redis server the tests run against.
type backend struct {
	name    string
	cluster bool // a cluster: only some tests use it
	start   func(tb testing.TB) *env
}

// dialFunc dials a connection for a go-redis client.
type dialFunc = func(ctx context.Context, network, addr string) (net.Conn, error)

// env is one empty server and how to reach it.
type env struct {
	// connect returns a new client to the server, with
	// ContextTimeoutEnabled; dial, if not nil, replaces its dialer.
	connect func(dial dialFunc) redis.UniversalClient

	// fastForward moves the server's clock on; nil on a real server, whose
	// clock cannot be moved. Where it is set, the clock stands still
	// otherwise, so TTLs read back exactly.
	fastForward func(time.Duration)

	// sharded is true when the server has sharded pub/sub (SPUBLISH).
	sharded bool
}

var backends = []backend{
	{name: "miniredis", start: func(tb testing.TB) *env {
		m := miniredis.RunT(tb)
		return &env{
			connect: func(dial dialFunc) redis.UniversalClient {
				return redis.NewClient(&redis.Options{Addr: m.Addr(), ContextTimeoutEnabled: true, Dialer: dial})
			},
			fastForward: m.FastForward,
		}
	}},
	{name: "redis-server", start: func(tb testing.TB) *env {
		s := redistest.Start(tb)
		return &env{sharded: true, connect: func(dial dialFunc) redis.UniversalClient {
			o := s.Options()
			o.Dialer = dial
			return redis.NewClient(o)
		}}
	}},
	{name: "redis-cluster", cluster: true, start: func(tb testing.TB) *env {
		c := sharedCluster(tb)
		return &env{sharded: true, connect: func(dial dialFunc) redis.UniversalClient {
			o := c.ClusterOptions()
			o.Dialer = dial
			return redis.NewClusterClient(o)
		}}
	}},
}

// forEachBackend runs body as a subtest against each standalone backend,
// each with a fresh server.
func forEachBackend(t *testing.T, body func(t *testing.T, e *env)) {
	t.Helper()
	run(t, false, body)
}

// forEachBackendAndCluster is forEachBackend plus a Redis Cluster, for tests
// of code whose behaviour depends on how keys are spread over nodes.
func forEachBackendAndCluster(t *testing.T, body func(t *testing.T, e *env)) {
	t.Helper()
	run(t, true, body)
}

func run(t *testing.T, cluster bool, body func(t *testing.T, e *env)) {
	t.Helper()
	for _, b := range backends {
		if b.cluster && !cluster {
			continue
		}
		t.Run(b.name, func(t *testing.T) {
			body(t, b.start(t))
		})
	}
}

// client returns a new client to the server, closed when the test ends.
func (e *env) client(tb testing.TB) redis.UniversalClient {
	tb.Helper()
	c := e.connect(nil)
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// countingClient returns a new client to the server that counts its round
// trips, closed when the test ends.
func (e *env) countingClient(tb testing.TB) (redis.UniversalClient, *roundTrips) {
	tb.Helper()
	rt := &roundTrips{}
	c := e.connect(rt.dial)
	c.AddHook(rt)
	tb.Cleanup(func() { _ = c.Close() })
	return c, rt
}

// store returns a Store on a new client to the server, as mustNew does.
func (e *env) store(tb testing.TB, opts remote.Options) *remote.Store {
	tb.Helper()
	return mustNew(tb, e.client(tb), opts)
}

// clientKinds are the ways a test hands a client to New: as it is, and
// hidden, so that New cannot see whether all keys live on one server.
var clientKinds = []struct {
	name string
	wrap func(redis.UniversalClient) redis.UniversalClient
}{
	{"as is", func(c redis.UniversalClient) redis.UniversalClient { return c }},
	{"hidden", func(c redis.UniversalClient) redis.UniversalClient { return hidden{c} }},
}

// hidden wraps a client so that New cannot see what kind it is, and so
// uses only commands that are correct on a cluster: it runs the cluster
// code paths against a standalone server.
type hidden struct {
	redis.UniversalClient
}

// singleNode reports whether New sees that every key of c lives on one
// server: c is a *redis.Client, not hidden.
func singleNode(c redis.UniversalClient) bool {
	_, ok := c.(*redis.Client)
	return ok
}

// testTimeout replaces the default Options.Timeout in tests: 100ms is right
// for production but too tight for a loaded CI machine running -race.
const testTimeout = 20 * time.Second

// waitTimeout bounds every wait for an event in these tests. It only turns
// a hang into a failure: nothing waits for it to pass.
const waitTimeout = 30 * time.Second

// mustNew returns a Store on c, or fails the test. A zero opts.Timeout
// becomes testTimeout.
func mustNew(tb testing.TB, c redis.UniversalClient, opts remote.Options) *remote.Store {
	tb.Helper()
	if opts.Timeout == 0 {
		opts.Timeout = testTimeout
	}
	s, err := remote.New(c, opts)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return s
}

// testCtx returns a context that ends with the test, or after waitTimeout.
func testCtx(tb testing.TB) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	tb.Cleanup(cancel)
	return ctx
}

// mustSet sets key or fails the test.
func mustSet(tb testing.TB, s *remote.Store, key, value string, ttl time.Duration) {
	tb.Helper()
	if err := s.Set(testCtx(tb), key, []byte(value), ttl); err != nil {
		tb.Fatalf("Set(%q): %v", key, err)
	}
}

// mustGet reads key or fails the test.
func mustGet(tb testing.TB, s *remote.Store, key string) ([]byte, bool) {
	tb.Helper()
	v, ok, err := s.Get(testCtx(tb), key)
	if err != nil {
		tb.Fatalf("Get(%q): %v", key, err)
	}
	return v, ok
}

// mustGetMany reads keys or fails the test.
func mustGetMany(tb testing.TB, s *remote.Store, keys []string) [][]byte {
	tb.Helper()
	vs, err := s.GetMany(testCtx(tb), keys)
	if err != nil {
		tb.Fatalf("GetMany(%d keys): %v", len(keys), err)
	}
	if len(vs) != len(keys) {
		tb.Fatalf("GetMany(%d keys) returned %d values", len(keys), len(vs))
	}
	return vs
}

// pttl returns the remaining life of the Redis key rkey, read with PTTL on
// the raw client c: -1 for no expiry, -2 for a missing key.
func pttl(tb testing.TB, c redis.UniversalClient, rkey string) time.Duration {
	tb.Helper()
	// The reply is in milliseconds; Do keeps go-redis from turning -1 and
	// -2 into durations.
	ms, err := c.Do(testCtx(tb), "PTTL", rkey).Int64()
	if err != nil {
		tb.Fatalf("PTTL %q: %v", rkey, err)
	}
	if ms < 0 {
		return time.Duration(ms)
	}
	return time.Duration(ms) * time.Millisecond
}

// storeAs returns a Store with opts (Namespace "ns" unless set) on srv, as
// a new ACL user that has the password "pw" and the given rules, after
// resetkeys and resetchannels.
func storeAs(t *testing.T, srv *redistest.Server, user string, opts remote.Options, rules ...string) *remote.Store {
	t.Helper()
	args := []any{"ACL", "SETUSER", user, "reset", "on", ">pw", "resetkeys", "resetchannels"}
	for _, r := range rules {
		for _, f := range strings.Fields(r) {
			args = append(args, f)
		}
	}
	if err := srv.Client(t).Do(testCtx(t), args...).Err(); err != nil {
		t.Fatal(err)
	}
	o := srv.Options()
	o.Username, o.Password = user, "pw"
	c := redis.NewClient(o)
	t.Cleanup(func() { _ = c.Close() })
	if opts.Namespace == "" {
		opts.Namespace = "ns"
	}
	return mustNew(t, c, opts)
}

// serverVersion returns the major version of the server c talks to.
func serverVersion(tb testing.TB, c redis.UniversalClient) int {
	tb.Helper()
	info, err := c.Info(testCtx(tb), "server").Result()
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "redis_version:"); ok {
			var major int
			if _, err := fmt.Sscanf(v, "%d.", &major); err == nil {
				return major
			}
		}
	}
	tb.Fatalf("no redis_version in INFO server: %q", info)
	return 0
}
