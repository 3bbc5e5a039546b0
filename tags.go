package tier

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Tags drop a whole group of entries at once, on every replica and in
// Redis, without listing them (see InvalidateTag). The design, in short
// (docs/DESIGN.md has it in full):
//
//   - A tag clock counts tag invalidations, in Redis. InvalidateTag
//     advances it and sets the marker of each tag to its new value, in one
//     script that also announces "#<clock>:<tag>" on the channel.
//   - An entry records, with its tags, its born number: the clock this
//     replica knew when its load (or Set) began. It is stale once one of
//     its tags has a marker above born: it was read from the source before
//     that invalidation. No scan, and the cost does not depend on how many
//     entries carry a tag.
//   - Each replica keeps the markers of the tags it holds in cells, raised
//     by messages and by its own InvalidateTag, and reads a cell's marker
//     from Redis once when it makes it. A near entry points at its cells,
//     so a tagged hit compares a few numbers and takes no lock.
//   - The clock a replica knows only lags the truth, which makes entries
//     born too early (stale too soon: a reload), never too late. A gap
//     drops the cells, and the clock is read again from Redis.

// Tag attaches tags to the value a loader is loading for key: call it from
// a Loader or a BatchLoader, with the context it was given, for tags that
// the load learns (the tenant of a record, the version of a schema). It
// does nothing outside a load of this cache.
func Tag(ctx context.Context, key string, tags ...string) {
	if col, ok := ctx.Value(tagCollectorKey{}).(*tagCollector); ok && len(tags) > 0 {
		col.mu.Lock()
		col.tags[key] = append(col.tags[key], tags...)
		col.mu.Unlock()
	}
}

type tagCollectorKey struct{}

// tagCollector gathers the tags that a load's Tag calls attach.
type tagCollector struct {
	mu   sync.Mutex
	tags map[string][]string
}

// collecting returns ctx carrying a new collector.
func collecting(ctx context.Context) (context.Context, *tagCollector) {
	col := &tagCollector{tags: map[string][]string{}}
	return context.WithValue(ctx, tagCollectorKey{}, col), col
}

func (col *tagCollector) of(key string) []string {
	col.mu.Lock()
	defer col.mu.Unlock()
	return col.tags[key]
}

// InvalidateTag makes every entry that carries one of tags, and was read
// from the source before the call, a miss on every replica and in Redis:
// on this replica at once, on the others when the message arrives (one
// pub/sub hop; after a gap, within 2×HealthInterval), and in Redis, whose
// copies of such entries every replica treats as misses from now on. Its
// cost does not depend on how many entries carry the tags. The error
// matches [ErrUnavailable] when Redis could not be reached.
func (c *Cache[V]) InvalidateTag(ctx context.Context, tags ...string) error {
	if c.closed.Load() {
		return ErrClosed
	}
	if len(tags) == 0 {
		return nil
	}
	c.tagsUsed.Store(true)
	if c.far == nil {
		c.raiseTags(tags, c.tagClock.Add(1))
		return nil
	}
	if !c.breaker.allow() {
		return c.unavailable("invalidate tag", tags[0])
	}
	clock, err := c.far.InvalidateTags(ctx, tags, c.markerTTL())
	if err != nil {
		return c.writeFailed(ctx, "invalidate tag", tags[0], err)
	}
	c.breaker.success()
	c.raiseTags(tags, clock)
	return nil
}

// markerTTL is how long a marker must live: until no entry it could make
// stale can exist, in Redis (FarTTL and StaleGrace, plus a load that
// writes late, LoadTimeout) or near (never longer than in Redis).
func (c *Cache[V]) markerTTL() time.Duration {
	return addSat(addSat(c.opts.FarTTL, c.opts.Refresh.StaleGrace), c.opts.LoadTimeout)
}

// raiseTags records that tags were invalidated at clock, and detaches
// every flight, as a key's change detaches its own: a flight's value may
// carry one of the tags, unknown until its load returns, so a Get that
// starts now must not wait for it.
func (c *Cache[V]) raiseTags(tags []string, clock uint64) {
	for _, t := range tags {
		if cell := c.tags.lookup(t); cell != nil {
			cell.raise(clock)
		}
	}
	raise(&c.tagClock, clock)
	c.flights.Clear()
}

// born returns the born number of a load or Set that begins now: the tag
// clock this replica knows.
func (c *Cache[V]) born() uint64 { return c.tagClock.Load() }

// syncTagClock reads the tag clock from Redis, if tags are in use here:
// after a gap, since messages that raised it may have been lost, and
// Redis may have restarted with a new clock.
func (c *Cache[V]) syncTagClock() {
	if c.far == nil || !c.tagsUsed.Load() {
		return
	}
	clock, err := c.far.TagClock(context.Background())
	if err != nil {
		c.tagClock.Store(0) // entries born now are stale too soon, never too late
		c.farFailed(context.Background(), "tag clock", "", err)
		return
	}
	c.tagClock.Store(clock)
}

// tagged is what an entry knows of its tags.
type tagged struct {
	born  uint64
	cells []*tagCell
}

