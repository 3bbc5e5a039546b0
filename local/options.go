package local

import (
	"errors"
	"fmt"
	"time"
)

// Options configure a [Cache]. Only Capacity is required; every other zero
// value means the documented default.
type Options[K comparable, V any] struct {
	// Capacity is the most entries the cache holds. Required, > 0.
	Capacity int

	// MaxWeight, when > 0, bounds the total weight of the entries, where each
	// entry's weight is the one given to [Cache.SetWith] (1 for [Cache.Set]).
	// An entry heavier than MaxWeight is not stored. Default: 0, no bound
	// on weight.
	MaxWeight int64

	// TTL is how long an entry lives when it is stored without a TTL of its
	// own. Default: 0, such entries never expire (they are still evicted
	// when the cache is full).
	TTL time.Duration

	// Shards is the number of independently locked parts of the cache: a
	// power of two, at most Capacity and at most 256. Default: 1 below 512
	// entries of capacity (exact LRU order), else the largest power of two
	// not above Capacity/256, at most 64.
	Shards int

	// Clock judges deadlines. Default: the monotonic system clock, read
	// through a value refreshed every millisecond (see the package
	// documentation); [SystemClock] reads it exactly on every access.
	Clock Clock

	// OnEvict, if set, is called for every entry that leaves the cache,
	// with the reason. It runs on the goroutine whose call removed the
	// entry, after the cache's locks are released, so it may call the cache.
	// Entries dropped by Purge are reported with CauseDeleted.
	OnEvict func(key K, value V, cause Cause)
}

// Cause says why an entry left the cache.
type Cause uint8

// The causes reported to Options.OnEvict.
const (
	CauseCapacity Cause = iota + 1 // evicted to make room, by count or weight
	CauseExpired                   // its deadline passed
	CauseDeleted                   // removed by Delete or Purge
	CauseReplaced                  // a new value was stored under its key
)

// String returns the cause's name.
func (c Cause) String() string {
	switch c {
	case CauseCapacity:
		return "capacity"
	case CauseExpired:
		return "expired"
	case CauseDeleted:
		return "deleted"
	case CauseReplaced:
		return "replaced"
	}
	return fmt.Sprintf("Cause(%d)", uint8(c))
}

// ErrInvalidOptions is matched by every error New returns.
var ErrInvalidOptions = errors.New("local: invalid options")

const (
	maxShards          = 256
	defaultShardsLimit = 64
	entriesPerShard    = 256
)

func (o *Options[K, V]) validate() error {
	bad := func(field, why string) error {
		return fmt.Errorf("%w: %s %s", ErrInvalidOptions, field, why)
	}
	switch {
	case o.Capacity <= 0:
		return bad("Capacity", fmt.Sprintf("must be > 0, got %d", o.Capacity))
	case o.MaxWeight < 0:
		return bad("MaxWeight", fmt.Sprintf("must be >= 0, got %d", o.MaxWeight))
	case o.TTL < 0:
		return bad("TTL", fmt.Sprintf("must be >= 0, got %v", o.TTL))
	case o.Shards < 0 || o.Shards > maxShards || o.Shards&(o.Shards-1) != 0:
		return bad("Shards", fmt.Sprintf("must be 0 or a power of two up to %d, got %d", maxShards, o.Shards))
	case o.Shards > o.Capacity:
		return bad("Shards", fmt.Sprintf("must not exceed Capacity (%d), got %d", o.Capacity, o.Shards))
	}
	return nil
}

// shardCount returns the number of shards for validated options.
func (o *Options[K, V]) shardCount() int {
	if o.Shards > 0 {
		return o.Shards
	}
	n := 1
	for n*2 <= o.Capacity/entriesPerShard && n < defaultShardsLimit {
		n *= 2
	}
	return n
}
