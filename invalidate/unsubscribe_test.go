package invalidate

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tier-cache/tier/internal/redistest"
)

// fakePubSub is a RESP2 server that knows just enough for a subscriber:
// it confirms SUBSCRIBE, SSUBSCRIBE and PSUBSCRIBE, answers PING, refuses
// HELLO (so go-redis speaks RESP2) and accepts anything else with +OK. The
// test pushes messages to the connection that subscribed last, among them
// the unsubscribe notices that no real server can be asked to send for a
// plain channel or a pattern.
type fakePubSub struct {
	ln net.Listener
	wg sync.WaitGroup

	mu    sync.Mutex
	conns []*fakeConn
	last  *fakeConn // the connection of the latest subscribe command
}

type fakeConn struct {
	mu sync.Mutex // serialises writes: replies and pushes
	c  net.Conn
}

func (c *fakeConn) write(parts ...any) {
	var sb strings.Builder
	fmt.Fprintf(&sb, "*%d\r\n", len(parts))
	for _, p := range parts {
		switch p := p.(type) {
		case int:
			fmt.Fprintf(&sb, ":%d\r\n", p)
		case string:
			fmt.Fprintf(&sb, "$%d\r\n%s\r\n", len(p), p)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.c.Write([]byte(sb.String()))
}

func (c *fakeConn) writeRaw(s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.c.Write([]byte(s))
}

func startFakePubSub(t *testing.T) *fakePubSub {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakePubSub{ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fc := &fakeConn{c: c}
			s.mu.Lock()
			s.conns = append(s.conns, fc)
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.serve(fc)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *fakePubSub) client(t *testing.T) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.ln.Addr().String(), ContextTimeoutEnabled: true})
	t.Cleanup(func() { c.Close() })
	return c
}

// serve answers one connection's commands until it is closed.
func (s *fakePubSub) serve(c *fakeConn) {
	defer c.c.Close()
	r := bufio.NewReader(c.c)
	for {
		args, err := readCommand(r)
		if err != nil {
			return
		}
		switch cmd := strings.ToLower(args[0]); cmd {
		case "subscribe", "ssubscribe", "psubscribe":
			s.mu.Lock()
			s.last = c
			s.mu.Unlock()
			for i, ch := range args[1:] {
				c.write(cmd, ch, i+1)
			}
		case "ping":
			c.write("pong", "")
		case "hello":
			c.writeRaw("-ERR unknown command 'HELLO'\r\n")
		default:
			c.writeRaw("+OK\r\n")
		}
	}
}

// readCommand reads one command, an array of bulk strings.
func readCommand(r *bufio.Reader) ([]string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(line, "*") {
		return nil, fmt.Errorf("fake: not an array: %q", line)
	}
	n, err := strconv.Atoi(strings.TrimSpace(line[1:]))
	if err != nil || n < 1 {
		return nil, fmt.Errorf("fake: bad array header %q", line)
	}
	args := make([]string, n)
	for i := range args {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		size, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "$")))
		if err != nil {
			return nil, fmt.Errorf("fake: bad bulk header %q", line)
		}
		buf := make([]byte, size+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		args[i] = string(buf[:size])
	}
	return args, nil
}

// push sends a pub/sub message to the connection that subscribed last.
func (s *fakePubSub) push(t *testing.T, parts ...any) {
	t.Helper()
	s.mu.Lock()
	c := s.last
	s.mu.Unlock()
	if c == nil {
		t.Fatal("fake: nothing subscribed")
	}
	c.write(parts...)
}

// waitConnected waits until b says it is up again. The handler hears
// Connected just before the Bus says so; the deadline only turns a hang
// into a failure.
func waitConnected(t *testing.T, b *Bus) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := b.WaitConnected(ctx); err != nil {
		t.Fatalf("the Bus is not up again after Connected: %v", err)
	}
}

// An unsubscribe notice that the server sends on its own, for the Bus's
// channel or keyspace pattern, leaves the connection open and answering
// PINGs but the Bus deaf: it is a loss like a dropped connection. The
// handler hears Disconnected, the Bus subscribes again and says Connected.
// Notices for what the Bus did not subscribe to are ignored.
func TestServerUnsubscribeIsALoss(t *testing.T) {
	const channel = "ns:invalidate"
	pattern := "__keyspace@0__:ns:*"
	for _, tc := range []struct {
		name    string
		opts    Options
		message string   // kind of a message on the channel
		notice  []string // kind and channel of the server's notice
	}{
		{"unsubscribe", Options{}, "message", []string{"unsubscribe", channel}},
		{"sunsubscribe", Options{Sharded: true}, "smessage", []string{"sunsubscribe", channel}},
		{"punsubscribe", Options{Keyspace: "__keyspace@0__:ns:"}, "message", []string{"punsubscribe", pattern}},
		{"channel of keyspace bus", Options{Keyspace: "__keyspace@0__:ns:"}, "message", []string{"unsubscribe", channel}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startFakePubSub(t)
			r := newRecorder()
			tc.opts.HealthInterval = 100 * time.Millisecond
			b := newBus(t, srv.client(t), r, tc.opts)
			r.expect(t, "up")

			// Notices for another channel or pattern change nothing; the
			// marker after them shows they were read.
			srv.push(t, "unsubscribe", "other", 1)
			srv.push(t, "sunsubscribe", "other", 1)
			srv.push(t, "punsubscribe", "other*", 1)
			srv.push(t, tc.message, channel, "=marker")
			r.expect(t, `keys ["marker"]`)
			r.none(t)

			srv.push(t, tc.notice[0], tc.notice[1], 0)
			r.expect(t, "down", "up")
			if st := b.Stats(); st.Losses != 1 || st.Reconnects != 1 {
				t.Fatalf("stats = %+v, want 1 loss and 1 reconnect", st)
			}
			waitConnected(t, b)
			srv.push(t, tc.message, channel, "=again")
			r.expect(t, `keys ["again"]`)

			// Close is not a loss.
			b.Close()
			r.none(t)
			if st := b.Stats(); st.Losses != 1 {
				t.Fatalf("Losses = %d after Close, want 1", st.Losses)
			}
		})
	}
}

