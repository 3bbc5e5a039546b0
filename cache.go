package tier

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tier-cache/tier/codec"
	"github.com/tier-cache/tier/invalidate"
	"github.com/tier-cache/tier/local"
	"github.com/tier-cache/tier/remote"
)

// Errors that callers branch on, matched with [errors.Is].
var (
	// ErrNotFound is what a loader returns (or wraps) to say that the key
	// has no value. The answer is cached for Options.NotFoundTTL in both
	// tiers, and Get returns ErrNotFound until it expires.
	ErrNotFound = errors.New("tier: not found")

	// ErrClosed is returned by every call made after Close, and by calls
	// whose load Close cancelled.
	ErrClosed = errors.New("tier: cache closed")

	// ErrLoaderPanic is matched by the error that callers get when the
	// loader panicked. The key is not left stuck: the next Get loads again.
	ErrLoaderPanic = errors.New("tier: loader panicked")

	// ErrValueTooLarge is matched by the error of Set for a value whose
	// encoding is longer than Options.Values.MaxBytes.
	ErrValueTooLarge = errors.New("tier: value too large")

	// ErrUnavailable is matched by the error of a Set, Delete, Invalidate
	// or InvalidateAll that could not reach Redis; the error also wraps the
	// cause (such as "connection refused"). While Redis keeps failing, such
	// calls fail at once, without waiting on it, until a background probe
	// finds it answering again (see [Cache.Health]).
	ErrUnavailable = errors.New("tier: Redis unavailable")
)

// nearEntry is what the near tier holds: a decoded value, or the
// remembered answer "not found". An entry with neither tags, nor a
// deadline of Refresh's, nor "not found" has no meta: a plain entry is its
// value and one pointer, so that the near tier's entries stay small.
type nearEntry[V any] struct {
	value V
	meta  *entryMeta // nil for a plain value; never changed once set (see with)
}

// entryMeta is what an entry holds besides its value, when anything.
type entryMeta struct {
	absent bool // "not found"
	// staleAt, with Refresh.StaleGrace, is when the entry stops being
	// fresh (Unix nanoseconds by Cache.now); it is kept StaleGrace longer,
	// to serve if its reload fails. 0 without grace.
	staleAt int64
	// refreshAt, with Refresh.Ahead, is when a hit starts a background
	// refresh. 0 without.
	refreshAt int64
	// tags is what the entry knows of its tags, no cells for none (see
	// tags.go); held here, not behind a pointer of its own, so that a
	// tagged hit follows one pointer more than an untagged one.
	tags tagged
}

// absentMeta is the meta of every cached "not found" without tags.
var absentMeta = &entryMeta{absent: true}

// absentEntry returns the entry of a cached "not found".
func absentEntry[V any]() nearEntry[V] {
	return nearEntry[V]{meta: absentMeta}
}

// valueEntry returns the entry of v with tags t (nil for none).
func valueEntry[V any](v V, t *tagged) nearEntry[V] {
	e := nearEntry[V]{value: v}
	if t != nil {
		e.meta = &entryMeta{tags: *t}
	}
	return e
}

// with returns e with its meta changed by set, on a copy: a meta may be
// shared with entries already in the near tier.
func (e nearEntry[V]) with(set func(m *entryMeta)) nearEntry[V] {
	var m entryMeta
	if e.meta != nil {
		m = *e.meta
	}
	set(&m)
	e.meta = &m
	return e
}

// absent reports whether e is a cached "not found".
func (e *nearEntry[V]) absent() bool { return e.meta != nil && e.meta.absent }

// plain reports whether e is a value to serve as it is, whatever the time:
// one without deadlines of Refresh's, none of whose tags was invalidated
// since it was born.
func (e *nearEntry[V]) plain() bool {
	m := e.meta
	return m == nil || !m.absent && m.staleAt|m.refreshAt == 0 && !m.tags.stale()
}

// usable reports whether e may be served fresh at now (Unix nanoseconds
// by Cache.now): not past its TTL, and none of its tags invalidated since
// it was born.
func (e *nearEntry[V]) usable(now int64) bool {
	m := e.meta
	return m == nil || (m.staleAt == 0 || now < m.staleAt) && !m.tags.stale()
}

