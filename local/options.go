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

	// MaxWeight, when > 0, bounds the total weight of the entries, where
	// each entry's weight is the one given to [Cache.Set] or [Cache.Fill].
	// An entry heavier than MaxWeight is not stored. Default: 0, no bound
	// on weight.
	MaxWeight int64

	// TTL is how long an entry lives when it is stored with a ttl of 0.
	// Default: 0, such entries never expire (they are still evicted when
	// the cache is full).
	TTL time.Duration

	// Admission, when true, puts each new key on probation (S3-FIFO): it
	// joins the main part of the cache only if it is read again while on
	// probation, or if it left probation unread not long before. Keys
	// read once then leave early instead of pushing out keys that are
	// read again and again, which raises the hit ratio of skewed
	// workloads; eviction order is no longer LRU, even in a cache of one
	// shard. Set and Fill still always store. It costs a table of 4-byte
	// fingerprints of keys evicted from probation, nine for every ten
	// entries of Capacity, allocated by New. Default: false, LRU.
	Admission bool

	// Clock judges deadlines. Default: the monotonic system clock, read
	// through a value refreshed every millisecond (see the package
	// documentation); [SystemClock] reads it exactly on every access.
	Clock Clock
}

// ErrInvalidOptions is matched by every error New returns.
var ErrInvalidOptions = errors.New("local: invalid options")

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
	}
	return nil
}

const (
	// entriesPerShard is the capacity below which a cache has one shard,
	// and the least share of the capacity each shard of a larger one has.
	entriesPerShard = 256
	maxShards       = 64
)

// shardCount returns the number of shards for a capacity: 1 below
// 2*entriesPerShard, so that small caches keep exact LRU order, else the
// largest power of two not above capacity/entriesPerShard, at most
// maxShards.
func shardCount(capacity int) int {
	n := 1
	for n*2 <= capacity/entriesPerShard && n < maxShards {
		n *= 2
	}
	return n
}
