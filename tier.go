package tier

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

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
	// encoding is longer than Options.MaxValueBytes.
	ErrValueTooLarge = errors.New("tier: value too large")
)

// A Loader loads the value of a key from the source of truth when neither
// tier has it. It returns ErrNotFound (or an error wrapping it) when the
// key has no value.
type Loader[V any] interface {
	Load(ctx context.Context, key string) (V, error)
}

// LoaderFunc adapts a function to a [Loader].
type LoaderFunc[V any] func(ctx context.Context, key string) (V, error)

// Load calls f(ctx, key).
func (f LoaderFunc[V]) Load(ctx context.Context, key string) (V, error) { return f(ctx, key) }

// A BatchLoader loads the values of many keys at once, for [Cache.GetMany].
// A requested key missing from the returned map has no value: it is
// cached as not found.
type BatchLoader[V any] interface {
	LoadMany(ctx context.Context, keys []string) (map[string]V, error)
}

// BatchLoaderFunc adapts a function to a [BatchLoader].
type BatchLoaderFunc[V any] func(ctx context.Context, keys []string) (map[string]V, error)

// LoadMany calls f(ctx, keys).
func (f BatchLoaderFunc[V]) LoadMany(ctx context.Context, keys []string) (map[string]V, error) {
	return f(ctx, keys)
}

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
	Value  V
	Source Source
	// Stale is true for a value past its TTL served within
	// Options.StaleGrace because its reload failed or was slow.
	Stale bool
}

// nearEntry is what the near tier holds: a decoded value, or the
// remembered answer "not found".
type nearEntry[V any] struct {
	value  V
	absent bool
	// fresh, with Options.StaleGrace, is when the entry stops being fresh
	// (Unix nanoseconds by Cache.now); it lives StaleGrace longer, as a
	// stale value to serve if a reload fails. 0 without StaleGrace.
	fresh int64
}

// Cache is a read-through cache of values of type V in two tiers: a near
// tier in this process's memory and a far tier in Redis shared by every
// replica. It is safe for concurrent use. Create one with [New] and Close
// it when done.
type Cache[V any] struct {
	opts Options
	near *local.Cache[string, nearEntry[V]]
	// refreshBelow is the time left under which a near hit starts a
	// refresh (Options.RefreshAhead of NearTTL); 0 when off.
	refreshBelow time.Duration
	// refreshing holds the keys whose refresh ahead is under way.
	refreshing sync.Map
	far        *remote.Store     // nil: near-only
	bus        *invalidate.Bus   // nil: no cross-replica invalidation
	encoder    *codec.Encoder[V] // values to Redis's bytes
	decoder    *codec.Decoder[V] // and back
	log        *slog.Logger

	// nearOK is false while invalidations may be lost (the subscription is
	// down or not yet confirmed): the near tier then stores nothing, so it
	// serves nothing that a lost message should have removed.
	nearOK atomic.Bool

	mu      sync.Mutex
	flights map[string]*flight[V]
	// spare holds flights that finished with no one but their leader
	// knowing them (see fetchStale): a far hit then makes no flight.
	spare sync.Pool
	// inFlight is len(flights), readable without mu: a change of a key
	// detaches its flight, and with none in flight that costs no lock.
	inFlight atomic.Int64

	// pending holds this replica's latest change (Set or Delete) of each
	// key whose message is on its way back (see ownChange).
	pendMu  sync.Mutex
	pending map[string]*ownChange[V]
	// awaitAll counts this replica's InvalidateAlls whose message is on
	// its way back: until it is, every message is about a write from
	// before it, and the near tier takes none of their values.
	awaitAll int
	wg       sync.WaitGroup // running loads

	closing   context.Context // cancelled by Close; ends running loads
	cancel    context.CancelFunc
	closed    atomic.Bool
	closeOnce sync.Once

	stats counters

	// busEvent, when set (by tests), is called after each invalidation
	// event is applied: "keys", "all", "down" or "up".
	busEvent atomic.Pointer[func(event string)]
}

type counters struct {
	farHits, misses, loads, loadErrors, farErrors, corrupt, notCached, invalidations, updates, loadWaits atomic.Uint64
	refreshes, refreshErrors, staleServed                                                                atomic.Uint64
}

