package local

import (
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// benchValue is a small struct, the kind of value a service caches.
type benchValue struct {
	ID    int64
	Name  string
	Flags uint32
	Score float64
}

func benchCache(b *testing.B, n int) (*Cache[string, benchValue], []string) {
	c, err := New(Options[string, benchValue]{Capacity: n, TTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "key:" + strconv.Itoa(i)
		c.Set(keys[i], benchValue{ID: int64(i), Name: keys[i]}, 0, 1)
	}
	return c, keys
}

// starts spreads the goroutines of RunParallel over the keys: each begins
// at its own offset, so that they do not walk the same entries in step.
var starts atomic.Int64

func start(n int) int { return int(starts.Add(7919)) % n }

var sizes = []int{10_000, 100_000}

// BenchmarkGet is a hit of a struct value from one goroutine.
func BenchmarkGet(b *testing.B) {
	for _, n := range sizes {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			c, keys := benchCache(b, n)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, ok := c.Get(keys[i]); !ok {
					b.Fatal("miss")
				}
				if i++; i == n {
					i = 0
				}
			}
		})
	}
}

// BenchmarkGetParallel is a hit of a struct value from GOMAXPROCS
// goroutines, then from twice as many.
func BenchmarkGetParallel(b *testing.B) {
	for _, n := range sizes {
		for _, p := range []int{1, 2} {
			b.Run(strconv.Itoa(n)+"/x"+strconv.Itoa(p), func(b *testing.B) {
				c, keys := benchCache(b, n)
				b.ReportAllocs()
				b.SetParallelism(p)
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					i := start(n)
					for pb.Next() {
						if _, ok := c.Get(keys[i]); !ok {
							b.Fatal("miss")
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

// BenchmarkGetHot is a few keys, the feature flags of a service, read in
// turn by every goroutine: in a default-sized cache and in one small
// enough to have a single shard.
func BenchmarkGetHot(b *testing.B) {
	for _, n := range []int{10_000, 100} {
		for _, hot := range []int{1, 8} {
			b.Run(strconv.Itoa(n)+"/"+strconv.Itoa(hot)+"keys", func(b *testing.B) {
				c, keys := benchCache(b, n)
				keys = keys[:hot]
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					i := start(hot)
					for pb.Next() {
						if _, ok := c.Get(keys[i]); !ok {
							b.Fatal("miss")
						}
						if i++; i == hot {
							i = 0
						}
					}
				})
			})
		}
	}
}

// BenchmarkMixed is 90% hits and 10% writes from GOMAXPROCS goroutines.
func BenchmarkMixed(b *testing.B) {
	for _, n := range sizes {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			c, keys := benchCache(b, n)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := start(n)
				for pb.Next() {
					if i%10 == 0 {
						c.Set(keys[i], benchValue{ID: int64(i)}, 0, 1)
					} else {
						c.Get(keys[i])
					}
					if i += 7; i >= n {
						i -= n
					}
				}
			})
		})
	}
}
