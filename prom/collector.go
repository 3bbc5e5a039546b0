package prom

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tier-cache/tier"
)

// counters are the metrics of [tier.Stats], one a field, with the field's
// comment as HELP. The tests check that every field has one.
var counters = []struct {
	name  string
	help  string
	value func(*tier.Stats) uint64
}{
	{"near_hits_total", "Lookups answered by the near tier.", func(s *tier.Stats) uint64 { return s.NearHits }},
	{"far_hits_total", "Near misses answered by Redis.", func(s *tier.Stats) uint64 { return s.FarHits }},
	{"misses_total", "Keys found in neither tier.", func(s *tier.Stats) uint64 { return s.Misses }},
	{"loads_total", "Loader calls (a batch loader call counts once).", func(s *tier.Stats) uint64 { return s.Loads }},
	{"load_waits_total", "Waits for another replica's load (Options.WaitForLoads).", func(s *tier.Stats) uint64 { return s.LoadWaits }},
	{"refreshes_total", "Background refreshes of hot keys (Options.Refresh.Ahead).", func(s *tier.Stats) uint64 { return s.Refreshes }},
	{"refresh_errors_total", "Refreshes that failed; the entry then expired as usual.", func(s *tier.Stats) uint64 { return s.RefreshErrors }},
	{"stale_served_total", "Values past their TTL served within Options.Refresh.StaleGrace.", func(s *tier.Stats) uint64 { return s.StaleServed }},
	{"load_errors_total", "Loads that failed (not counting ErrNotFound).", func(s *tier.Stats) uint64 { return s.LoadErrors }},
	{"far_errors_total", "Redis operations that failed.", func(s *tier.Stats) uint64 { return s.FarErrors }},
	{"far_skipped_total", "Redis operations not tried while Redis was unreachable.", func(s *tier.Stats) uint64 { return s.FarSkipped }},
	{"corrupt_total", "Values in Redis that did not decode, reloaded and overwritten.", func(s *tier.Stats) uint64 { return s.Corrupt }},
	{"not_cached_total", "Loaded values returned but not stored (too large, not encodable).", func(s *tier.Stats) uint64 { return s.NotCached }},
	{"evictions_total", "Near entries evicted to make room.", func(s *tier.Stats) uint64 { return s.Evictions }},
	{"invalidations_total", "Keys and tags dropped on messages from other replicas or operators.", func(s *tier.Stats) uint64 { return s.Invalidations }},
	{"tag_markers", "Tag markers held now, for the tags near entries carry (a gauge).", func(s *tier.Stats) uint64 { return s.TagMarkers }},
	{"malformed_total", "Invalidation messages ignored as malformed.", func(s *tier.Stats) uint64 { return s.Malformed }},
	{"subscription_losses_total", "Invalidation subscriptions lost (near tier dropped).", func(s *tier.Stats) uint64 { return s.Losses }},
	{"reconnects_total", "Invalidation subscriptions re-established after a loss.", func(s *tier.Stats) uint64 { return s.Reconnects }},
}

// Collector is a [prometheus.Collector] that reports the [tier.Stats] of
// one cache as counters. It reads them at scrape time, by one call of the
// stats function per scrape, and keeps nothing in between.
type Collector struct {
	stats func() tier.Stats
	descs []*prometheus.Desc // in the order of counters
}

// An Option changes the metrics of [NewCollector] or [NewLagHistogram].
type Option func(*config)

type config struct {
	namespace string
	labels    prometheus.Labels
}

// WithNamespace replaces the prefix of the metric names,
// "<namespace>_near_hits_total" and so on. Default: "tier".
func WithNamespace(namespace string) Option {
	return func(c *config) { c.namespace = namespace }
}

// WithLabels adds constant labels to every metric, beside cache="<name>"
// (for instance the service's region). Default: none.
func WithLabels(labels prometheus.Labels) Option {
	return func(c *config) {
		for k, v := range labels {
			c.labels[k] = v
		}
	}
}

func newConfig(name string, opts []Option) config {
	c := config{namespace: "tier", labels: prometheus.Labels{}}
	for _, o := range opts {
		o(&c)
	}
	c.labels["cache"] = name
	return c
}

// NewCollector returns a collector of the counters that stats returns,
// which is usually the Stats method of a cache:
//
//	prom.NewCollector("users", users.Stats)
//
// Every metric carries the label cache=name, so the caches of a process
// can share one registry when their names differ. Registering it reports
// a name or label that Prometheus does not accept.
func NewCollector(name string, stats func() tier.Stats, opts ...Option) *Collector {
	cfg := newConfig(name, opts)
	c := &Collector{stats: stats, descs: make([]*prometheus.Desc, len(counters))}
	for i, m := range counters {
		c.descs[i] = prometheus.NewDesc(prometheus.BuildFQName(cfg.namespace, "", m.name), m.help, nil, cfg.labels)
	}
	return c
}

// Describe sends the descriptions of the counters.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

// Collect reads the cache's counters and sends them.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	st := c.stats()
	for i, m := range counters {
		kind := prometheus.CounterValue
		if !strings.HasSuffix(m.name, "_total") { // the one gauge: tag_markers
			kind = prometheus.GaugeValue
		}
		ch <- prometheus.MustNewConstMetric(c.descs[i], kind, float64(m.value(&st)))
	}
}
