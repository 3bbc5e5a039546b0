package tier

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tier-cache/tier/codec"
	"github.com/tier-cache/tier/local"
)

// Options configure a [Cache]. The zero value is valid: a near-only cache
// with the defaults documented on each field. Durations are validated in
// [New]; a negative one is an error unless its field says what -1 means.
type Options struct {
	// Redis is the far tier, shared by every replica: any go-redis client
	// (single node, Sentinel failover, Cluster) built with
	// ContextTimeoutEnabled: true. The cache never closes it.
	// Default: nil, a near-only cache.
	Redis redis.UniversalClient

	// Namespace prefixes every Redis key ("<Namespace>:<key>") and names
	// the invalidation channel ("<Namespace>:invalidate"). Default: "tier".
	Namespace string

	// Near configures the near tier, in this process's memory.
	Near NearOptions

	// FarTTL is how long a value stays in Redis. Default: 10m.
	FarTTL time.Duration

	// NotFoundTTL is how long a loader's [ErrNotFound] is cached, in both
	// tiers. Default: 10s.
	NotFoundTTL time.Duration

	// Jitter is the largest fraction of each TTL taken off at random, so
	// that keys written together do not expire together; in [0, 1), or -1
	// for none. Default: 0.1.
	Jitter float64

	// FarTimeout bounds each Redis operation; at least 1ms. Default: 100ms.
	FarTimeout time.Duration

	// LoadTimeout bounds a load, which runs detached from the callers that
	// wait for it; a lease in Redis lives this long. Default: 30s.
	LoadTimeout time.Duration

	// WaitForLoads, when > 0, makes a miss that finds another replica's
	// lease in Redis wait up to this long for that load's value instead of
	// loading itself: many replicas missing one cold key then cost the
	// source one load. At most LoadTimeout. Default: 0, off.
	WaitForLoads time.Duration

	// Refresh keeps hot keys fresh and serves expired values when the
	// source fails. Default: off.
	Refresh RefreshOptions

	// Invalidation configures how replicas tell each other of changes.
	Invalidation InvalidationOptions

	// Values configures how values are encoded and bounded.
	Values ValueOptions

	// Logger receives state changes of Redis and of the subscription,
	// and, at debug level, per-key events. Default: none.
	Logger *slog.Logger

	// Clock gives the time by which every deadline is computed and
	// judged; tests pass a fake one. Default: the system clock (the near
	// tier reads it through a cheap coarse clock).
	Clock local.Clock
}

// NearOptions configure the near tier (package local).
type NearOptions struct {
	// Capacity is the most entries the near tier holds. Default: 10000.
	Capacity int

	// TTL is how long a value stays in the near tier, never longer than
	// its Redis copy. Default: 1m.
	TTL time.Duration

	// MaxBytes, when > 0, also bounds the near tier by the encoded size of
	// its values (which are then encoded even without Redis).
	// Default: 0, Capacity alone.
	MaxBytes int64

	// Admission, when true, lets a frequency filter choose what the near
	// tier keeps (S3-FIFO; see local.Options.Admission): a higher hit
	// ratio than recency alone on skewed workloads, for a fixed table of
	// about 4 bytes per entry of Capacity. Default: false, approximate LRU.
	Admission bool
}

// RefreshOptions keep hot keys fresh and serve expired values when their
// reload fails. See "Refresh and stale values" in the package
// documentation.
type RefreshOptions struct {
	// Ahead, in [0, 1), makes a near hit in this last fraction of its
	// entry's NearTTL start one background refresh of the key: from Redis,
	// or from the loader when Redis's copy is in this last fraction of
	// FarTTL too. Default: 0, off.
	Ahead float64

	// StaleGrace keeps each value this long past its TTL, in both tiers,
	// as a stale value to serve ([Result].Stale) when its reload fails or
	// outlasts SoftTimeout. A key that was Set or Deleted is never served
	// stale, and a cached "not found" earns no grace. Default: 0, off.
	StaleGrace time.Duration

	// SoftTimeout, with StaleGrace, is how long a caller that has a stale
	// value waits for its reload before it gets the stale value; the
	// reload goes on. Default: 0, wait for the reload.
	SoftTimeout time.Duration
}

