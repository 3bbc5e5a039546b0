package invalidate

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
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
	// Disconnected says that the subscription is lost (its connection
	// failed, or the server unsubscribed the Bus from its channel or
	// keyspace pattern) or was found dead: messages published from now
	// until the next Connected may never arrive, so the handler must stop
	// keeping near copies.
	Disconnected()
	// Connected says that the subscription is confirmed, the first time
	// and after every reconnection. Messages published before it may have
	// been lost, so the handler drops every near copy made before it.
	Connected()
}

// An Updater is a [Handler] that also applies messages carrying the new
// stored bytes of keys (see [Bus.UpdateFrames]). A Bus whose handler is
// not an Updater applies them as plain invalidations of their keys.
//
// Updates reach the Updater whatever their origin, with own set for the
// Bus's own, and so do the invalidations the Bus published itself (an
// Update whose message has nil Values, of its Keys or, with All, of
// everything), which a plain Handler never sees: messages arrive in the order their writes were applied (when each
// write and its message go in one transaction), and that order is what
// settles concurrent writes of one key, this replica's included. The
// Sent time of an own message tells which of the Bus's batches of frames
// it belongs to (see [Bus.Frames]).
type Updater interface {
	Handler
	// Update applies m, a message with the new stored bytes of its keys
	// (m.Values[i] is that of m.Keys[i]) or, when own is set, a plain
	// invalidation this Bus published (m.Values is nil; m.All for one of
	// everything). The handler must not keep m's slices after it returns.
	Update(m *Message, own bool)
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
	// HealthInterval, the subscription is declared dead, the handler is
	// told Disconnected, and the Bus subscribes again. A dead subscription
	// is therefore noticed within 2×HealthInterval, and a closed
	// connection, or an unsubscribe notice the server sends on its own for
	// the channel or the keyspace pattern, at once. Default: 1s.
	HealthInterval time.Duration

	// Timeout bounds each Publish. Default: 100ms.
	Timeout time.Duration

	// MaxMessageBytes bounds a payload, published or received. Publish
	// splits many keys into several frames under it. Default: 1 MiB.
	MaxMessageBytes int

	// Logger receives subscription losses and malformed messages.
	// Default: none.
	Logger *slog.Logger

	// Sharded uses sharded pub/sub (SSUBSCRIBE and SPUBLISH, Redis 7 and
	// later) on Channel. On a cluster a classic PUBLISH is sent to every
	// node, which costs more as the cluster grows; a sharded message goes
	// only to the shard that owns the channel's slot, where every
	// subscriber of the channel is connected. Re-subscription and gap
	// detection work as for classic pub/sub. When the channel's slot moves
	// to another master, the old owner unsubscribes its subscribers
	// ("sunsubscribe") but keeps their connections, which go on answering
	// PINGs: the Bus takes that as a loss (Disconnected) and subscribes
	// again. A *redis.ClusterClient is then told to reload its map of
	// slots, as it is whenever a subscription is answered MOVED or ASK,
	// so that the new subscription goes to the slot's new owner
	// (Connected). Default: false.
	Sharded bool

	// Observe, when set, is called on the Bus's goroutine with the
	// propagation lag of each message received from another Bus: the time
	// from when the publisher made it (Frames, UpdateFrames or Publish) to
	// its arrival, by the two machines' clocks (never below 0). It must be
	// quick and must not block. Default: none.
	Observe func(lag time.Duration)

	// Keyspace, when set, is the prefix of the keyspace-notification
	// channels of the keys whose changes the Bus should also report, such
	// as "__keyspace@0__:users:". The Bus then also subscribes (PSUBSCRIBE)
	// to that prefix followed by "*", and each notification on it (a SET,
	// DEL or EXPIRE by any client, if the server's notify-keyspace-events
	// enables them) reaches Handler.Invalidate with the key, prefix
	// removed. The subscription counts as up once both are confirmed.
	// Not with Sharded. Default: "", none.
	Keyspace string
}

