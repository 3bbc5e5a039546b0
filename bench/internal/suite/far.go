package suite

import (
	"context"
	"fmt"
	"strconv"
	"time"
	"unsafe"

	gocache "github.com/go-redis/cache/v9"
	"github.com/redis/go-redis/v9"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/tier-cache/tier"
)

// farTimeout is generous: a loaded machine must not turn a far hit into a
// timeout and a load.
const farTimeout = 2 * time.Second

var farUser = User{ID: 1, Name: "Ada Lovelace", Email: "ada@example.com", Flags: 7}

// newTier returns a cache on the server with the given namespace, whose
// subscription is confirmed.
func newTier(env *Env, ns string, mod func(*tier.Options)) (*tier.Cache[User], error) {
	return newTierOn(env.Client(), ns, mod)
}

// newTierOn is newTier through client.
func newTierOn(client *redis.Client, ns string, mod func(*tier.Options)) (*tier.Cache[User], error) {
	o := tier.Options{Redis: client, Namespace: ns, FarTimeout: farTimeout, Jitter: -1}
	if mod != nil {
		mod(&o)
	}
	c, err := tier.New[User](o)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// failLoader fails a measurement that was meant to be answered by Redis.
var failLoader = tier.LoaderFunc[User](func(context.Context, string) (User, error) {
	return User{}, fmt.Errorf("a far hit called the loader")
})

var failBatchLoader = tier.BatchLoaderFunc[User](func(context.Context, []string) (map[string]User, error) {
	return nil, fmt.Errorf("far hits called the loader")
})

func farGroups() []Group {
	ctx := context.Background()
	const key = "user:1"
	hit := Group{
		Section: "Far hit", ID: "far-hit", Redis: true, Metrics: timedMetrics,
		Case: "one key, near miss, Redis hit",
	}
	hit.Impls = []Impl{
		{Name: "tier", Role: Tier, Note: "DropNear, then Fetch", Setup: func(env *Env) (Runner, error) {
			c, err := newTier(env, "far", nil)
			if err != nil {
				return Runner{}, err
			}
			if err := c.Set(ctx, key, farUser); err != nil {
				c.Close()
				return Runner{}, err
			}
			return Runner{Close: func() { c.Close() }, Op: func(int) func(int) error {
				return func(n int) error {
					for range n {
						c.DropNear(key) // every read misses the near tier
						r, err := c.Fetch(ctx, key, failLoader)
						if err != nil || r.Source != tier.SourceFar {
							return fmt.Errorf("%v from %v, %v", r.Value, r.Source, err)
						}
					}
					return nil
				}
			}}, nil
		}},
		{Name: "go-redis/cache", Role: Peer, Note: "Get, no local cache", Setup: func(env *Env) (Runner, error) {
			c := gocache.New(&gocache.Options{Redis: env.Client()})
			if err := c.Set(&gocache.Item{Ctx: ctx, Key: "gc:" + key, Value: farUser, TTL: ttl}); err != nil {
				return Runner{}, err
			}
			return Runner{Op: func(int) func(int) error {
				return func(n int) error {
					for range n {
						var u User
						if err := c.Get(ctx, "gc:"+key, &u); err != nil || u.ID != 1 {
							return fmt.Errorf("%v, %v", u, err)
						}
					}
					return nil
				}
			}}, nil
		}},
		{Name: "go-redis GET", Role: Floor, Note: "of tier's bytes, not decoded", Setup: func(env *Env) (Runner, error) {
			cl := env.Client()
			if err := seedTier(env, "far", map[string]User{key: farUser}); err != nil {
				return Runner{}, err
			}
			return Runner{Op: func(int) func(int) error {
				return func(n int) error {
					for range n {
						if _, err := cl.Get(ctx, "far:"+key).Bytes(); err != nil {
							return err
						}
					}
					return nil
				}
			}}, nil
		}},
	}

	const batch = 100
	many := Group{
		Section: "Far hit", ID: "far-many", Redis: true, Metrics: timedMetrics,
		Case: strconv.Itoa(batch) + " keys, near misses, Redis hits",
	}
	keys := keyList(batch)
	values := make(map[string]User, batch)
	full := make([]string, batch)
	for i, k := range keys {
		values[k] = userOf(i, k)
		full[i] = "many:" + k
	}
	mget := func(env *Env, decode bool) (Runner, error) {
		cl := env.Client()
		if err := seedTier(env, "many", values); err != nil {
			return Runner{}, err
		}
		return Runner{Op: func(int) func(int) error {
			return func(n int) error {
				for range n {
					vs, err := cl.MGet(ctx, full...).Result()
					if err != nil || len(vs) != batch || vs[batch-1] == nil {
						return fmt.Errorf("%d values, %v", len(vs), err)
					}
					if !decode {
						continue
					}
					us := make([]User, batch)
					for i, v := range vs {
						if err := msgpack.Unmarshal(payload(v.(string)), &us[i]); err != nil {
							return err
						}
					}
					if us[batch-1].ID != batch-1 {
						return fmt.Errorf("decoded %+v", us[batch-1])
					}
				}
				return nil
			}
		}}, nil
	}
	many.Impls = []Impl{
		{Name: "tier", Role: Tier, Note: "DropNear, then GetMany", Setup: func(env *Env) (Runner, error) {
			c, err := newTier(env, "many", func(o *tier.Options) { o.Near.Capacity = 10 * batch })
			if err != nil {
				return Runner{}, err
			}
			for k, v := range values {
				if err := c.Set(ctx, k, v); err != nil {
					c.Close()
					return Runner{}, err
				}
			}
			return Runner{Close: func() { c.Close() }, Op: func(int) func(int) error {
				return func(n int) error {
					for range n {
						c.DropNear(keys...)
						m, err := c.GetMany(ctx, keys, failBatchLoader)
						if err != nil || len(m) != batch {
							return fmt.Errorf("%d values, %v", len(m), err)
						}
					}
					return nil
				}
			}}, nil
		}},
		{Name: "go-redis MGET", Role: Floor, Note: "of tier's bytes, not decoded", Setup: func(env *Env) (Runner, error) {
			return mget(env, false)
		}},
		{Name: "go-redis MGET + msgpack decode", Role: Floor, Note: "each value into a User, with msgpack/v5 as tier's codec uses it", Setup: func(env *Env) (Runner, error) {
			return mget(env, true)
		}},
	}
	return []Group{hit, many}
}

// payload returns the msgpack bytes of a value tier stored, without
// copying them: it skips the header (see package codec: 3 bytes, and 8
// of expiry when flag 0x10 is set).
func payload(s string) []byte {
	b := unsafe.Slice(unsafe.StringData(s), len(s))
	if len(b) >= 11 && b[2]&0x10 != 0 {
		return b[11:]
	}
	return b[3:]
}

// seedTier has a tier cache under ns write values, so that the raw floors
// read the very bytes tier reads.
func seedTier(env *Env, ns string, values map[string]User) error {
	c, err := newTier(env, ns, func(o *tier.Options) { o.Invalidation.Disabled = true })
	if err != nil {
		return err
	}
	defer c.Close()
	for k, v := range values {
		if err := c.Set(context.Background(), k, v); err != nil {
			return err
		}
	}
	return nil
}
