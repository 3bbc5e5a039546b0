package suite

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	gocache "github.com/go-redis/cache/v9"

	"github.com/tier-cache/tier"
	"github.com/tier-cache/tier/bench/internal/redisproc"
)

// The outage row: Gets per second while Redis is killed (kill -9), as a
// fraction of Gets per second before, for tier and for go-redis/cache
// with its local cache, on the same workload in the same run: 8
// goroutines Get 20 keys through a loader that takes 1ms, with values
// kept near for 1s (so that Redis is read again every second) and in
// Redis for a minute. The two take turns of OutageTimes.Turn, before and
// during; the outage has a redis-server of its own.
const (
	outageWorkers = 8
	outageKeys    = 20
	outageNearTTL = time.Second
	outageLoad    = time.Millisecond
)

var outageMetrics = []Metric{
	{Name: "Gets/s before", Ratio: true, HigherBetter: true},
	{Name: "Gets/s during", Ratio: true, HigherBetter: true},
	{Name: "during / before %", Ratio: true, HigherBetter: true},
}

func outageGroups() []Group {
	return []Group{{
		Section: "Redis outage", ID: "outage", Redis: true, Metrics: outageMetrics,
		Case: fmt.Sprintf("%d goroutines Get %d keys; redis-server killed (SIGKILL) for the second phase", outageWorkers, outageKeys),
		Impls: []Impl{
			{Name: "tier", Role: Tier, Note: "Get, Near.TTL 1s, defaults otherwise"},
			{Name: "go-redis/cache", Role: Peer, Note: "Once, local TinyLFU of 1s, go-redis defaults (3 retries, with backoff)"},
		},
		Together: outageTogether,
	}}
}

// getter is one cache of the outage row.
type getter func(ctx context.Context, key string) error

func outageTogether(env *Env) (func() ([][]float64, error), func(), error) {
	srv, err := redisproc.Start(!env.Redis.Real)
	if err != nil {
		return nil, nil, err
	}
	tc, gcClient := srv.Client(), srv.Client()
	c, err := tier.New[User](tier.Options{Redis: tc, Namespace: "outage", Near: tier.NearOptions{TTL: outageNearTTL}, FarTTL: time.Minute})
	if err != nil {
		srv.Close()
		return nil, nil, err
	}
	closeFn := func() { c.Close(); tc.Close(); gcClient.Close(); srv.Close() }
	load := func(key string) User {
		time.Sleep(outageLoad)
		return User{ID: 1, Name: key}
	}
	loader := tier.LoaderFunc[User](func(_ context.Context, key string) (User, error) { return load(key), nil })
	tierGet := func(ctx context.Context, key string) error {
		_, err := c.Get(ctx, key, loader)
		return err
	}
	gc := gocache.New(&gocache.Options{Redis: gcClient, LocalCache: gocache.NewTinyLFU(1000, outageNearTTL)})
	gcGet := func(ctx context.Context, key string) error {
		var u User
		return gc.Once(&gocache.Item{Ctx: ctx, Key: "gc:" + key, Value: &u, TTL: time.Minute,
			Do: func(it *gocache.Item) (any, error) { return load(it.Key), nil }})
	}
	impls := []getter{tierGet, gcGet}
	names := []string{"tier", "go-redis/cache"}
	keys := keyList(outageKeys)

	// phase lets the caches take turns until each has had d/2, and
	// returns each one's successful Gets per second. The next turn goes
	// to the cache that has had the least time, so that one whose Gets
	// hang for seconds (a turn lasts until its goroutines are back) does
	// not leave the other only a few turns of the phase.
	phase := func(d time.Duration) []float64 {
		gets := make([]int64, len(impls))
		spent := make([]time.Duration, len(impls))
		for turn := 0; ; turn++ {
			i := turn % len(impls)
			for j := range impls {
				if spent[j] < spent[i] {
					i = j
				}
			}
			if spent[i] >= d/time.Duration(len(impls)) {
				break
			}
			n, el := turnOf(impls[i], keys, env.Outage.Turn)
			gets[i] += n
			spent[i] += el
			if Debug != nil {
				fmt.Fprintf(Debug, "    %s turn %d: %d Gets in %v\n", names[i], turn, n, el)
			}
		}
		out := make([]float64, len(impls))
		for i := range out {
			out[i] = float64(gets[i]) / spent[i].Seconds()
		}
		return out
	}
	// recovered waits until both caches reach the restarted server.
	recovered := func() error {
		deadline := time.Now().Add(30 * time.Second)
		for c.Health().Degraded || gcClient.Ping(context.Background()).Err() != nil {
			if time.Now().After(deadline) {
				return fmt.Errorf("not recovered 30s after the restart: tier %v", c.Health())
			}
			time.Sleep(10 * time.Millisecond)
		}
		return nil
	}
	run := func() ([][]float64, error) {
		if err := recovered(); err != nil {
			return nil, err
		}
		phase(env.Outage.Turn * 4) // warm both up
		before := phase(env.Outage.Before)
		if Debug != nil {
			fmt.Fprintf(Debug, "    kill\n")
		}
		srv.Kill()
		during := phase(env.Outage.During)
		if err := srv.Restart(); err != nil {
			return nil, err
		}
		figs := make([][]float64, len(impls))
		for i := range impls {
			figs[i] = []float64{before[i], during[i], 100 * during[i] / before[i]}
		}
		return figs, nil
	}
	return run, closeFn, nil
}

// turnOf runs outageWorkers goroutines that Get keys through g for d, and
// returns how many Gets succeeded and the time until every goroutine was
// back, which includes a Get that outlasted the turn.
func turnOf(g getter, keys []string, d time.Duration) (int64, time.Duration) {
	var (
		stop atomic.Bool
		ok   atomic.Int64
		wg   sync.WaitGroup
	)
	ctx := context.Background()
	start := time.Now()
	for w := range outageWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := int64(0)
			for i := w * 3; !stop.Load(); i++ {
				if g(ctx, keys[i%len(keys)]) == nil {
					n++
				}
			}
			ok.Add(n)
		}()
	}
	time.Sleep(d)
	stop.Store(true)
	wg.Wait()
	return ok.Load(), time.Since(start)
}
