package otel

import (
	"context"
	"math"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/tier-cache/tier"
)

// counters are the instruments of [tier.Stats], one a field, with the
// field's comment as description. The tests check that every field has one.
var counters = []struct {
	name  string
	desc  string
	value func(*tier.Stats) uint64
}{
	{"near_hits", "Lookups answered by the near tier.", func(s *tier.Stats) uint64 { return s.NearHits }},
	{"far_hits", "Near misses answered by Redis.", func(s *tier.Stats) uint64 { return s.FarHits }},
	{"misses", "Keys found in neither tier.", func(s *tier.Stats) uint64 { return s.Misses }},
	{"loads", "Loader calls (a batch loader call counts once).", func(s *tier.Stats) uint64 { return s.Loads }},
	{"load_waits", "Waits for another replica's load (Options.WaitForLoads).", func(s *tier.Stats) uint64 { return s.LoadWaits }},
	{"refreshes", "Background refreshes of hot keys (Options.Refresh.Ahead).", func(s *tier.Stats) uint64 { return s.Refreshes }},
	{"refresh_errors", "Refreshes that failed; the entry then expired as usual.", func(s *tier.Stats) uint64 { return s.RefreshErrors }},
	{"stale_served", "Values past their TTL served within Options.Refresh.StaleGrace.", func(s *tier.Stats) uint64 { return s.StaleServed }},
	{"load_errors", "Loads that failed (not counting ErrNotFound).", func(s *tier.Stats) uint64 { return s.LoadErrors }},
	{"far_errors", "Redis operations that failed.", func(s *tier.Stats) uint64 { return s.FarErrors }},
	{"far_skipped", "Redis operations not tried while Redis was unreachable.", func(s *tier.Stats) uint64 { return s.FarSkipped }},
	{"corrupt", "Values in Redis that did not decode, reloaded and overwritten.", func(s *tier.Stats) uint64 { return s.Corrupt }},
	{"not_cached", "Loaded values returned but not stored (too large, not encodable).", func(s *tier.Stats) uint64 { return s.NotCached }},
	{"evictions", "Near entries evicted to make room.", func(s *tier.Stats) uint64 { return s.Evictions }},
	{"invalidations", "Keys and tags dropped on messages from other replicas or operators.", func(s *tier.Stats) uint64 { return s.Invalidations }},
	{"malformed", "Invalidation messages ignored as malformed.", func(s *tier.Stats) uint64 { return s.Malformed }},
	{"subscription_losses", "Invalidation subscriptions lost (near tier dropped).", func(s *tier.Stats) uint64 { return s.Losses }},
	{"reconnects", "Invalidation subscriptions re-established after a loss.", func(s *tier.Stats) uint64 { return s.Reconnects }},
}

// LagBuckets are the bucket bounds, in seconds, of [LagHistogram]: from
// 50µs, a message within one host, to 5s, a subscription about to be
// declared lost. They are those of the prom module.
var LagBuckets = []float64{
	0.00005, 0.0001, 0.00025, 0.0005,
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
	0.1, 0.25, 0.5, 1, 2.5, 5,
}

// An Option changes the instruments of [Register] or [NewLagHistogram].
type Option func(*config)

type config struct {
	prefix string
	attrs  []attribute.KeyValue
}

// WithPrefix replaces the prefix of the instrument names,
// "<prefix>.near_hits" and so on. Default: "tier".
func WithPrefix(prefix string) Option {
	return func(c *config) { c.prefix = prefix }
}

// WithAttributes adds attributes to every measurement, beside
// cache=<name> (for instance the service's region). Default: none.
func WithAttributes(attrs ...attribute.KeyValue) Option {
	return func(c *config) { c.attrs = append(c.attrs, attrs...) }
}

// newConfig applies opts and returns the attribute set of every
// measurement with the config.
func newConfig(name string, opts []Option) (config, attribute.Set) {
	c := config{prefix: "tier"}
	for _, o := range opts {
		o(&c)
	}
	return c, attribute.NewSet(append(c.attrs, attribute.String("cache", name))...)
}

// Register creates on meter one observable counter per field of
// [tier.Stats] (a gauge for TagMarkers, a level, not a count), and registers a callback that reads stats, usually the
// Stats method of a cache, once per collection:
//
//	reg, err := tierotel.Register(meter, "users", users.Stats)
//	defer reg.Unregister()
//
// Every measurement carries the attribute cache=name.
func Register(meter metric.Meter, name string, stats func() tier.Stats, opts ...Option) (metric.Registration, error) {
	cfg, set := newConfig(name, opts)
	insts := make([]metric.Int64ObservableCounter, len(counters))
	observables := make([]metric.Observable, 0, len(counters)+1)
	for i, m := range counters {
		inst, err := meter.Int64ObservableCounter(cfg.prefix+"."+m.name, metric.WithDescription(m.desc))
		if err != nil {
			return nil, err
		}
		insts[i] = inst
		observables = append(observables, inst)
	}
	// Stats.TagMarkers is a level, not a count.
	markers, err := meter.Int64ObservableGauge(cfg.prefix+".tag_markers",
		metric.WithDescription("Tag markers held now, for the tags near entries carry."))
	if err != nil {
		return nil, err
	}
	observables = append(observables, markers)
	attrs := []metric.ObserveOption{metric.WithAttributeSet(set)}
	return meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st := stats()
		for i, m := range counters {
			o.ObserveInt64(insts[i], int64(min(m.value(&st), math.MaxInt64)), attrs...)
		}
		o.ObserveInt64(markers, int64(min(st.TagMarkers, math.MaxInt64)), attrs...)
		return nil
	}, observables...)
}

// LagHistogram records the propagation lag of a cache's invalidations:
// how long each message from another replica took from its Set, Delete or
// Invalidate until this replica had applied it (stopped serving the old
// value). Pass its Observe method as
// tier.Options.Invalidation.OnPropagation.
type LagHistogram struct {
	h     metric.Float64Histogram
	attrs []metric.RecordOption
}

// NewLagHistogram creates on meter the histogram "<prefix>.propagation_lag",
// in seconds, with the buckets [LagBuckets] and the attribute cache=name;
// the options are those of [Register].
func NewLagHistogram(meter metric.Meter, name string, opts ...Option) (*LagHistogram, error) {
	cfg, set := newConfig(name, opts)
	h, err := meter.Float64Histogram(cfg.prefix+".propagation_lag",
		metric.WithDescription("Time from a change on another replica to the arrival of its invalidation message here."),
		metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(LagBuckets...))
	if err != nil {
		return nil, err
	}
	return &LagHistogram{h: h, attrs: []metric.RecordOption{metric.WithAttributeSet(set)}}, nil
}

// Observe records one message's lag. It waits on nothing but the SDK's
// own recording, so it can run on the cache's subscription goroutine. The lag is measured between the
// clocks of two hosts; one below zero, where they disagree, counts as zero.
func (l *LagHistogram) Observe(lag time.Duration) {
	l.h.Record(context.Background(), max(lag, 0).Seconds(), l.attrs...)
}