// Stats counts what a Bus has done.
type Stats struct {
	Received   uint64 // messages applied (from other replicas and operators)
	Own        uint64 // messages this Bus published, received and skipped
	Malformed  uint64 // payloads ignored: bad bytes, unknown version, other namespace
	Published  uint64 // frames sent by Publish and PublishAll
	Reconnects uint64 // subscriptions confirmed after the first: gaps recovered
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
	up        bool
	upCh      chan struct{} // closed while up; replaced when it goes down
	confirmed bool          // a subscription was ever confirmed

	received, own, malformed, published, reconnects, losses, keyspace atomic.Uint64

	lastSent atomic.Int64 // the Sent time of the latest batch of frames, in Unix nanoseconds (see stamp)

	// writer is the channel only this Bus listens on besides Channel (see
	// WriterChannel), or "" when it has none: with Sharded, or on a
	// client other than a *redis.Client. writerOK says that the server
	// lets the Bus's user publish and subscribe to it (asked by
	// probeWriter before each subscription until it says yes, and again
	// after a refusal).
	writer   string
	writerOK atomic.Bool
}

// ErrClosed is returned by Publish after Close.
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
	if _, single := client.(*redis.Client); single && !opts.Sharded {
		b.writer = opts.Channel + ":writer:" + hex.EncodeToString(b.id[:])
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	go b.run()
	return b, nil
}

// ID returns the ID this Bus writes into its frames.
func (b *Bus) ID() ID { return b.id }

// WriterChannel returns a channel that only this Bus listens on, besides
// its Channel, or "" when it has none. A writer whose transaction
// publishes an empty message to it before the frames of the write gets
// its own copy of the frames last, after every other subscriber's, on
// Redis (see remote.Notice.Writer); the Bus ignores what arrives on it.
//
// It is "" until the server has shown that the Bus's user may publish to
// it, and while the server refuses, for example for a user whose ACL names
// only Channel: the Bus then subscribes to Channel alone, and asks again
// when it next subscribes (after a reconnection). A subscription refused
// for lack of rights (NOPERM) also drops it until then, whichever channel
// the refusal was about. It is "<Channel>:writer:<ID in hex>", and only
// on a *redis.Client (standalone or Sentinel) without Sharded: on a
// cluster, messages reach other nodes' subscribers over the cluster bus,
// and no order of one node's writes helps.
//
// When a user's right to the writer channels is revoked, Redis closes the
// subscriptions to them: every Bus of that user loses its subscription
// (Handler.Disconnected) and comes back on Channel alone.
func (b *Bus) WriterChannel() string {
	if b.writerOK.Load() {
		return b.writer
	}
	return ""
}

// probeWriter asks the server, unless it has already said yes, whether the
// Bus's user may publish to the writer channel, by publishing an empty
// message to it, and records a yes. Channel rights are the same for
// PUBLISH and SUBSCRIBE. No answer (the server is down) is taken as a no
// until the next subscription.
func (b *Bus) probeWriter(ctx context.Context) {
	if b.writer == "" || b.writerOK.Load() {
		return
	}
	err := b.client.Publish(ctx, b.writer, "").Err()
	switch {
	case err == nil:
		b.writerOK.Store(true)
	case redis.IsPermissionError(err):
		b.log.Info("invalidate: the server refused the writer channel; subscribing to the channel alone", "channel", b.opts.Channel, "err", err)
	}
}

// Channel returns the channel the Bus subscribes and publishes to.
func (b *Bus) Channel() string { return b.opts.Channel }

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
		select {
		case <-b.done:
			return ErrClosed
		default:
		}
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
	frames, _, err := b.frames(keys, nil)
	if err != nil {
		return err
	}
	return b.publish(ctx, frames)
}

