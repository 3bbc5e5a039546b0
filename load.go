package tier

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/tier-cache/tier/codec"
	"github.com/tier-cache/tier/local"
)

// A flight answers a miss in two steps. lookup reads the near tier again
// (a Set may have stored the key since the caller missed) and Redis: a
// short read, which the caller that started the flight runs itself. If
// neither answers, load goes on, on a goroutine of its own: a lease, a
// wait for another replica's load, the loader. Every near fill is guarded
// by the guard lookup takes before it reads Redis: a change of the key
// after it keeps the fill out.
//
// A refresh skips the near tier, and reloads when Redis's copy is in its
// last Refresh.Ahead too.

// step is where a flight resumes after lookup.
type step struct {
	g    local.FillGuard
	born uint64 // the tag clock when the flight began (see tags.go)
	cl   claim
}

// lookup is a flight's first step. It reports done with the answer when
// the near tier or Redis has one.
func (c *Cache[V]) lookup(ctx context.Context, key string, f *flight[V], refresh bool) (s step, r Result[V], err error, done bool) {
	s = step{g: c.near.StartFill(), born: c.born()}
	if !refresh {
		if e, ok := c.near.Peek(key); ok && e.usable(c.now().UnixNano()) {
			if e.absent() {
				return s, Result[V]{Source: SourceNear}, ErrNotFound, true
			}
			return s, Result[V]{Value: e.value, Source: SourceNear}, nil, true
		}
	}
	if c.far != nil {
		r, s.cl, done, err = c.readFar(ctx, key, s.g, f, refresh)
	}
	return s, r, err, done
}

// resolve runs both steps of a flight.
func (c *Cache[V]) resolve(ctx context.Context, key string, loader Loader[V], f *flight[V], refresh bool) (Result[V], error) {
	s, r, err, done := c.lookup(ctx, key, f, refresh)
	if done {
		return r, err
	}
	return c.resume(ctx, key, loader, f, refresh, s)
}

// resume is a flight's second step: after a miss in both tiers, a lease
// (or a wait for another replica's load), then the loader.
func (c *Cache[V]) resume(ctx context.Context, key string, loader Loader[V], f *flight[V], refresh bool, s step) (Result[V], error) {
	g, born, cl := s.g, s.born, s.cl
	if cl.wait {
		r, next, hit, err := c.awaitLoad(ctx, key, g, f)
		if hit {
			return r, err
		}
		cl = next
	}
	if c.far != nil {
		if cl.take {
			var busy bool
			cl.old, busy = c.takeLease(ctx, key)
			if busy && c.opts.WaitForLoads > 0 {
				// Another replica's lease came between the read and ours.
				if r, next, hit, err := c.awaitLoad(ctx, key, g, f); hit {
					return r, err
				} else if next.take {
					cl.old, _ = c.takeLease(ctx, key)
				} else {
					cl = next
				}
			}
		}
	}
	if !refresh {
		c.stats.misses.Add(1)
	}
	return c.load(ctx, key, loader, g, cl, f, born)
}

// claim says what a load may write over in Redis.
type claim struct {
	wait bool   // another replica's lease is there: wait for its value (WaitForLoads)
	take bool   // the key was absent: take a lease before loading
	old  []byte // the load's lease, or the bytes it read and replaces; nil: write nothing
	keep bool   // leave old in place if the load yields nothing (a value kept for grace)
}

// readFar reads key from Redis for resolve. It reports hit with the answer
// when Redis has a fresh value or "not found" (filling the near tier under
// g); otherwise what the load may write over.
func (c *Cache[V]) readFar(ctx context.Context, key string, g local.FillGuard, f *flight[V], refresh bool) (r Result[V], cl claim, hit bool, err error) {
	if !c.breaker.allow() {
		c.breaker.link.touch()
		return r, claim{}, false, nil
	}
	data, ok, err := c.far.Get(ctx, key)
	if err != nil {
		c.farFailed(ctx, "get", key, err)
		return r, claim{}, false, nil // the load takes no lease and writes nothing
	}
	c.breaker.success()
	if ok && isLease(data) && c.opts.WaitForLoads > 0 {
		return r, claim{wait: true}, false, nil
	}
	return c.farAnswer(ctx, key, data, g, f, refresh)
}

// farAnswer turns bytes read from Redis into readFar's answer.
func (c *Cache[V]) farAnswer(ctx context.Context, key string, data []byte, g local.FillGuard, f *flight[V], refresh bool) (r Result[V], cl claim, hit bool, err error) {
	e, hit, cl, stale := c.fromFar(ctx, key, data, new(V), g, refresh)
	switch {
	case !hit:
		if stale {
			f.stale.Store(&Result[V]{Value: e.value, Source: SourceFar})
		}
		return r, cl, false, nil
	case e.absent():
		return Result[V]{Source: SourceFar}, cl, true, ErrNotFound
	}
	return Result[V]{Value: e.value, Source: SourceFar}, cl, true, nil
}

