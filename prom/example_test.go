package prom_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"

	"github.com/tier-cache/tier"
	"github.com/tier-cache/tier/prom"
)

// A cache's counters and propagation lag, on the registry a service
// serves at /metrics. The cache here is near-only; with Redis set, the
// histogram fills as other replicas' changes arrive.
func Example() {
	lag := prom.NewLagHistogram("users")
	users, err := tier.New[string](tier.Options{
		// Redis: client,
		Invalidation: tier.InvalidationOptions{OnPropagation: lag.Observe},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer users.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(prom.NewCollector("users", users.Stats), lag)
	mux := http.NewServeMux() // the service's own
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))

	load := tier.LoaderFunc[string](func(ctx context.Context, id string) (string, error) {
		return "Ada", nil
	})
	ctx := context.Background()
	users.Get(ctx, "1", load) // a miss, loaded
	users.Get(ctx, "1", load) // a near hit

	out, _ := testutil.GatherAndFormat(reg, expfmt.TypeTextPlain, "tier_near_hits_total", "tier_loads_total")
	fmt.Print(string(out))
	// Output:
	// # HELP tier_loads_total Loader calls (a batch loader call counts once).
	// # TYPE tier_loads_total counter
	// tier_loads_total{cache="users"} 1
	// # HELP tier_near_hits_total Lookups answered by the near tier.
	// # TYPE tier_near_hits_total counter
	// tier_near_hits_total{cache="users"} 1
}

// A LagHistogram counts each lag in seconds.
func ExampleLagHistogram() {
	lag := prom.NewLagHistogram("users")
	lag.Observe(300 * time.Microsecond)
	lag.Observe(2 * time.Millisecond)

	out, _ := testutil.CollectAndFormat(lag, expfmt.TypeTextPlain, "tier_propagation_lag_seconds")
	for line := range strings.Lines(string(out)) {
		if strings.Contains(line, `le="0.0005"`) || strings.Contains(line, "_count") {
			fmt.Print(line)
		}
	}
	// Output:
	// tier_propagation_lag_seconds_bucket{cache="users",le="0.0005"} 1
	// tier_propagation_lag_seconds_count{cache="users"} 2
}
