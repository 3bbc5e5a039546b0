package tier

import (
	"context"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tier-cache/tier/internal/redistest"
)

// The benchmarks of the root package measure tier alone, for profiling
// and for comparing two versions of it; tier against its peers and the
// floors is the bench module's report (bench/RESULTS.md). The Redis ones
// start a redis-server of their own, or use the one at the address in
// TIER_BENCH_REDIS, so that two test binaries compared run by run share
// one server:
//
//	go test -run '^$' -bench . -benchmem -count 5 .

// benchUser is the struct value the benchmarks cache: 48 bytes, two
// strings, as in the bench module.
type benchUser struct {
	ID    int64
	Name  string
	Email string
	Flags uint32
}

const benchKeys = 10_000

// benchSink keeps the benchmarks' reads from being optimised away.
var benchSink atomic.Int64

func benchKeyList(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "user:" + strconv.Itoa(i)
	}
	return keys
}

func benchUserOf(i int, key string) benchUser {
	return benchUser{ID: int64(i), Name: key, Email: "someone@example.com", Flags: uint32(i)}
}

// benchFailLoader fails the benchmark if a read meant to hit calls it.
func benchFailLoader(b *testing.B) LoaderFunc[benchUser] {
	return func(context.Context, string) (benchUser, error) {
		b.Error("a hit called the loader")
		return benchUser{}, ErrNotFound
	}
}

// benchNearCache returns a near-only cache holding benchKeys users, and
// their keys; with tagged, each user carries two tags, as in the bench
// module's tag rows.
func benchNearCache(b *testing.B, tagged ...bool) (*Cache[benchUser], []string) {
	c, err := New[benchUser](Options{Near: NearOptions{Capacity: benchKeys, TTL: time.Hour}, Jitter: -1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	keys := benchKeyList(benchKeys)
	for i, k := range keys {
		var tags []string
		if len(tagged) > 0 && tagged[0] {
			tags = []string{"tenant:" + strconv.Itoa(i%100), "kind:user"}
		}
		if err := c.Set(context.Background(), k, benchUserOf(i, k), tags...); err != nil {
			b.Fatal(err)
		}
	}
	return c, keys
}

// BenchmarkNearHit is a hit through Cache.Get from one goroutine, the
// keys read in order.
func BenchmarkNearHit(b *testing.B) { benchNearHit(b, false) }

// BenchmarkNearHitTagged is BenchmarkNearHit on entries with two tags.
func BenchmarkNearHitTagged(b *testing.B) { benchNearHit(b, true) }

func benchNearHit(b *testing.B, tagged bool) {
	c, keys := benchNearCache(b, tagged)
	ctx, loader := context.Background(), benchFailLoader(b)
	b.ReportAllocs()
	i, s := 0, int64(0)
	for b.Loop() {
		u, err := c.Get(ctx, keys[i], loader)
		if err != nil {
			b.Fatal(err)
		}
		s += u.ID
		if i++; i == benchKeys {
			i = 0
		}
	}
	benchSink.Add(s)
}

// BenchmarkNearHitParallel is BenchmarkNearHit from GOMAXPROCS
// goroutines, each reading every 7th key from its own start.
func BenchmarkNearHitParallel(b *testing.B) {
	c, keys := benchNearCache(b)
	ctx, loader := context.Background(), benchFailLoader(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := int(time.Now().UnixNano() % benchKeys)
		s := int64(0)
		for pb.Next() {
			u, _ := c.Get(ctx, keys[i], loader)
			s += u.ID
			if i += 7; i >= benchKeys {
				i -= benchKeys
			}
		}
		benchSink.Add(s)
	})
}

// benchClient returns a client of the server at TIER_BENCH_REDIS, or of a
// redis-server of the benchmark's own.
func benchClient(b *testing.B) *redis.Client {
	if addr := os.Getenv("TIER_BENCH_REDIS"); addr != "" {
		c := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
		b.Cleanup(func() { c.Close() })
		return c
	}
	return redistest.Start(b).Client(b)
}

// benchFarCache returns a cache on Redis, with a namespace of its own, and
// invalidation on.
func benchFarCache(b *testing.B, ns string, capacity int) *Cache[benchUser] {
	c, err := New[benchUser](Options{
		Redis: benchClient(b), Namespace: ns + strconv.FormatInt(time.Now().UnixNano(), 36),
		Near: NearOptions{Capacity: capacity}, FarTimeout: 2 * time.Second, Jitter: -1,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		b.Fatal(err)
	}
	return c
}

// BenchmarkFarHit is a near miss answered by Redis: DropNear, then Fetch.
func BenchmarkFarHit(b *testing.B) {
	c := benchFarCache(b, "farhit", 0)
	ctx, loader := context.Background(), benchFailLoader(b)
	if err := c.Set(ctx, "user:1", benchUserOf(1, "user:1")); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		c.DropNear("user:1")
		if r, err := c.Fetch(ctx, "user:1", loader); err != nil || r.Source != SourceFar {
			b.Fatalf("%+v, %v", r, err)
		}
	}
}

// BenchmarkSet is a Set of one key: near tier, Redis and the message to
// the other replicas, in one script.
func BenchmarkSet(b *testing.B) {
	c := benchFarCache(b, "set", 0)
	ctx := context.Background()
	u := benchUserOf(1, "user:1")
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Set(ctx, "user:1", u); err != nil {
			b.Fatal(err)
		}
	}
}

