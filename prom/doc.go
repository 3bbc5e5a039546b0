// Package prom exports the counters of a [tier.Cache] and the lag of its
// cross-replica invalidations to Prometheus, through client_golang.
//
// It is a module of its own, so that importing tier does not bring in
// Prometheus. It offers two [prometheus.Collector]s:
//
//   - [Collector] reads [tier.Stats] when it is scraped (it keeps no state
//     and adds nothing to the cache's hot path) and reports each field as a
//     counter (tier_near_hits_total and so on; README.md lists them), but
//     TagMarkers, a level, as the gauge tier_tag_markers, with
//     the label cache="<name>".
//   - [LagHistogram] records, through its Observe method passed as
//     tier.Options.Invalidation.OnPropagation, how long each message from
//     another replica took until this one had applied it, as
//     tier_propagation_lag_seconds.
//
// Register both with the registry the service exposes:
//
//	lag := prom.NewLagHistogram("users")
//	users, err := tier.New[User](tier.Options{
//		Redis:        client,
//		Invalidation: tier.InvalidationOptions{OnPropagation: lag.Observe},
//	})
//	// ...
//	reg.MustRegister(prom.NewCollector("users", users.Stats), lag)
//
// Several caches share one registry when their names differ.
package prom