// New returns a cache configured by opts, or an error matching
// [ErrInvalidOptions] that names the offending field.
func New[V any](opts Options) (*Cache[V], error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	format, err := codec.New(codec.Options{Codec: o.Codec, CompressAbove: o.CompressAbove})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	c := &Cache[V]{opts: o, encoder: codec.NewEncoder[V](format), decoder: codec.NewDecoder[V](format), log: o.Logger, flights: map[string]*flight[V]{}}
	c.refreshBelow = time.Duration(o.RefreshAhead * float64(o.NearTTL))
	if o.Redis != nil {
		c.far, err = remote.New(o.Redis, remote.Options{Namespace: o.Namespace, Timeout: o.FarTimeout})
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
		}
	}
	c.near, err = local.New(local.Options[string, nearEntry[V]]{
		Capacity:  o.NearCapacity,
		MaxWeight: o.NearMaxBytes,
		TTL:       o.NearTTL,
		Clock:     o.Clock,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	c.closing, c.cancel = context.WithCancel(context.Background())
	c.nearOK.Store(true)
	keyspace, err := keyspacePrefix(o)
	if err != nil {
		c.near.Close()
		return nil, err
	}
	if o.Redis != nil && !o.DisableInvalidation {
		c.nearOK.Store(false) // until the subscription is confirmed
		c.bus, err = invalidate.New(o.Redis, busHandler[V]{c}, invalidate.Options{
			Channel:        o.Namespace + ":invalidate",
			Namespace:      o.Namespace,
			HealthInterval: o.HealthInterval,
			Timeout:        o.FarTimeout,
			Logger:         o.Logger,
			Sharded:        o.ShardedPubSub,
			Observe:        o.OnPropagation,
			Keyspace:       keyspace,
		})
		if err != nil {
			c.near.Close()
			return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
		}
		// Give the subscription a moment, so that a fresh cache uses its
		// near tier at once; if Redis is slow or down, it starts without.
		ctx, cancel := context.WithTimeout(context.Background(), o.FarTimeout)
		_ = c.bus.WaitConnected(ctx)
		cancel()
	}
	return c, nil
}

// keyspacePrefix checks what Options.WatchExternalWrites needs, and
// returns the prefix of the keyspace-notification channels of the cache's
// keys, or "" when the option is off. A server that cannot be reached now
// is not an error (the cache starts without Redis, as always); one that
// answers with notifications off is.
func keyspacePrefix(o Options) (string, error) {
	if !o.WatchExternalWrites {
		return "", nil
	}
	bad := func(why string) error {
		return fmt.Errorf("%w: WatchExternalWrites %s", ErrInvalidOptions, why)
	}
	client, ok := o.Redis.(*redis.Client)
	switch {
	case o.Redis == nil:
		return "", bad("needs Redis")
	case o.DisableInvalidation || o.ShardedPubSub:
		return "", bad("does not work with DisableInvalidation or ShardedPubSub")
	case !ok:
		return "", bad("needs a single-server *redis.Client: keyspace notifications are per node")
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.FarTimeout)
	defer cancel()
	got, err := client.ConfigGet(ctx, "notify-keyspace-events").Result()
	var rerr redis.Error
	switch {
	case errors.As(err, &rerr):
		return "", bad(fmt.Sprintf("cannot read notify-keyspace-events (%v); the user needs +config|get", err))
	case err != nil:
		o.Logger.Warn("tier: cannot check notify-keyspace-events now; watching anyway", "err", err)
	default:
		flags := got["notify-keyspace-events"]
		has := func(f string) bool { return strings.Contains(flags, f) }
		if !has("K") || !(has("A") || has("$") && has("g")) {
			return "", bad(fmt.Sprintf("needs keyspace notifications of string and generic commands, and the server has notify-keyspace-events %q: run CONFIG SET notify-keyspace-events K$gx (or KA)", flags))
		}
	}
	return fmt.Sprintf("__keyspace@%d__:%s:", client.Options().DB, o.Namespace), nil
}

// busHandler applies received invalidations to the near tier.
type busHandler[V any] struct{ c *Cache[V] }

func (h busHandler[V]) Invalidate(keys []string) {
	h.c.stats.invalidations.Add(uint64(len(keys)))
	for _, k := range keys {
		h.c.near.Delete(k)
	}
	h.c.detach(keys...)
	h.event("keys")
}

// Update applies values pushed by a Set (this replica's own included, in
// the order Redis applied the writes): a key held near takes the new
// value; one not held stays absent. Either way, loads and far reads of the
// key under way do not store what they read before it (see local.Replace).
// A message without values is a bare invalidation this replica sent (see
// applyOwnInvalidation).
func (h busHandler[V]) Update(m *invalidate.Message, own bool) {
	c := h.c
	sent := m.Sent.UnixNano()
	if m.All {
		// This replica's InvalidateAll, back: purge again, as other
		// replicas do now, so that nothing a message stored before it,
		// whatever awaitAll said, outlives it; and end one wait.
		c.pendMu.Lock()
		c.awaitAll = max(c.awaitAll-1, 0)
		c.near.Purge()
		c.pendMu.Unlock()
		c.detachAll()
		return
	}
	if m.Values == nil {
		for _, k := range m.Keys {
			c.applyOwnInvalidation(k, sent)
		}
		return
	}
	if !own {
		c.stats.updates.Add(uint64(len(m.Keys)))
	}
	for i, k := range m.Keys {
		c.applyPushed(k, m.Values[i], own, sent)
	}
	c.detach(m.Keys...)
	h.event("keys")
}

// ownChange is a Set or Delete of this replica whose message is on its
// way back, recognised by the message's Sent time (unique among this
// replica's messages, see invalidate.Bus.Frames). Messages arrive in the
// order Redis applied their writes, and a change's message comes after its
// write; so, until it arrives, every other message about the key is about
// an older write, and the near copy must not take it (applyPushed,
// applyOwnInvalidation). value is a Set's value, which its own message
// stores when it pushes it, unless dropped: DropNear (or Invalidate) of
// the key came since, after which the next Get must read Redis.
type ownChange[V any] struct {
	sent    int64
	value   V
	dropped bool

	// settled marks a Delete that has returned: it dropped its keys again
	// after its write, so a near copy made since came from a read of Redis
	// after the write, and its message need not drop it.
	settled bool
}

// awaitOwn drops the near copies of keys and records a change of them,
// whose message has the Sent time sent, as about to be written: one step
// with respect to applyPushed, so that no older message can store a value
// between the drop and the wait. value is a Set's value (a Delete's is
// the zero V). The caller forgets each change with forgetOwn if the write
// fails.
func (c *Cache[V]) awaitOwn(keys []string, sent time.Time, value V) []*ownChange[V] {
	changes := make([]*ownChange[V], len(keys))
	c.pendMu.Lock()
	if c.pending == nil {
		c.pending = make(map[string]*ownChange[V])
	}
	for i, k := range keys {
		changes[i] = &ownChange[V]{sent: sent.UnixNano(), value: value}
		c.pending[k] = changes[i]
		c.near.Delete(k)
	}
	c.pendMu.Unlock()
	return changes
}

// forgetOwn forgets p, the change of key expectOwn returned, if it is
// still the one expected.
func (c *Cache[V]) forgetOwn(key string, p *ownChange[V]) {
	c.pendMu.Lock()
	if c.pending[key] == p {
		delete(c.pending, key)
	}
	c.pendMu.Unlock()
}

// applyOwnInvalidation applies a bare invalidation of key that this
// replica sent (a Delete's, an Invalidate's, or a Set's whose value was
// not pushed) with the Sent time sent: it drops the near copy, as other
// replicas drop theirs, and if it is the message of the change awaited for
// key, it ends the wait. The drop settles concurrent Sets of one key from
// this replica, whose writes Redis may apply in the other order than their
// stores here; and it stamps the key, so that a read that fetched Redis
// before the change, and fills after this, cannot keep what it read (the
// Set's own store may have been refused by an earlier message's stamp).
// The next Get reads Redis.
//
// The message of a Delete that has returned (ownChange.settled) ends the
// wait without the drop: a read that began after the Delete returned read
// Redis after the write, and keeps what it filled.
func (c *Cache[V]) applyOwnInvalidation(key string, sent int64) {
	c.pendMu.Lock()
	p := c.pending[key]
	awaited := p != nil && p.sent == sent
	if awaited {
		delete(c.pending, key)
	}
	if !awaited || !p.settled {
		c.near.Delete(key)
	}
	c.pendMu.Unlock()
}

// forgetAllOwn empties the near tier and forgets every change awaited, as
// one step with respect to applyPushed: after a gap in the subscription,
// their messages may never arrive.
func (c *Cache[V]) forgetAllOwn() {
	c.pendMu.Lock()
	clear(c.pending)
	c.awaitAll = 0
	c.near.Purge()
	c.pendMu.Unlock()
}

// applyPushed applies the pushed stored bytes data of key, from a message
// with the Sent time sent.
//
// Messages arrive in the order Redis applied the writes, so applying each
// leaves the near tier as Redis is. A key held near takes the new value; a
// key not held stays absent. While a change of this replica to the key is
// awaited (see ownChange), the message is that change's own, which stores
// the Set's value, so that the writer reads its own write from the near
// tier even when the message beat its own store (which it then refuses);
// or it is about an older write, and the near copy is dropped. While an
// InvalidateAll of this replica is awaited (see awaitAll), every message
// is older than it, and only drops.
func (c *Cache[V]) applyPushed(key string, data []byte, own bool, sent int64) {
	c.pendMu.Lock()
	if p := c.pending[key]; p != nil || c.awaitAll > 0 {
		awaited := p != nil && own && p.sent == sent
		if awaited {
			delete(c.pending, key)
		}
		if awaited && c.awaitAll == 0 && !p.dropped {
			if ttl, ok := c.nearTTLFrom(false, data); ok && c.nearOK.Load() {
				e := nearEntry[V]{value: p.value}
				c.near.SetWith(key, e, c.keep(&e, ttl), int64(len(data)))
			} else {
				c.near.Delete(key)
			}
		} else {
			c.near.Delete(key)
		}
		c.pendMu.Unlock()
		return
	}
	// Decode only for a key held near; Delete has Replace's effect on an
	// absent key.
	held := c.nearOK.Load() && c.near.Contains(key)
	if !held {
		c.near.Delete(key)
	}
	c.pendMu.Unlock()
	if !held {
		return
	}
	// Decode outside the lock, which Sets and Deletes take; then look
	// again: a change of this replica, or an InvalidateAll, that began
	// meanwhile is newer than this message, which then only drops.
	v, absent, ok := c.decode(key, data)
	var ttl time.Duration
	if ok {
		ttl, ok = c.nearTTLFrom(absent, data)
	}
	c.pendMu.Lock()
	defer c.pendMu.Unlock()
	if !ok || c.pending[key] != nil || c.awaitAll > 0 {
		c.near.Delete(key)
		return
	}
	e := nearEntry[V]{value: v, absent: absent}
	c.near.Replace(key, e, c.keep(&e, ttl), int64(len(data)))
}

// InvalidateAll drops every near copy. The changes awaited stay: their
// messages are still on their way, after this one.
func (h busHandler[V]) InvalidateAll() {
	h.c.stats.invalidations.Add(1)
	h.c.near.Purge()
	h.c.detachAll()
	h.event("all")
}

func (h busHandler[V]) event(e string) {
	if f := h.c.busEvent.Load(); f != nil {
		(*f)(e)
	}
}

// Disconnected stops near fills first, then drops everything: a fill that
// passes the check before the flag flips has a guard older than the Purge.
func (h busHandler[V]) Disconnected() {
	h.c.nearOK.Store(false)
	h.c.forgetAllOwn()
	h.c.detachAll()
	h.event("down")
}

// Connected drops everything cached before the confirmation, then allows
// fills again: a fill allowed now started its read after the Purge, so
// after the subscription was confirmed.
func (h busHandler[V]) Connected() {
	h.c.forgetAllOwn() // and the changes made during the gap, whose messages are lost
	h.c.detachAll()
	h.c.nearOK.Store(true)
	h.event("up")
}

// keep returns how long to keep an entry that is fresh for ttl: ttl, and
// with Options.StaleGrace that much longer, marking in e when it stops
// being fresh.
func (c *Cache[V]) keep(e *nearEntry[V], ttl time.Duration) time.Duration {
	if c.opts.StaleGrace == 0 || ttl <= 0 || e.absent {
		return ttl
	}
	e.fresh = c.now().Add(ttl).UnixNano()
	return ttl + c.opts.StaleGrace
}

// farKeep is keep for Redis: how long Redis keeps data, stored fresh for
// ttl (which its header records). A cached "not found" earns no grace: it
// lives NotFoundTTL, so that a key the source has since made is loaded.
func (c *Cache[V]) farKeep(ttl time.Duration, data []byte) time.Duration {
	if c.opts.StaleGrace == 0 || ttl <= 0 || codec.IsTombstone(data) {
		return ttl
	}
	return ttl + c.opts.StaleGrace
}

// expired reports whether data, read from Redis, is past the TTL its header
// records: with StaleGrace, Redis keeps values that long after it.
func (c *Cache[V]) expired(data []byte) bool {
	if c.opts.StaleGrace == 0 {
		return false
	}
	at, ok := codec.Expiry(data)
	return ok && !at.After(c.now())
}

// isFresh reports whether e, from the near tier, is still fresh.
func (c *Cache[V]) isFresh(e nearEntry[V]) bool {
	return e.fresh == 0 || c.now().UnixNano() < e.fresh
}

// fillNear stores a value read under guard in the near tier, unless the
// near tier is suspended or the key was changed since guard was taken.
func (c *Cache[V]) fillNear(guard local.FillGuard, key string, e nearEntry[V], ttl time.Duration, weight int64) {
	if c.nearOK.Load() {
		c.near.Fill(guard, key, e, c.keep(&e, ttl), weight)
	}
}

// Get returns the value of key: from the near tier if it has it, else from
// Redis, else from loader, storing what it found in the tiers that lacked
// it. Concurrent Gets of one key share one Redis read and at most one load,
// which runs detached from their contexts (bounded by Options.LoadTimeout);
// each caller stops waiting when its own ctx ends. A loader's ErrNotFound
// is cached and returned as ErrNotFound. Redis errors are counted and
// logged, never returned: without Redis the cache loads from the source.
//
// A near hit allocates nothing and locks one shard of the near tier.
func (c *Cache[V]) Get(ctx context.Context, key string, loader Loader[V]) (v V, err error) {
	// Get is this one call so that the compiler inlines it: the value is
	// then copied once, straight into the caller's variable. A generic
	// function that returns a struct of several words makes its caller
	// spill the result registers and copy them again, which costs a near
	// hit about a quarter of its time (BenchmarkNearHitPaired).
	err = c.getInto(ctx, key, loader, &v)
	return v, err
}

// getInto is Get writing the value into *dst.
func (c *Cache[V]) getInto(ctx context.Context, key string, loader Loader[V], dst *V) error {
	if c.opts.RefreshAhead > 0 || c.opts.StaleGrace > 0 {
		r, err := c.fetchRefreshing(ctx, key, loader)
		*dst = r.Value
		return err
	}
	var e nearEntry[V]
	if c.near.GetInto(key, &e) && !c.closed.Load() {
		if e.absent {
			return ErrNotFound
		}
		*dst = e.value
		return nil
	}
	r, err := c.fetchSlow(ctx, key, loader)
	*dst = r.Value
	return err
}

// fetchRefreshing is Fetch with Options.RefreshAhead or StaleGrace: a hit
// near the end of its entry's life starts a refresh, and an entry kept
// past its TTL for StaleGrace is reloaded, and served if that fails.
func (c *Cache[V]) fetchRefreshing(ctx context.Context, key string, loader Loader[V]) (Result[V], error) {
	var e nearEntry[V]
	if left, ok := c.near.GetIntoLeft(key, &e); ok && !c.closed.Load() {
		if !c.isFresh(e) {
			return c.fetchStale(ctx, key, loader, &Result[V]{Value: e.value, Source: SourceNear})
		}
		if e.fresh != 0 {
			left -= c.opts.StaleGrace
		}
		if left > 0 && left < c.refreshBelow {
			c.refresh(key, loader)
		}
		if e.absent {
			return Result[V]{Source: SourceNear}, ErrNotFound
		}
		return Result[V]{Value: e.value, Source: SourceNear}, nil
	}
	return c.fetchSlow(ctx, key, loader)
}

// refresh starts a background refresh of key, unless a read or load of
// it is already under way; callers that miss meanwhile join it.
//
// Every hit in the refresh window calls it until the refresh lands, so it
// first checks refreshing, whose reads take no lock: the cache-wide mutex
// is taken once per refresh, not once per hit.
func (c *Cache[V]) refresh(key string, loader Loader[V]) {
	if _, busy := c.refreshing.LoadOrStore(key, struct{}{}); busy {
		return
	}
	c.mu.Lock()
	if c.closed.Load() || c.flights[key] != nil {
		c.mu.Unlock()
		c.refreshing.Delete(key)
		return
	}
	f := &flight[V]{}
	c.flights[key] = f
	c.inFlight.Store(int64(len(c.flights)))
	c.wg.Add(1)
	c.mu.Unlock()
	c.stats.refreshes.Add(1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), c.opts.LoadTimeout)
		stop := context.AfterFunc(c.closing, cancel)
		r, err := c.refreshOnce(ctx, key, loader)
		stop()
		cancel()
		if err != nil && !errors.Is(err, ErrNotFound) {
			c.stats.refreshErrors.Add(1)
			c.log.Warn("tier: refresh ahead failed", "key", key, "err", err)
		}
		c.finish(key, f, r, err)
		c.refreshing.Delete(key)
	}()
}

