package prom_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tier-cache/tier"
	"github.com/tier-cache/tier/prom"
	"github.com/tier-cache/tier/tiertest"
)

// The histogram counts each lag in the first bucket that holds it, in
// seconds; a lag below zero (clocks that disagree) counts as zero.
func TestLagHistogramBuckets(t *testing.T) {
	h := prom.NewLagHistogram("users")
	for _, lag := range []time.Duration{
		-time.Millisecond,       // le=5e-05, as 0
		30 * time.Microsecond,   // le=5e-05
		50 * time.Microsecond,   // le=5e-05: bounds are inclusive
		700 * time.Microsecond,  // le=0.001
		20 * time.Millisecond,   // le=0.025
		3 * time.Second,         // le=5
		10 * time.Second,        // +Inf only
		250 * time.Millisecond,  // le=0.25
		2500 * time.Microsecond, // le=0.0025
	} {
		h.Observe(lag)
	}
	want := `
# HELP tier_propagation_lag_seconds Time from a change on another replica to the arrival of its invalidation message here.
# TYPE tier_propagation_lag_seconds histogram
tier_propagation_lag_seconds_bucket{cache="users",le="5e-05"} 3
tier_propagation_lag_seconds_bucket{cache="users",le="0.0001"} 3
tier_propagation_lag_seconds_bucket{cache="users",le="0.00025"} 3
tier_propagation_lag_seconds_bucket{cache="users",le="0.0005"} 3
tier_propagation_lag_seconds_bucket{cache="users",le="0.001"} 4
tier_propagation_lag_seconds_bucket{cache="users",le="0.0025"} 5
tier_propagation_lag_seconds_bucket{cache="users",le="0.005"} 5
tier_propagation_lag_seconds_bucket{cache="users",le="0.01"} 5
tier_propagation_lag_seconds_bucket{cache="users",le="0.025"} 6
tier_propagation_lag_seconds_bucket{cache="users",le="0.05"} 6
tier_propagation_lag_seconds_bucket{cache="users",le="0.1"} 6
tier_propagation_lag_seconds_bucket{cache="users",le="0.25"} 7
tier_propagation_lag_seconds_bucket{cache="users",le="0.5"} 7
tier_propagation_lag_seconds_bucket{cache="users",le="1"} 7
tier_propagation_lag_seconds_bucket{cache="users",le="2.5"} 7
tier_propagation_lag_seconds_bucket{cache="users",le="5"} 8
tier_propagation_lag_seconds_bucket{cache="users",le="+Inf"} 9
tier_propagation_lag_seconds_sum{cache="users"} 13.27328
tier_propagation_lag_seconds_count{cache="users"} 9
`
	if err := testutil.CollectAndCompare(h, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}

// Observe is safe from many goroutines at once, as from the subscription
// goroutines of several caches sharing one histogram.
func TestLagHistogramConcurrent(t *testing.T) {
	h := prom.NewLagHistogram("users")
	done := make(chan struct{})
	for range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for range 1000 {
				h.Observe(time.Millisecond)
			}
		}()
	}
	for range 4 {
		<-done
	}
	mfs := gather(t, h)
	if n := mfs["tier_propagation_lag_seconds"].GetMetric()[0].GetHistogram().GetSampleCount(); n != 4000 {
		t.Errorf("%d observations, want 4000", n)
	}
}

// Passed as Options.Invalidation.OnPropagation, the histogram records the
// changes another replica sends, over Redis pub/sub: one Set, one lag.
func TestLagHistogramHearsAnotherReplica(t *testing.T) {
	lag := prom.NewLagHistogram("users")
	caches := tiertest.Replicas[string](t, 2, tier.Options{
		Invalidation: tier.InvalidationOptions{OnPropagation: lag.Observe},
	})
	start := time.Now()
	if err := caches[0].Set(context.Background(), "k", "v"); err != nil {
		t.Fatal(err)
	}
	tiertest.Sync(t, caches...) // the other replica has heard the Set
	elapsed := time.Since(start)

	h := gather(t, lag)["tier_propagation_lag_seconds"].GetMetric()[0].GetHistogram()
	if h.GetSampleCount() != 1 || h.GetSampleSum() > elapsed.Seconds() {
		t.Errorf("%d lags summing to %vs, want one, within the %v the Set took to arrive", h.GetSampleCount(), h.GetSampleSum(), elapsed)
	}
}
