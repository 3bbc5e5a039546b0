package prom_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/tier-cache/tier"
	"github.com/tier-cache/tier/prom"
)

// metricOf names the metric of each field of tier.Stats. A field added to
// tier.Stats fails TestEveryStatsFieldHasAMetric until it is exported and
// named here.
var metricOf = map[string]string{
	"NearHits":      "tier_near_hits_total",
	"FarHits":       "tier_far_hits_total",
	"Misses":        "tier_misses_total",
	"Loads":         "tier_loads_total",
	"LoadWaits":     "tier_load_waits_total",
	"Refreshes":     "tier_refreshes_total",
	"RefreshErrors": "tier_refresh_errors_total",
	"StaleServed":   "tier_stale_served_total",
	"LoadErrors":    "tier_load_errors_total",
	"FarErrors":     "tier_far_errors_total",
	"FarSkipped":    "tier_far_skipped_total",
	"Corrupt":       "tier_corrupt_total",
	"NotCached":     "tier_not_cached_total",
	"Evictions":     "tier_evictions_total",
	"Invalidations": "tier_invalidations_total",
	"TagMarkers":    "tier_tag_markers",
	"Malformed":     "tier_malformed_total",
	"Losses":        "tier_subscription_losses_total",
	"Reconnects":    "tier_reconnects_total",
}

// gather registers cs with a fresh registry and returns what it gathers,
// by metric name.
func gather(t *testing.T, cs ...prometheus.Collector) map[string]*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			t.Fatal(err)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	byName := make(map[string]*dto.MetricFamily, len(mfs))
	for _, mf := range mfs {
		byName[mf.GetName()] = mf
	}
	return byName
}

// Every field of tier.Stats is a counter of its own, carrying the field's
// value: each field gets a different value, and each must come out under
// its own name.
func TestEveryStatsFieldHasAMetric(t *testing.T) {
	var st tier.Stats
	v := reflect.ValueOf(&st).Elem()
	for i := range v.NumField() {
		f := v.Type().Field(i)
		if f.Type.Kind() != reflect.Uint64 {
			t.Fatalf("tier.Stats.%s is a %v; the collector reports uint64 counters", f.Name, f.Type)
		}
		v.Field(i).SetUint(uint64(i + 1))
	}
	mfs := gather(t, prom.NewCollector("users", func() tier.Stats { return st }))
	if len(mfs) != v.NumField() {
		t.Errorf("%d metrics for the %d fields of tier.Stats", len(mfs), v.NumField())
	}
	for i := range v.NumField() {
		field := v.Type().Field(i).Name
		name, ok := metricOf[field]
		if !ok {
			t.Errorf("tier.Stats.%s has no metric named in metricOf", field)
			continue
		}
		mf := mfs[name]
		if mf == nil {
			t.Errorf("tier.Stats.%s: no metric %s", field, name)
			continue
		}
		kind, value := dto.MetricType_COUNTER, func(m *dto.Metric) float64 { return m.GetCounter().GetValue() }
		if field == "TagMarkers" { // a level, not a count
			kind, value = dto.MetricType_GAUGE, func(m *dto.Metric) float64 { return m.GetGauge().GetValue() }
		}
		if mf.GetType() != kind || mf.GetHelp() == "" || len(mf.GetMetric()) != 1 {
			t.Errorf("%s: type %v, help %q, %d series; want one %v with help", name, mf.GetType(), mf.GetHelp(), len(mf.GetMetric()), kind)
			continue
		}
		m := mf.GetMetric()[0]
		if got := value(m); got != float64(i+1) {
			t.Errorf("%s = %v, want tier.Stats.%s = %d", name, got, field, i+1)
		}
		if l := m.GetLabel(); len(l) != 1 || l[0].GetName() != "cache" || l[0].GetValue() != "users" {
			t.Errorf("%s has labels %v, want cache=users", name, l)
		}
	}
}

