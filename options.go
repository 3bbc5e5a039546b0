package tier

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tier-cache/tier/codec"
	"github.com/tier-cache/tier/local"
)

// Options configure a [Cache]. The zero value is valid: a near-only cache
// with the defaults documented on each field.
type Options struct {
	// Redis is the far tier, shared by every replica. Any go-redis client
	// works (single node, Sentinel failover, Cluster), with the caller's own
	// TLS, ACL and pool settings; the cache never closes it. Default: nil,
	// a near-only cache.
	Redis redis.UniversalClient

	// Namespace prefixes every Redis key ("<Namespace>:<key>"), so that
	// several caches can share one Redis. Default: "tier".
	Namespace string

	// NearCapacity is the most entries the near tier holds. Default: 10000.
	NearCapacity int

	// NearMaxBytes, when > 0, bounds the encoded size of the values in the
	// near tier (each entry weighs its encoded length). Default: 0, bounded
	// by NearCapacity alone.
	NearMaxBytes int64

	// NearTTL is how long a value stays in the near tier; it is also capped
	// by the time the value has left in Redis, and so, with Redis set, by
	// FarTTL. Default: 1m.
	NearTTL time.Duration

	// FarTTL is how long a loaded or Set value stays in Redis. Default: 10m.
	FarTTL time.Duration

	// NotFoundTTL is how long a "not found" answer of the loader (see
	// [ErrNotFound]) is cached, in both tiers. Default: 10s.
	NotFoundTTL time.Duration

	// Jitter is the largest fraction of a TTL that is randomly taken off
	// each stored entry, so that keys written together do not expire
	// together. Must be in [0, 1). Default: 0.1; set DisableJitter for none.
	Jitter float64

	// DisableJitter stores every entry with its exact TTL.
	DisableJitter bool

	// Codec encodes values for Redis. Default: codec.Msgpack.
	Codec codec.Codec

	// CompressAbove compresses encoded values longer than this many bytes
	// (S2). Default: 0, no compression.
	CompressAbove int

	// MaxValueBytes is the largest encoded value the cache stores. A loaded
	// value over it is returned but not cached; Set returns
	// [ErrValueTooLarge]. A near-only cache without NearMaxBytes never
	// encodes its values (it stores them as they are), so the bound does
	// not apply there. Default: 8 MiB.
	MaxValueBytes int

	// FarTimeout bounds each Redis operation (see remote.Options.Timeout:
	// operations under a context that cannot be cancelled may take up to
	// 1/64 of it more). Default: 100ms.
	FarTimeout time.Duration

	// LoadTimeout bounds a load, which runs detached from the callers that
	// wait for it. Default: 30s.
	LoadTimeout time.Duration

	// RefreshAhead, when > 0, refreshes hot keys before they expire: a near
	// hit on an entry within this fraction of NearTTL of its deadline
	// starts one background refresh of the key (per process; callers never
	// wait for it). The refresh reads Redis, and reloads from the loader
	// when Redis's copy is itself within this fraction of FarTTL of its
	// deadline, writing Redis only over the bytes it read (never over a
	// newer write). Its errors are counted (Stats.RefreshErrors), never
	// returned; the entry then expires as usual. Must be in [0, 1).
	// Default: 0, off.
	RefreshAhead float64

	// StaleGrace, when > 0, keeps each value this long past its TTL, in
	// both tiers, as a stale value to serve when its reload fails (or
	// outlasts SoftTimeout): the caller gets it without an error, marked
	// Result.Stale and counted in Stats.StaleServed, while the load goes
	// on and refreshes the key. Only expiry earns grace: a key that was
	// Set or Deleted is never served stale, and a cached "not found" gets
	// none (it lives NotFoundTTL). Invalidate drops near copies only, so
	// the Redis copy, which it takes to be current, keeps its grace.
	// GetMany serves what is in grace the same way, for the keys whose
	// reload fails. Default: 0, off.
	StaleGrace time.Duration

	// SoftTimeout, with StaleGrace, is how long a caller holding a stale
	// value waits for its reload before it gets the stale value instead;
	// LoadTimeout still bounds a caller that has none. Default: 0, wait
	// for the load and fall back only when it fails.
	SoftTimeout time.Duration

	// WaitForLoads turns on single flight across replicas: a miss that
	// finds in Redis the lease of another replica's load of the key waits
	// up to this long for that load's value, reading Redis with a backoff
	// from 1ms to 32ms, instead of loading itself; if the lease is given
	// back, expires or outlasts the wait, it loads. With many replicas
	// missing one cold key at once, the source sees one load instead of
	// one per replica. Default: 0, off: each replica loads for itself
	// (within a replica, loads of a key are always single-flight). At most
	// LoadTimeout, which is how long a lease lives.
	WaitForLoads time.Duration

	// DisableInvalidation turns off cross-replica invalidation. By default,
	// with Redis set, Set, Delete and Invalidate publish the keys they
	// change on the channel "<Namespace>:invalidate", and every replica
	// drops its near copies of them (see package invalidate). Turn it off
	// only when NearTTL alone bounds staleness well enough.
	DisableInvalidation bool

	// PushMaxBytes is the largest encoded value that Set pushes to the
	// other replicas inside its invalidation message, so that a replica
	// holding the key replaces its near copy at once rather than dropping
	// it and reading Redis on its next Get. Larger values, and every value
	// on a Redis Cluster (where a write and its message cannot share a
	// transaction, so messages could arrive out of the order of the
	// writes), are announced by a bare invalidation. Default: 4096.
	PushMaxBytes int

	// DisablePush makes Set announce every value by a bare invalidation.
	DisablePush bool

	// ShardedPubSub sends invalidations with sharded pub/sub (SPUBLISH and
	// SSUBSCRIBE, Redis 7 and later): on a Redis Cluster each message goes
	// only to the shard that owns the channel's slot, rather than to every
	// node. The ACL then needs +spublish +ssubscribe. Default: false.
	ShardedPubSub bool

	// HealthInterval is how long the invalidation subscription may be
	// silent before it is checked with a PING; a subscription that does not
	// answer within another HealthInterval is declared lost. Default: 1s.
	HealthInterval time.Duration

	// WatchExternalWrites makes writes made outside tier (an operator's
	// redis-cli SET, DEL or EXPIRE, another program) on keys under the
	// namespace drop the near copies on every replica, through Redis
	// keyspace notifications. The server must enable them, at least
	// `CONFIG SET notify-keyspace-events K$gx` (New checks with CONFIG GET
	// and fails with the command to run; the ACL user then needs
	// +config|get and +psubscribe). Every write tier makes is then
	// announced this way too, so replicas drop rather than take pushed
	// values and refill from Redis. A load's own lease and fill are
	// announced as well, and cannot be told from another program's
	// writes: each detaches the load's flight and keeps its value out of
	// the near tier (the next Get reads it from Redis), so Gets of the key
	// that arrive during the load start another; set WaitForLoads, and
	// they wait for the first load's value instead of loading again.
	// Single server only (keyspace notifications are per node); not with
	// ShardedPubSub or DisableInvalidation. Default: false.
	WatchExternalWrites bool

	// OnPropagation, when set, is called with the propagation lag of each
	// message received from another replica: from the start of the Set,
	// Delete or Invalidate that sent it to its arrival here, by the two
	// machines' clocks. It runs on the subscription's goroutine, so it must
	// be quick and must not block (a histogram's Observe is). The
	// github.com/tier-cache/tier/prom module provides one. Default: none.
	OnPropagation func(lag time.Duration)

	// Logger receives far-tier errors and corrupt values. Default: none.
	Logger *slog.Logger

	// Clock judges near-tier deadlines, and gives the wall time from which
	// the deadlines recorded in values written to Redis are computed and
	// judged (tests pass a fake one). Default: the near tier's coarse
	// monotonic clock for the former, the system clock for the latter.
	Clock local.Clock
}