// Cache is a read-through cache of values of type V in two tiers: a near
// tier in this process's memory and a far tier in Redis shared by every
// replica. It is safe for concurrent use. Create one with [New] and Close
// it when done.
type Cache[V any] struct {
	opts    Options
	near    *local.Cache[string, nearEntry[V]]
	far     *remote.Store   // nil: near-only
	bus     *invalidate.Bus // nil: no cross-replica invalidation
	format  *codec.Format   // nil: values are never encoded
	log     *slog.Logger
	breaker *breaker // nil: near-only

	// sub is the state of the invalidation subscription; nil without one.
	sub *link

	flights sync.Map // key → *flight[V]; see flight.go

	tags     tagRegistry   // the markers of the tags near entries carry
	tagClock atomic.Uint64 // the tag clock this replica knows (see tags.go)
	tagsUsed atomic.Bool   // a tag was ever seen here: the clock is worth reading

	closeMu   sync.RWMutex // held to start a flight or probe, taken by Close
	closed    atomic.Bool
	wg        sync.WaitGroup  // flights and the breaker's probe
	closing   context.Context // cancelled by Close: ends running loads
	cancel    context.CancelFunc
	closeOnce sync.Once

	stats counters

	// onMessage, when set (by tests), is called after each message or
	// state change of the subscription has been applied.
	onMessage atomic.Pointer[func(event string)]
}