// PublishAll tells every Bus on the channel, this one excepted, to drop
// every near copy.
func (b *Bus) PublishAll(ctx context.Context) error {
	return b.publish(ctx, [][]byte{AppendFrame(nil, Message{All: true, Namespace: b.opts.Namespace, Origin: b.id, Sent: b.stamp()})})
}

// Frames returns the payloads that Publish would send for keys, for a
// caller that publishes them itself, for example in the same transaction
// as the write they announce, and the Sent time they carry. Receivers skip
// them as this Bus's own (but an [Updater] handler of this Bus gets them).
//
// Sent times are distinct across the batches of one Bus, and grow with
// each: with the Bus's ID, a batch's Sent time identifies its frames when
// they come back.
func (b *Bus) Frames(keys ...string) (frames [][]byte, sent time.Time, err error) {
	if len(keys) == 0 {
		return nil, time.Time{}, nil
	}
	return b.frames(keys, nil)
}

// UpdateFrames returns the payloads that carry the new stored bytes of
// keys (values[i] of keys[i]) to every Bus on the channel, for a caller
// that publishes them in the transaction of the write, and their Sent time
// (see Frames). A receiver whose handler is an [Updater] applies them, its
// own included; others drop the keys. A key and value that do not fit in
// MaxMessageBytes are an error.
func (b *Bus) UpdateFrames(keys []string, values [][]byte) (frames [][]byte, sent time.Time, err error) {
	if len(keys) != len(values) {
		return nil, time.Time{}, fmt.Errorf("invalidate: %d keys and %d values", len(keys), len(values))
	}
	if len(keys) == 0 {
		return nil, time.Time{}, nil
	}
	return b.frames(keys, values)
}

// stamp returns the Sent time of a new batch of frames: now, or just after
// the previous batch's when the clock has not moved past it.
func (b *Bus) stamp() time.Time {
	now := time.Now().UnixNano()
	for {
		last := b.lastSent.Load()
		next := max(now, last+1)
		if b.lastSent.CompareAndSwap(last, next) {
			return time.Unix(0, next)
		}
	}
}

// frames splits keys (and values, if not nil) into frames under
// MaxMessageBytes, all with one new Sent time.
func (b *Bus) frames(keys []string, values [][]byte) ([][]byte, time.Time, error) {
	frames := make([][]byte, 0, 1)
	start := 0
	size := frameOverhead + len(b.opts.Namespace)
	sent := b.stamp()
	// frame encodes keys[i:j] into a buffer of size bytes, an upper bound
	// of its length: one allocation, not a growth per field.
	frame := func(i, j, size int) []byte {
		m := Message{Keys: keys[i:j], Namespace: b.opts.Namespace, Origin: b.id, Sent: sent}
		if values != nil {
			m.Values = values[i:j]
		}
		return AppendFrame(make([]byte, 0, size), m)
	}
	for i, k := range keys {
		need := len(k) + binary.MaxVarintLen64
		if values != nil {
			need += len(values[i]) + binary.MaxVarintLen64
		}
		if frameOverhead+len(b.opts.Namespace)+need > b.opts.MaxMessageBytes {
			return nil, time.Time{}, fmt.Errorf("invalidate: key of %d bytes (and its value) does not fit in MaxMessageBytes (%d)", len(k), b.opts.MaxMessageBytes)
		}
		if size+need > b.opts.MaxMessageBytes {
			frames = append(frames, frame(start, i, size))
			start, size = i, frameOverhead+len(b.opts.Namespace)
		}
		size += need
	}
	return append(frames, frame(start, len(keys), size)), sent, nil
}