// stale reports whether one of the entry's tags was invalidated after it
// was born.
func (t *tagged) stale() bool {
	for _, cell := range t.cells {
		if cell.marker.Load() > t.born {
			return true
		}
	}
	return false
}

// tagsOf returns the tagged of an entry born with tags, its cells known
// (reading the markers of new ones from Redis), or nil for no tags. It
// returns Redis's error when Redis could not say: the caller then keeps
// nothing, unless degraded, when unknown markers count as none (a value
// kept during degraded mode lives DegradedNearTTL at most, and the gap's
// end drops it).
func (c *Cache[V]) tagsOf(ctx context.Context, born uint64, tags []string) (*tagged, error) {
	if len(tags) == 0 {
		return nil, nil
	}
	c.tagsUsed.Store(true)
	t := &tagged{born: born, cells: make([]*tagCell, len(tags))}
	var unknown []string
	var cells []*tagCell
	for i, tag := range tags {
		t.cells[i] = c.tags.cell(tag, c.tagClock.Load())
		if !t.cells[i].known.Load() {
			unknown = append(unknown, tag)
			cells = append(cells, t.cells[i])
		}
	}
	if len(unknown) == 0 || c.far == nil {
		return t, nil
	}
	// Degraded, a marker Redis cannot tell counts as the clock this
	// replica knows: what was loaded before an invalidation of the tag
	// that it heard of is not kept.
	if !c.breaker.allow() {
		raiseAll(cells, c.tagClock.Load())
		return t, nil
	}
	markers, err := c.far.TagMarkers(ctx, unknown)
	if err != nil {
		c.farFailed(ctx, "tag markers", unknown[0], err)
		if c.degraded() {
			raiseAll(cells, c.tagClock.Load())
			return t, nil
		}
		return nil, err
	}
	c.breaker.success()
	for i, cell := range cells {
		cell.raise(markers[i])
		raise(&c.tagClock, markers[i])
		cell.known.Store(true)
	}
	return t, nil
}

// A tagCell holds the latest marker this replica knows of one tag.
type tagCell struct {
	marker atomic.Uint64 // math.MaxUint64 once the cell left the registry
	known  atomic.Bool   // read from Redis, or made without Redis
}

func (cell *tagCell) raise(v uint64) { raise(&cell.marker, v) }

// raiseAll raises every cell of cells to v.
func raiseAll(cells []*tagCell, v uint64) {
	for _, cell := range cells {
		cell.raise(v)
	}
}

// raise sets a to v if v is above it.
func raise(a *atomic.Uint64, v uint64) {
	for {
		old := a.Load()
		if v <= old || a.CompareAndSwap(old, v) {
			return
		}
	}
}

// tagRegistry holds the cells of the tags this replica's entries carry,
// at most max of them. A cell pushed out is marked invalidated for good,
// so the entries that point at it become misses and make a new cell when
// they are read again.
type tagRegistry struct {
	mu    sync.Mutex
	cells map[string]*tagCell
	max   int
	local bool // no Redis: every cell is known from the start
}

func (r *tagRegistry) lookup(tag string) *tagCell {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cells[tag]
}

// cell returns the cell of tag, making it if need be; without Redis, a
// new cell's marker is clock, the tag clock this replica knows.
func (r *tagRegistry) cell(tag string, clock uint64) *tagCell {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cell := r.cells[tag]; cell != nil {
		return cell
	}
	if r.cells == nil {
		r.cells = map[string]*tagCell{}
	}
	if len(r.cells) >= r.max {
		for t, old := range r.cells { // any one: the map's order is random
			old.marker.Store(math.MaxUint64)
			delete(r.cells, t)
			break
		}
	}
	cell := &tagCell{}
	if r.local {
		// No Redis to read the marker from: it is at most the clock,
		// which counts every invalidation made here.
		cell.marker.Store(clock)
		cell.known.Store(true)
	}
	r.cells[tag] = cell
	return cell
}

// drop drops the cell of tag, if any, marking it invalidated for good.
func (r *tagRegistry) drop(tag string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cell := r.cells[tag]; cell != nil {
		cell.marker.Store(math.MaxUint64)
		delete(r.cells, tag)
	}
}

// reset drops every cell, marking each invalidated for good.
func (r *tagRegistry) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, cell := range r.cells {
		cell.marker.Store(math.MaxUint64)
	}
	r.cells = nil
}

func (r *tagRegistry) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.cells)
}

// invalidateTags applies a tag message: clock 0 (an operator's) means
// that the markers are to be read from Redis.
func (c *Cache[V]) invalidateTags(tags []string, clock uint64) {
	c.tagsUsed.Store(true)
	if clock != 0 {
		c.raiseTags(tags, clock)
		return
	}
	markers, err := c.far.TagMarkers(context.Background(), tags)
	if err != nil {
		// Not knowing the markers, drop the tags' cells: what points at
		// them is a miss, and new cells read the markers again.
		for _, t := range tags {
			c.tags.drop(t)
		}
		c.flights.Clear() // as raiseTags does
		c.farFailed(context.Background(), "tag markers", tags[0], fmt.Errorf("after an operator's tag message: %w", err))
		return
	}
	for i, t := range tags {
		c.raiseTags([]string{t}, markers[i])
	}
}
