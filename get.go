package tier

import (
	"context"
	"fmt"
)

// Source says where a value came from.
type Source uint8

// The sources of a [Result].
const (
	SourceNear Source = iota + 1 // the near tier, in this process
	SourceFar                    // Redis
	SourceLoad                   // the loader
)

// String returns "near", "far" or "load".
func (s Source) String() string {
	switch s {
	case SourceNear:
		return "near"
	case SourceFar:
		return "far"
	case SourceLoad:
		return "load"
	}
	return fmt.Sprintf("Source(%d)", uint8(s))
}

// Result is a value with where it came from, as returned by [Cache.Fetch].
type Result[V any] struct {
	// Value is the value; the zero V with ErrNotFound.
	Value V
	// Source is the tier, or the loader, that answered.
	Source Source
	// Stale is true for a value past its TTL, served within
	// Options.Refresh.StaleGrace because its reload failed or was slow.
	Stale bool
}

// Get returns the value of key: from the near tier if it has it, else from
// Redis, else from loader, storing what it found in the tiers that lacked
// it. Concurrent Gets of one key in a process share one Redis read and at
// most one load, which runs detached from their contexts (bounded by
// Options.LoadTimeout); each caller stops waiting when its own ctx ends.
// A loader's ErrNotFound is cached and returned as ErrNotFound. Redis
// errors are never returned: without Redis, Get loads from the source.
//
// The value returned is shared with the near tier and with other callers:
// do not modify it. With Redis, it is what every replica decodes from
// Redis, not the very value a loader or Set was given.
//
// A near hit allocates nothing and takes no lock shared by every key.
func (c *Cache[V]) Get(ctx context.Context, key string, loader Loader[V]) (V, error) {
	e, ok := c.near.Get(key)
	if ok && e.plain() && !c.closed.Load() {
		return e.value, nil // fetch's first outcome, without a Result
	}
	r, err := c.fetch(ctx, key, loader, e, ok)
	return r.Value, err
}

// Fetch is [Cache.Get] that also tells where the value came from.
//
// Its outcomes, in order:
//  1. a fresh near entry: returned; in the last Refresh.Ahead of its life
//     it also starts a background refresh of the key;
//  2. a near entry past its TTL, kept for Refresh.StaleGrace: reloaded,
//     and returned marked Stale if the reload fails or outlasts
//     Refresh.SoftTimeout;
//  3. nothing near: the key's flight (see flight.go) reads Redis, then
//     loads, and every caller waiting for it gets its result.
func (c *Cache[V]) Fetch(ctx context.Context, key string, loader Loader[V]) (Result[V], error) {
	e, ok := c.near.Get(key)
	return c.fetch(ctx, key, loader, e, ok)
}

// fetch is Fetch after its read of the near tier, which found e if ok.
func (c *Cache[V]) fetch(ctx context.Context, key string, loader Loader[V], e nearEntry[V], ok bool) (Result[V], error) {
	if !ok || c.closed.Load() {
		return c.miss(ctx, key, loader, nil)
	}
	if m := e.meta; m != nil {
		if m.tags.stale() {
			return c.miss(ctx, key, loader, nil)
		}
		if m.staleAt|m.refreshAt != 0 {
			now := c.now().UnixNano()
			if m.staleAt != 0 && now >= m.staleAt {
				stale := Result[V]{Value: e.value, Source: SourceNear, Stale: true}
				return c.miss(ctx, key, loader, &stale)
			}
			if m.refreshAt != 0 && now >= m.refreshAt {
				c.refresh(ctx, key, loader)
			}
		}
		if m.absent {
			return Result[V]{Source: SourceNear}, ErrNotFound
		}
	}
	return Result[V]{Value: e.value, Source: SourceNear}, nil
}

// Wrap returns fn cached behind its own signature: each call is a
// [Cache.Get] with fn as the loader. It is the counterpart of a
// @cached(ttl=...) decorator: `getUser = users.Wrap(db.GetUser)`.
func (c *Cache[V]) Wrap(fn func(ctx context.Context, key string) (V, error)) func(ctx context.Context, key string) (V, error) {
	loader := LoaderFunc[V](fn)
	return func(ctx context.Context, key string) (V, error) {
		return c.Get(ctx, key, loader)
	}
}

// miss waits for the flight of key, starting it if none is under way.
// stale is what to serve if the flight fails or is slow (see wait).
func (c *Cache[V]) miss(ctx context.Context, key string, loader Loader[V], stale *Result[V]) (Result[V], error) {
	if c.closed.Load() {
		return Result[V]{}, ErrClosed
	}
	if err := checkLoader(loader); err != nil {
		return Result[V]{}, fmt.Errorf("tier: get %q: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return Result[V]{}, err
	}
	f, leader := c.join(key)
	if leader {
		c.lead(ctx, key, f, loader, false, stale == nil || c.opts.Refresh.SoftTimeout == 0)
	}
	return c.wait(ctx, f, stale)
}

// refresh starts a background refresh of key, unless a flight of it is
// under way already; callers that miss meanwhile join it.
func (c *Cache[V]) refresh(ctx context.Context, key string, loader Loader[V]) {
	if _, busy := c.flights.Load(key); busy || checkLoader(loader) != nil {
		return
	}
	if f, leader := c.join(key); leader {
		c.lead(ctx, key, f, loader, true, false)
		c.stats.refreshes.Add(1)
	}
}