func (b *Bus) publish(ctx context.Context, frames [][]byte) error {
	if b.ctx.Err() != nil {
		return ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, b.opts.Timeout)
	defer cancel()
	var err error
	if writer := b.WriterChannel(); writer != "" {
		// The Bus's own copy last, and its reply after it (see
		// remote.Notice.Writer). Not a transaction: a PUBLISH to writer
		// refused only ends its use.
		var (
			ping *redis.StatusCmd
			lead *redis.IntCmd
			cmds []redis.Cmder
		)
		cmds, err = b.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			ping = p.Ping(ctx)
			lead = p.Publish(ctx, writer, "")
			for _, f := range frames {
				p.Publish(ctx, b.opts.Channel, f)
			}
			return nil
		})
		refused := redis.IsPermissionError(lead.Err())
		if refused {
			b.writerOK.Store(false)
		}
		if refused || redis.IsPermissionError(ping.Err()) {
			// Refusals of these change nothing: the frames decide.
			err = nil
			for _, c := range cmds[2:] {
				if err = c.Err(); err != nil {
					break
				}
			}
		}
	} else if len(frames) == 1 {
		if b.opts.Sharded {
			err = b.client.SPublish(ctx, b.opts.Channel, frames[0]).Err()
		} else {
			err = b.client.Publish(ctx, b.opts.Channel, frames[0]).Err()
		}
	} else {
		_, err = b.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, f := range frames {
				if b.opts.Sharded {
					p.SPublish(ctx, b.opts.Channel, f)
				} else {
					p.Publish(ctx, b.opts.Channel, f)
				}
			}
			return nil
		})
	}
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

// run subscribes, receives until the subscription dies, and subscribes
// again, with a backoff, until Close.
func (b *Bus) run() {
	defer func() {
		b.mu.Lock()
		b.up = false
		b.mu.Unlock()
		close(b.done)
	}()
	failures := 0
	for b.ctx.Err() == nil {
		// A server that accepts connections but never answers would hold
		// SUBSCRIBE (and Close) in the handshake; bound it.
		sctx, cancel := context.WithTimeout(b.ctx, b.opts.HealthInterval)
		b.probeWriter(sctx)
		var ps *redis.PubSub
		switch {
		case b.opts.Sharded:
			ps = b.client.SSubscribe(sctx, b.opts.Channel)
		case b.writerOK.Load():
			ps = b.client.Subscribe(sctx, b.opts.Channel, b.writer)
		default:
			ps = b.client.Subscribe(sctx, b.opts.Channel)
		}
		var perr error
		if b.opts.Keyspace != "" {
			perr = ps.PSubscribe(sctx, b.keyspacePattern())
		}
		cancel()
		b.mu.Lock()
		if b.ctx.Err() != nil {
			b.mu.Unlock()
			ps.Close()
			return
		}
		b.ps = ps
		b.mu.Unlock()

		var (
			confirmed bool
			why       error
		)
		if perr != nil {
			why = fmt.Errorf("keyspace PSUBSCRIBE: %w", perr)
		} else {
			confirmed, why = b.receive(ps)
		}
		ps.Close()
		if b.ctx.Err() != nil {
			return
		}
		if redis.IsPermissionError(why) && b.writerOK.Load() {
			// The user's rights changed: subscribe to Channel alone.
			b.writerOK.Store(false)
		}
		b.down(why)
		b.reloadSlots(why)
		if confirmed {
			failures = 0
		}
		failures++
		backoff := min(time.Duration(1<<min(failures, 10))*25*time.Millisecond, b.opts.HealthInterval)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-b.ctx.Done():
			t.Stop()
			return
		}
	}
}

// keyspacePattern is the PSUBSCRIBE pattern for Options.Keyspace: the
// prefix, its glob characters escaped, then "*".
func (b *Bus) keyspacePattern() string {
	var sb strings.Builder
	for _, r := range b.opts.Keyspace {
		switch r {
		case '*', '?', '[', ']', '\\':
			sb.WriteByte('\\')
		}
		sb.WriteRune(r)
	}
	return sb.String() + "*"
}

