package suite

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	gocache "github.com/go-redis/cache/v9"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/hashicorp/golang-lru/v2/expirable"
	"github.com/maypok86/otter/v2"

	"github.com/tier-cache/tier"
	"github.com/tier-cache/tier/local"
)

// User is the struct value every cache holds: 48 bytes, two strings.
type User struct {
	ID    int64
	Name  string
	Email string
	Flags uint32
}

// ttl is the time to live of every cache that has one: long enough that
// nothing expires during a measurement.
const ttl = time.Hour

// sink keeps reads from being optimised away.
var sink atomic.Int64

// nearCache is what the near-tier measurements need of a cache.
type nearCache interface {
	get(key string) (User, bool)
	set(key string, v User)
	close()
}

// nearLoader is the loader of tier's near hits; a hit never calls it.
var nearLoader = tier.LoaderFunc[User](func(context.Context, string) (User, error) {
	return User{}, tier.ErrNotFound
})

type tierNear struct{ c *tier.Cache[User] }

func (t tierNear) get(k string) (User, bool) {
	u, err := t.c.Get(context.Background(), k, nearLoader)
	return u, err == nil
}
func (t tierNear) set(k string, v User) { t.c.Set(context.Background(), k, v) }
func (t tierNear) close()               { t.c.Close() }

type localNear struct{ c *local.Cache[string, User] }

func (l localNear) get(k string) (u User, ok bool) { ok = l.c.GetInto(k, &u); return }
func (l localNear) set(k string, v User)           { l.c.Set(k, v) }
func (l localNear) close()                         { l.c.Close() }

type otterNear struct{ c *otter.Cache[string, User] }

func (o otterNear) get(k string) (User, bool) { return o.c.GetIfPresent(k) }
func (o otterNear) set(k string, v User)      { o.c.Set(k, v) }
func (o otterNear) close()                    { o.c.StopAllGoroutines() }

type lruNear struct{ c *lru.Cache[string, User] }

func (l lruNear) get(k string) (User, bool) { return l.c.Get(k) }
func (l lruNear) set(k string, v User)      { l.c.Add(k, v) }
func (l lruNear) close()                    {}

type expirableNear struct{ c *expirable.LRU[string, User] }

func (l expirableNear) get(k string) (User, bool) { return l.c.Get(k) }
func (l expirableNear) set(k string, v User)      { l.c.Add(k, v) }
func (l expirableNear) close()                    { l.c.Purge() } // its cleanup goroutine cannot be stopped

type ristrettoNear struct {
	c *ristretto.Cache[string, User]
}

func (r ristrettoNear) get(k string) (User, bool) { return r.c.Get(k) }
func (r ristrettoNear) set(k string, v User)      { r.c.SetWithTTL(k, v, 1, ttl) }
func (r ristrettoNear) close()                    { r.c.Close() }

// goCacheNear is go-redis/cache with only its local TinyLFU: it stores
// encoded bytes, so every hit decodes.
type goCacheNear struct{ c *gocache.Cache }

func (g goCacheNear) get(k string) (u User, ok bool) {
	return u, g.c.Get(context.Background(), k, &u) == nil
}
func (g goCacheNear) set(k string, v User) {
	g.c.Set(&gocache.Item{Ctx: context.Background(), Key: k, Value: v, TTL: ttl})
}
func (g goCacheNear) close() {}

// mapNear is the floor: a Go map under a sync.RWMutex, no bound, no
// expiry, no recency.
type mapNear struct {
	mu sync.RWMutex
	m  map[string]User
}

func (m *mapNear) get(k string) (User, bool) {
	m.mu.RLock()
	u, ok := m.m[k]
	m.mu.RUnlock()
	return u, ok
}
func (m *mapNear) set(k string, v User) { m.mu.Lock(); m.m[k] = v; m.mu.Unlock() }
func (m *mapNear) close()               {}

// newNear returns an empty cache of the named kind for n entries, with
// the TTL where it has one.
func newNear(name string, n int) (nearCache, error) {
	switch name {
	case "tier":
		c, err := tier.New[User](tier.Options{NearCapacity: n, NearTTL: ttl, DisableJitter: true})
		return tierNear{c}, err
	case "tier near tier alone":
		c, err := local.New(local.Options[string, User]{Capacity: n, TTL: ttl})
		return localNear{c}, err
	case "otter":
		c, err := otter.New(&otter.Options[string, User]{
			MaximumSize:      n,
			ExpiryCalculator: otter.ExpiryWriting[string, User](ttl),
		})
		return otterNear{c}, err
	case "otter, no TTL":
		c, err := otter.New(&otter.Options[string, User]{MaximumSize: n})
		return otterNear{c}, err
	case "golang-lru":
		c, err := lru.New[string, User](n)
		return lruNear{c}, err
	case "golang-lru expirable":
		return expirableNear{expirable.NewLRU[string, User](n, nil, ttl)}, nil
	case "ristretto":
		c, err := ristretto.NewCache(&ristretto.Config[string, User]{
			NumCounters: int64(10 * n), MaxCost: int64(n), BufferItems: 64, IgnoreInternalCost: true,
		})
		return ristrettoNear{c}, err
	case "go-redis/cache":
		return goCacheNear{gocache.New(&gocache.Options{LocalCache: gocache.NewTinyLFU(n, ttl)})}, nil
	case "map+RWMutex":
		return &mapNear{m: make(map[string]User, n)}, nil
	}
	panic("suite: unknown near cache " + name)
}

