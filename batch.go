package tier

import (
	"context"
	"fmt"
	"time"

	"github.com/tier-cache/tier/codec"
	"github.com/tier-cache/tier/remote"
)

// GetMany returns the values of keys: near hits first, then all near
// misses from Redis in one round trip, then one call of loader for what is
// left, whose results are stored in both tiers (leases and writes in one
// round trip each, as Get does for one key). Keys without a value (cached
// or loaded as not found) are absent from the map. If the loader fails,
// GetMany returns what it found, values kept for Refresh.StaleGrace
// included, with the error. GetMany runs in the caller's context and does
// not join the flights of concurrent Gets; its fills are guarded all the
// same, and the leases it took are given back even when ctx ends.
func (c *Cache[V]) GetMany(ctx context.Context, keys []string, loader BatchLoader[V]) (map[string]V, error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	out := make(map[string]V, len(keys))
	var (
		missing []string
		stale   map[string]V // values past their TTL within StaleGrace
	)
	seen := make(map[string]struct{}, len(keys))
	now := c.now().UnixNano()
	for _, k := range keys {
		if _, dup := seen[k]; dup {
			continue
		}
		seen[k] = struct{}{}
		e, ok := c.near.Get(k)
		switch {
		case !ok:
		case e.usable(now):
			if !e.absent() {
				out[k] = e.value
			}
			continue
		case !e.meta.tags.stale(): // past its TTL, kept for grace (an entry that is not usable has a meta)
			stale = put(stale, k, e.value)
		}
		missing = append(missing, k)
	}
	if len(missing) == 0 {
		return out, nil
	}
	if f, ok := loader.(BatchLoaderFunc[V]); loader == nil || ok && f == nil {
		return out, fmt.Errorf("tier: get many: the loader is nil")
	}
	if err := ctx.Err(); err != nil {
		return out, fmt.Errorf("tier: get many: %w", err)
	}
	g := c.near.StartFill()
	born := c.born()
	claims := make(map[string]claim) // only keys to load get one: grown as they come
	toLoad := missing
	if c.far != nil && c.breaker.allow() {
		vals, err := c.far.GetMany(ctx, missing)
		switch {
		case err != nil && ctx.Err() != nil:
			return out, fmt.Errorf("tier: get many: %w", ctx.Err())
		case err != nil:
			c.farFailed(ctx, "get", missing[0], err)
		default:
			c.breaker.success()
			toLoad = toLoad[:0:0]
			dsts := make([]V, len(missing)) // one allocation for the batch's values
			for i, k := range missing {
				e, hit, cl, isStale := c.fromFar(ctx, k, vals[i], &dsts[i], g, false)
				switch {
				case hit && !e.absent():
					out[k] = e.value
				case !hit:
					toLoad = append(toLoad, k)
					claims[k] = cl
					if isStale {
						stale = put(stale, k, e.value)
					}
				}
			}
			c.takeLeases(ctx, toLoad, claims)
		}
	} else if c.far != nil {
		c.breaker.link.touch()
	}
	if len(toLoad) == 0 {
		return out, nil
	}
	c.stats.misses.Add(uint64(len(toLoad)))
	lctx, col := collecting(ctx)
	loaded, err := c.callBatchLoader(lctx, loader, toLoad)
	wctx := context.WithoutCancel(ctx) // leases go back even if ctx ended
	if err != nil {
		c.stats.loadErrors.Add(1)
		c.swapFar(wctx, toLoad, claims, nil)
		served := 0
		for _, k := range toLoad {
			if v, ok := stale[k]; ok {
				out[k] = v
				served++
			}
		}
		c.stats.staleServed.Add(uint64(served))
		if served == len(toLoad) {
			return out, nil
		}
		return out, fmt.Errorf("tier: load %d keys: %w", len(toLoad)-served, err)
	}
	data := make(map[string][]byte, len(toLoad))
	farTTLs := make(map[string]time.Duration, len(toLoad))
	for _, k := range toLoad {
		v, found := loaded[k]
		if !found {
			ttl := c.jitter(c.opts.NotFoundTTL)
			tomb := codec.TombstoneExpiring(time.Unix(0, deadline(c.now().UnixNano(), ttl)))
			data[k], farTTLs[k] = tomb, ttl
			c.fill(g, k, absentEntry[V](), ttl, len(tomb))
			continue
		}
		tags := col.of(k)
		t, err := c.tagsOf(wctx, born, tags)
		if err != nil || t != nil && t.stale() { // see load
			out[k] = v
			continue
		}
		farTTL := c.jitter(c.opts.FarTTL)
		b, stored, err := c.encode(k, v, farTTL, born, tags)
		out[k] = stored
		if err != nil {
			c.stats.notCached.Add(1)
			c.log.Debug("tier: loaded value not cached", "key", k, "err", err)
			continue
		}
		data[k], farTTLs[k] = b, farTTL
		c.fill(g, k, valueEntry(stored, t), c.nearTTL(farTTL), len(b))
	}
	c.swapFar(wctx, toLoad, claims, func(k string) ([]byte, time.Duration) { return data[k], farTTLs[k] })
	return out, nil
}

// takeLeases puts a lease under each key of keys whose claim says to take
// one, in one round trip, and records the leases taken in claims.
func (c *Cache[V]) takeLeases(ctx context.Context, keys []string, claims map[string]claim) {
	var want []string
	var leases [][]byte
	for _, k := range keys {
		if claims[k].take {
			want = append(want, k)
			leases = append(leases, newLease())
		}
	}
	if len(want) == 0 {
		return
	}
	added, err := c.far.AddMany(ctx, want, leases, c.opts.LoadTimeout)
	if err != nil {
		// The leases may have landed, their replies lost: keep them all,
		// to write over or give back (see takeLease).
		c.farFailed(ctx, "lease", want[0], err)
	} else {
		c.breaker.success()
	}
	for i, k := range want {
		if err != nil || added[i] {
			claims[k] = claim{old: leases[i]}
		}
	}
}

// swapFar writes a batch's results, each over its claim, in one round
// trip; value returns the bytes of a key and their TTL (nil: nothing to
// write, give the lease back). A nil value function gives every lease back.
func (c *Cache[V]) swapFar(ctx context.Context, keys []string, claims map[string]claim, value func(string) ([]byte, time.Duration)) {
	if c.far == nil || !c.breaker.allow() {
		return
	}
	var items []remote.SwapItem
	for _, k := range keys {
		cl := claims[k]
		var data []byte
		var ttl time.Duration
		if value != nil {
			data, ttl = value(k)
		}
		if cl.old == nil || data == nil && cl.keep {
			continue
		}
		items = append(items, remote.SwapItem{Key: k, Old: cl.old, Value: data, TTL: c.farKeep(ttl, data)})
	}
	if len(items) == 0 {
		return
	}
	if err := c.far.SwapMany(ctx, items); err != nil {
		c.farFailed(ctx, "swap", items[0].Key, err)
		return
	}
	c.breaker.success()
}

// put sets m[k] = v, making m if need be.
func put[V any](m map[string]V, k string, v V) map[string]V {
	if m == nil {
		m = make(map[string]V)
	}
	m[k] = v
	return m
}