// receive reads ps until it fails, is found dead or is unsubscribed by
// the server, and says why.
func (b *Bus) receive(ps *redis.PubSub) (confirmed bool, why error) {
	pinged := false
	// Up once the channel, and the keyspace pattern if any, are confirmed.
	gotChannel, gotPattern := false, b.opts.Keyspace == ""
	// The context bounds what the read timeout does not: a reconnection's
	// handshake with a server that never answers. One context serves the
	// receives of half a HealthInterval, each getting at least 1.5×
	// HealthInterval of it: a context.WithTimeout per message (a timer and
	// a child of b.ctx) cost a receiver several microseconds once caches
	// were cold after the wait, on the path of every invalidation (a perf
	// profile of BenchmarkPropagation).
	rc := renewingContext{parent: b.ctx, timeout: 2 * b.opts.HealthInterval, renewEvery: b.opts.HealthInterval / 2}
	defer rc.stop()
	for {
		msg, err := ps.ReceiveTimeout(rc.get(), b.opts.HealthInterval)
		if err != nil {
			if b.ctx.Err() != nil {
				return confirmed, nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if pinged {
					return confirmed, fmt.Errorf("no reply to PING within %v", b.opts.HealthInterval)
				}
				pctx, cancel := context.WithTimeout(b.ctx, b.opts.HealthInterval)
				err := ps.Ping(pctx)
				cancel()
				if err != nil {
					return confirmed, fmt.Errorf("health PING: %w", err)
				}
				pinged = true
				continue
			}
			return confirmed, err
		}
		pinged = false
		switch m := msg.(type) {
		case *redis.Subscription:
			switch {
			case (m.Kind == "subscribe" || m.Kind == "ssubscribe") && m.Channel == b.opts.Channel:
				gotChannel = true
			case m.Kind == "psubscribe" && b.opts.Keyspace != "" && m.Channel == b.keyspacePattern():
				gotPattern = true
			case (m.Kind == "unsubscribe" || m.Kind == "sunsubscribe") && m.Channel == b.opts.Channel,
				m.Kind == "punsubscribe" && b.opts.Keyspace != "" && m.Channel == b.keyspacePattern():
				// The Bus never unsubscribes on its own (Close closes
				// the connection), so this is the server's doing: a
				// cluster node sends sunsubscribe to the subscribers of
				// a shard channel whose slot it no longer owns, and
				// keeps the connection, which goes on answering PINGs.
				// Nothing arrives on it any more: a loss.
				if b.ctx.Err() != nil {
					return confirmed, nil
				}
				return confirmed, serverUnsubscribed{kind: m.Kind, channel: m.Channel}
			}
			if gotChannel && gotPattern && !confirmed {
				confirmed = true
				b.up1()
			}
		case *redis.Message:
			if m.Channel == b.writer && m.Channel != "" {
				continue // see WriterChannel
			}
			if m.Pattern != "" {
				b.keyspaceEvent(m.Channel)
				continue
			}
			b.dispatch(m.Payload)
		}
	}
}

func (b *Bus) up1() {
	b.mu.Lock()
	again := b.confirmed
	b.confirmed = true
	b.mu.Unlock()
	if again {
		b.reconnects.Add(1)
		b.log.Info("invalidate: subscription re-established; dropping near copies made before the gap", "channel", b.opts.Channel)
	}
	// The handler drops what it has before the Bus says it is up, so that
	// nothing cached before the confirmation survives it.
	b.handler.Connected()
	b.mu.Lock()
	if !b.up {
		b.up = true
		close(b.upCh)
	}
	b.mu.Unlock()
}

func (b *Bus) down(why error) {
	b.mu.Lock()
	wasUp := b.up
	if wasUp {
		b.up = false
		b.upCh = make(chan struct{})
	}
	b.ps = nil
	b.mu.Unlock()
	if wasUp {
		b.losses.Add(1)
		b.log.Warn("invalidate: subscription lost; near copies dropped until it is back", "channel", b.opts.Channel, "err", why)
		b.handler.Disconnected()
	}
}