// refreshOnce renews key's near entry from Redis, or from the loader when
// Redis's copy is near its own end too (or missing).
func (c *Cache[V]) refreshOnce(ctx context.Context, key string, loader Loader[V]) (Result[V], error) {
	guard := c.near.StartFill()
	st := found[V]{refresh: true}
	if c.far != nil {
		data, ok, err := c.far.GetValue(ctx, key)
		switch {
		case err != nil:
			c.farError("get", key, err)
			st.farDown = true
		case ok && !isLease(data):
			if at, has := codec.Expiry(data); !has || at.Sub(c.now()) > time.Duration(c.opts.RefreshAhead*float64(c.opts.FarTTL)) {
				r, hit, err := c.farHit(key, data, guard)
				if hit.hit {
					return r, err
				}
				st, st.refresh = hit, true
			} else {
				// Redis's copy ends soon too: reload, and write only
				// over these bytes.
				st.corrupt = data
			}
		}
	}
	return c.loadThrough(ctx, key, loader, guard, st)
}

// Fetch is [Cache.Get] that also tells where the value came from.
func (c *Cache[V]) Fetch(ctx context.Context, key string, loader Loader[V]) (r Result[V], err error) {
	err = c.fetchInto(ctx, key, loader, &r) // one call, inlined: see Get
	return r, err
}