// On a Redis 7 cluster, moving the slot of a sharded channel to another
// master makes the old owner send "sunsubscribe" to the channel's
// subscribers and keep their connections, which go on answering PINGs.
// The Bus must take that as a loss (Disconnected), subscribe again on the
// slot's new owner (Connected), and receive what is published there.
func TestShardedSlotMigration(t *testing.T) {
	cl := redistest.StartClusterOf(t, 3)
	ctx := context.Background()
	const channel = "ns:invalidate"
	r := newRecorder()
	// The Bus has a cluster client of its own, so that nothing but the Bus
	// can tell it the slot moved.
	b := newBus(t, cl.ClusterClient(t), r, Options{Namespace: "ns", Sharded: true, HealthInterval: 100 * time.Millisecond})
	r.expect(t, "up")
	pub := cl.ClusterClient(t)
	if err := pub.SPublish(ctx, channel, "=before").Err(); err != nil {
		t.Fatal(err)
	}
	r.expect(t, `keys ["before"]`)

	slot, err := pub.ClusterKeySlot(ctx, channel).Result()
	if err != nil {
		t.Fatal(err)
	}
	src := cl.Owner(int(slot))
	dst := (src + 1) % 3
	nodes := cl.Nodes()
	node := func(i int) *redis.Client { return nodes[i].Client(t) }
	srcID, err := node(src).ClusterMyID(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	dstID, err := node(dst).ClusterMyID(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	do := func(i int, args ...any) {
		t.Helper()
		if err := node(i).Do(ctx, args...).Err(); err != nil {
			t.Fatalf("node %d %v: %v", i, args, err)
		}
	}
	// move gives the slot to node to: the slot holds no keys, so there is
	// nothing to MIGRATE: importing, migrating, then the new owner on
	// every node, as redis-cli --cluster reshard does.
	move := func(from, to int, fromID, toID string) {
		t.Helper()
		do(to, "CLUSTER", "SETSLOT", slot, "IMPORTING", fromID)
		do(from, "CLUSTER", "SETSLOT", slot, "MIGRATING", toID)
		do(to, "CLUSTER", "SETSLOT", slot, "NODE", toID)
		do(from, "CLUSTER", "SETSLOT", slot, "NODE", toID)
		do(3-from-to, "CLUSTER", "SETSLOT", slot, "NODE", toID)
	}
	move(src, dst, srcID, dstID)

	r.expect(t, "down", "up")
	if st := b.Stats(); st.Losses != 1 || st.Reconnects != 1 {
		t.Fatalf("stats = %+v, want 1 loss and 1 reconnect", st)
	}
	waitConnected(t, b)
	// The new subscription is on the slot's new owner.
	n, err := node(dst).PubSubShardNumSub(ctx, channel).Result()
	if err != nil {
		t.Fatal(err)
	}
	if n[channel] != 1 {
		t.Fatalf("PUBSUB SHARDNUMSUB on the new owner = %v, want 1 subscriber", n)
	}
	// pub's slot map is stale too: its SPUBLISH follows the MOVED reply.
	if err := pub.SPublish(ctx, channel, "=after").Err(); err != nil {
		t.Fatal(err)
	}
	r.expect(t, `keys ["after"]`)
	r.none(t)

	// A Bus whose client loaded its slot map before the slot moved back
	// sends its first SSUBSCRIBE to the old owner and gets MOVED: it has
	// the client reload the map instead of trying the old owner until the
	// client's periodic reload, a minute away.
	stale := cl.ClusterClient(t)
	if err := stale.ClusterKeySlot(ctx, channel).Err(); err != nil { // loads the map
		t.Fatal(err)
	}
	move(dst, src, dstID, srcID)
	r.expect(t, "down", "up")
	r2 := newRecorder()
	newBus(t, stale, r2, Options{Namespace: "ns", Sharded: true, HealthInterval: 100 * time.Millisecond})
	r2.expect(t, "up")
	if err := pub.SPublish(ctx, channel, "=back").Err(); err != nil {
		t.Fatal(err)
	}
	r.expect(t, `keys ["back"]`)
	r2.expect(t, `keys ["back"]`)
	r.none(t)
	r2.none(t)
}