// InvalidationOptions configure the pub/sub channel over which replicas
// drop each other's stale near copies (see package invalidate).
type InvalidationOptions struct {
	// Disabled turns cross-replica invalidation off: then NearTTL alone
	// bounds how long a replica serves a value changed elsewhere.
	Disabled bool

	// Sharded uses sharded pub/sub (SPUBLISH, SSUBSCRIBE; Redis 7 and
	// later), so that on a cluster a message reaches one shard instead of
	// every node. The ACL user then needs +spublish +ssubscribe.
	Sharded bool

	// HealthInterval is how long the subscription may be silent before it
	// is checked with a PING; one that does not answer within another
	// HealthInterval is lost. Default: 1s.
	HealthInterval time.Duration

	// DegradedNearTTL bounds how long a value loaded while invalidations
	// may be lost (the subscription is down, or Redis is unreachable) is
	// kept in the near tier; -1 keeps none. Default: 2×HealthInterval,
	// the time a lost subscription may take to be noticed.
	DegradedNearTTL time.Duration

	// WatchExternalWrites also drops near copies when a program other
	// than tier writes a key under the namespace (redis-cli SET, DEL,
	// EXPIRE), through keyspace notifications, which the server must
	// enable: CONFIG SET notify-keyspace-events K$gx. tier's own writes
	// are notified too and cannot be told apart: a Set's or a load's near
	// copy is dropped when its notification arrives (the next Get reads
	// Redis), and a lease's detaches its load, so Gets during it load
	// again unless WaitForLoads is set. Single server only; not with
	// Sharded. Default: false.
	WatchExternalWrites bool

	// OnPropagation, when set, is called with the lag of each message
	// from another replica, once this replica has dropped what it names:
	// from the start of the Set, Delete or Invalidate that sent it until
	// this replica stopped serving the old value, by the two machines'
	// clocks. It runs on the subscription's goroutine and must not block.
	OnPropagation func(lag time.Duration)
}

// ValueOptions configure how values are encoded for Redis and bounded.
type ValueOptions struct {
	// Codec encodes values for Redis. Default: codec.Msgpack.
	Codec codec.Codec

	// CompressAbove compresses encoded values longer than this many bytes
	// with S2. Default: 0, never.
	CompressAbove int

	// MaxBytes is the largest encoded value cached: a larger loaded value
	// is returned but not cached, and Set fails with [ErrValueTooLarge].
	// Default: 8 MiB.
	MaxBytes int
}

// Defaults of Options.
const (
	defaultNamespace      = "tier"
	defaultNearCapacity   = 10_000
	defaultNearTTL        = time.Minute
	defaultFarTTL         = 10 * time.Minute
	defaultNotFoundTTL    = 10 * time.Second
	defaultJitter         = 0.1
	defaultFarTimeout     = 100 * time.Millisecond
	defaultLoadTimeout    = 30 * time.Second
	defaultHealthInterval = time.Second
	defaultMaxBytes       = 8 << 20
	maxNamespaceLen       = 256
)

// ErrInvalidOptions is matched by every error [New] returns for bad options.
var ErrInvalidOptions = errors.New("tier: invalid options")