// fetchInto is Fetch writing the result into *dst.
func (c *Cache[V]) fetchInto(ctx context.Context, key string, loader Loader[V], dst *Result[V]) (err error) {
	if c.opts.RefreshAhead > 0 || c.opts.StaleGrace > 0 {
		*dst, err = c.fetchRefreshing(ctx, key, loader)
		return err
	}
	var e nearEntry[V]
	if c.near.GetInto(key, &e) && !c.closed.Load() {
		dst.Source = SourceNear
		if e.absent {
			return ErrNotFound
		}
		dst.Value = e.value
		return nil
	}
	*dst, err = c.fetchSlow(ctx, key, loader)
	return err
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

// flight is one shared far read and load of a key.
type flight[V any] struct {
	// done is closed when the flight finishes. It is made by the first
	// caller that waits (see doneLocked): most flights are far hits that no
	// one waits for, and a channel made and closed for nothing cost them
	// half a microsecond of cache misses (a perf profile of BenchmarkFarHit).
	done     chan struct{} // under Cache.mu
	finished bool          // under Cache.mu
	res      Result[V]
	err      error
	// stale is an expired value the flight's far read found, to serve
	// within Options.StaleGrace if the load fails or is slow.
	stale atomic.Pointer[Result[V]]
}

func (c *Cache[V]) fetchSlow(ctx context.Context, key string, loader Loader[V]) (Result[V], error) {
	return c.fetchStale(ctx, key, loader, nil)
}

// fetchStale is fetchSlow for a caller that holds stale, an expired near
// value within Options.StaleGrace (or nil): it serves that, or one the
// flight found in Redis, if the load fails or outlasts SoftTimeout.
func (c *Cache[V]) fetchStale(ctx context.Context, key string, loader Loader[V], stale *Result[V]) (Result[V], error) {
	if c.closed.Load() {
		return Result[V]{}, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return Result[V]{}, err
	}
	c.mu.Lock()
	// Checked under mu, which Close takes to set closed: no flight is
	// added to wg once Close has started waiting for them.
	if c.closed.Load() {
		c.mu.Unlock()
		return Result[V]{}, ErrClosed
	}
	if f := c.flights[key]; f != nil {
		done := f.doneLocked()
		c.mu.Unlock()
		return c.await(ctx, f, done, stale)
	}
	f, _ := c.spare.Get().(*flight[V])
	if f == nil {
		f = new(flight[V])
	}
	c.flights[key] = f
	c.inFlight.Store(int64(len(c.flights)))
	c.wg.Add(1)
	c.mu.Unlock()

	// The caller that started the flight reads the near tier again and
	// Redis itself, under its own context: a far hit then costs no
	// goroutine hand-off. Only a load, which must outlive the caller, runs
	// on a goroutine of its own.
	guard := c.near.StartFill()
	r, state, err := c.lookup(ctx, key, guard)
	if state.hit {
		if !c.finish(key, f, r, err) {
			*f = flight[V]{}
			c.spare.Put(f)
		}
		return r, err
	}
	if state.stale != nil {
		f.stale.Store(state.stale)
	}
	// If this caller's context cut the Redis read short, the goroutine
	// reads Redis again before it loads.
	c.mu.Lock()
	done := f.doneLocked()
	c.mu.Unlock()
	go c.run(ctx, key, f, loader, guard, state, ctx.Err() != nil)
	return c.await(ctx, f, done, stale)
}

// await waits for f as wait does, and with Options.StaleGrace serves a
// stale value instead when the load fails, or when it has not finished
// within SoftTimeout; the load goes on and refreshes the key.
func (c *Cache[V]) await(ctx context.Context, f *flight[V], done <-chan struct{}, stale *Result[V]) (Result[V], error) {
	if c.opts.StaleGrace == 0 {
		return f.wait(ctx, done)
	}
	staleOf := func() *Result[V] {
		if stale != nil {
			return stale
		}
		return f.stale.Load()
	}
	var soft <-chan time.Time
	if c.opts.SoftTimeout > 0 {
		t := time.NewTimer(c.opts.SoftTimeout)
		defer t.Stop()
		soft = t.C
	}
	for {
		select {
		case <-done:
			if f.err != nil && !errors.Is(f.err, ErrNotFound) {
				if s := staleOf(); s != nil {
					return c.serveStale(*s)
				}
			}
			return f.res, f.err
		case <-soft:
			if s := staleOf(); s != nil {
				return c.serveStale(*s)
			}
			soft = nil
		case <-ctx.Done():
			return Result[V]{}, ctx.Err()
		}
	}
}

// serveStale returns r, an expired value, marked stale and counted.
func (c *Cache[V]) serveStale(r Result[V]) (Result[V], error) {
	c.stats.staleServed.Add(1)
	r.Stale = true
	c.log.Warn("tier: serving a stale value: its reload failed or is slow", "source", r.Source)
	return r, nil
}

// wait returns the flight's result, or ctx's error if ctx ends first; done
// is the flight's doneLocked.
func (f *flight[V]) wait(ctx context.Context, done <-chan struct{}) (Result[V], error) {
	select {
	case <-done:
		return f.res, f.err
	case <-ctx.Done():
		return Result[V]{}, ctx.Err()
	}
}

// closedChan is the done channel of a flight that finished before anyone
// waited for it.
var closedChan = func() chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}()

// doneLocked returns the channel closed when f finishes, making it if need
// be. The caller holds Cache.mu.
func (f *flight[V]) doneLocked() <-chan struct{} {
	if f.done == nil {
		if f.finished {
			return closedChan
		}
		f.done = make(chan struct{})
	}
	return f.done
}

// finish publishes a flight's result to its waiters, and reports whether
// there were any: if not, no one but the caller holds f (a waiter gets f
// from flights, under mu, and makes its done channel there).
func (c *Cache[V]) finish(key string, f *flight[V], r Result[V], err error) (waited bool) {
	f.res, f.err = r, err
	c.mu.Lock()
	if c.flights[key] == f { // not detached and replaced
		delete(c.flights, key)
		c.inFlight.Store(int64(len(c.flights)))
	}
	f.finished = true
	done := f.done
	c.mu.Unlock()
	if done != nil {
		close(done)
	}
	c.wg.Done()
	return done != nil
}

// detach takes the flights of keys, if any, out of reach of later
// callers, who start flights of their own: a flight that began before a
// change of its key may have read the value the change replaced. Its
// current waiters still get its result, and its near fill is refused, as
// every change also stamps the key in the near tier.
//
// A flight added after the check of inFlight began after the change, so
// it need not be detached.
func (c *Cache[V]) detach(keys ...string) {
	if c.inFlight.Load() == 0 {
		return
	}
	c.mu.Lock()
	for _, k := range keys {
		delete(c.flights, k)
	}
	c.inFlight.Store(int64(len(c.flights)))
	c.mu.Unlock()
}

// detachAll is detach for every key.
func (c *Cache[V]) detachAll() {
	c.mu.Lock()
	clear(c.flights)
	c.inFlight.Store(0)
	c.mu.Unlock()
}

// run completes a flight with a load: it outlives the caller that started
// it, keeps the caller's context values, and ends at LoadTimeout or Close.
func (c *Cache[V]) run(parent context.Context, key string, f *flight[V], loader Loader[V], guard local.FillGuard, state found[V], lookAgain bool) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), c.opts.LoadTimeout)
	stop := context.AfterFunc(c.closing, cancel)
	var (
		r   Result[V]
		err error
	)
	if lookAgain {
		r, state, err = c.lookup(ctx, key, guard)
	}
	if state.leased && c.opts.WaitForLoads > 0 {
		r, state, err = c.awaitLoad(ctx, key, guard)
	}
	if !state.hit {
		r, err = c.loadThrough(ctx, key, loader, guard, state)
	}
	stop()
	cancel()
	if err != nil && c.closing.Err() != nil && !errors.Is(err, ErrNotFound) {
		err = fmt.Errorf("%w (load of %q cancelled: %w)", ErrClosed, key, err)
	}
	c.finish(key, f, r, err)
}

