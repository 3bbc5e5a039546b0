package remote_test

import (
	"bytes"
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"
)

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
// follows a read (or starts the connection) begins a new round trip. A
// burst that starts with a CLUSTER command is not counted: a cluster
// client reloads the slot map on a timer of its own, from any operation.
type countingConn struct {
	net.Conn
	trips *atomic.Int64

	mu      sync.Mutex
	writing bool
}

// clusterCommand starts the RESP encoding of every CLUSTER command.
var clusterCommand = []byte("\r\n$7\r\ncluster\r\n")

func (c *countingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if !c.writing {
		c.writing = true
		if i := bytes.Index(p, clusterCommand); i < 0 || i > 4 {
			c.trips.Add(1)
		}
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
	ln       net.Listener
	received chan struct{} // gets a value (if it has room) whenever bytes arrive
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    []net.Conn
}

// startBlackhole listens on 127.0.0.1 until the test ends.
func startBlackhole(tb testing.TB) *blackhole {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	b := &blackhole{ln: ln, received: make(chan struct{}, 1)}
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
					select {
					case b.received <- struct{}{}:
					default:
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

// closedAddr returns a 127.0.0.1 address on which nothing listens: a port
// that was free a moment ago.
func closedAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		tb.Fatal(err)
	}
	return addr
}