// withDefaults validates o and returns a copy with the defaults filled in.
func (o Options) withDefaults() (Options, error) {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: %s %s", ErrInvalidOptions, field, fmt.Sprintf(format, args...))
	}
	type dur struct {
		name string
		v    *time.Duration
		def  time.Duration
		min  time.Duration // smallest value allowed, when set
	}
	inv, ref := &o.Invalidation, &o.Refresh
	if inv.HealthInterval == 0 {
		inv.HealthInterval = defaultHealthInterval
	}
	for _, d := range []dur{
		{"Near.TTL", &o.Near.TTL, defaultNearTTL, time.Millisecond},
		{"FarTTL", &o.FarTTL, defaultFarTTL, time.Millisecond},
		{"NotFoundTTL", &o.NotFoundTTL, defaultNotFoundTTL, time.Millisecond},
		{"FarTimeout", &o.FarTimeout, defaultFarTimeout, time.Millisecond},
		{"LoadTimeout", &o.LoadTimeout, defaultLoadTimeout, time.Millisecond},
		{"WaitForLoads", &o.WaitForLoads, 0, 0},
		{"Invalidation.HealthInterval", &inv.HealthInterval, defaultHealthInterval, time.Millisecond},
		{"Refresh.StaleGrace", &ref.StaleGrace, 0, 0},
		{"Refresh.SoftTimeout", &ref.SoftTimeout, 0, 0},
	} {
		switch {
		case *d.v < 0:
			return o, bad(d.name, "must not be negative, got %v", *d.v)
		case *d.v == 0:
			*d.v = d.def
		case *d.v < d.min:
			// Redis keeps time to the millisecond.
			return o, bad(d.name, "must be at least %v, got %v", d.min, *d.v)
		}
	}
	switch {
	case inv.DegradedNearTTL == 0:
		inv.DegradedNearTTL = 2 * inv.HealthInterval
	case inv.DegradedNearTTL < -1:
		return o, bad("Invalidation.DegradedNearTTL", "must be -1 (keep none) or more, got %v", inv.DegradedNearTTL)
	}
	switch {
	case o.Jitter == 0:
		o.Jitter = defaultJitter
	case o.Jitter == -1:
		o.Jitter = 0
	case !(o.Jitter > 0 && o.Jitter < 1): // also NaN
		return o, bad("Jitter", "must be in [0, 1) or -1 (none), got %v", o.Jitter)
	}
	switch {
	case !(ref.Ahead >= 0 && ref.Ahead < 1):
		return o, bad("Refresh.Ahead", "must be in [0, 1), got %v", ref.Ahead)
	case ref.SoftTimeout > 0 && ref.StaleGrace == 0:
		return o, bad("Refresh.SoftTimeout", "does nothing without Refresh.StaleGrace: a caller has no stale value to fall back on")
	case o.Near.Capacity < 0:
		return o, bad("Near.Capacity", "must not be negative, got %d", o.Near.Capacity)
	case o.Near.MaxBytes < 0:
		return o, bad("Near.MaxBytes", "must not be negative, got %d", o.Near.MaxBytes)
	case o.Values.CompressAbove < 0:
		return o, bad("Values.CompressAbove", "must not be negative, got %d", o.Values.CompressAbove)
	case o.Values.MaxBytes < 0:
		return o, bad("Values.MaxBytes", "must not be negative, got %d", o.Values.MaxBytes)
	case o.WaitForLoads > o.LoadTimeout:
		return o, bad("WaitForLoads", "must be at most LoadTimeout (%v), got %v", o.LoadTimeout, o.WaitForLoads)
	case o.Redis == nil && (o.WaitForLoads > 0 || inv.WatchExternalWrites || inv.Sharded):
		return o, bad("Redis", "is nil, and WaitForLoads, Invalidation.Sharded and Invalidation.WatchExternalWrites need it")
	case inv.WatchExternalWrites && (inv.Disabled || inv.Sharded):
		return o, bad("Invalidation.WatchExternalWrites", "does not work with Invalidation.Disabled or Invalidation.Sharded")
	}
	if o.Namespace == "" {
		o.Namespace = defaultNamespace
	}
	if err := checkNamespace(o.Namespace); err != nil {
		return o, bad("Namespace", "%v", err)
	}
	if o.Near.Capacity == 0 {
		o.Near.Capacity = defaultNearCapacity
	}
	if o.Values.MaxBytes == 0 {
		o.Values.MaxBytes = defaultMaxBytes
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, nil
}

// checkNamespace refuses only what would break: control characters, which
// make keys, channel names and log lines ambiguous, and a length that
// would bloat every key. A ':' is allowed, as Redis users name things
// "app:users"; it is the user's part to keep namespaces apart ("a" with
// key "b:c" and "a:b" with key "c" name the same Redis key). Braces make
// a cluster hash tag, which puts every key of the namespace on one node.
func checkNamespace(ns string) error {
	if len(ns) > maxNamespaceLen {
		return fmt.Errorf("is %d bytes long, more than %d", len(ns), maxNamespaceLen)
	}
	for _, r := range ns {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%q contains the control character %U", ns, r)
		}
	}
	return nil
}

// addSat returns a+b, or the largest Duration if that overflows: a TTL of
// centuries means "practically forever", never "already expired".
func addSat(a, b time.Duration) time.Duration {
	if b > 0 && a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// deadline returns now+d in Unix nanoseconds, saturating.
func deadline(now int64, d time.Duration) int64 {
	return int64(addSat(time.Duration(now), d))
}
