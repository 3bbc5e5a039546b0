// Package otel exports the counters of a [tier.Cache] and the lag of its
// cross-replica invalidations as OpenTelemetry metrics, through the
// go.opentelemetry.io/otel/metric API; any SDK or exporter then carries
// them.
//
// It is a module of its own, so that importing tier does not bring in
// OpenTelemetry. Its name is the last element of its path; a file that
// also imports go.opentelemetry.io/otel renames one of the two:
//
//	import tierotel "github.com/tier-cache/tier/otel"
//
// The contract:
//
//   - [Register] creates one Int64ObservableCounter per field of
//     [tier.Stats] (tier.near_hits, tier.far_hits and so on; the field's
//     comment is the description), but a gauge for TagMarkers, a level, and registers one callback that calls
//     the stats function once per collection and observes every counter
//     from that one reading, with the attribute cache=<name>. Nothing runs
//     between collections: the cache's hot path pays nothing.
//   - [LagHistogram], whose Observe method is passed as
//     tier.Options.Invalidation.OnPropagation, records how long each
//     message from another replica took until this one had applied it, in
//     seconds, as the
//     histogram tier.propagation_lag with the buckets [LagBuckets]. It
//     waits on nothing but the SDK's own recording.
//
// Several caches share one meter when their names differ: each series is
// told apart by its cache attribute. Unregister the registration that
// Register returns when the cache is closed.
package otel
