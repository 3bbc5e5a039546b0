package tier

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// A flight is the one far read and load of a key under way in this
// process. Every Get that misses the key while it flies waits for it,
// instead of reading Redis or loading again; the flight runs on a
// goroutine of its own, detached from their contexts, so that one caller
// giving up fails no other (the caller that starts a flight reads Redis
// first, itself: see lead). A change of the key (a Set, a Delete, an
// invalidation) detaches the flight: later Gets start a flight of their
// own rather than wait for a read that may predate the change.
//
// x/sync/singleflight does the same with Forget for detaching; a flight
// here also shares a stale value found on the way (see wait), which a
// singleflight result cannot do before the function returns.
type flight[V any] struct {
	done chan struct{} // closed once res and err are set
	res  Result[V]
	err  error
	// stale is a value past its TTL, kept for StaleGrace, that the flight
	// found in Redis: to serve if the load fails or is slow.
	stale atomic.Pointer[Result[V]]
}

// join returns the flight of key, making one if none is under way; it
// reports whether it made it: the caller then leads it (see lead).
func (c *Cache[V]) join(key string) (*flight[V], bool) {
	if f, ok := c.flights.Load(key); ok {
		return f.(*flight[V]), false
	}
	f := &flight[V]{done: make(chan struct{})}
	if old, loaded := c.flights.LoadOrStore(key, f); loaded {
		return old.(*flight[V]), false
	}
	return f, true
}

// lead runs the flight f of key that its caller made. The caller reads the
// near tier and Redis itself, under its own ctx (each read is also bounded
// by FarTimeout): most misses end there, a far hit, with no goroutine
// handed the work. Anything longer (a lease, a wait, a load) goes on a
// goroutine of its own, and so does everything when the caller holds a
// stale value to serve after SoftTimeout, which must bound its whole wait.
// If the caller's ctx ends during its read, the goroutine reads again for
// the flight's other callers: a read cut short says nothing of Redis.
func (c *Cache[V]) lead(ctx context.Context, key string, f *flight[V], loader Loader[V], refresh, inline bool) {
	c.closeMu.RLock()
	if c.closed.Load() {
		c.closeMu.RUnlock()
		c.finish(key, f, Result[V]{}, ErrClosed)
		return
	}
	c.wg.Add(1) // done by run, or here when the read answers
	c.closeMu.RUnlock()
	var s *step
	if inline {
		var done bool
		s, done = c.leadRead(ctx, key, f, refresh)
		if done {
			c.wg.Done()
			return
		}
	}
	go c.run(ctx, key, f, loader, refresh, s)
}

// leadRead is lead's own read: it reports done once it has finished f
// with an answer, else the step to resume from (nil: start again). A
// panic (from a Clock or a client hook) finishes f with an error before it
// goes on, so that no flight is left that no one will finish.
func (c *Cache[V]) leadRead(ctx context.Context, key string, f *flight[V], refresh bool) (s *step, done bool) {
	defer func() {
		if p := recover(); p != nil {
			c.finish(key, f, Result[V]{}, fmt.Errorf("tier: get %q: panic: %v", key, p))
			c.wg.Done()
			panic(p)
		}
	}()
	lookup, r, err, done := c.lookup(ctx, key, f, refresh)
	switch {
	case done:
		c.finish(key, f, r, err)
		return nil, true
	case ctx.Err() != nil:
		return nil, false
	}
	return &lookup, false
}

// run completes a flight, from s if lookup ran already. It keeps the
// values of the context of the caller that started it, not its
// cancellation, and ends at LoadTimeout or Close.
func (c *Cache[V]) run(parent context.Context, key string, f *flight[V], loader Loader[V], refresh bool, s *step) {
	defer c.wg.Done()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), c.opts.LoadTimeout)
	stop := context.AfterFunc(c.closing, cancel)
	var (
		r   Result[V]
		err error
	)
	if s != nil {
		r, err = c.resume(ctx, key, loader, f, refresh, *s)
	} else {
		r, err = c.resolve(ctx, key, loader, f, refresh)
	}
	stop()
	cancel()
	if err != nil && !errors.Is(err, ErrNotFound) {
		if refresh {
			c.stats.refreshErrors.Add(1)
			c.log.Debug("tier: refresh failed", "key", key, "err", err)
		}
		if c.closing.Err() != nil {
			err = fmt.Errorf("%w (load of %q cancelled: %w)", ErrClosed, key, err)
		}
	}
	c.finish(key, f, r, err)
}

// finish publishes the result of f, the flight of key, to its waiters.
func (c *Cache[V]) finish(key string, f *flight[V], r Result[V], err error) {
	f.res, f.err = r, err
	c.flights.CompareAndDelete(key, f) // unless detached
	close(f.done)
}

// detach takes the flights of keys, if any, out of reach of later
// callers, who start flights of their own. Current waiters still get the
// flight's result; its near fill is refused, since every change of a key
// also stamps it in the near tier (see local.Cache.Fill).
func (c *Cache[V]) detach(keys ...string) {
	for _, k := range keys {
		c.flights.Delete(k)
	}
}

// wait returns the result of f, or ctx's error if ctx ends first. A caller
// holding stale (a value past its TTL within StaleGrace), or whose flight
// found one in Redis, gets that instead when the flight fails, or when it
// has not finished within SoftTimeout; the flight goes on.
func (c *Cache[V]) wait(ctx context.Context, f *flight[V], stale *Result[V]) (Result[V], error) {
	var soft <-chan time.Time
	if c.opts.Refresh.SoftTimeout > 0 {
		t := time.NewTimer(c.opts.Refresh.SoftTimeout)
		defer t.Stop()
		soft = t.C
	}
	for {
		select {
		case <-f.done:
			if f.err != nil && stale != nil && !errors.Is(f.err, ErrNotFound) {
				return c.serveStale(*stale), nil
			}
			return f.res, f.err
		case <-soft:
			if stale == nil {
				stale = f.stale.Load()
			}
			if stale != nil {
				return c.serveStale(*stale), nil
			}
			soft = nil
		case <-ctx.Done():
			return Result[V]{}, ctx.Err()
		}
	}
}

// serveStale returns r, a value past its TTL, marked stale and counted.
func (c *Cache[V]) serveStale(r Result[V]) Result[V] {
	c.stats.staleServed.Add(1)
	r.Stale = true
	return r
}