// The collector reports what a real cache counted, read at scrape time.
func TestCollectorReadsTheCache(t *testing.T) {
	c, err := tier.New[string](tier.Options{}) // near tier only
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	col := prom.NewCollector("users", c.Stats)

	ctx := context.Background()
	load := tier.LoaderFunc[string](func(ctx context.Context, key string) (string, error) {
		if key == "bad" {
			return "", errors.New("source down")
		}
		return "v" + key, nil
	})
	if err := testutil.CollectAndCompare(col, strings.NewReader(`
# HELP tier_loads_total Loader calls (a batch loader call counts once).
# TYPE tier_loads_total counter
tier_loads_total{cache="users"} 0
`), "tier_loads_total"); err != nil {
		t.Fatal(err)
	}

	for _, key := range []string{"1", "1", "1", "2"} { // 2 misses, 2 hits
		if _, err := c.Get(ctx, key, load); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Set(ctx, "3", "v3"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, "3", load); err != nil { // a hit, no load
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, "bad", load); err == nil {
		t.Fatal("Get of a key whose load fails succeeded")
	}

	want := `
# HELP tier_near_hits_total Lookups answered by the near tier.
# TYPE tier_near_hits_total counter
tier_near_hits_total{cache="users"} 3
# HELP tier_misses_total Keys found in neither tier.
# TYPE tier_misses_total counter
tier_misses_total{cache="users"} 3
# HELP tier_loads_total Loader calls (a batch loader call counts once).
# TYPE tier_loads_total counter
tier_loads_total{cache="users"} 3
# HELP tier_load_errors_total Loads that failed (not counting ErrNotFound).
# TYPE tier_load_errors_total counter
tier_load_errors_total{cache="users"} 1
# HELP tier_far_hits_total Near misses answered by Redis.
# TYPE tier_far_hits_total counter
tier_far_hits_total{cache="users"} 0
`
	if err := testutil.CollectAndCompare(col, strings.NewReader(want),
		"tier_near_hits_total", "tier_misses_total", "tier_loads_total", "tier_load_errors_total", "tier_far_hits_total"); err != nil {
		t.Fatal(err)
	}

	// Every metric equals its field of the cache's own Stats.
	st := reflect.ValueOf(c.Stats())
	mfs := gather(t, col)
	for field, name := range metricOf {
		if len(mfs[name].GetMetric()) != 1 {
			t.Errorf("%s: %d series, want 1", name, len(mfs[name].GetMetric()))
			continue
		}
		got := mfs[name].GetMetric()[0].GetCounter().GetValue()
		if want := st.FieldByName(field).Uint(); got != float64(want) {
			t.Errorf("%s = %v, want Stats.%s = %d", name, got, field, want)
		}
	}
}

// Stats is read once per scrape, not once per metric.
func TestCollectorReadsStatsOncePerScrape(t *testing.T) {
	calls := 0
	col := prom.NewCollector("users", func() tier.Stats { calls++; return tier.Stats{} })
	if n := testutil.CollectAndCount(col); n != len(metricOf) {
		t.Errorf("%d metrics, want %d", n, len(metricOf))
	}
	if calls != 1 {
		t.Errorf("stats called %d times in one scrape, want 1", calls)
	}
}

// The caches of a process share a registry when their names differ; one
// name twice is refused, not merged.
func TestCollectorsShareARegistry(t *testing.T) {
	stats := func() tier.Stats { return tier.Stats{NearHits: 1} }
	reg := prometheus.NewPedanticRegistry()
	for _, c := range []prometheus.Collector{
		prom.NewCollector("users", stats), prom.NewLagHistogram("users"),
		prom.NewCollector("orders", stats), prom.NewLagHistogram("orders"),
	} {
		if err := reg.Register(c); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := testutil.GatherAndCount(reg, "tier_near_hits_total"); err != nil || n != 2 {
		t.Errorf("tier_near_hits_total has %d series (%v), want 2", n, err)
	}
	var dup prometheus.AlreadyRegisteredError
	if err := reg.Register(prom.NewCollector("users", stats)); !errors.As(err, &dup) {
		t.Errorf("registering cache=users twice: %v, want AlreadyRegisteredError", err)
	}
}

// WithNamespace and WithLabels change every metric's name and labels.
func TestOptions(t *testing.T) {
	opts := []prom.Option{prom.WithNamespace("app_cache"), prom.WithLabels(prometheus.Labels{"region": "eu"})}
	col := prom.NewCollector("users", func() tier.Stats { return tier.Stats{Misses: 4} }, opts...)
	lag := prom.NewLagHistogram("users", opts...)
	mfs := gather(t, col, lag)
	if n := len(mfs); n != len(metricOf)+1 {
		t.Errorf("%d metric families, want %d", n, len(metricOf)+1)
	}
	for _, name := range []string{"app_cache_misses_total", "app_cache_propagation_lag_seconds"} {
		mf := mfs[name]
		if mf == nil {
			t.Errorf("no %s", name)
			continue
		}
		labels := map[string]string{}
		for _, l := range mf.GetMetric()[0].GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if !reflect.DeepEqual(labels, map[string]string{"cache": "users", "region": "eu"}) {
			t.Errorf("%s has labels %v, want cache=users, region=eu", name, labels)
		}
	}
}

// promlint, which Prometheus's own tooling runs, finds nothing to fix:
// counters end in _total, units are base units, every metric has help.
func TestLint(t *testing.T) {
	for _, c := range []prometheus.Collector{
		prom.NewCollector("users", func() tier.Stats { return tier.Stats{} }),
		prom.NewLagHistogram("users"),
	} {
		problems, err := testutil.CollectAndLint(c)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			t.Errorf("%s: %s", p.Metric, p.Text)
		}
	}
}