// fromFar reads data, the bytes of key in Redis (nil when absent),
// decoding a value into dst, a zero V. A fresh value or "not found" is a
// hit: it is filled in the near tier under g. Anything else is to load,
// over the claim returned; stale says that e holds a value past its TTL,
// kept for StaleGrace, to serve if the load fails. A refresh also reloads
// a value in its last Refresh.Ahead of FarTTL. A value one of whose tags
// was invalidated since it was born is reloaded and overwritten, never
// served.
func (c *Cache[V]) fromFar(ctx context.Context, key string, data []byte, dst *V, g local.FillGuard, refresh bool) (e nearEntry[V], hit bool, cl claim, stale bool) {
	switch {
	case data == nil:
		return e, false, claim{take: true}, false
	case isLease(data):
		return e, false, claim{}, false // another replica is loading: load too, write nothing
	}
	e, ok := c.decode(key, data, dst)
	if !ok {
		return e, false, claim{old: data}, false // corrupt: reload and overwrite
	}
	if born, tags, ok := codec.Tags(data); ok {
		t, err := c.tagsOf(ctx, born, tags)
		if err != nil || t != nil && t.stale() {
			return nearEntry[V]{}, false, claim{old: data}, false
		}
		if t != nil {
			e = e.with(func(m *entryMeta) { m.tags = *t })
		}
	}
	left := time.Duration(math.MaxInt64)
	if at, ok := codec.Expiry(data); ok {
		left = at.Sub(c.now())
	}
	switch {
	case left <= 0:
		// A "not found" earns no grace.
		return e, false, claim{old: data, keep: true}, !e.absent()
	case refresh && left < time.Duration(c.opts.Refresh.Ahead*float64(c.opts.FarTTL)):
		return e, false, claim{old: data, keep: true}, false
	}
	c.stats.farHits.Add(1)
	ttl := c.opts.Near.TTL
	if e.absent() {
		ttl = c.opts.NotFoundTTL
	}
	c.fill(g, key, e, min(c.jitter(ttl), left), len(data))
	return e, true, claim{}, false
}

// load calls the loader and stores what it returns: in Redis over cl.old
// (so never over a Set or Delete made meanwhile, which replaced or removed
// it), and in the near tier under g.
func (c *Cache[V]) load(ctx context.Context, key string, loader Loader[V], g local.FillGuard, cl claim, f *flight[V], born uint64) (Result[V], error) {
	ctx, col := collecting(ctx)
	v, err := c.callLoader(ctx, key, loader)
	// Redis is written with a context of its own: the load may have used
	// up the flight's, and a lease must be given back all the same.
	wctx := context.WithoutCancel(ctx)
	switch {
	case errors.Is(err, ErrNotFound):
		ttl := c.jitter(c.opts.NotFoundTTL)
		tomb := codec.TombstoneExpiring(time.Unix(0, deadline(c.now().UnixNano(), ttl)))
		c.writeOver(wctx, key, cl, tomb, ttl)
		c.fill(g, key, absentEntry[V](), ttl, len(tomb))
		return Result[V]{Source: SourceLoad}, ErrNotFound
	case err != nil:
		c.stats.loadErrors.Add(1)
		c.writeOver(wctx, key, cl, nil, 0) // gives the lease back
		if s := f.stale.Load(); s != nil {
			return c.serveStale(*s), nil
		}
		return Result[V]{Source: SourceLoad}, fmt.Errorf("tier: load %q: %w", key, err)
	}
	tags := col.of(key)
	t, err := c.tagsOf(wctx, born, tags)
	if err != nil || t != nil && t.stale() {
		// A tag of the value was invalidated after the load began: the
		// callers get it, neither tier keeps it.
		c.writeOver(wctx, key, cl, nil, 0)
		return Result[V]{Value: v, Source: SourceLoad}, nil
	}
	farTTL := c.jitter(c.opts.FarTTL)
	data, stored, err := c.encode(key, v, farTTL, born, tags)
	if err != nil {
		c.stats.notCached.Add(1)
		c.log.Debug("tier: loaded value not cached", "key", key, "err", err)
		c.writeOver(wctx, key, cl, nil, 0)
		return Result[V]{Value: v, Source: SourceLoad}, nil
	}
	c.writeOver(wctx, key, cl, data, farTTL)
	c.fill(g, key, valueEntry(stored, t), c.nearTTL(farTTL), len(data))
	return Result[V]{Value: stored, Source: SourceLoad}, nil
}

