package invalidate

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// A Handler applies what a [Bus] receives. Its methods are called one at a
// time, in the order the messages arrived, on the Bus's goroutine.
type Handler interface {
	// Invalidate drops the near copies of keys.
	Invalidate(keys []string)
	// InvalidateAll drops every near copy.
	InvalidateAll()
	// InvalidateTags drops the near copies that carry one of tags and were
	// born before clock; clock 0 (an operator's message) means "read the
	// tags' markers from Redis".
	InvalidateTags(tags []string, clock uint64)
	// Disconnected says that the subscription is lost, for the reason
	// cause: messages published from now until the next Connected may
	// never arrive.
	Disconnected(cause error)
	// Connected says that the subscription is confirmed, the first time
	// and after every loss. Messages published before it may have been
	// lost.
	Connected()
}

// Options configure a [Bus]. Channel is required; every other zero value
// means the documented default.
type Options struct {
	// Channel is the pub/sub channel. Required.
	Channel string

	// Namespace is written into the frames this Bus publishes; received
	// frames of another namespace are ignored and counted as malformed.
	// Default: "", which accepts frames of any namespace.
	Namespace string

	// HealthInterval is how long the subscription may be silent before
	// the Bus sends a PING on it; if no reply comes within another
	// HealthInterval, the subscription is declared lost. A closed
	// connection, or an unsubscribe notice the server sends on its own,
	// is a loss at once. Default: 1s.
	HealthInterval time.Duration

	// Timeout bounds each Publish. Default: 100ms.
	Timeout time.Duration

	// MaxMessageBytes bounds a payload, published or received. Publish
	// splits many keys into several frames under it. Default: 1 MiB.
	MaxMessageBytes int

	// Logger receives malformed messages (at most one line a minute) and,
	// at debug level, subscription losses. Default: none.
	Logger *slog.Logger

	// Sharded uses sharded pub/sub (SSUBSCRIBE and SPUBLISH, Redis 7 and
	// later): on a cluster a message goes only to the shard that owns the
	// channel's slot. When that slot moves, the old owner unsubscribes the
	// Bus, which takes it as a loss, has a *redis.ClusterClient reload its
	// map of slots, and subscribes again on the new owner. Default: false.
	Sharded bool

	// Observe, when set, is called on the Bus's goroutine with the
	// propagation lag of each message received from another Bus, once
	// the Handler has applied it: from when the publisher made it until
	// then, by the two machines' clocks (never below 0). It must not
	// block. Default: none.
	Observe func(lag time.Duration)

	// Keyspace, when set, is the prefix of the keyspace-notification
	// channels of the keys whose changes the Bus also reports, such as
	// "__keyspace@0__:users:". The Bus then also subscribes (PSUBSCRIBE)
	// to that prefix followed by "*", and each notification on it reaches
	// Handler.Invalidate with the key, prefix removed. The subscription
	// counts as up once both are confirmed. Not with Sharded. Default: "".
	Keyspace string
}

// Stats counts what a Bus has done.
type Stats struct {
	Received   uint64 // messages applied (from other replicas and operators)
	Own        uint64 // messages this Bus published, received and skipped
	Malformed  uint64 // payloads ignored: bad bytes, unknown version, other namespace
	Published  uint64 // frames sent by Publish and PublishAll
	Reconnects uint64 // subscriptions confirmed after the first
	Losses     uint64 // subscriptions lost or declared dead
	Keyspace   uint64 // keyspace notifications reported (Options.Keyspace)
}

// Bus publishes invalidations and applies the ones it receives through a
// Handler. It is safe for concurrent use; Close stops its goroutine.
type Bus struct {
	client  redis.UniversalClient
	handler Handler
	opts    Options
	id      ID
	log     *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	mu        sync.Mutex
	ps        *redis.PubSub
	lastErr   error // why the latest subscription ended or failed
	up        bool
	upCh      chan struct{} // closed while up; replaced when it goes down
	confirmed bool          // a subscription was ever confirmed

	syncMu sync.Mutex
	syncs  map[string]chan struct{} // Sync calls waiting for their frame, by token

	received, own, malformed, published, reconnects, losses, keyspace atomic.Uint64
	lastMalformedLog                                                  atomic.Int64 // Unix nanoseconds
}

// ErrClosed is returned by Publish and WaitConnected after Close.
var ErrClosed = errors.New("invalidate: bus closed")

// New starts a Bus that subscribes to opts.Channel and calls h for what
// arrives. It does not wait for the subscription: h.Connected says when it
// is confirmed, and [Bus.WaitConnected] waits for it.
func New(client redis.UniversalClient, h Handler, opts Options) (*Bus, error) {
	switch {
	case client == nil:
		return nil, errors.New("invalidate: nil Redis client")
	case h == nil:
		return nil, errors.New("invalidate: nil Handler")
	case opts.Channel == "":
		return nil, errors.New("invalidate: Options.Channel is required")
	case opts.Keyspace != "" && opts.Sharded:
		return nil, errors.New("invalidate: Options.Keyspace does not work with Options.Sharded")
	case opts.HealthInterval < 0:
		return nil, fmt.Errorf("invalidate: Options.HealthInterval must be >= 0, got %v", opts.HealthInterval)
	case opts.Timeout < 0:
		return nil, fmt.Errorf("invalidate: Options.Timeout must be >= 0, got %v", opts.Timeout)
	case opts.MaxMessageBytes < 0 || (opts.MaxMessageBytes > 0 && opts.MaxMessageBytes < frameOverhead+len(opts.Namespace)+16):
		return nil, fmt.Errorf("invalidate: Options.MaxMessageBytes too small: %d", opts.MaxMessageBytes)
	}
	if opts.HealthInterval == 0 {
		opts.HealthInterval = time.Second
	}
	if opts.Timeout == 0 {
		opts.Timeout = 100 * time.Millisecond
	}
	if opts.MaxMessageBytes == 0 {
		opts.MaxMessageBytes = DefaultMaxMessageBytes
	}
	b := &Bus{client: client, handler: h, opts: opts, log: opts.Logger, done: make(chan struct{}), upCh: make(chan struct{})}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if _, err := rand.Read(b.id[:]); err != nil {
		return nil, fmt.Errorf("invalidate: make an instance ID: %w", err)
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	go b.run()
	return b, nil
}

// ID returns the ID this Bus writes into its frames.
func (b *Bus) ID() ID { return b.id }

// Channel returns the channel the Bus subscribes and publishes to.
func (b *Bus) Channel() string { return b.opts.Channel }

// Err returns why the latest subscription failed or ended, such as a
// server's refusal to subscribe, or nil if none has.
func (b *Bus) Err() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lastErr
}