// benchManyCache returns a cache on Redis that holds n users, with room
// for ten times as many near, and their keys.
func benchManyCache(b *testing.B, ns string, n int) (*Cache[benchUser], []string) {
	c := benchFarCache(b, ns, 10*n)
	keys := benchKeyList(n)
	for i, k := range keys {
		if err := c.Set(context.Background(), k, benchUserOf(i, k)); err != nil {
			b.Fatal(err)
		}
	}
	return c, keys
}

// BenchmarkGetMany reads 100 keys that Redis holds and the near tier does
// not: DropNear of them all, then GetMany.
func BenchmarkGetMany(b *testing.B) {
	const n = 100
	c, keys := benchManyCache(b, "getmany", n)
	ctx := context.Background()
	loader := BatchLoaderFunc[benchUser](func(context.Context, []string) (map[string]benchUser, error) {
		b.Error("far hits called the loader")
		return nil, nil
	})
	b.ReportAllocs()
	for b.Loop() {
		c.DropNear(keys...)
		m, err := c.GetMany(ctx, keys, loader)
		if err != nil || len(m) != n {
			b.Fatal(len(m), err)
		}
	}
}

// BenchmarkGetManyParts times apart what BenchmarkGetMany does for 100 far
// hits, so that its cost above an MGET plus decoding can be accounted for
// (bench/RESULTS.md, Targets): the read through remote.Store, decoding
// the values, and the near tier's part, dropping the keys (as the
// benchmark does to make them miss) and filling them.
func BenchmarkGetManyParts(b *testing.B) {
	const n = 100
	c, keys := benchManyCache(b, "getmanyparts", n)
	ctx := context.Background()
	vals, err := c.far.GetMany(ctx, keys)
	if err != nil {
		b.Fatal(err)
	}
	values := make([]benchUser, n)
	b.Run("read", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.far.GetMany(ctx, keys); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			dst := make([]benchUser, n)
			for i, k := range keys {
				if _, ok := c.decode(k, vals[i], &dst[i]); !ok {
					b.Fatal(k, "does not decode")
				}
			}
			values = dst
		}
	})
	b.Run("drop and fill near", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c.DropNear(keys...)
			g := c.near.StartFill()
			for i, k := range keys {
				c.fill(g, k, nearEntry[benchUser]{value: values[i]}, time.Hour, len(vals[i]))
			}
		}
		if c.near.Len() != n {
			b.Fatalf("%d keys near, want %d", c.near.Len(), n)
		}
	})
}
