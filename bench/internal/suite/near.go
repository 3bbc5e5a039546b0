package suite

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	lru "github.com/hashicorp/golang-lru/v2"
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

// nearCache is one cache of the near-hit rows, reached the same way for
// every implementation: through func values that call its own methods
// directly, so that each pays the same one indirect call and no
// implementation pays an interface or a context that the others do not.
type nearCache struct {
	get   func(key string) (User, bool)
	set   func(key string, v User)
	wait  func() // waits for asynchronous sets (ristretto); may be nil
	close func()
}

// nearLoader is the loader of tier's near hits; a hit never calls it.
var nearLoader = tier.LoaderFunc[User](func(context.Context, string) (User, error) {
	return User{}, tier.ErrNotFound
})

// newNear returns an empty cache of the named kind for n entries, with
// the TTL where it has one.
func newNear(name string, n int) (nearCache, error) {
	switch name {
	case "tier", "tier, Near.Admission":
		near := tier.NearOptions{Capacity: n, TTL: ttl, Admission: name != "tier"}
		c, err := tier.New[User](tier.Options{Near: near, Jitter: -1})
		if err != nil {
			return nearCache{}, err
		}
		ctx := context.Background()
		return nearCache{
			get: func(k string) (User, bool) {
				u, err := c.Get(ctx, k, nearLoader)
				return u, err == nil
			},
			set:   func(k string, v User) { c.Set(ctx, k, v) },
			close: func() { c.Close() },
		}, nil
	case "local.Cache":
		c, err := local.New(local.Options[string, User]{Capacity: n, TTL: ttl})
		if err != nil {
			return nearCache{}, err
		}
		return nearCache{get: c.Get, set: func(k string, v User) { c.Set(k, v, 0, 0) }, close: c.Close}, nil
	case "otter":
		c, err := otter.New(&otter.Options[string, User]{
			MaximumSize:      n,
			ExpiryCalculator: otter.ExpiryWriting[string, User](ttl),
		})
		if err != nil {
			return nearCache{}, err
		}
		return nearCache{get: c.GetIfPresent, set: func(k string, v User) { c.Set(k, v) }, close: func() { c.StopAllGoroutines() }}, nil
	case "otter, no TTL":
		c, err := otter.New(&otter.Options[string, User]{MaximumSize: n})
		if err != nil {
			return nearCache{}, err
		}
		return nearCache{get: c.GetIfPresent, set: func(k string, v User) { c.Set(k, v) }, close: func() { c.StopAllGoroutines() }}, nil
	case "golang-lru":
		c, err := lru.New[string, User](n)
		if err != nil {
			return nearCache{}, err
		}
		return nearCache{get: c.Get, set: func(k string, v User) { c.Add(k, v) }, close: func() {}}, nil
	case "ristretto":
		c, err := ristretto.NewCache(&ristretto.Config[string, User]{
			NumCounters: int64(10 * n), MaxCost: int64(n), BufferItems: 64, IgnoreInternalCost: true,
		})
		if err != nil {
			return nearCache{}, err
		}
		return nearCache{
			get:   c.Get,
			set:   func(k string, v User) { c.SetWithTTL(k, v, 1, ttl) },
			wait:  c.Wait,
			close: c.Close,
		}, nil
	}
	return nearCache{}, fmt.Errorf("suite: unknown near cache %q", name)
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
		return nearCache{}, nil, err
	}
	keys := keyList(n)
	for round := 0; ; round++ {
		for i, k := range keys {
			// The first round sets every key without reading it: a read
			// of a missing key is not the same operation for every cache
			// (tier's caches the loader's "not found", as a Get in use
			// would), and so would leave some of them holding more than
			// the keys, laid out differently in memory. Later rounds set
			// only what is missing: ristretto may drop a set under load.
			if round == 0 {
				c.set(k, userOf(i, k))
			} else if _, ok := c.get(k); !ok {
				c.set(k, userOf(i, k))
			}
		}
		if c.wait != nil {
			c.wait()
		}
		missing := ""
		for _, k := range keys {
			if _, ok := c.get(k); !ok {
				missing = k
				break
			}
		}
		if missing == "" {
			return c, keys, nil
		}
		if round == 3 {
			c.close()
			return nearCache{}, nil, fmt.Errorf("%s: %s missing right after the fill", name, missing)
		}
	}
}

// starts spreads the workers over the keys, so that they do not walk the
// same entries in step.
var starts atomic.Int64

func start(n int) int { return int(starts.Add(7919)) % n }

// nearPeers are the caches of the near-hit rows, tier first.
var nearPeers = []struct {
	name string
	role Role
	note string
}{
	{"tier", Tier, "Cache.Get, near-only"},
	{"tier, Near.Admission", Info, "the same with admission (S3-FIFO)"},
	{"local.Cache", Info, "tier's near tier alone"},
	{"otter", Peer, "same TTL"},
	{"golang-lru", Peer, "no TTL"},
	{"ristretto", Peer, "same TTL"},
}

// nearOp reads keys in a cycle: one after another from one goroutine,
// each worker from its own start with a stride of 7 in parallel. With a
// single key, every worker reads it.
func nearOp(c nearCache, keys []string, stride int) func(int) func(int) error {
	return func(int) func(int) error {
		n := len(keys)
		next := start(n) // where the worker's next call starts
		return func(ops int) error {
			// The loop keeps its place in a local variable: next lives
			// on the heap, maybe on a cache line with another worker's,
			// and writing it on every read would make the workers
			// contend for that line.
			i, s := next, int64(0)
			for range ops {
				u, ok := c.get(keys[i])
				if !ok {
					return fmt.Errorf("%s missed", keys[i])
				}
				s += u.ID
				if i += stride; i >= n {
					i -= n
				}
			}
			next = i
			sink.Add(s)
			return nil
		}
	}
}

func nearGroups() []Group {
	var gs []Group
	modes := []struct {
		id, name    string
		parallelism int
	}{
		{"1g", "1 goroutine", 0},
		{"par", "RunParallel (2 goroutines)", 1},
		{"par4", "RunParallel ×4 (4 goroutines on 2 Ps)", 2},
	}
	add := func(id, c string, n, parallelism, stride int, hot bool) {
		g := Group{
			Section: "Near hit", ID: id, Case: c,
			Metrics: timedMetrics, Parallelism: parallelism, Fresh: true,
		}
		for _, p := range nearPeers {
			g.Impls = append(g.Impls, Impl{Name: p.name, Role: p.role, Note: p.note,
				Setup: func(*Env) (Runner, error) {
					c, keys, err := filledNear(p.name, n)
					if err != nil {
						return Runner{}, err
					}
					if hot {
						keys = keys[:1]
					}
					return Runner{Op: nearOp(c, keys, stride), Close: c.close}, nil
				}})
		}
		gs = append(gs, g)
	}
	for _, n := range []int{10_000, 100_000} {
		for _, m := range modes {
			stride := 7
			if m.parallelism == 0 {
				stride = 1
			}
			add("near-"+strconv.Itoa(n/1000)+"k-"+m.id, strconv.Itoa(n/1000)+"k entries, "+m.name, n, m.parallelism, stride, false)
		}
	}
	for _, m := range modes {
		add("near-hot-"+m.id, "one hot key of 10k entries, "+m.name, 10_000, m.parallelism, 1, true)
	}
	return gs
}
