package soak_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/tier-cache/tier"
	"github.com/tier-cache/tier/internal/redistest"
	"github.com/tier-cache/tier/internal/soak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// cacheReplica is a tier.Cache of versions whose loader reads the source.
type cacheReplica struct {
	c      *tier.Cache[uint64]
	loader tier.Loader[uint64]
}

func newReplica(t *testing.T, client redis.UniversalClient, src *soak.Source, opts tier.Options) *cacheReplica {
	t.Helper()
	opts.Redis = client
	if opts.Namespace == "" {
		opts.Namespace = "soak"
	}
	c, err := tier.New[uint64](opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &cacheReplica{c: c, loader: tier.LoaderFunc[uint64](func(_ context.Context, key string) (uint64, error) {
		if v, ok := src.Load(key); ok {
			return v, nil
		}
		return 0, tier.ErrNotFound
	})}
}

func (r *cacheReplica) Get(ctx context.Context, key string) (uint64, bool, string, error) {
	res, err := r.c.Fetch(ctx, key, r.loader)
	if errors.Is(err, tier.ErrNotFound) {
		return 0, false, res.Source.String(), nil
	}
	return res.Value, err == nil, res.Source.String(), err
}

func (r *cacheReplica) Set(ctx context.Context, key string, v uint64) error {
	return r.c.Set(ctx, key, v)
}

func (r *cacheReplica) Delete(ctx context.Context, key string) error { return r.c.Delete(ctx, key) }

func (r *cacheReplica) Invalidate(ctx context.Context, key string) error {
	return r.c.Invalidate(ctx, key)
}

// replicas starts n caches on srv, each with a go-redis client of its own,
// and waits until every one serves from its near tier (its subscription is
// confirmed).
func replicas(t *testing.T, srv *redistest.Server, src *soak.Source, n int, opts tier.Options) ([]soak.Replica, []*tier.Cache[uint64]) {
	t.Helper()
	var reps []soak.Replica
	var caches []*tier.Cache[uint64]
	for range n {
		r := newReplica(t, srv.Client(t), src, opts)
		reps = append(reps, r)
		caches = append(caches, r.c)
	}
	for i, c := range caches {
		waitNear(t, c, fmt.Sprintf("warm-%d", i))
	}
	return reps, caches
}

// waitNear polls until a second read of key comes from the near tier: the
// near tier is used once the invalidation subscription is confirmed. The
// deadline turns a hang into a failure.
func waitNear(t *testing.T, c *tier.Cache[uint64], key string) {
	t.Helper()
	loader := tier.LoaderFunc[uint64](func(context.Context, string) (uint64, error) { return 0, nil })
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := c.Get(context.Background(), key, loader); err != nil {
			t.Fatal(err)
		}
		if r, err := c.Fetch(context.Background(), key, loader); err == nil && r.Source == tier.SourceNear {
			c.Delete(context.Background(), key)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cache did not use its near tier within 20s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func soakDuration(t *testing.T, local, ci time.Duration) time.Duration {
	t.Helper()
	d, err := soak.Duration(local, ci)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func logStats(t *testing.T, caches []*tier.Cache[uint64]) {
	t.Helper()
	for i, c := range caches {
		st := c.Stats()
		t.Logf("replica %d: near hits %d, far hits %d, loads %d, far errors %d, invalidations %d, malformed %d, losses %d, reconnects %d",
			i, st.NearHits, st.FarHits, st.Loads, st.FarErrors, st.Invalidations, st.Malformed, st.Losses, st.Reconnects)
	}
}

// The soak: three replicas on one real redis-server, each with its own
// client, 4 workers each, reading, writing, deleting and invalidating 12
// hot keys. No read may return a value overwritten more than the slack
// before it started. 3s locally, 20s under CI=true, TIER_SOAK=5m for more.
func TestSoakThreeReplicas(t *testing.T) {
	srv := redistest.Start(t)
	src := soak.NewSource()
	reps, caches := replicas(t, srv, src, 3, tier.Options{})
	rep := soak.Run(t.Context(), soak.Config{
		Replicas: reps,
		Source:   src,
		Duration: soakDuration(t, 3*time.Second, 20*time.Second),
	})
	t.Log(rep)
	logStats(t, caches)
	assertSound(t, rep)
	// Every tier answered: the near tier most, Redis and the loader too.
	for _, s := range []string{"near", "far", "load"} {
		if rep.Sources[s] == 0 {
			t.Errorf("no read was answered from %s: the soak did not exercise that tier", s)
		}
	}
}

// The same soak while a chaos goroutine kills every subscription
// (CLIENT KILL TYPE pubsub) every 200ms: each replica stops serving near
// copies when it notices and resumes after it has resubscribed, so no read
// is staler than the slack.
func TestSoakWithSubscriptionKills(t *testing.T) {
	srv := redistest.Start(t)
	src := soak.NewSource()
	reps, caches := replicas(t, srv, src, 3, tier.Options{})
	ctx, cancel := context.WithCancel(t.Context())
	kills := make(chan int)
	admin := srv.Client(t)
	go func() {
		n := 0
		defer func() { kills <- n }()
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				if admin.ClientKillByFilter(ctx, "TYPE", "pubsub").Err() == nil {
					n++
				}
			}
		}
	}()
	rep := soak.Run(ctx, soak.Config{
		Replicas: reps,
		Source:   src,
		Duration: soakDuration(t, 3*time.Second, 10*time.Second),
	})
	cancel()
	n := <-kills
	t.Logf("%d rounds of CLIENT KILL TYPE pubsub\n%v", n, rep)
	logStats(t, caches)
	assertSound(t, rep)
	var losses uint64
	for _, c := range caches {
		losses += c.Stats().Losses
	}
	if n > 0 && losses == 0 {
		t.Errorf("%d kills and no replica counted a lost subscription", n)
	}
}

// The checker can fail: with invalidation turned off, replicas serve near
// copies that other replicas overwrote, for up to NearTTL, and the soak
// must report violations.
func TestSoakCatchesStaleReplicas(t *testing.T) {
	srv := redistest.Start(t)
	src := soak.NewSource()
	var reps []soak.Replica
	for range 3 {
		reps = append(reps, newReplica(t, srv.Client(t), src, tier.Options{Invalidation: tier.InvalidationOptions{Disabled: true}}))
	}
	rep := soak.Run(t.Context(), soak.Config{Replicas: reps, Source: src, Duration: time.Second, Slack: 5 * time.Millisecond})
	t.Log(rep)
	if rep.Counts.Violations == 0 {
		t.Fatal("no violation with invalidation off: the checker cannot see stale replicas")
	}
}

func assertSound(t *testing.T, rep soak.Report) {
	t.Helper()
	if rep.Counts.Violations != 0 {
		t.Errorf("%d reads returned a value overwritten more than %v before they started", rep.Counts.Violations, rep.Slack)
	}
	if rep.FailedReads != 0 {
		t.Errorf("%d reads failed: a read must fall back to the loader, never fail", rep.FailedReads)
	}
	if rep.Reads == 0 || rep.Writes == 0 || rep.Deletes == 0 || rep.Invalidates == 0 {
		t.Errorf("the soak did not exercise every operation: %+v", rep)
	}
}
