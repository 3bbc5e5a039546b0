package tiertest

import (
	"cmp"
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/tier-cache/tier"
	"github.com/tier-cache/tier/local"
)

const patience = 30 * time.Second // bounds every wait: a hang becomes a failure

// Redis is an embedded Redis server (a miniredis, whose methods such as
// Addr and SetError it has) and a client of it, closed when the test ends.
type Redis struct {
	*miniredis.Miniredis
	client *redis.Client
}

// NewRedis starts an empty embedded Redis for t.
func NewRedis(t testing.TB) *Redis {
	t.Helper()
	m := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: m.Addr(), ContextTimeoutEnabled: true})
	t.Cleanup(func() { c.Close() })
	return &Redis{m, c}
}

// Client returns the client, for Options.Redis.
func (r *Redis) Client() *redis.Client { return r.client }

// Clock is a fake clock for Options.Clock, moved only by Advance.
type Clock struct {
	ns    atomic.Int64
	redis []*Redis
}

// NewClock returns a clock at 2026-01-01 00:00 UTC whose Advance also
// fast-forwards the TTLs of each Redis given: both tiers expire together.
func NewClock(rs ...*Redis) *Clock {
	c := &Clock{redis: rs}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time { return time.Unix(0, c.ns.Load()).UTC() }

// Advance moves the clock, and the TTLs of its Redis servers, on by d. A
// negative d panics: a cache's clock must not run backwards.
func (c *Clock) Advance(d time.Duration) {
	if d < 0 {
		panic("tiertest: Clock.Advance(" + d.String() + "): a clock must not run backwards")
	}
	c.ns.Add(int64(d))
	for _, r := range c.redis {
		r.FastForward(d)
	}
}

// Replicas returns n caches made with opts, as n replicas of a service,
// each with its subscription confirmed, closed when the test ends. Where
// opts leaves them unset, Redis is a new embedded Redis, Clock a new Clock
// (of the Redis it started, if any: make your own to advance it), and
// FarTimeout 10s, so that a busy machine never makes Redis time out.
func Replicas[V any](t testing.TB, n int, opts tier.Options) []*tier.Cache[V] {
	t.Helper()
	var rs []*Redis
	if opts.Redis == nil {
		rs = append(rs, NewRedis(t))
		opts.Redis = rs[0].Client()
	}
	opts.Clock = cmp.Or[local.Clock](opts.Clock, NewClock(rs...))
	opts.FarTimeout = cmp.Or(opts.FarTimeout, 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	caches := make([]*tier.Cache[V], n)
	for i := range caches {
		c, err := tier.New[V](opts)
		if err == nil {
			t.Cleanup(func() { c.Close() })
			err = c.WaitReady(ctx)
		}
		if err != nil {
			t.Fatalf("tiertest: replica %d of %d: %v", i+1, n, err)
		}
		caches[i] = c
	}
	return caches
}

// Sync waits until each of caches has applied every change that returned
// before Sync was called (Set, Delete, Invalidate, InvalidateAll, on any
// replica): from then on their Gets do not serve what it replaced. It is
// [tier.Cache.Sync] of each, and fails the test after 30s.
func Sync[V any](t testing.TB, caches ...*tier.Cache[V]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	for i, c := range caches {
		if err := c.Sync(ctx); err != nil {
			t.Fatalf("tiertest: Sync of cache %d: %v", i, err)
		}
	}
}
