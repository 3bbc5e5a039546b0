package prom

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// LagBuckets are the upper bounds, in seconds, of [LagHistogram]'s
// buckets: from 50µs, a message within one host, to 5s, a subscription
// that is about to be declared lost.
var LagBuckets = []float64{
	0.00005, 0.0001, 0.00025, 0.0005,
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
	0.1, 0.25, 0.5, 1, 2.5, 5,
}

// LagHistogram is a [prometheus.Collector] of the propagation lag of a
// cache's invalidations: how long each message from another replica took
// from its Set, Delete or Invalidate until this replica had applied it
// (stopped serving the old value), as the histogram
// tier_propagation_lag_seconds. Pass its Observe method as
// tier.Options.Invalidation.OnPropagation.
type LagHistogram struct {
	h prometheus.Histogram
}

// NewLagHistogram returns a histogram with [LagBuckets] and the label
// cache=name; the options are those of [NewCollector].
func NewLagHistogram(name string, opts ...Option) *LagHistogram {
	cfg := newConfig(name, opts)
	return &LagHistogram{h: prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace:   cfg.namespace,
		Name:        "propagation_lag_seconds",
		Help:        "Time from a change on another replica to the arrival of its invalidation message here.",
		ConstLabels: cfg.labels,
		Buckets:     LagBuckets,
	})}
}

// Observe records one message's lag. It takes no lock and does not block,
// so it can run on the cache's subscription goroutine. The lag is measured
// between the clocks of two hosts; one below zero, where they disagree,
// counts as zero.
func (l *LagHistogram) Observe(lag time.Duration) {
	l.h.Observe(max(lag, 0).Seconds())
}

// Describe sends the histogram's description.
func (l *LagHistogram) Describe(ch chan<- *prometheus.Desc) { l.h.Describe(ch) }

// Collect sends the histogram.
func (l *LagHistogram) Collect(ch chan<- prometheus.Metric) { l.h.Collect(ch) }
