package remote_test

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/tier-cache/tier/internal/redistest"
	"github.com/tier-cache/tier/remote"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// backend is a kind of Redis server the core tests run against.
type backend struct {
	name    string
	cluster bool // a cluster: slow to start, so only some tests use it
	start   func(tb testing.TB) *env
}

// dialFunc dials a connection for a go-redis client.
type dialFunc = func(ctx context.Context, network, addr string) (net.Conn, error)

// env is one fresh, empty server and how to reach it.
type env struct {
	// connect returns a new client to the server, with
	// ContextTimeoutEnabled; dial, if not nil, replaces its dialer.
	connect func(dial dialFunc) redis.UniversalClient

	// fastForward moves the server's clock on; nil on a real server, whose
	// clock cannot be moved.
	fastForward func(time.Duration)
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
		return &env{connect: func(dial dialFunc) redis.UniversalClient {
			o := s.Options()
			o.Dialer = dial
			return redis.NewClient(o)
		}}
	}},
	{name: "redis-cluster", cluster: true, start: func(tb testing.TB) *env {
		s := redistest.StartCluster(tb)
		return &env{connect: func(dial dialFunc) redis.UniversalClient {
			o := s.ClusterOptions()
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

// testTimeout replaces the default Options.Timeout in tests: 100ms is right
// for production but too tight for a loaded CI machine running -race.
const testTimeout = 5 * time.Second

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

// testCtx returns a context that ends with the test, or after 10s.
func testCtx(tb testing.TB) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
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
func mustGet(tb testing.TB, s *remote.Store, key string) (remote.Item, bool) {
	tb.Helper()
	it, ok, err := s.Get(testCtx(tb), key)
	if err != nil {
		tb.Fatalf("Get(%q): %v", key, err)
	}
	return it, ok
}

// roundTrips counts network round trips two ways: through a go-redis hook,
// where a command or a whole pipeline is one trip, and on the wire, where a
// trip is a burst of writes on a connection followed by reads.
type roundTrips struct {
	hook atomic.Int64
	wire atomic.Int64
}

// dial dials a connection that counts its write bursts in rt.wire.
func (rt *roundTrips) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, trips: &rt.wire}, nil
}

// reset zeroes both counts.
func (rt *roundTrips) reset() {
	rt.hook.Store(0)
	rt.wire.Store(0)
}

func (rt *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (rt *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		rt.hook.Add(1)
		return next(ctx, cmd)
	}
}

func (rt *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		rt.hook.Add(1)
		return next(ctx, cmds)
	}
}

// countingConn counts the bursts of writes on a connection: a write that
// follows a read (or starts the connection) begins a new round trip.
type countingConn struct {
	net.Conn
	trips *atomic.Int64

	mu      sync.Mutex
	writing bool
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if !c.writing {
		c.writing = true
		c.trips.Add(1)
	}
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *countingConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	c.writing = false
	c.mu.Unlock()
	return c.Conn.Read(p)
}

// blackhole is a TCP server that accepts connections and reads from them but
// never answers, like a Redis that has stalled.
type blackhole struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []net.Conn
}

// startBlackhole listens on 127.0.0.1 until the test ends.
func startBlackhole(tb testing.TB) *blackhole {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	b := &blackhole{ln: ln}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.conns = append(b.conns, c)
			b.mu.Unlock()
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				buf := make([]byte, 4096)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	tb.Cleanup(func() {
		_ = ln.Close()
		b.mu.Lock()
		for _, c := range b.conns {
			_ = c.Close()
		}
		b.mu.Unlock()
		b.wg.Wait()
	})
	return b
}

func (b *blackhole) addr() string { return b.ln.Addr().String() }

// hidden wraps a client so that New cannot see what kind it is, and
// so uses only commands that are correct on a cluster: it exercises the
// cluster code paths against a standalone server.
type hidden struct {
	redis.UniversalClient
}