// nearTTL is the TTL of a near copy of a value written to Redis for
// farTTL: the jittered NearTTL, never longer than the Redis copy.
func (c *Cache[V]) nearTTL(farTTL time.Duration) time.Duration {
	t := c.jitter(c.opts.Near.TTL)
	if c.far != nil {
		t = min(t, farTTL)
	}
	return t
}

// fill stores e in the near tier for ttl under g: only if no change of key
// came after g was taken (see local.Cache.Fill).
func (c *Cache[V]) fill(g local.FillGuard, key string, e nearEntry[V], ttl time.Duration, weight int) {
	if ttl = c.nearBound(ttl); ttl > 0 {
		e, ttl = c.keep(e, ttl)
		c.near.Fill(g, key, e, ttl, int64(weight))
	}
}

// nearBound bounds ttl while invalidations may be lost (see
// Options.Invalidation.DegradedNearTTL).
func (c *Cache[V]) nearBound(ttl time.Duration) time.Duration {
	if !c.degraded() {
		return ttl
	}
	return min(ttl, max(c.opts.Invalidation.DegradedNearTTL, 0))
}

// keep returns e to store for ttl, with when it stops being fresh (with
// StaleGrace) and when a hit refreshes it (with Refresh.Ahead), and how
// long the near tier keeps it.
func (c *Cache[V]) keep(e nearEntry[V], ttl time.Duration) (nearEntry[V], time.Duration) {
	ref := c.opts.Refresh
	if ref.StaleGrace == 0 && ref.Ahead == 0 || e.absent() {
		return e, ttl
	}
	now := c.now().UnixNano()
	e = e.with(func(m *entryMeta) {
		if ref.Ahead > 0 {
			m.refreshAt = deadline(now, ttl-time.Duration(ref.Ahead*float64(ttl)))
		}
		if ref.StaleGrace > 0 {
			m.staleAt = deadline(now, ttl)
		}
	})
	if ref.StaleGrace == 0 {
		return e, ttl
	}
	return e, addSat(ttl, ref.StaleGrace)
}

// farKeep is how long Redis keeps data, fresh for ttl (which its header
// records): with StaleGrace, that much longer. A cached "not found" earns
// no grace: it lives NotFoundTTL, so that a key the source has since made
// is loaded.
func (c *Cache[V]) farKeep(ttl time.Duration, data []byte) time.Duration {
	if codec.IsTombstone(data) {
		return ttl
	}
	return addSat(ttl, c.opts.Refresh.StaleGrace)
}

// decode turns bytes read from Redis into a near entry, decoding the
// value into dst, a zero V (GetMany hands out a batch's from one slice).
// Bytes that do not decode are counted, and ok is false: the caller
// reloads and overwrites them.
func (c *Cache[V]) decode(key string, data []byte, dst *V) (e nearEntry[V], ok bool) {
	if codec.IsTombstone(data) {
		return absentEntry[V](), true
	}
	if err := c.format.Decode(data, dst); err != nil {
		c.stats.corrupt.Add(1)
		c.log.Debug("tier: corrupt value in Redis; reloading", "key", key, "err", err)
		return nearEntry[V]{}, false
	}
	return nearEntry[V]{value: *dst}, true
}

// encode returns the bytes stored in Redis for v, fresh for ttl, with its
// tags and born number, and the value to keep near and return: with
// Redis, the value every replica decodes from those bytes, so that
// replicas agree. Without Redis and Near.MaxBytes, nothing is encoded.
func (c *Cache[V]) encode(key string, v V, ttl time.Duration, born uint64, tags []string) ([]byte, V, error) {
	if c.format == nil {
		return nil, v, nil
	}
	data, err := c.format.EncodeTagged(v, time.Unix(0, deadline(c.now().UnixNano(), ttl)), born, tags)
	if err != nil {
		return nil, v, fmt.Errorf("tier: encode %q: %w", key, err)
	}
	if len(data) > c.opts.Values.MaxBytes {
		return nil, v, fmt.Errorf("%w: %q encodes to %d bytes, over Values.MaxBytes (%d)", ErrValueTooLarge, key, len(data), c.opts.Values.MaxBytes)
	}
	if c.far == nil {
		return data, v, nil
	}
	var stored V
	if err := c.format.Decode(data, &stored); err != nil {
		return nil, v, fmt.Errorf("tier: %q does not decode from its own encoding: %w", key, err)
	}
	return data, stored, nil
}
