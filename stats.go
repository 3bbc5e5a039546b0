package tier

import "sync/atomic"

// Stats counts what the cache has done since it was created.
type Stats struct {
	NearHits  uint64 // lookups answered by the near tier
	FarHits   uint64 // near misses answered by Redis
	Misses    uint64 // keys found in neither tier
	Loads     uint64 // loader calls (GetMany's batch loader counts once a batch)
	LoadWaits uint64 // waits for another replica's load (Options.WaitForLoads)

	Refreshes     uint64 // background refreshes of hot keys (Refresh.Ahead)
	RefreshErrors uint64 // refreshes that failed; the entry then expired as usual
	StaleServed   uint64 // values past their TTL served within Refresh.StaleGrace
	LoadErrors    uint64 // loads that failed (not counting ErrNotFound)
	FarErrors     uint64 // Redis operations that failed
	FarSkipped    uint64 // Redis operations not tried while Redis was unreachable
	Corrupt       uint64 // values in Redis that did not decode, reloaded and overwritten
	NotCached     uint64 // loaded values returned but not stored (too large, not encodable)
	Evictions     uint64 // near entries evicted to make room

	Invalidations uint64 // keys and tags dropped on messages from other replicas or operators
	TagMarkers    uint64 // tag markers held now, for the tags near entries carry: at most max(Near.Capacity, 1024)
	Malformed     uint64 // invalidation messages ignored as malformed
	Losses        uint64 // invalidation subscriptions lost (near tier dropped)
	Reconnects    uint64 // subscriptions re-established after a loss
}

type counters struct {
	farHits, misses, loads, loadWaits, refreshes, refreshErrors, staleServed atomic.Uint64
	loadErrors, farErrors, corrupt, notCached, invalidations                 atomic.Uint64
}

// Stats returns the counters.
func (c *Cache[V]) Stats() Stats {
	n := c.near.Stats()
	st := Stats{
		NearHits:      n.Hits,
		FarHits:       c.stats.farHits.Load(),
		Misses:        c.stats.misses.Load(),
		Loads:         c.stats.loads.Load(),
		LoadWaits:     c.stats.loadWaits.Load(),
		Refreshes:     c.stats.refreshes.Load(),
		RefreshErrors: c.stats.refreshErrors.Load(),
		StaleServed:   c.stats.staleServed.Load(),
		LoadErrors:    c.stats.loadErrors.Load(),
		FarErrors:     c.stats.farErrors.Load(),
		Corrupt:       c.stats.corrupt.Load(),
		NotCached:     c.stats.notCached.Load(),
		Evictions:     n.Evictions,
		Invalidations: c.stats.invalidations.Load(),
		TagMarkers:    uint64(c.tags.len()),
	}
	if c.breaker != nil {
		st.FarSkipped = c.breaker.link.total.Load()
	}
	if c.bus != nil {
		b := c.bus.Stats()
		st.Malformed, st.Losses, st.Reconnects = b.Malformed, b.Losses, b.Reconnects
	}
	return st
}