// keyspaceEvent reports the key of a keyspace notification's channel.
func (b *Bus) keyspaceEvent(channel string) {
	key, ok := strings.CutPrefix(channel, b.opts.Keyspace)
	if !ok {
		b.malformed.Add(1)
		return
	}
	b.keyspace.Add(1)
	b.handler.Invalidate([]string{key})
}

func (b *Bus) dispatch(payload string) {
	m, err := Parse([]byte(payload), b.opts.MaxMessageBytes)
	if err != nil {
		b.malformed.Add(1)
		b.log.Warn("invalidate: ignored a malformed message", "channel", b.opts.Channel, "bytes", len(payload), "err", err)
		return
	}
	own := m.Origin == b.id
	if own {
		b.own.Add(1)
		if u, ok := b.handler.(Updater); ok {
			u.Update(&m, true)
		}
		return
	}
	if m.Namespace != "" && b.opts.Namespace != "" && m.Namespace != b.opts.Namespace {
		b.malformed.Add(1)
		b.log.Warn("invalidate: ignored a message for another namespace", "channel", b.opts.Channel, "namespace", m.Namespace)
		return
	}
	b.received.Add(1)
	if b.opts.Observe != nil && !m.Sent.IsZero() {
		b.opts.Observe(max(time.Since(m.Sent), 0))
	}
	if m.All {
		b.handler.InvalidateAll()
		return
	}
	if u, ok := b.handler.(Updater); ok && m.Values != nil {
		u.Update(&m, false)
		return
	}
	b.handler.Invalidate(m.Keys)
}

// renewingContext hands out a context that ends timeout after it was made,
// made anew every renewEvery: each one it hands out has at least
// timeout-renewEvery left.
type renewingContext struct {
	parent     context.Context
	timeout    time.Duration
	renewEvery time.Duration

	ctx     context.Context
	cancel  context.CancelFunc
	renewAt time.Time
}

func (r *renewingContext) get() context.Context {
	if now := time.Now(); r.ctx == nil || !now.Before(r.renewAt) {
		r.stop()
		r.ctx, r.cancel = context.WithTimeout(r.parent, r.timeout)
		r.renewAt = now.Add(r.renewEvery)
	}
	return r.ctx
}

func (r *renewingContext) stop() {
	if r.cancel != nil {
		r.cancel()
	}
}

// slotReloader is a cluster client that can be told its map of slots is
// stale, as *redis.ClusterClient can.
type slotReloader interface {
	ReloadState(ctx context.Context)
}

// reloadSlots has a cluster client reload its map of slots when why says
// that the channel's slot is no longer where the client thinks: the server
// unsubscribed the Bus (a shard channel's slot moved) or refused the
// subscription with MOVED or ASK. The cluster client routes a subscription
// by its map, which it reloads on its own only every
// ClusterStateReloadInterval (a minute by default) or after a MOVED reply
// to some other command: until then each new SSUBSCRIBE would go to the old
// owner and get MOVED. The reload is asynchronous; the subscription after
// the next backoff, or a later one, goes to the new owner.
func (b *Bus) reloadSlots(why error) {
	c, ok := b.client.(slotReloader)
	if !ok || why == nil {
		return
	}
	var su serverUnsubscribed
	_, moved := redis.IsMovedError(why)
	_, ask := redis.IsAskError(why)
	if errors.As(why, &su) || moved || ask {
		c.ReloadState(b.ctx)
	}
}

// serverUnsubscribed is why a subscription ended when the server
// unsubscribed the Bus from its channel or keyspace pattern.
type serverUnsubscribed struct{ kind, channel string }

func (e serverUnsubscribed) Error() string {
	if e.kind == "sunsubscribe" {
		return fmt.Sprintf("server unsubscribed us from shard channel %q (slot moved?)", e.channel)
	}
	return fmt.Sprintf("server unsubscribed us (%s) from %q", e.kind, e.channel)
}
