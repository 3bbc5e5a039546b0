package invalidate

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// run subscribes, receives until the subscription dies, and subscribes
// again, with a backoff of at most HealthInterval, until Close.
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
		// the subscription's handshake (and Close); bound it.
		sctx, cancel := context.WithTimeout(b.ctx, b.opts.HealthInterval)
		var ps *redis.PubSub
		if b.opts.Sharded {
			ps = b.client.SSubscribe(sctx, b.opts.Channel)
		} else {
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
	var bound readBound
	defer bound.stop()
	for {
		msg, err := ps.ReceiveTimeout(bound.next(b.ctx, b.opts.HealthInterval, time.Now()), b.opts.HealthInterval)
		if err != nil {
			if b.ctx.Err() != nil {
				return confirmed, nil
			}
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				return confirmed, err
			}
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
				// The Bus never unsubscribes on its own (Close closes the
				// connection), so this is the server's doing, such as a
				// cluster node whose shard channel's slot moved away. It
				// keeps the connection, which goes on answering PINGs, but
				// nothing arrives on it any more: a loss.
				if b.ctx.Err() != nil {
					return confirmed, nil
				}
				return confirmed, serverUnsubscribed{kind: m.Kind, channel: m.Channel}
			}
			if gotChannel && gotPattern && !confirmed {
				confirmed = true
				b.confirm()
			}
		case *redis.Message:
			if m.Pattern != "" {
				b.keyspaceEvent(m.Channel)
				continue
			}
			b.dispatch(m.Payload)
		}
	}
}

// confirm reports a confirmed subscription to the handler, then marks the
// Bus up, so that WaitConnected returns only after the handler has dropped
// what it cached before.
func (b *Bus) confirm() {
	b.mu.Lock()
	again := b.confirmed
	b.confirmed = true
	b.mu.Unlock()
	if again {
		b.reconnects.Add(1)
	}
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
	if why != nil {
		b.lastErr = why
	}
	if wasUp {
		b.up = false
		b.upCh = make(chan struct{})
	}
	b.ps = nil
	b.mu.Unlock()
	if wasUp {
		b.losses.Add(1)
		b.log.Debug("invalidate: subscription lost", "channel", b.opts.Channel, "err", why)
		b.handler.Disconnected(why)
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
	if ownFrame(payload, b.id) {
		// A writer hears each of its own writes: it skips them unparsed.
		b.own.Add(1)
		return
	}
	m, err := Parse([]byte(payload), b.opts.MaxMessageBytes)
	if err == nil && m.Namespace != "" && b.opts.Namespace != "" && m.Namespace != b.opts.Namespace {
		err = fmt.Errorf("%w: a frame of namespace %q", ErrMalformed, m.Namespace)
	}
	if err != nil {
		b.malformed.Add(1)
		b.logMalformed(len(payload), err)
		return
	}
	if m.Sync {
		if m.Origin == b.id {
			b.syncMu.Lock()
			if back := b.syncs[m.Keys[0]]; back != nil {
				close(back)
				delete(b.syncs, m.Keys[0])
			}
			b.syncMu.Unlock()
		}
		return // another Bus's: drops nothing
	}
	b.received.Add(1)
	switch {
	case m.All:
		b.handler.InvalidateAll()
	case m.Tags != nil:
		b.handler.InvalidateTags(m.Tags, m.Clock)
	default:
		b.handler.Invalidate(m.Keys)
	}
	if b.opts.Observe != nil && !m.Sent.IsZero() {
		b.opts.Observe(max(time.Since(m.Sent), 0))
	}
}

// logMalformed logs a malformed message, at most once a minute: one
// publisher of bad messages must not flood the log; Stats counts them all.
func (b *Bus) logMalformed(size int, err error) {
	now := time.Now().UnixNano()
	last := b.lastMalformedLog.Load()
	if last != 0 && now-last < int64(time.Minute) || !b.lastMalformedLog.CompareAndSwap(last, now) {
		return
	}
	b.log.Warn("invalidate: ignored a malformed message (Stats.Malformed counts them)", "channel", b.opts.Channel, "bytes", size, "err", err)
}

// reloadSlots has a cluster client reload its map of slots when why says
// that the channel's slot is no longer where the client thinks: the server
// unsubscribed the Bus, or refused the subscription with MOVED or ASK. The
// client otherwise reloads it only every minute or so, and until then
// every new subscription would go to the old owner.
func (b *Bus) reloadSlots(why error) {
	c, ok := b.client.(interface{ ReloadState(context.Context) })
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
	return fmt.Sprintf("the server unsubscribed us (%s) from %q", e.kind, e.channel)
}

// readBound bounds the subscription's reads, beyond their read timeout of
// a HealthInterval: a read may also reconnect, and the handshake with a
// server that never answers has no other bound. One context of 2
// HealthIntervals serves the reads that start within half of one of its
// making, so that each has 1.5 to 2, and a busy channel does not make a
// context and a timer for every message.
type readBound struct {
	ctx    context.Context
	cancel context.CancelFunc
	renew  time.Time // when the next read needs a new context
}

// next returns the context of a read that starts at now, under parent.
func (r *readBound) next(parent context.Context, hi time.Duration, now time.Time) context.Context {
	if r.ctx == nil || !now.Before(r.renew) {
		r.stop()
		r.ctx, r.cancel = context.WithDeadline(parent, now.Add(2*hi))
		r.renew = now.Add(hi / 2)
	}
	return r.ctx
}

// stop releases the last context.
func (r *readBound) stop() {
	if r.cancel != nil {
		r.cancel()
	}
}
