package bench

import (
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/maypok86/otter/v2"
	"github.com/tier-cache/tier/local"
)

// value is the struct both caches hold.
type value struct {
	ID    int64
	Name  string
	Flags uint32
	Score float64
}

const ttl = time.Hour

// nearCache is what the near-tier benchmarks need of a cache.
type nearCache interface {
	get(key string) (value, bool)
	set(key string, v value)
}

type tierNear struct{ c *local.Cache[string, value] }

func (t tierNear) get(k string) (value, bool) { return t.c.Get(k) }
func (t tierNear) set(k string, v value)      { t.c.Set(k, v) }

type otterNear struct{ c *otter.Cache[string, value] }

func (o otterNear) get(k string) (value, bool) { return o.c.GetIfPresent(k) }
func (o otterNear) set(k string, v value)      { o.c.Set(k, v) }

func newNear(b *testing.B, name string, n int) nearCache {
	switch name {
	case "tier":
		c, err := local.New(local.Options[string, value]{Capacity: n, TTL: ttl})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(c.Close)
		return tierNear{c}
	case "otter":
		c := otter.Must(&otter.Options[string, value]{
			MaximumSize:      n,
			ExpiryCalculator: otter.ExpiryWriting[string, value](ttl),
		})
		b.Cleanup(func() { c.StopAllGoroutines() })
		return otterNear{c}
	}
	b.Fatalf("unknown cache %q", name)
	return nil
}

func fill(b *testing.B, c nearCache, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "key:" + strconv.Itoa(i)
		c.set(keys[i], value{ID: int64(i), Name: keys[i]})
	}
	for _, k := range keys {
		if _, ok := c.get(k); !ok {
			b.Fatalf("%s missing right after the fill", k)
		}
	}
	return keys
}

// starts spreads the goroutines of RunParallel over the keys: each begins
// at its own offset, so that they do not walk the same entries in step.
var starts atomic.Int64

func start(n int) int { return int(starts.Add(7919)) % n }

var (
	peers = []string{"tier", "otter"}
	sizes = []int{10_000, 100_000}
)

// BenchmarkNearGet: a hit of a struct value from one goroutine.
func BenchmarkNearGet(b *testing.B) {
	for _, n := range sizes {
		for _, p := range peers {
			b.Run(p+"/"+strconv.Itoa(n), func(b *testing.B) {
				c := newNear(b, p, n)
				keys := fill(b, c, n)
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					c.get(keys[i])
					if i++; i == n {
						i = 0
					}
				}
			})
		}
	}
}

// BenchmarkNearGetParallel: hits from GOMAXPROCS goroutines.
func BenchmarkNearGetParallel(b *testing.B) {
	for _, n := range sizes {
		for _, p := range peers {
			b.Run(p+"/"+strconv.Itoa(n), func(b *testing.B) {
				c := newNear(b, p, n)
				keys := fill(b, c, n)
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					i := start(n)
					for pb.Next() {
						c.get(keys[i])
						if i += 7; i >= n {
							i -= n
						}
					}
				})
			})
		}
	}
}

// BenchmarkNearMixed: 90% hits, 10% writes, from GOMAXPROCS goroutines.
func BenchmarkNearMixed(b *testing.B) {
	for _, n := range sizes {
		for _, p := range peers {
			b.Run(p+"/"+strconv.Itoa(n), func(b *testing.B) {
				c := newNear(b, p, n)
				keys := fill(b, c, n)
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					i := start(n)
					for pb.Next() {
						if i%10 == 0 {
							c.set(keys[i], value{ID: int64(i)})
						} else {
							c.get(keys[i])
						}
						if i += 7; i >= n {
							i -= n
						}
					}
				})
			})
		}
	}
}