// New returns a cache configured by opts, or an error matching
// [ErrInvalidOptions] that names the offending field.
func New[V any](opts Options) (*Cache[V], error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Cache[V]{opts: o, log: o.Logger}
	if o.Redis != nil || o.Near.MaxBytes > 0 {
		c.format, err = codec.New(codec.Options{Codec: o.Values.Codec, CompressAbove: o.Values.CompressAbove})
		if err != nil {
			return nil, fmt.Errorf("%w: Values.Codec: %w", ErrInvalidOptions, err)
		}
		// A type the codec cannot encode (a func, a chan) would fail every
		// Set; say so now.
		var zero V
		if _, err := c.format.Encode(zero); err != nil {
			return nil, fmt.Errorf("%w: values of type %T cannot be stored in Redis: %w", ErrInvalidOptions, zero, err)
		}
	}
	keyspace, err := keyspacePrefix(o)
	if err != nil {
		return nil, err
	}
	c.near, err = local.New(local.Options[string, nearEntry[V]]{
		Capacity:  o.Near.Capacity,
		MaxWeight: o.Near.MaxBytes,
		Admission: o.Near.Admission,
		TTL:       o.Near.TTL,
		Clock:     o.Clock,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	c.closing, c.cancel = context.WithCancel(context.Background())
	c.tags.max = max(o.Near.Capacity, 1024)
	if o.Redis == nil {
		c.tags.local = true
		return c, nil
	}
	inv := o.Invalidation
	// The store and the breaker first: the subscription's handler may run
	// as soon as the bus starts, and uses them.
	ropts := remote.Options{Namespace: o.Namespace, Timeout: o.FarTimeout}
	if !inv.Disabled {
		ropts.Channel, ropts.Sharded = o.Namespace+":invalidate", inv.Sharded
		ropts.Announce = func(keys []string) ([][]byte, error) { return c.bus.Frames(keys...) }
	}
	c.far, err = remote.New(o.Redis, ropts)
	if err != nil {
		c.near.Close()
		return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	far := newLink("Redis", true, c.log, c.now)
	far.onChange = func(up bool) { c.event(map[bool]string{false: "redis down", true: "redis up"}[up]) }
	// The probe's PING may take up to HealthInterval, not FarTimeout: no
	// caller waits for it, and on a loaded machine a new connection's
	// handshake and PING can outlast FarTimeout while Redis answers.
	probePing := func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, inv.HealthInterval)
		defer cancel()
		return o.Redis.Ping(ctx).Err()
	}
	c.breaker = newBreaker(probePing, c.far.Diagnose, far, inv.HealthInterval, c.startProbe)
	if !inv.Disabled {
		c.sub = newLink("the invalidation subscription", false, c.log, c.now)
		c.bus, err = invalidate.New(o.Redis, busHandler[V]{c}, invalidate.Options{
			Channel:        ropts.Channel,
			Namespace:      o.Namespace,
			HealthInterval: inv.HealthInterval,
			Timeout:        o.FarTimeout,
			Logger:         o.Logger,
			Sharded:        inv.Sharded,
			Observe:        inv.OnPropagation,
			Keyspace:       keyspace,
		})
		if err != nil {
			c.near.Close()
			return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
		}
	}
	if c.bus != nil {
		// Give the subscription a moment, so that a fresh cache keeps
		// values near at once; if Redis is slow or down, it starts
		// degraded (see Health) and recovers by itself.
		ctx, cancel := context.WithTimeout(context.Background(), o.FarTimeout)
		err := c.bus.WaitConnected(ctx)
		cancel()
		if err != nil {
			// Slow is normal on a busy machine; refused is worth a warning.
			level := slog.LevelInfo
			if c.bus.Err() != nil {
				level = slog.LevelWarn
			}
			c.log.Log(context.Background(), level, "tier: the invalidation subscription is not confirmed yet; values are kept near at most Invalidation.DegradedNearTTL until it is",
				"degraded_near_ttl", max(inv.DegradedNearTTL, 0), "err", c.bus.Err())
		}
	}
	return c, nil
}

// startProbe runs probe on a goroutine that Close waits for, with a
// context that Close cancels; it reports false after Close.
func (c *Cache[V]) startProbe(probe func(ctx context.Context)) bool {
	c.closeMu.RLock()
	defer c.closeMu.RUnlock()
	if c.closed.Load() {
		return false
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		probe(c.closing)
	}()
	return true
}

// WaitReady waits until the invalidation subscription is confirmed, which
// New waits for only up to FarTimeout, and which a cache loses and
// recovers by itself when Redis does. Until then values are kept near for
// at most Options.Invalidation.DegradedNearTTL. It returns nil at once for
// a cache without invalidation, the context's error if it ends first, and
// ErrClosed after Close. Note that a cache serves while it waits: it is
// degraded, not down (see [Cache.Health]).
func (c *Cache[V]) WaitReady(ctx context.Context) error {
	if c.closed.Load() {
		return ErrClosed
	}
	if c.bus == nil {
		return nil
	}
	if err := c.bus.WaitConnected(ctx); err != nil {
		if errors.Is(err, invalidate.ErrClosed) {
			return ErrClosed
		}
		return fmt.Errorf("tier: wait for the invalidation subscription: %w", err)
	}
	return nil
}

// Sync waits until this replica has applied every change that any replica
// announced before the call: once it returns, a Get here does not return
// a value that such a Set, Delete or Invalidate replaced. It costs one
// pub/sub round trip, and suits tests and read-after-write across
// replicas. It returns nil at once without invalidation, and waits for
// ctx if the subscription is down.
func (c *Cache[V]) Sync(ctx context.Context) error {
	if c.closed.Load() {
		return ErrClosed
	}
	if c.bus == nil {
		return nil
	}
	if err := c.bus.Sync(ctx); err != nil {
		if errors.Is(err, invalidate.ErrClosed) {
			return ErrClosed
		}
		return fmt.Errorf("tier: sync: %w", err)
	}
	return nil
}

// Close cancels running loads, waits for them to end, and stops the
// cache's goroutines. Calls made after Close return ErrClosed. Close does
// not close the Redis client, which belongs to the caller. It is
// idempotent.
func (c *Cache[V]) Close() error {
	c.closeOnce.Do(func() {
		c.closeMu.Lock()
		c.closed.Store(true)
		c.closeMu.Unlock()
		if c.bus != nil {
			c.bus.Close()
		}
		c.cancel()
		c.wg.Wait()
		c.near.Close()
	})
	return nil
}

// now reads Options.Clock, or the system clock.
func (c *Cache[V]) now() time.Time {
	if c.opts.Clock != nil {
		return c.opts.Clock.Now()
	}
	return time.Now()
}

// jitter takes a random fraction, up to Options.Jitter, off ttl.
func (c *Cache[V]) jitter(ttl time.Duration) time.Duration {
	if c.opts.Jitter == 0 {
		return ttl
	}
	return ttl - time.Duration(rand.Float64()*c.opts.Jitter*float64(ttl))
}

// degraded reports whether invalidations may be lost now: the
// subscription is down, or Redis is unreachable.
func (c *Cache[V]) degraded() bool {
	return (c.sub != nil && !c.sub.isUp()) || (c.breaker != nil && !c.breaker.allow())
}
