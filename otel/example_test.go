package otel_test

import (
	"context"
	"fmt"
	"log"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/tier-cache/tier"
	tierotel "github.com/tier-cache/tier/otel"
)

// A cache's counters and propagation lag on the meter of a service. The
// manual reader stands in for the exporter the service configures; the
// cache here is near-only, and with Redis set the histogram fills as
// other replicas' changes arrive.
func Example() {
	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer provider.Shutdown(context.Background())
	meter := provider.Meter("example.com/users")

	lag, err := tierotel.NewLagHistogram(meter, "users")
	if err != nil {
		log.Fatal(err)
	}
	users, err := tier.New[string](tier.Options{
		// Redis: client,
		Invalidation: tier.InvalidationOptions{OnPropagation: lag.Observe},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer users.Close()
	reg, err := tierotel.Register(meter, "users", users.Stats)
	if err != nil {
		log.Fatal(err)
	}
	defer reg.Unregister()

	load := tier.LoaderFunc[string](func(ctx context.Context, id string) (string, error) {
		return "Ada", nil
	})
	ctx := context.Background()
	users.Get(ctx, "1", load) // a miss, loaded
	users.Get(ctx, "1", load) // a near hit

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		log.Fatal(err)
	}
	for _, m := range rm.ScopeMetrics[0].Metrics {
		if sum, ok := m.Data.(metricdata.Sum[int64]); ok && (m.Name == "tier.loads" || m.Name == "tier.near_hits") {
			dp := sum.DataPoints[0]
			cache, _ := dp.Attributes.Value("cache")
			fmt.Printf("%s{cache=%s} %d\n", m.Name, cache.AsString(), dp.Value)
		}
	}
	// Output:
	// tier.near_hits{cache=users} 1
	// tier.loads{cache=users} 1
}
