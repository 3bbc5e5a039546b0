package clustertest_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/tier-cache/tier"
	"github.com/tier-cache/tier/internal/soak"
)

// replica adapts a tier.Cache of versions to the soak driver; its loader
// reads the driver's source.
type replica struct {
	c      *tier.Cache[uint64]
	loader tier.Loader[uint64]
}

func (r *replica) Get(ctx context.Context, key string) (uint64, bool, string, error) {
	res, err := r.c.Fetch(ctx, key, r.loader)
	if errors.Is(err, tier.ErrNotFound) {
		return 0, false, res.Source.String(), nil
	}
	return res.Value, err == nil, res.Source.String(), err
}

func (r *replica) Set(ctx context.Context, key string, v uint64) error { return r.c.Set(ctx, key, v) }

func (r *replica) Delete(ctx context.Context, key string) error { return r.c.Delete(ctx, key) }

func (r *replica) Invalidate(ctx context.Context, key string) error { return r.c.Invalidate(ctx, key) }

// The soak of internal/soak on the cluster: three replicas, each with a
// cluster client of its own, 4 workers each, reading, writing, deleting and
// invalidating 12 hot keys spread over the three masters. No read may
// return a value overwritten more than the slack before it started. 2s
// locally, 5s under CI=true, TIER_SOAK=5m for more.
func TestSoakOnCluster(t *testing.T) {
	cl := cluster(t)
	ns := namespace("soak")
	src := soak.NewSource()
	var reps []soak.Replica
	var caches []*tier.Cache[uint64]
	for range 3 {
		c, err := tier.New[uint64](tier.Options{Redis: cl.ClusterClient(t), Namespace: ns})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		caches = append(caches, c)
		reps = append(reps, &replica{c: c, loader: tier.LoaderFunc[uint64](func(_ context.Context, key string) (uint64, error) {
			if v, ok := src.Load(key); ok {
				return v, nil
			}
			return 0, tier.ErrNotFound
		})})
	}
	for i, c := range caches {
		waitNear(t, c, fmt.Sprintf("warm-%d", i))
	}
	d, err := soak.Duration(2*time.Second, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	rep := soak.Run(t.Context(), soak.Config{Replicas: reps, Source: src, Duration: d})
	t.Log(rep)
	for i, c := range caches {
		st := c.Stats()
		t.Logf("replica %d: near hits %d, far hits %d, loads %d, far errors %d, invalidations %d, malformed %d, losses %d",
			i, st.NearHits, st.FarHits, st.Loads, st.FarErrors, st.Invalidations, st.Malformed, st.Losses)
	}
	if rep.Counts.Violations != 0 {
		t.Errorf("%d reads returned a value overwritten more than %v before they started", rep.Counts.Violations, rep.Slack)
	}
	if rep.FailedReads != 0 {
		t.Errorf("%d reads failed: a read must fall back to the loader, never fail", rep.FailedReads)
	}
	if rep.Reads == 0 || rep.Writes == 0 || rep.Deletes == 0 || rep.Invalidates == 0 {
		t.Errorf("the soak did not exercise every operation: %+v", rep)
	}
	for _, s := range []string{"near", "far", "load"} {
		if rep.Sources[s] == 0 {
			t.Errorf("no read was answered from %s: the soak did not exercise that tier", s)
		}
	}
}