// keyList returns n keys.
func keyList(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "user:" + strconv.Itoa(i)
	}
	return keys
}

func userOf(i int, key string) User {
	return User{ID: int64(i), Name: key, Email: "someone@example.com", Flags: uint32(i)}
}

// filledNear returns a cache holding n users, and their keys. It fails if a
// key is missing after the fill, since a hit benchmark that misses measures
// something else.
func filledNear(name string, n int) (nearCache, []string, error) {
	c, err := newNear(name, n)
	if err != nil {
		return nil, nil, err
	}
	keys := keyList(n)
	for i, k := range keys {
		c.set(k, userOf(i, k))
	}
	if r, ok := c.(ristrettoNear); ok {
		r.c.Wait()
	}
	missing := 0
	for i, k := range keys {
		if _, ok := c.get(k); !ok {
			missing++
			c.set(k, userOf(i, k)) // ristretto may drop a set under load
		}
	}
	if r, ok := c.(ristrettoNear); ok {
		r.c.Wait()
	}
	for _, k := range keys {
		if _, ok := c.get(k); !ok {
			c.close()
			return nil, nil, fmt.Errorf("%s: %s missing right after the fill", name, k)
		}
	}
	return c, keys, nil
}

// starts spreads the goroutines of RunParallel over the keys, so that they
// do not walk the same entries in step.
var starts atomic.Int64

func start(n int) int { return int(starts.Add(7919)) % n }

// nearPeers are the caches of the near-tier rows, tier first.
var nearPeers = []struct {
	name string
	role Role
	note string
}{
	{"tier", Tier, "Cache.Get, near-only"},
	{"tier near tier alone", Info, "local.Cache.GetInto"},
	{"otter", Peer, "same TTL"},
	{"golang-lru", Peer, "no TTL"},
	{"golang-lru expirable", Peer, "same TTL"},
	{"ristretto", Peer, "same TTL"},
	{"go-redis/cache", Peer, "local TinyLFU, decodes each hit"},
	{"map+RWMutex", Floor, "no bound, no TTL"},
}

type nearMode struct {
	id, name string
	bench    func(c nearCache, keys []string) func(b *testing.B)
}

var nearModes = []nearMode{
	{"1g", "1 goroutine", func(c nearCache, keys []string) func(b *testing.B) {
		return func(b *testing.B) {
			n := len(keys)
			b.ReportAllocs()
			i, s := 0, int64(0)
			for b.Loop() {
				u, _ := c.get(keys[i])
				s += u.ID
				if i++; i == n {
					i = 0
				}
			}
			sink.Add(s)
		}
	}},
	{"par", "RunParallel", func(c nearCache, keys []string) func(b *testing.B) {
		return func(b *testing.B) {
			n := len(keys)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i, s := start(n), int64(0)
				for pb.Next() {
					u, _ := c.get(keys[i])
					s += u.ID
					if i += 7; i >= n {
						i -= n
					}
				}
				sink.Add(s)
			})
		}
	}},
	{"mix", "90% get / 10% set, RunParallel", func(c nearCache, keys []string) func(b *testing.B) {
		return func(b *testing.B) {
			n := len(keys)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i, s := start(n), int64(0)
				for pb.Next() {
					if i%10 == 0 {
						c.set(keys[i], userOf(i, keys[i]))
					} else {
						u, _ := c.get(keys[i])
						s += u.ID
					}
					if i += 7; i >= n {
						i -= n
					}
				}
				sink.Add(s)
			})
		}
	}},
}

func nearGroups() []Group {
	var gs []Group
	for _, n := range []int{10_000, 100_000} {
		for _, m := range nearModes {
			g := Group{
				Section: "Near hit",
				ID:      "near-" + strconv.Itoa(n/1000) + "k-" + m.id,
				Case:    strconv.Itoa(n/1000) + "k entries, " + m.name,
				Metrics: timedMetrics,
				Fresh:   n > 10_000,
			}
			for _, p := range nearPeers {
				g.Impls = append(g.Impls, Impl{Name: p.name, Role: p.role, Note: p.note,
					Setup: func(*Env) (Runner, error) {
						c, keys, err := filledNear(p.name, n)
						if err != nil {
							return Runner{}, err
						}
						return Runner{Bench: m.bench(c, keys), Close: c.close}, nil
					}})
			}
			gs = append(gs, g)
		}
	}
	return gs
}
