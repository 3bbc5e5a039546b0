package otel_test

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/tier-cache/tier"
	tierotel "github.com/tier-cache/tier/otel"
	"github.com/tier-cache/tier/tiertest"
)

// instrumentOf names the instrument of each field of tier.Stats. A field
// added to tier.Stats fails TestEveryStatsFieldHasAnInstrument until it is
// exported and named here.
var instrumentOf = map[string]string{
	"NearHits":      "tier.near_hits",
	"FarHits":       "tier.far_hits",
	"Misses":        "tier.misses",
	"Loads":         "tier.loads",
	"LoadWaits":     "tier.load_waits",
	"Refreshes":     "tier.refreshes",
	"RefreshErrors": "tier.refresh_errors",
	"StaleServed":   "tier.stale_served",
	"LoadErrors":    "tier.load_errors",
	"FarErrors":     "tier.far_errors",
	"FarSkipped":    "tier.far_skipped",
	"Corrupt":       "tier.corrupt",
	"NotCached":     "tier.not_cached",
	"Evictions":     "tier.evictions",
	"Invalidations": "tier.invalidations",
	"TagMarkers":    "tier.tag_markers",
	"Malformed":     "tier.malformed",
	"Losses":        "tier.subscription_losses",
	"Reconnects":    "tier.reconnects",
}

// newMeter returns a meter of a fresh SDK provider and its manual reader.
func newMeter(t *testing.T) (*sdkmetric.MeterProvider, *sdkmetric.ManualReader) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { provider.Shutdown(context.Background()) })
	return provider, reader
}

// collect reads every metric, by instrument name.
func collect(t *testing.T, reader *sdkmetric.ManualReader) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	byName := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			byName[m.Name] = m
		}
	}
	return byName
}

// counter returns the value of the counter name for the attributes attrs,
// and whether it has such a point; it fails the test if name is not a
// cumulative monotonic sum.
func counter(t *testing.T, ms map[string]metricdata.Metrics, name string, attrs ...attribute.KeyValue) (int64, bool) {
	t.Helper()
	sum, ok := ms[name].Data.(metricdata.Sum[int64])
	if !ok || !sum.IsMonotonic || sum.Temporality != metricdata.CumulativeTemporality {
		t.Fatalf("%s is %T %+v, want a cumulative monotonic Sum[int64]", name, ms[name].Data, ms[name].Data)
	}
	want := attribute.NewSet(attrs...)
	for _, dp := range sum.DataPoints {
		if dp.Attributes.Equals(&want) {
			return dp.Value, true
		}
	}
	return 0, false
}

// Every field of tier.Stats is a counter of its own carrying the field's
// value: each field gets a different value, and each must come out under
// its own name, with a description.
func TestEveryStatsFieldHasAnInstrument(t *testing.T) {
	var st tier.Stats
	v := reflect.ValueOf(&st).Elem()
	for i := range v.NumField() {
		f := v.Type().Field(i)
		if f.Type.Kind() != reflect.Uint64 {
			t.Fatalf("tier.Stats.%s is a %v; the adapter reports uint64 counters", f.Name, f.Type)
		}
		v.Field(i).SetUint(uint64(i + 1))
	}
	provider, reader := newMeter(t)
	if _, err := tierotel.Register(provider.Meter("test"), "users", func() tier.Stats { return st }); err != nil {
		t.Fatal(err)
	}
	ms := collect(t, reader)
	if len(ms) != v.NumField() {
		t.Errorf("%d instruments for the %d fields of tier.Stats", len(ms), v.NumField())
	}
	for i := range v.NumField() {
		field := v.Type().Field(i).Name
		name, ok := instrumentOf[field]
		if !ok {
			t.Errorf("tier.Stats.%s has no instrument named in instrumentOf", field)
			continue
		}
		if _, ok := ms[name]; !ok {
			t.Errorf("tier.Stats.%s: no instrument %s", field, name)
			continue
		}
		if ms[name].Description == "" {
			t.Errorf("%s has no description", name)
		}
		if field == "TagMarkers" {
			g, ok := ms[name].Data.(metricdata.Gauge[int64])
			if !ok || len(g.DataPoints) != 1 || g.DataPoints[0].Value != int64(i+1) {
				t.Errorf("%s = %+v, want a gauge of tier.Stats.%s = %d", name, ms[name].Data, field, i+1)
			}
			continue
		}
		if got, ok := counter(t, ms, name, attribute.String("cache", "users")); !ok || got != int64(i+1) {
			t.Errorf("%s{cache=users} = %d (found: %v), want tier.Stats.%s = %d", name, got, ok, field, i+1)
		}
	}
}

