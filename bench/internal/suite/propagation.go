package suite

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"time"

	"github.com/tier-cache/tier"
)

// propagationGroups compare how long a change on one replica takes to be
// seen on another with how long Redis pub/sub takes to deliver a message.
func propagationGroups() []Group {
	return []Group{{
		Section: "Invalidation propagation", ID: "propagation", Redis: true,
		Case: "Set on replica A until replica B's Get returns the new value",
		Metrics: []Metric{
			{Name: "p50 µs", Ratio: true, Decimals: 0},
			{Name: "p99 µs", Ratio: true, Decimals: 0},
		},
		Impls: []Impl{
			{Name: "tier", Role: Tier, Note: "B held the old value near", Setup: tierPropagation},
			{Name: "go-redis PUBLISH", Role: Floor, Note: "until the subscriber receives it", Setup: rawPropagation},
		},
	}}
}

// percentiles returns the p50 and p99 of lat in microseconds.
func percentiles(lat []time.Duration) []float64 {
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[int(p*float64(len(lat)-1))].Nanoseconds()) / 1e3
	}
	return []float64{pct(0.50), pct(0.99)}
}

var propRun int

func tierPropagation(env *Env) (Runner, error) {
	ctx := context.Background()
	propRun++
	ns := "prop" + strconv.Itoa(propRun)
	a, err := newTier(env, ns, nil)
	if err != nil {
		return Runner{}, err
	}
	// heard is signalled by B's subscription when it hears of a change from
	// another replica, just before it applies it. B reads only then: a
	// reader that spun on Get from the moment of the Set would keep its
	// processor busy and starve the goroutines that deliver the message
	// (on 2 cores that made p99 about 4 ms), which no real reader does.
	heard := make(chan struct{}, 1)
	b, err := newTier(env, ns, func(o *tier.Options) {
		o.OnPropagation = func(time.Duration) {
			select {
			case heard <- struct{}{}:
			default:
			}
		}
	})
	if err != nil {
		a.Close()
		return Runner{}, err
	}
	loader := tier.LoaderFunc[User](func(context.Context, string) (User, error) {
		return User{}, fmt.Errorf("the loader was called: the key should be in Redis")
	})
	const key = "k"
	version := int64(0)
	if err := a.Set(ctx, key, User{ID: version}); err != nil {
		return Runner{}, err
	}
	// holdNear makes B hold the current version in its near tier; until
	// B's subscription is confirmed, B stores nothing near, so this also
	// waits for it.
	holdNear := func() error {
		deadline := time.Now().Add(10 * time.Second)
		for {
			r, err := b.Fetch(ctx, key, loader)
			if err != nil {
				return err
			}
			if r.Source == tier.SourceNear && r.Value.ID == version {
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("B never held version %d near (last %d from %v)", version, r.Value.ID, r.Source)
			}
			time.Sleep(time.Millisecond)
		}
	}
	return Runner{
		Close: func() { a.Close(); b.Close() },
		Run: func() ([]float64, error) {
			lat := make([]time.Duration, 0, env.PropRounds)
			for range env.PropRounds {
				if err := holdNear(); err != nil {
					return nil, err
				}
				select {
				case <-heard: // an earlier round's message
				default:
				}
				version++
				start := time.Now()
				if err := a.Set(ctx, key, User{ID: version}); err != nil {
					return nil, err
				}
				select {
				case <-heard:
				case <-time.After(10 * time.Second):
					return nil, fmt.Errorf("B never heard of the Set of %d", version)
				}
				for {
					u, err := b.Get(ctx, key, loader)
					if err != nil {
						return nil, err
					}
					if u.ID == version {
						break
					}
					if time.Since(start) > 10*time.Second {
						return nil, fmt.Errorf("B still reads %d, 10s after Set of %d", u.ID, version)
					}
					runtime.Gosched()
				}
				lat = append(lat, time.Since(start))
			}
			return percentiles(lat), nil
		},
	}, nil
}

func rawPropagation(env *Env) (Runner, error) {
	ctx := context.Background()
	pub, sub := env.Client(), env.Client()
	ps := sub.Subscribe(ctx, "raw-prop")
	if _, err := ps.Receive(ctx); err != nil { // the subscription's confirmation
		ps.Close()
		return Runner{}, err
	}
	return Runner{
		Close: func() { ps.Close() },
		Run: func() ([]float64, error) {
			lat := make([]time.Duration, 0, env.PropRounds)
			for range env.PropRounds {
				start := time.Now()
				if err := pub.Publish(ctx, "raw-prop", "k").Err(); err != nil {
					return nil, err
				}
				if _, err := ps.ReceiveMessage(ctx); err != nil {
					return nil, err
				}
				lat = append(lat, time.Since(start))
			}
			return percentiles(lat), nil
		},
	}, nil
}