const (
	defaultNamespace     = "tier"
	defaultNearCapacity  = 10_000
	defaultNearTTL       = time.Minute
	defaultFarTTL        = 10 * time.Minute
	defaultNotFoundTTL   = 10 * time.Second
	defaultJitter        = 0.1
	defaultMaxValueBytes = 8 << 20
	defaultFarTimeout    = 100 * time.Millisecond
	defaultPushMaxBytes  = 4096
	defaultLoadTimeout   = 30 * time.Second

	defaultHealthInterval = time.Second
)

// ErrInvalidOptions is matched by every error [New] returns for bad options.
var ErrInvalidOptions = errors.New("tier: invalid options")

// withDefaults validates o and returns a copy with the defaults filled in.
func (o Options) withDefaults() (Options, error) {
	bad := func(field string, format string, args ...any) error {
		return fmt.Errorf("%w: %s %s", ErrInvalidOptions, field, fmt.Sprintf(format, args...))
	}
	type dur struct {
		name string
		v    *time.Duration
		def  time.Duration
	}
	for _, d := range []dur{
		{"NearTTL", &o.NearTTL, defaultNearTTL},
		{"FarTTL", &o.FarTTL, defaultFarTTL},
		{"NotFoundTTL", &o.NotFoundTTL, defaultNotFoundTTL},
		{"FarTimeout", &o.FarTimeout, defaultFarTimeout},
		{"LoadTimeout", &o.LoadTimeout, defaultLoadTimeout},
		{"HealthInterval", &o.HealthInterval, defaultHealthInterval},
		{"WaitForLoads", &o.WaitForLoads, 0},
		{"StaleGrace", &o.StaleGrace, 0},
		{"SoftTimeout", &o.SoftTimeout, 0},
	} {
		switch {
		case *d.v < 0:
			return o, bad(d.name, "must be >= 0, got %v", *d.v)
		case *d.v == 0:
			*d.v = d.def
		case *d.v < time.Millisecond && (d.name == "NearTTL" || d.name == "FarTTL" || d.name == "NotFoundTTL"):
			// Redis expiries have millisecond resolution.
			return o, bad(d.name, "must be at least 1ms, got %v", *d.v)
		}
	}
	switch {
	case o.NearCapacity < 0:
		return o, bad("NearCapacity", "must be >= 0, got %d", o.NearCapacity)
	case o.NearMaxBytes < 0:
		return o, bad("NearMaxBytes", "must be >= 0, got %d", o.NearMaxBytes)
	case o.RefreshAhead < 0 || o.RefreshAhead >= 1:
		return o, bad("RefreshAhead", "must be in [0, 1), got %v", o.RefreshAhead)
	case o.Jitter < 0 || o.Jitter >= 1:
		return o, bad("Jitter", "must be in [0, 1), got %v", o.Jitter)
	case o.CompressAbove < 0:
		return o, bad("CompressAbove", "must be >= 0, got %d", o.CompressAbove)
	case o.MaxValueBytes < 0:
		return o, bad("MaxValueBytes", "must be >= 0, got %d", o.MaxValueBytes)
	case o.WaitForLoads > o.LoadTimeout:
		return o, bad("WaitForLoads", "must be at most LoadTimeout (%v), got %v", o.LoadTimeout, o.WaitForLoads)
	case o.PushMaxBytes < 0:
		return o, bad("PushMaxBytes", "must be >= 0, got %d", o.PushMaxBytes)
	}
	if o.PushMaxBytes == 0 {
		o.PushMaxBytes = defaultPushMaxBytes
	}
	if o.DisablePush {
		o.PushMaxBytes = 0
	}
	if o.Namespace == "" {
		o.Namespace = defaultNamespace
	}
	if o.NearCapacity == 0 {
		o.NearCapacity = defaultNearCapacity
	}
	if o.Jitter == 0 {
		o.Jitter = defaultJitter
	}
	if o.DisableJitter {
		o.Jitter = 0
	}
	if o.MaxValueBytes == 0 {
		o.MaxValueBytes = defaultMaxValueBytes
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, nil
}