// Stats is read once per collection, not once per instrument, and no
// more after Unregister.
func TestRegisterReadsStatsOncePerCollection(t *testing.T) {
	provider, reader := newMeter(t)
	calls := 0
	reg, err := tierotel.Register(provider.Meter("test"), "users", func() tier.Stats { calls++; return tier.Stats{} })
	if err != nil {
		t.Fatal(err)
	}
	collect(t, reader)
	collect(t, reader)
	if calls != 2 {
		t.Errorf("stats called %d times in two collections, want 2", calls)
	}
	if err := reg.Unregister(); err != nil {
		t.Fatal(err)
	}
	collect(t, reader)
	if calls != 2 {
		t.Errorf("stats called after Unregister")
	}
}

// Two replicas of a cache on one embedded Redis, each registered under
// its own replica attribute: the counters are what each counted, read at
// collection time, and the lag histogram has one point, for the one Set
// that the other replica heard.
func TestTwoReplicas(t *testing.T) {
	provider, reader := newMeter(t)
	meter := provider.Meter("test")
	lag, err := tierotel.NewLagHistogram(meter, "users")
	if err != nil {
		t.Fatal(err)
	}
	caches := tiertest.Replicas[string](t, 2, tier.Options{
		Invalidation: tier.InvalidationOptions{OnPropagation: lag.Observe},
	})
	a, b := caches[0], caches[1]
	for i, c := range caches {
		replica := attribute.String("replica", string(rune('a'+i)))
		if _, err := tierotel.Register(meter, "users", c.Stats, tierotel.WithAttributes(replica)); err != nil {
			t.Fatal(err)
		}
	}

	ctx := context.Background()
	load := tier.LoaderFunc[string](func(_ context.Context, key string) (string, error) {
		switch key {
		case "bad":
			return "", errors.New("source down")
		case "missing":
			return "", tier.ErrNotFound
		}
		return "v", nil
	})
	a.Get(ctx, "k", load)       // a: miss, load
	a.Get(ctx, "k", load)       // a: near hit
	b.Get(ctx, "k", load)       // b: far hit, not a miss
	b.Get(ctx, "k", load)       // b: near hit
	b.Get(ctx, "missing", load) // b: miss, load of "not found"
	b.Get(ctx, "bad", load)     // b: miss, failed load
	start := time.Now()
	if err := a.Set(ctx, "k", "v2"); err != nil {
		t.Fatal(err)
	}
	tiertest.Sync(t, caches...) // b has heard the Set
	elapsed := time.Since(start)

	ms := collect(t, reader)
	for _, want := range []struct {
		replica, name string
		value         int64
	}{
		{"a", "tier.misses", 1}, {"a", "tier.loads", 1}, {"a", "tier.near_hits", 1}, {"a", "tier.far_hits", 0},
		{"a", "tier.invalidations", 0},
		{"b", "tier.misses", 2}, {"b", "tier.loads", 2}, {"b", "tier.near_hits", 1}, {"b", "tier.far_hits", 1},
		{"b", "tier.load_errors", 1}, {"b", "tier.invalidations", 1}, {"b", "tier.far_errors", 0},
	} {
		got, ok := counter(t, ms, want.name, attribute.String("cache", "users"), attribute.String("replica", want.replica))
		if !ok || got != want.value {
			t.Errorf("%s{replica=%s} = %d (found: %v), want %d", want.name, want.replica, got, ok, want.value)
		}
	}

	hist, ok := ms["tier.propagation_lag"].Data.(metricdata.Histogram[float64])
	if !ok || len(hist.DataPoints) != 1 {
		t.Fatalf("tier.propagation_lag: %+v, want a histogram with one series", ms["tier.propagation_lag"])
	}
	dp := hist.DataPoints[0]
	if dp.Count != 1 || dp.Sum < 0 || dp.Sum > elapsed.Seconds() {
		t.Errorf("%d lags summing to %vs, want one, within the %v the Set took to arrive", dp.Count, dp.Sum, elapsed)
	}
	if cache, _ := dp.Attributes.Value("cache"); cache.AsString() != "users" {
		t.Errorf("lag attributes %v, want cache=users", dp.Attributes.ToSlice())
	}
	if ms["tier.propagation_lag"].Unit != "s" {
		t.Errorf("lag unit %q, want s", ms["tier.propagation_lag"].Unit)
	}
}