// found says what a lookup found.
type found[V any] struct {
	hit     bool       // an answer
	farDown bool       // Redis failed: load without a lease, store nothing there
	corrupt []byte     // bytes that do not decode: load and write over them
	leased  bool       // another load's lease: its value may come (WaitForLoads)
	waited  bool       // waited for another load already, in vain
	refresh bool       // a refresh ahead, not a miss
	stale   *Result[V] // an expired value within StaleGrace, not a hit
}

// lookup reads key from the near tier and then from Redis, and reports
// whether either answered. A far hit is stored in the near tier under
// guard: a Set, Delete or invalidation of key after the guard was taken
// keeps it out.
func (c *Cache[V]) lookup(ctx context.Context, key string, guard local.FillGuard) (Result[V], found[V], error) {
	// A value stored while the flight was being set up counts as a hit.
	hit := found[V]{hit: true}
	if e, ok := c.near.Peek(key); ok && c.isFresh(e) {
		if e.absent {
			return Result[V]{Source: SourceNear}, hit, ErrNotFound
		}
		return Result[V]{Value: e.value, Source: SourceNear}, hit, nil
	}
	if c.far == nil {
		return Result[V]{}, found[V]{}, nil
	}
	// One plain GET: the value's deadline is in its header.
	data, ok, err := c.far.GetValue(ctx, key)
	if err != nil {
		if ctx.Err() == nil { // not the caller giving up
			c.farError("get", key, err)
		}
		// A lease would cost another timeout against a Redis that just
		// failed; the load goes straight to the source.
		return Result[V]{}, found[V]{farDown: true}, nil
	}
	if !ok {
		return Result[V]{}, found[V]{}, nil
	}
	return c.farHit(key, data, guard)
}

// farHit turns bytes read from Redis under key into a lookup's answer,
// filling the near tier under guard.
func (c *Cache[V]) farHit(key string, data []byte, guard local.FillGuard) (Result[V], found[V], error) {
	if isLease(data) { // another load is under way
		return Result[V]{}, found[V]{leased: true}, nil
	}
	v, absent, ok := c.decode(key, data)
	if !ok {
		return Result[V]{}, found[V]{corrupt: data}, nil
	}
	if c.expired(data) {
		// Expired but kept for StaleGrace: load, and serve this if the
		// load fails; the load writes over these bytes. An expired "not
		// found" (stored before tombstones earned no grace) is not served.
		st := found[V]{corrupt: data}
		if !absent {
			st.stale = &Result[V]{Value: v, Source: SourceFar}
		}
		return Result[V]{}, st, nil
	}
	c.stats.farHits.Add(1)
	c.fillFromFar(guard, key, nearEntry[V]{value: v, absent: absent}, data)
	if absent {
		return Result[V]{Source: SourceFar}, found[V]{hit: true}, ErrNotFound
	}
	return Result[V]{Value: v, Source: SourceFar}, found[V]{hit: true}, nil
}

// awaitLoad waits, up to Options.WaitForLoads, for the load of another
// replica that holds key's lease to store its value, reading Redis with a
// backoff from 1ms to 32ms. It returns that value as a far hit, or, when
// the lease is gone without a value or the wait ends, what this load
// should do instead.
func (c *Cache[V]) awaitLoad(ctx context.Context, key string, guard local.FillGuard) (Result[V], found[V], error) {
	c.stats.loadWaits.Add(1)
	deadline := time.NewTimer(c.opts.WaitForLoads)
	defer deadline.Stop()
	pause := time.Millisecond
	for {
		t := time.NewTimer(pause)
		select {
		case <-t.C:
		case <-deadline.C:
			t.Stop()
			return Result[V]{}, found[V]{waited: true}, nil
		case <-ctx.Done():
			t.Stop()
			return Result[V]{}, found[V]{waited: true}, nil
		}
		pause = min(2*pause, 32*time.Millisecond)
		data, ok, err := c.far.GetValue(ctx, key)
		switch {
		case err != nil:
			c.farError("get", key, err)
			return Result[V]{}, found[V]{farDown: true, waited: true}, nil
		case !ok: // the lease was given back or expired: load here
			return Result[V]{}, found[V]{waited: true}, nil
		}
		r, st, err := c.farHit(key, data, guard)
		if !st.leased {
			st.waited = true
			return r, st, err
		}
	}
}

// fillFromFar stores in the near tier, under guard, an entry decoded from
// data, which was read from Redis or received in a message: for NearTTL
// (NotFoundTTL for "not found"), jittered, and never past the deadline
// recorded in data. A value without one (written by something other than
// tier) keeps NearTTL alone; one already past it is not stored.
func (c *Cache[V]) fillFromFar(guard local.FillGuard, key string, e nearEntry[V], data []byte) {
	ttl, ok := c.nearTTLFrom(e.absent, data)
	if ok {
		c.fillNear(guard, key, e, ttl, int64(len(data)))
	}
}

// nearTTLFrom is the near TTL of an entry decoded from data, and false
// when data's recorded deadline has passed.
func (c *Cache[V]) nearTTLFrom(absent bool, data []byte) (time.Duration, bool) {
	ttl := c.opts.NearTTL
	if absent {
		ttl = c.opts.NotFoundTTL
	}
	ttl = c.jitter(ttl)
	if at, ok := codec.Expiry(data); ok {
		left := at.Sub(c.now())
		if left <= 0 {
			return 0, false
		}
		ttl = min(ttl, left)
	}
	return ttl, true
}

// now reads Options.Clock, or the system clock: the time by which the
// deadlines recorded in values are written and judged.
func (c *Cache[V]) now() time.Time {
	if c.opts.Clock != nil {
		return c.opts.Clock.Now()
	}
	return time.Now()
}

// loadThrough calls the loader and stores what it returns in both tiers,
// the near tier under guard. In Redis it writes only over what it expects
// there (its lease, or the corrupt bytes the lookup found), so that a load
// that read the source before a concurrent Set or Delete cannot write an
// older value over it.
func (c *Cache[V]) loadThrough(ctx context.Context, key string, loader Loader[V], guard local.FillGuard, state found[V]) (Result[V], error) {
	var fill farFill
	switch {
	case state.corrupt != nil:
		// Expired bytes kept for grace, and a refresh's still valid ones,
		// stay if the load fails; corrupt ones go.
		fill.lease, fill.keep = state.corrupt, state.stale != nil || state.refresh
	case !state.farDown:
		var busy bool
		fill.lease, busy = c.takeLease(ctx, key)
		if busy && !state.waited && c.opts.WaitForLoads > 0 {
			// Another replica's load took the lease between this
			// replica's read and its own lease: wait for it too.
			r, st, err := c.awaitLoad(ctx, key, guard)
			if st.hit {
				return r, err
			}
			if st.corrupt != nil {
				fill.lease = st.corrupt
			} else if !st.farDown {
				fill.lease, _ = c.takeLease(ctx, key)
			}
		}
	}
	if !state.refresh {
		c.stats.misses.Add(1)
	}
	v, err := c.load(ctx, key, loader)
	if errors.Is(err, ErrNotFound) {
		ttl := c.jitter(c.opts.NotFoundTTL)
		tomb := codec.TombstoneExpiring(c.now().Add(ttl))
		c.writeFar(ctx, key, tomb, ttl, fill)
		c.fillNear(guard, key, nearEntry[V]{absent: true}, ttl, int64(len(tomb)))
		return Result[V]{Source: SourceLoad}, ErrNotFound
	}
	if err != nil {
		c.stats.loadErrors.Add(1)
		c.writeFar(ctx, key, nil, 0, fill) // gives the lease back
		return Result[V]{Source: SourceLoad}, fmt.Errorf("tier: load %q: %w", key, err)
	}
	farTTL := c.jitter(c.opts.FarTTL)
	var data []byte
	if c.needsBytes() {
		var ok bool
		if data, ok = c.encodeForStore(key, v, c.now().Add(farTTL)); !ok {
			c.writeFar(ctx, key, nil, 0, fill)
			return Result[V]{Value: v, Source: SourceLoad}, nil
		}
	}
	c.writeFar(ctx, key, data, farTTL, fill)
	c.fillNear(guard, key, nearEntry[V]{value: v}, c.nearTTLFor(farTTL), int64(len(data)))
	return Result[V]{Value: v, Source: SourceLoad}, nil
}

