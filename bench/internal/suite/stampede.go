package suite

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	gocache "github.com/go-redis/cache/v9"

	"github.com/tier-cache/tier"
)

// loadTime is how long the source takes to answer a load in the stampede:
// long enough that every goroutine arrives while the first load runs.
const loadTime = 20 * time.Millisecond

func stampedeGroups(cfg Config) []Group {
	var gs []Group
	for _, replicas := range []int{1, 2} {
		per := cfg.Stampede / replicas
		c := fmt.Sprintf("%d goroutines miss one cold key", cfg.Stampede)
		if replicas > 1 {
			c = fmt.Sprintf("%d replicas × %d goroutines miss one cold key", replicas, per)
		}
		gs = append(gs, Group{
			Section: "Stampede", ID: "stampede-" + strconv.Itoa(replicas), Redis: true, Case: c,
			Metrics: []Metric{
				{Name: "loader calls", Ratio: true},
				{Name: "ms until all return", Ratio: true, Decimals: 1},
			},
			Impls: []Impl{
				{Name: "tier", Role: Tier, Note: "Get", Setup: func(env *Env) (Runner, error) {
					return stampede(env, replicas, per, newTierStampeder)
				}},
				{Name: "go-redis/cache", Role: Peer, Note: "Once, with local TinyLFU", Setup: func(env *Env) (Runner, error) {
					return stampede(env, replicas, per, newGoCacheStampeder)
				}},
			},
		})
	}
	return gs
}

// stampeder is one replica's cache in the stampede: get reads key through
// the cache, calling load on a miss.
type stampeder struct {
	get   func(ctx context.Context, key string, load func() User) (User, error)
	close func()
}

func newTierStampeder(env *Env, ns string) (stampeder, error) {
	c, err := newTier(env, ns, nil)
	if err != nil {
		return stampeder{}, err
	}
	return stampeder{
		get: func(ctx context.Context, key string, load func() User) (User, error) {
			return c.Get(ctx, key, tier.LoaderFunc[User](func(context.Context, string) (User, error) { return load(), nil }))
		},
		close: func() { c.Close() },
	}, nil
}

func newGoCacheStampeder(env *Env, ns string) (stampeder, error) {
	c := gocache.New(&gocache.Options{Redis: env.Client(), LocalCache: gocache.NewTinyLFU(1000, ttl)})
	return stampeder{
		get: func(ctx context.Context, key string, load func() User) (User, error) {
			var u User
			err := c.Once(&gocache.Item{Ctx: ctx, Key: ns + ":" + key, Value: &u, TTL: ttl,
				Do: func(*gocache.Item) (any, error) { return load(), nil }})
			return u, err
		},
		close: func() {},
	}, nil
}

var stampedeRun atomic.Int64

// stampede runs, on each run, replicas×per goroutines that wait at a
// barrier and then all Get one key that no tier holds, and counts the
// loads.
func stampede(env *Env, replicas, per int, mk func(*Env, string) (stampeder, error)) (Runner, error) {
	ns := "stampede" + strconv.FormatInt(stampedeRun.Add(1), 10)
	var caches []stampeder
	for range replicas {
		s, err := mk(env, ns)
		if err != nil {
			return Runner{}, err
		}
		caches = append(caches, s)
	}
	run := 0
	return Runner{
		Close: func() {
			for _, s := range caches {
				s.close()
			}
		},
		Run: func() ([]float64, error) {
			run++
			key := "cold:" + strconv.Itoa(run)
			var loads atomic.Int64
			load := func() User {
				loads.Add(1)
				time.Sleep(loadTime)
				return User{ID: 42}
			}
			ctx := context.Background()
			var (
				ready, done sync.WaitGroup
				gate        = make(chan struct{})
				errs        = make(chan error, replicas*per)
			)
			for _, s := range caches {
				for range per {
					ready.Add(1)
					done.Add(1)
					go func() {
						defer done.Done()
						ready.Done()
						<-gate
						u, err := s.get(ctx, key, load)
						if err == nil && u.ID != 42 {
							err = fmt.Errorf("got %+v", u)
						}
						if err != nil {
							errs <- err
						}
					}()
				}
			}
			ready.Wait()
			start := time.Now()
			close(gate)
			done.Wait()
			elapsed := time.Since(start)
			close(errs)
			if err := <-errs; err != nil {
				return nil, err
			}
			return []float64{float64(loads.Load()), float64(elapsed.Microseconds()) / 1e3}, nil
		},
	}, nil
}
