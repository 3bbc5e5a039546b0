package suite

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	gocache "github.com/go-redis/cache/v9"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/maypok86/otter/v2"

	"github.com/tier-cache/tier"
	"github.com/tier-cache/tier/bench/internal/trace"
)

// traceSeed fixes the traces, so that every run replays the same requests.
const traceSeed = 20260101

// zipfTrace returns the trace for exponent s, generated once per process.
func (e *Env) zipfTrace(s float64) []uint32 {
	if t, ok := e.traces[s]; ok {
		return t
	}
	t := trace.NewZipf(e.TraceKeys, s, traceSeed).Generate(e.TraceLen)
	e.traces[s] = t
	return t
}

// replayer counts the hits of one cache on a trace: get a key, and on a
// miss store it, as a read-through cache does.
type replayer func(t []uint32, keys []string, capacity int) (hits int, err error)

func hitRatioGroups(cfg Config) []Group {
	var gs []Group
	for _, s := range []float64{1.01, 1.2} {
		for _, pct := range []int{1, 5, 10} {
			capacity := cfg.TraceKeys * pct / 100
			g := Group{
				Section: "Near hit ratio", Once: true,
				ID: fmt.Sprintf("hitratio-%g-%d", s, pct),
				Case: fmt.Sprintf("Zipf(%g), %s requests over %s keys, capacity %d%% (%s)",
					s, count(cfg.TraceLen), count(cfg.TraceKeys), pct, count(capacity)),
				Metrics: []Metric{{Name: "hit %", Ratio: true, HigherBetter: true, Decimals: 2}},
			}
			for _, r := range []struct {
				name string
				role Role
				note string
				play replayer
			}{
				{"tier", Tier, "Cache.Fetch, near-only, default (approximate LRU)", replayTier(false)},
				{"tier, Near.Admission", Info, "the same with admission (S3-FIFO)", replayTier(true)},
				{"otter", Peer, "", replayOtter},
				{"golang-lru", Peer, "", replayLRU},
				{"go-redis/cache", Peer, "its TinyLFU", replayTinyLFU},
				{"ristretto", Peer, "asynchronous sets, as used", replayRistretto},
				{"Belady's optimum", Ceiling, "with bypass", func(t []uint32, _ []string, capacity int) (int, error) {
					return trace.OptimalHits(t, capacity), nil
				}},
			} {
				g.Impls = append(g.Impls, Impl{Name: r.name, Role: r.role, Note: r.note,
					Setup: func(env *Env) (Runner, error) {
						return Runner{Run: func() ([]float64, error) {
							t := env.zipfTrace(s)
							hits, err := r.play(t, keyList(env.TraceKeys), capacity)
							return []float64{100 * float64(hits) / float64(len(t))}, err
						}}, nil
					}})
			}
			gs = append(gs, g)
		}
	}
	return gs
}

// count prints 1000000 as 1M and 10000 as 10k.
func count(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return strconv.Itoa(n/1_000_000) + "M"
	case n >= 1000 && n%1000 == 0:
		return strconv.Itoa(n/1000) + "k"
	}
	return strconv.Itoa(n)
}

func replayTier(admission bool) replayer {
	return func(t []uint32, keys []string, capacity int) (int, error) {
		return replayTierWith(t, keys, tier.NearOptions{Capacity: capacity, TTL: time.Hour, Admission: admission})
	}
}

func replayTierWith(t []uint32, keys []string, near tier.NearOptions) (int, error) {
	c, err := tier.New[User](tier.Options{Near: near, Jitter: -1})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	ctx := context.Background()
	loader := tier.LoaderFunc[User](func(_ context.Context, k string) (User, error) { return User{Name: k}, nil })
	hits := 0
	for _, k := range t {
		r, err := c.Fetch(ctx, keys[k], loader)
		if err != nil {
			return 0, err
		}
		if r.Source == tier.SourceNear {
			hits++
		}
	}
	return hits, nil
}

func replayOtter(t []uint32, keys []string, capacity int) (int, error) {
	c, err := otter.New(&otter.Options[string, User]{MaximumSize: capacity})
	if err != nil {
		return 0, err
	}
	defer c.StopAllGoroutines()
	hits := 0
	for _, k := range t {
		if _, ok := c.GetIfPresent(keys[k]); ok {
			hits++
		} else {
			c.Set(keys[k], User{Name: keys[k]})
		}
	}
	return hits, nil
}

func replayLRU(t []uint32, keys []string, capacity int) (int, error) {
	c, err := lru.New[string, User](capacity)
	if err != nil {
		return 0, err
	}
	hits := 0
	for _, k := range t {
		if _, ok := c.Get(keys[k]); ok {
			hits++
		} else {
			c.Add(keys[k], User{Name: keys[k]})
		}
	}
	return hits, nil
}

func replayTinyLFU(t []uint32, keys []string, capacity int) (int, error) {
	c := gocache.NewTinyLFU(capacity, time.Hour)
	value := []byte("encoded user")
	hits := 0
	for _, k := range t {
		if _, ok := c.Get(keys[k]); ok {
			hits++
		} else {
			c.Set(keys[k], value)
		}
	}
	return hits, nil
}

func replayRistretto(t []uint32, keys []string, capacity int) (int, error) {
	c, err := ristretto.NewCache(&ristretto.Config[string, User]{
		NumCounters: int64(10 * capacity), MaxCost: int64(capacity), BufferItems: 64, IgnoreInternalCost: true,
	})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	hits := 0
	for _, k := range t {
		if _, ok := c.Get(keys[k]); ok {
			hits++
		} else {
			c.Set(keys[k], User{Name: keys[k]}, 1)
		}
	}
	return hits, nil
}