// farFill says how a load's result may reach Redis.
type farFill struct {
	// lease is what the load expects under the key and may write over: the
	// lease it took, or corrupt or expired bytes it read. nil: write
	// nothing.
	lease []byte
	// keep leaves lease in place when the load yields nothing to write: it
	// is an expired value kept for StaleGrace, to serve while loads fail.
	keep bool
}

// leasePrefix starts the bytes of a lease. A codec value starts with its
// format version, never 0, so a lease is never mistaken for a value.
const leasePrefix = "\x00tier-lease\x00"

func isLease(data []byte) bool { return bytes.HasPrefix(data, []byte(leasePrefix)) }

// newLease returns a lease no other load holds.
func newLease() []byte {
	var token [16]byte
	crand.Read(token[:])
	return append([]byte(leasePrefix), hex.EncodeToString(token[:])...)
}

// takeLease puts a lease under key before a load, if the key is absent,
// and returns it. The load writes its result only over its own lease: a
// Set replaces the lease and a Delete removes it, so a load that read the
// source before either cannot write the older value over what they did.
// The lease expires after LoadTimeout if its load never returns.
// It reports busy when the key held something already.
func (c *Cache[V]) takeLease(ctx context.Context, key string) (lease []byte, busy bool) {
	if c.far == nil {
		return nil, false
	}
	lease = newLease()
	ok, err := c.far.Add(ctx, key, lease, c.opts.LoadTimeout)
	if err != nil {
		c.farError("lease", key, err)
		return nil, false
	}
	if !ok { // a value, or another load's lease: this load writes nothing
		return nil, true
	}
	return lease, false
}

// writeFar stores data under key in place of fill.lease, if that is still
// there; nil data removes it (a lease given back, corrupt bytes dropped).
func (c *Cache[V]) writeFar(ctx context.Context, key string, data []byte, ttl time.Duration, fill farFill) {
	if c.far == nil || fill.lease == nil || (data == nil && fill.keep) {
		return
	}
	if _, err := c.far.Swap(ctx, key, fill.lease, data, c.farKeep(ttl, data)); err != nil {
		c.farError("set", key, err)
	}
}

// nearTTLFor is the TTL of a near copy of a value written to Redis for
// farTTL: the jittered NearTTL, never longer than the Redis copy.
func (c *Cache[V]) nearTTLFor(farTTL time.Duration) time.Duration {
	t := c.jitter(c.opts.NearTTL)
	if c.far != nil && farTTL < t {
		t = farTTL
	}
	return t
}

// load calls the loader, turning a panic into an error.
func (c *Cache[V]) load(ctx context.Context, key string, loader Loader[V]) (v V, err error) {
	c.stats.loads.Add(1)
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("tier: loader panicked", "key", key, "panic", r, "stack", string(debug.Stack()))
			err = fmt.Errorf("%w: %v", ErrLoaderPanic, r)
		}
	}()
	return loader.Load(ctx, key)
}

// decode turns bytes read from Redis into a value, or reports absent for a
// cached "not found". Bytes that do not decode are counted and logged, and
// ok is false: the caller treats them as a miss and overwrites them.
func (c *Cache[V]) decode(key string, data []byte) (v V, absent, ok bool) {
	if codec.IsTombstone(data) {
		return v, true, true
	}
	v, err := c.decoder.Decode(data)
	if err != nil {
		c.stats.corrupt.Add(1)
		c.log.Warn("tier: corrupt value in Redis; reloading", "key", key, "err", err)
		var zero V
		return zero, false, false
	}
	return v, false, true
}

// needsBytes reports whether stored values must be encoded: for Redis, or
// to weigh near entries against NearMaxBytes. A near-only cache without
// that bound stores values as they are, and MaxValueBytes does not apply.
func (c *Cache[V]) needsBytes() bool {
	return c.far != nil || c.opts.NearMaxBytes > 0
}

// encode returns the bytes stored in Redis for v, which expires then.
func (c *Cache[V]) encode(key string, v V, expires time.Time) ([]byte, error) {
	data, err := c.encoder.EncodeExpiring(v, expires)
	if err != nil {
		return nil, fmt.Errorf("tier: encode %q: %w", key, err)
	}
	if len(data) > c.opts.MaxValueBytes {
		return nil, fmt.Errorf("%w: %q encodes to %d bytes, over MaxValueBytes (%d)", ErrValueTooLarge, key, len(data), c.opts.MaxValueBytes)
	}
	return data, nil
}

// encodeForStore encodes a loaded value; a value that cannot be stored is
// counted and logged, and returned to the callers uncached.
func (c *Cache[V]) encodeForStore(key string, v V, expires time.Time) ([]byte, bool) {
	data, err := c.encode(key, v, expires)
	if err != nil {
		c.stats.notCached.Add(1)
		c.log.Warn("tier: loaded value not cached", "key", key, "err", err)
		return nil, false
	}
	return data, true
}

func (c *Cache[V]) farError(op, key string, err error) {
	c.stats.farErrors.Add(1)
	c.log.Warn("tier: Redis unavailable; serving from the source", "op", op, "key", key, "err", err)
}

// jitter takes a random fraction, up to Options.Jitter, off ttl.
func (c *Cache[V]) jitter(ttl time.Duration) time.Duration {
	if c.opts.Jitter == 0 {
		return ttl
	}
	return ttl - time.Duration(rand.Float64()*c.opts.Jitter*float64(ttl))
}

// Set stores value under key in both tiers and tells the other replicas
// to drop their near copies. The near tier is updated even if Redis fails,
// so this process reads its own write; the Redis error is returned. A value
// over Options.MaxValueBytes is not stored and the error matches
// ErrValueTooLarge.
func (c *Cache[V]) Set(ctx context.Context, key string, value V) error {
	if c.closed.Load() {
		return ErrClosed
	}
	farTTL := c.jitter(c.opts.FarTTL)
	var data []byte
	if c.needsBytes() {
		var err error
		if data, err = c.encode(key, value, c.now().Add(farTTL)); err != nil {
			return err
		}
	}
	if c.far == nil {
		// Near-only: with no write to Redis in between there is nothing
		// for a drop to guard, so one store, in place: it stamps the key
		// as the drop would, and loads under way cannot store an older
		// value over it (TestSetDuringLoadWins).
		e := nearEntry[V]{value: value}
		c.near.SetWith(key, e, c.keep(&e, c.nearTTLFor(farTTL)), int64(len(data)))
		c.detach(key)
		return nil
	}
	// Drop the near copy first, so that loads under way cannot store an
	// older value over this one, and await this Set's message: until it is
	// back, messages about the key are about older writes, which the near
	// copy must not take (ownChange). Take a guard; write Redis; then store
	// the value unless something changed the key since the guard: a
	// message about another write, or a read of this replica that fetched
	// Redis before the write; the store stamps the key, so such a read
	// cannot replace it afterwards either (see local.SetIfUnchanged). This
	// Set's message settles what remains: it stores the pushed value, or
	// drops the key (applyOwnInvalidation).
	var (
		n      remote.Notice
		change *ownChange[V]
		farErr error
	)
	if c.bus != nil {
		var sent time.Time
		if n, sent, farErr = c.setNotice(key, data); farErr == nil {
			change = c.awaitOwn([]string{key}, sent, value)[0]
		}
	}
	if change == nil {
		c.near.Delete(key)
	}
	guard := c.near.StartFill()
	// The write and its message go in one round trip (one transaction on
	// a single server), so no failure between them leaves other replicas
	// holding the old value.
	switch {
	case c.bus == nil:
		farErr = c.far.Set(ctx, key, data, c.farKeep(farTTL, data))
	case change != nil:
		if farErr = c.far.SetNotify(ctx, key, data, c.farKeep(farTTL, data), n); farErr != nil {
			c.forgetOwn(key, change)
		}
	}
	if c.nearOK.Load() {
		e := nearEntry[V]{value: value}
		c.near.SetIfUnchanged(guard, key, e, c.keep(&e, c.nearTTLFor(farTTL)), int64(len(data)))
	}
	// A Get from now on must not join a read that began before the write.
	c.detach(key)
	if farErr != nil {
		c.stats.farErrors.Add(1)
		return fmt.Errorf("tier: set %q: %w", key, farErr)
	}
	return nil
}