// Connected reports whether the subscription is confirmed and alive as
// far as the Bus knows.
func (b *Bus) Connected() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.up
}

// WaitConnected waits until the subscription is confirmed or ctx ends.
func (b *Bus) WaitConnected(ctx context.Context) error {
	for {
		b.mu.Lock()
		up, ch := b.up, b.upCh
		b.mu.Unlock()
		if up {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-b.done:
			return ErrClosed
		}
	}
}

// Publish tells every Bus on the channel, this one excepted, to drop keys.
// Many keys are split into frames of at most MaxMessageBytes, all sent in
// one round trip.
func (b *Bus) Publish(ctx context.Context, keys ...string) error {
	if len(keys) == 0 {
		return nil
	}
	frames, err := b.Frames(keys...)
	if err != nil {
		return err
	}
	return b.publish(ctx, frames)
}

// PublishAll tells every Bus on the channel, this one excepted, to drop
// every near copy.
func (b *Bus) PublishAll(ctx context.Context) error {
	return b.publish(ctx, [][]byte{AppendFrame(nil, Message{All: true, Namespace: b.opts.Namespace, Origin: b.id, Sent: time.Now()})})
}

// Sync waits until every message published on the channel before the call
// has reached this Bus and been applied: it publishes a frame that drops
// nothing and waits for it to come back, since Redis delivers a channel's
// messages to a subscriber in the order it published them. It is one
// pub/sub round trip. If the subscription is lost meanwhile, the frame may
// never come: Sync then waits until ctx ends.
func (b *Bus) Sync(ctx context.Context) error {
	var raw [8]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return fmt.Errorf("invalidate: sync: %w", err)
	}
	token := string(raw[:])
	back := make(chan struct{})
	b.syncMu.Lock()
	if b.syncs == nil {
		b.syncs = make(map[string]chan struct{})
	}
	b.syncs[token] = back
	b.syncMu.Unlock()
	defer func() {
		b.syncMu.Lock()
		delete(b.syncs, token)
		b.syncMu.Unlock()
	}()
	frame := AppendFrame(nil, Message{Keys: []string{token}, Sync: true, Namespace: b.opts.Namespace, Origin: b.id})
	if err := b.publish(ctx, [][]byte{frame}); err != nil {
		return err
	}
	select {
	case <-back:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-b.done:
		return ErrClosed
	}
}

// Frames returns the payloads that Publish would send for keys, for a
// caller that publishes them itself, in the same script as the write they
// announce. Receivers skip them as this Bus's own. A key too long for
// MaxMessageBytes is an error.
func (b *Bus) Frames(keys ...string) ([][]byte, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	base := frameOverhead + len(b.opts.Namespace)
	sent := time.Now()
	frames := make([][]byte, 0, 1)
	start, size := 0, base
	for i, k := range keys {
		need := len(k) + binary.MaxVarintLen64
		if base+need > b.opts.MaxMessageBytes {
			return nil, fmt.Errorf("invalidate: a key of %d bytes does not fit in MaxMessageBytes (%d)", len(k), b.opts.MaxMessageBytes)
		}
		if size+need > b.opts.MaxMessageBytes {
			frames = append(frames, b.frame(keys[start:i], sent, size))
			start, size = i, base
		}
		size += need
	}
	return append(frames, b.frame(keys[start:], sent, size)), nil
}

// frame encodes keys into a buffer of size bytes, an upper bound of the
// frame's length.
func (b *Bus) frame(keys []string, sent time.Time, size int) []byte {
	return AppendFrame(make([]byte, 0, size), Message{Keys: keys, Namespace: b.opts.Namespace, Origin: b.id, Sent: sent})
}

func (b *Bus) publish(ctx context.Context, frames [][]byte) error {
	if b.ctx.Err() != nil {
		return ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, b.opts.Timeout)
	defer cancel()
	_, err := b.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, f := range frames {
			if b.opts.Sharded {
				p.SPublish(ctx, b.opts.Channel, f)
			} else {
				p.Publish(ctx, b.opts.Channel, f)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("invalidate: publish to %q: %w", b.opts.Channel, err)
	}
	b.published.Add(uint64(len(frames)))
	return nil
}

// Stats returns the counters.
func (b *Bus) Stats() Stats {
	return Stats{
		Received:   b.received.Load(),
		Own:        b.own.Load(),
		Malformed:  b.malformed.Load(),
		Published:  b.published.Load(),
		Reconnects: b.reconnects.Load(),
		Losses:     b.losses.Load(),
		Keyspace:   b.keyspace.Load(),
	}
}

// Close stops the Bus's goroutine and waits for it. The handler is not
// called after Close returns. Close is idempotent.
func (b *Bus) Close() error {
	b.cancel()
	b.mu.Lock()
	if b.ps != nil {
		b.ps.Close()
	}
	b.mu.Unlock()
	<-b.done
	return nil
}
