package tier

import (
	"context"
	"fmt"
)

// Set stores value under key in both tiers and tells the other replicas to
// drop their near copies, in one Redis script with the write.
//
// When Set returns nil, this replica's next Get of key returns value (or a
// later one), whatever messages, DropNears or concurrent Gets ran
// meanwhile; every other replica stops serving the older value when the
// message reaches it. When it returns an error, this replica's near tier
// holds no copy of key (its next Get reads Redis or loads). The error
// matches [ErrValueTooLarge] for a value over Options.Values.MaxBytes, and
// [ErrUnavailable] when Redis could not be reached.
//
// Tags, when given, tag the value for [Cache.InvalidateTag].
//
// With Redis, Set keeps near the value every replica decodes from Redis,
// not value itself: mutating value afterwards changes nothing cached. A
// near-only cache keeps value itself.
func (c *Cache[V]) Set(ctx context.Context, key string, value V, tags ...string) error {
	if c.closed.Load() {
		return ErrClosed
	}
	// The tags' markers first: reading them raises the clock this replica
	// knows to them at least, so that the value is not born stale.
	t, err := c.tagsOf(ctx, 0, tags)
	if err != nil {
		c.DropNear(key)
		return c.writeFailed(ctx, "set", key, err)
	}
	born := c.born()
	if t != nil {
		t.born = born
	}
	farTTL := c.jitter(c.opts.FarTTL)
	var data []byte
	var stored V
	data, stored, err = c.encode(key, value, farTTL, born, tags)
	if err != nil {
		c.DropNear(key)
		return err
	}
	e := valueEntry(stored, t)
	ttl := c.nearTTL(farTTL)
	if c.far == nil {
		if n := c.opts.Near.MaxBytes; n > 0 && int64(len(data)) > n {
			c.DropNear(key)
			return fmt.Errorf("%w: %q encodes to %d bytes, over Near.MaxBytes (%d), and there is no Redis to hold it", ErrValueTooLarge, key, len(data), n)
		}
		// Nothing can change key between a write and the store: store and
		// stamp in one step, so that fills guarded before it are refused.
		e, ttl = c.keep(e, ttl)
		c.near.Set(key, e, ttl, int64(len(data)))
		c.detach(key)
		return nil
	}
	if !c.breaker.allow() {
		c.DropNear(key)
		return c.unavailable("set", key)
	}
	// The guard is taken before the write: if anything changes key between
	// the two (a message, a DropNear, a read of Redis that began before
	// the write and fills after it), the store below is refused and the
	// key dropped, so that the next Get reads Redis, which holds value or
	// newer. A store that succeeds stamps key, so that a fill guarded
	// before it is refused afterwards.
	g := c.near.StartFill()
	err = c.far.Set(ctx, key, data, c.farKeep(farTTL, data))
	// From now on a Get must not join a read that began before the write.
	c.detach(key)
	if err != nil {
		c.near.Delete(key)
		return c.writeFailed(ctx, "set", key, err)
	}
	c.breaker.success()
	if ttl = c.nearBound(ttl); ttl > 0 {
		e, ttl = c.keep(e, ttl)
	}
	if ttl <= 0 || !c.near.SetIfUnchanged(g, key, e, ttl, int64(len(data))) {
		c.near.Delete(key)
	}
	return nil
}

// Delete removes keys from both tiers and tells the other replicas to drop
// their near copies, in one Redis script with the delete (on a cluster,
// one per key). Whether or not it succeeds, this replica's near tier holds
// no copy of keys afterwards, and reads of them under way keep nothing
// near. The error matches [ErrUnavailable] when Redis could not be
// reached.
func (c *Cache[V]) Delete(ctx context.Context, keys ...string) error {
	if c.closed.Load() {
		return ErrClosed
	}
	if len(keys) == 0 {
		return nil
	}
	if c.far == nil {
		c.DropNear(keys...)
		return nil
	}
	if !c.breaker.allow() {
		c.DropNear(keys...)
		return c.unavailable("delete", keys[0])
	}
	err := c.far.Delete(ctx, keys...)
	// After the write: a read that began during it may have read the old
	// value; its fill is refused and no later Get joins it.
	c.DropNear(keys...)
	if err != nil {
		return c.writeFailed(ctx, "delete", keys[0], err)
	}
	c.breaker.success()
	return nil
}

// Invalidate drops the near copies of keys in every replica, this one
// included, and leaves Redis as it is: use it after changing Redis by
// other means. Without invalidation (no Redis, or Invalidation.Disabled)
// it drops this replica's copies only.
func (c *Cache[V]) Invalidate(ctx context.Context, keys ...string) error {
	if c.closed.Load() {
		return ErrClosed
	}
	if len(keys) == 0 {
		return nil
	}
	c.DropNear(keys...)
	if c.bus == nil {
		return nil
	}
	if !c.breaker.allow() {
		return c.unavailable("invalidate", keys[0])
	}
	if err := c.bus.Publish(ctx, keys...); err != nil {
		return c.writeFailed(ctx, "invalidate", keys[0], err)
	}
	c.breaker.success()
	return nil
}

// InvalidateAll drops every near copy in every replica, this one included.
func (c *Cache[V]) InvalidateAll(ctx context.Context) error {
	if c.closed.Load() {
		return ErrClosed
	}
	c.near.Purge()
	c.flights.Clear()
	if c.bus == nil {
		return nil
	}
	if !c.breaker.allow() {
		return c.unavailable("invalidate all", "*")
	}
	if err := c.bus.PublishAll(ctx); err != nil {
		return c.writeFailed(ctx, "invalidate all", "*", err)
	}
	c.breaker.success()
	return nil
}

// DropNear removes keys from this process's near tier only; the next Get
// of each reads Redis. Reads of these keys under way keep nothing near,
// and Gets from now on do not wait for them.
func (c *Cache[V]) DropNear(keys ...string) {
	for _, k := range keys {
		c.near.Delete(k)
	}
	c.detach(keys...)
}

// farFailed records err, the failure of a Redis operation op on key made
// under ctx: counted, and, unless the caller's context ended, fed to the
// breaker. Logged at debug level only: the breaker logs outages.
func (c *Cache[V]) farFailed(ctx context.Context, op, key string, err error) {
	c.stats.farErrors.Add(1)
	if ctx.Err() == nil {
		c.breaker.failure(err)
	}
	c.log.Debug("tier: Redis operation failed", "op", op, "key", key, "err", err)
}

// writeFailed is farFailed for a write, and returns its error.
func (c *Cache[V]) writeFailed(ctx context.Context, op, key string, err error) error {
	c.farFailed(ctx, op, key, err)
	if ctx.Err() == nil && unreachable(err) {
		return fmt.Errorf("tier: %s %q: %w: %w", op, key, ErrUnavailable, err)
	}
	return fmt.Errorf("tier: %s %q: %w", op, key, err)
}

// unavailable is the error of a write refused while the breaker is open.
func (c *Cache[V]) unavailable(op, key string) error {
	c.breaker.link.touch()
	return fmt.Errorf("tier: %s %q: %w: %w", op, key, ErrUnavailable, c.breaker.cause())
}