// setNotice is the message to send with a Set of key to data, and its
// Sent time: data itself when it is small enough and messages arrive in
// the order of the writes (see Options.PushMaxBytes), else a bare
// invalidation.
func (c *Cache[V]) setNotice(key string, data []byte) (remote.Notice, time.Time, error) {
	if len(data) <= c.opts.PushMaxBytes && c.far.NotifyInOrder() {
		frames, sent, err := c.bus.UpdateFrames([]string{key}, [][]byte{data})
		if err == nil {
			return c.noticeOf(frames), sent, nil
		}
		// Too large for a message after all: a bare invalidation.
	}
	return c.notice(key)
}

// notice is the invalidation of keys, to send with the write that changes
// them, and its Sent time.
func (c *Cache[V]) notice(keys ...string) (remote.Notice, time.Time, error) {
	frames, sent, err := c.bus.Frames(keys...)
	if err != nil {
		return remote.Notice{}, time.Time{}, err
	}
	return c.noticeOf(frames), sent, nil
}

// noticeOf is the Notice that publishes frames on the bus's channel, with
// the bus's writer channel, so that this replica gets its own copy after
// every other replica (see invalidate.Bus.WriterChannel).
func (c *Cache[V]) noticeOf(frames [][]byte) remote.Notice {
	return remote.Notice{Channel: c.bus.Channel(), Payloads: frames, Sharded: c.opts.ShardedPubSub, Writer: c.bus.WriterChannel()}
}

// Delete removes keys from both tiers and tells the other replicas to drop
// their near copies. Loads of these keys that are under way do not store
// what they read in the near tier. The Redis error, if any, is returned
// after the near tier was cleared.
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
	var (
		err     error
		awaited []*ownChange[V]
	)
	if c.bus == nil {
		c.DropNear(keys...)
		err = c.far.Delete(ctx, keys...)
	} else if n, sent, nerr := c.notice(keys...); nerr != nil {
		c.DropNear(keys...)
		err = nerr
	} else {
		// Drop, and await the Delete's message, so that a late message of
		// an earlier Set cannot bring a value back (see ownChange).
		var zero V
		awaited = c.awaitOwn(keys, sent, zero)
		c.detach(keys...)
		if err = c.far.DeleteNotify(ctx, keys, n); err != nil {
			for i, k := range keys {
				c.forgetOwn(k, awaited[i])
			}
		}
	}
	// Again: a read of this replica that fetched Redis between the first
	// drop and the delete must not keep what it read. The changes awaited
	// stay awaited, settled: their messages need not drop again what a
	// read fills from now on (see applyOwnInvalidation).
	c.pendMu.Lock()
	for i, k := range keys {
		c.near.Delete(k)
		if awaited != nil && err == nil && c.pending[k] == awaited[i] {
			awaited[i].settled = true
		}
	}
	c.pendMu.Unlock()
	c.detach(keys...)
	if err != nil {
		c.stats.farErrors.Add(1)
		return fmt.Errorf("tier: delete: %w", err)
	}
	return nil
}

// Invalidate drops the near copies of keys in every replica, this one
// included, and leaves Redis as it is: use it after changing Redis by
// other means. Without invalidation (no Redis, or DisableInvalidation) it
// drops this replica's copies only.
func (c *Cache[V]) Invalidate(ctx context.Context, keys ...string) error {
	if c.closed.Load() {
		return ErrClosed
	}
	if len(keys) == 0 {
		return nil
	}
	c.DropNear(keys...)
	return c.publish(ctx, "invalidate", keys...)
}

// InvalidateAll drops every near copy in every replica.
func (c *Cache[V]) InvalidateAll(ctx context.Context) error {
	if c.closed.Load() {
		return ErrClosed
	}
	if c.bus == nil {
		c.near.Purge()
		c.detachAll()
		return nil
	}
	// Await the message, so that one sent before it and arriving after
	// cannot store its value (see awaitAll).
	c.pendMu.Lock()
	c.awaitAll++
	c.near.Purge()
	c.pendMu.Unlock()
	c.detachAll()
	if err := c.bus.PublishAll(ctx); err != nil {
		c.pendMu.Lock()
		c.awaitAll = max(c.awaitAll-1, 0)
		c.pendMu.Unlock()
		c.stats.farErrors.Add(1)
		return fmt.Errorf("tier: invalidate all: %w", err)
	}
	return nil
}

func (c *Cache[V]) publish(ctx context.Context, op string, keys ...string) error {
	if c.bus == nil {
		return nil
	}
	if err := c.bus.Publish(ctx, keys...); err != nil {
		c.stats.farErrors.Add(1)
		return fmt.Errorf("tier: %s: %w", op, err)
	}
	return nil
}

// WaitReady waits until the cache uses its near tier: until its
// invalidation subscription is confirmed, which New waits for only up to
// FarTimeout, and which a cache loses and recovers by itself when Redis
// does (see Stats.Losses). Until then Gets are answered from Redis or the
// loader, never from the near tier. It returns nil at once for a cache
// without invalidation (no Redis, or DisableInvalidation), the context's
// error if it ends first, and ErrClosed after Close. A service can use it
// as a readiness check.
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

// DropNear removes keys from this process's near tier only; the next Get
// of each reads Redis. Loads of these keys under way do not store what they
// read in the near tier, and Gets from now on do not wait for them.
func (c *Cache[V]) DropNear(keys ...string) {
	c.pendMu.Lock()
	for _, k := range keys {
		// A change awaited stays awaited, so that older messages still
		// only drop, but its message will not store its value.
		if p := c.pending[k]; p != nil {
			p.dropped = true
		}
		c.near.Delete(k)
	}
	c.pendMu.Unlock()
	c.detach(keys...)
}