// The histogram counts each lag in the first bucket that holds it, in
// seconds; a lag below zero counts as zero.
func TestLagHistogramBuckets(t *testing.T) {
	provider, reader := newMeter(t)
	lag, err := tierotel.NewLagHistogram(provider.Meter("test"), "users")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []time.Duration{
		-time.Millisecond,      // le=5e-05, as 0
		50 * time.Microsecond,  // le=5e-05: bounds are inclusive
		700 * time.Microsecond, // le=0.001
		3 * time.Second,        // le=5
		10 * time.Second,       // above the last bound
	} {
		lag.Observe(d)
	}
	dp := collect(t, reader)["tier.propagation_lag"].Data.(metricdata.Histogram[float64]).DataPoints[0]
	if !slices.Equal(dp.Bounds, tierotel.LagBuckets) {
		t.Errorf("bounds %v, want LagBuckets %v", dp.Bounds, tierotel.LagBuckets)
	}
	want := make([]uint64, len(tierotel.LagBuckets)+1)
	want[0], want[4], want[15], want[16] = 2, 1, 1, 1
	if !slices.Equal(dp.BucketCounts, want) || dp.Count != 5 || dp.Sum != 13.00075 {
		t.Errorf("buckets %v, count %d, sum %v; want %v, 5, 13.00075", dp.BucketCounts, dp.Count, dp.Sum, want)
	}
}

// WithPrefix and WithAttributes change every instrument's name and
// attributes.
func TestOptions(t *testing.T) {
	provider, reader := newMeter(t)
	meter := provider.Meter("test")
	opts := []tierotel.Option{tierotel.WithPrefix("app.cache"), tierotel.WithAttributes(attribute.String("region", "eu"))}
	if _, err := tierotel.Register(meter, "users", func() tier.Stats { return tier.Stats{Misses: 4} }, opts...); err != nil {
		t.Fatal(err)
	}
	lag, err := tierotel.NewLagHistogram(meter, "users", opts...)
	if err != nil {
		t.Fatal(err)
	}
	lag.Observe(time.Millisecond)
	ms := collect(t, reader)
	for name := range ms {
		if !strings.HasPrefix(name, "app.cache.") {
			t.Errorf("instrument %s lacks the prefix app.cache.", name)
		}
	}
	if got, ok := counter(t, ms, "app.cache.misses", attribute.String("cache", "users"), attribute.String("region", "eu")); !ok || got != 4 {
		t.Errorf("app.cache.misses{cache=users,region=eu} = %d (found: %v), want 4", got, ok)
	}
	dp := ms["app.cache.propagation_lag"].Data.(metricdata.Histogram[float64]).DataPoints[0]
	if region, _ := dp.Attributes.Value("region"); region.AsString() != "eu" {
		t.Errorf("lag attributes %v, want region=eu among them", dp.Attributes.ToSlice())
	}
}

// The caches of a process share a meter when their names differ.
func TestCachesShareAMeter(t *testing.T) {
	provider, reader := newMeter(t)
	meter := provider.Meter("test")
	for name, hits := range map[string]uint64{"users": 1, "orders": 2} {
		if _, err := tierotel.Register(meter, name, func() tier.Stats { return tier.Stats{NearHits: hits} }); err != nil {
			t.Fatal(err)
		}
	}
	ms := collect(t, reader)
	for name, want := range map[string]int64{"users": 1, "orders": 2} {
		if got, ok := counter(t, ms, "tier.near_hits", attribute.String("cache", name)); !ok || got != want {
			t.Errorf("tier.near_hits{cache=%s} = %d (found: %v), want %d", name, got, ok, want)
		}
	}
}