// GetMany returns the values of keys: near hits first, then all near
// misses from Redis in one round trip, then one call of loader for what is
// left, whose results are stored in both tiers (Redis in one round trip).
// Keys without a value (cached or loaded as not found) are absent from the
// map. If the loader fails, GetMany returns what it found with the error.
// GetMany runs in the caller's context and does not join the flights of
// concurrent Gets; its fills are guarded against invalidations all the same.
func (c *Cache[V]) GetMany(ctx context.Context, keys []string, loader BatchLoader[V]) (map[string]V, error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	out := make(map[string]V, len(keys))
	seen := make(map[string]struct{}, len(keys))
	var missing []string
	for _, k := range keys {
		if _, dup := seen[k]; dup {
			continue
		}
		seen[k] = struct{}{}
		if e, ok := c.near.Get(k); ok && c.isFresh(e) {
			if !e.absent {
				out[k] = e.value
			}
			continue
		}
		missing = append(missing, k)
	}
	if len(missing) == 0 {
		return out, nil
	}
	if err := ctx.Err(); err != nil {
		return out, fmt.Errorf("tier: getmany: %w", err)
	}
	guard := c.near.StartFill()
	toLoad := missing
	corrupted := map[string][]byte{} // read from Redis as bytes that do not decode, or expired
	stale := map[string]V{}          // expired values kept for StaleGrace, to serve if the load fails
	farDown := false
	if c.far != nil {
		items, err := c.far.GetValues(ctx, missing)
		if err != nil && ctx.Err() != nil {
			return out, fmt.Errorf("tier: getmany: %w", ctx.Err())
		}
		if err != nil {
			c.farError("getmany", missing[0], err)
			farDown = true
		} else {
			toLoad = toLoad[:0:0]
			for _, k := range missing {
				data, found := items[k]
				if !found {
					toLoad = append(toLoad, k)
					continue
				}
				if isLease(data) { // another load is under way
					toLoad = append(toLoad, k)
					continue
				}
				v, absent, ok := c.decode(k, data)
				if !ok || c.expired(data) {
					// Reloaded, and written over these bytes.
					toLoad = append(toLoad, k)
					corrupted[k] = data
					if ok && !absent {
						stale[k] = v
					}
					continue
				}
				c.stats.farHits.Add(1)
				if !absent {
					out[k] = v
				}
				c.fillFromFar(guard, k, nearEntry[V]{value: v, absent: absent}, data)
			}
		}
	}
	if len(toLoad) == 0 {
		return out, nil
	}
	c.stats.misses.Add(uint64(len(toLoad)))
	// As in loadThrough: leases first, then a write only over each lease,
	// or over the corrupt bytes read.
	var leases map[string][]byte
	if !farDown {
		leases = c.takeLeases(ctx, toLoad, corrupted)
	}
	loaded, err := c.loadMany(ctx, loader, toLoad)
	if err != nil {
		c.stats.loadErrors.Add(1)
		c.swapFar(ctx, leaseReleases(leases))
		// As Get does: what expired within StaleGrace is served; the
		// error stands only for keys with nothing to serve.
		for k, v := range stale {
			out[k] = v
		}
		c.stats.staleServed.Add(uint64(len(stale)))
		if len(stale) == len(toLoad) {
			return out, nil
		}
		return out, fmt.Errorf("tier: load %d keys: %w", len(toLoad)-len(stale), err)
	}
	swaps := make(map[string]remote.SwapItem, len(leases)+len(corrupted))
	for _, k := range toLoad {
		v, found := loaded[k]
		e := nearEntry[V]{value: v, absent: !found}
		farTTL := c.jitter(c.opts.NotFoundTTL)
		data, nearTTL := codec.TombstoneExpiring(c.now().Add(farTTL)), farTTL
		if found {
			out[k] = v
			farTTL = c.jitter(c.opts.FarTTL)
			data = nil
			if c.needsBytes() {
				var ok bool
				if data, ok = c.encodeForStore(k, v, c.now().Add(farTTL)); !ok {
					if l := leases[k]; l != nil {
						swaps[k] = remote.SwapItem{Old: l} // give it back
					}
					continue
				}
			}
			nearTTL = c.nearTTLFor(farTTL)
		}
		switch {
		case corrupted[k] != nil:
			swaps[k] = remote.SwapItem{Old: corrupted[k], Value: data, TTL: c.farKeep(farTTL, data)}
		case leases[k] != nil:
			swaps[k] = remote.SwapItem{Old: leases[k], Value: data, TTL: c.farKeep(farTTL, data)}
		}
		c.fillNear(guard, k, e, nearTTL, int64(len(data)))
	}
	c.swapFar(ctx, swaps)
	return out, nil
}

// takeLeases is takeLease for the keys of a batch load, but for those in
// skip; it returns the leases it took, by key.
func (c *Cache[V]) takeLeases(ctx context.Context, keys []string, skip map[string][]byte) map[string][]byte {
	if c.far == nil {
		return nil
	}
	leases := make(map[string][]byte, len(keys))
	want := make(map[string]remote.Item, len(keys))
	for _, k := range keys {
		if skip[k] == nil {
			leases[k] = newLease()
			want[k] = remote.Item{Value: leases[k], TTL: c.opts.LoadTimeout}
		}
	}
	added, err := c.far.AddMany(ctx, want)
	if err != nil {
		c.farError("lease", keys[0], err)
		return nil
	}
	for k := range leases {
		if !added[k] {
			delete(leases, k)
		}
	}
	return leases
}

// leaseReleases gives every lease back.
func leaseReleases(leases map[string][]byte) map[string]remote.SwapItem {
	swaps := make(map[string]remote.SwapItem, len(leases))
	for k, l := range leases {
		swaps[k] = remote.SwapItem{Old: l}
	}
	return swaps
}

// swapFar writes a batch's results, each over its lease or the corrupt
// bytes read, in one round trip.
func (c *Cache[V]) swapFar(ctx context.Context, swaps map[string]remote.SwapItem) {
	if c.far == nil {
		return
	}
	// The error names the first key that failed.
	if err := c.far.SwapMany(ctx, swaps); err != nil {
		c.farError("swapmany", "", err)
	}
}

// loadMany calls the batch loader, turning a panic into an error.
func (c *Cache[V]) loadMany(ctx context.Context, loader BatchLoader[V], keys []string) (m map[string]V, err error) {
	c.stats.loads.Add(1)
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("tier: batch loader panicked", "keys", len(keys), "panic", r, "stack", string(debug.Stack()))
			err = fmt.Errorf("%w: %v", ErrLoaderPanic, r)
		}
	}()
	return loader.LoadMany(ctx, keys)
}

// Stats counts what the cache has done since it was created.
type Stats struct {
	NearHits  uint64 // lookups answered by the near tier
	FarHits   uint64 // near misses answered by Redis
	Misses    uint64 // keys found in neither tier
	Loads     uint64 // loader calls (GetMany's batch loader counts once a batch)
	LoadWaits uint64 // waits for another replica's load (Options.WaitForLoads)

	Refreshes     uint64 // background refreshes of hot keys (Options.RefreshAhead)
	RefreshErrors uint64 // refreshes that failed; the entry then expired as usual
	StaleServed   uint64 // expired values served within StaleGrace (Options.StaleGrace)
	LoadErrors    uint64 // loads that failed (not counting ErrNotFound)
	FarErrors     uint64 // Redis operations that failed
	Corrupt       uint64 // values in Redis that did not decode, reloaded and overwritten
	NotCached     uint64 // loaded values returned but not stored (too large, not encodable)
	Evictions     uint64 // near entries evicted to make room

	Invalidations uint64 // keys dropped on messages from other replicas or operators
	Updates       uint64 // keys whose new value another replica's Set pushed here
	Malformed     uint64 // invalidation messages ignored as malformed
	Losses        uint64 // invalidation subscriptions lost (near tier dropped)
	Reconnects    uint64 // subscriptions re-established after a loss
}

// Stats returns the counters.
func (c *Cache[V]) Stats() Stats {
	n := c.near.Stats()
	st := Stats{
		NearHits:  n.Hits,
		FarHits:   c.stats.farHits.Load(),
		Misses:    c.stats.misses.Load(),
		Loads:     c.stats.loads.Load(),
		LoadWaits: c.stats.loadWaits.Load(),

		Refreshes:     c.stats.refreshes.Load(),
		RefreshErrors: c.stats.refreshErrors.Load(),
		StaleServed:   c.stats.staleServed.Load(),
		LoadErrors:    c.stats.loadErrors.Load(),
		FarErrors:     c.stats.farErrors.Load(),
		Corrupt:       c.stats.corrupt.Load(),
		NotCached:     c.stats.notCached.Load(),
		Evictions:     n.Evictions,

		Invalidations: c.stats.invalidations.Load(),
		Updates:       c.stats.updates.Load(),
	}
	if c.bus != nil {
		b := c.bus.Stats()
		st.Malformed, st.Losses, st.Reconnects = b.Malformed, b.Losses, b.Reconnects
	}
	return st
}

// Close cancels running loads, waits for them to end, and stops the near
// tier's goroutine. Calls made after Close return ErrClosed. Close does not
// close the Redis client, which belongs to the caller. It is idempotent.
func (c *Cache[V]) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed.Store(true)
		c.mu.Unlock()
		if c.bus != nil {
			c.bus.Close()
		}
		c.cancel()
		c.wg.Wait()
		c.near.Close()
	})
	return nil
}
