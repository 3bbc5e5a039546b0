package bench

import (
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/tier-cache/tier/bench/internal/redisproc"
	"github.com/tier-cache/tier/bench/internal/suite"
)

var (
	envOnce sync.Once
	env     *suite.Env
	envErr  error
)

// reportEnv starts the Redis server of the report's benchmarks the first
// time one needs it; TestMain stops it.
func reportEnv(b *testing.B) *suite.Env {
	envOnce.Do(func() {
		srv, err := redisproc.Start(false)
		if err != nil {
			envErr = err
			return
		}
		env = suite.NewEnv(suite.Full, srv)
	})
	if envErr != nil {
		b.Fatal(envErr)
	}
	return env
}

func TestMain(m *testing.M) {
	code := m.Run()
	if env != nil {
		env.Close()
		env.Redis.Close()
	}
	os.Exit(code)
}

// BenchmarkReport runs the report's Go benchmarks one at a time, so that a
// row can be profiled:
//
//	go test -run x -bench 'Report/near-100k-1g/tier$' -cpuprofile cpu.out
//	go tool pprof -top cpu.out
//
// Its IDs are those of `go run ./cmd/report -list`; a "/" in a name is "-". The report's other
// figures (propagation, stampede, hit ratios, heap) are not Go benchmarks:
// here they run once and report their figures as metrics.
func BenchmarkReport(b *testing.B) {
	for _, g := range suite.Groups(suite.Full) {
		b.Run(g.ID, func(b *testing.B) {
			for _, impl := range g.Impls {
				b.Run(strings.ReplaceAll(impl.Name, "/", "-"), func(b *testing.B) {
					r, err := impl.Setup(reportEnv(b))
					if err != nil {
						b.Fatal(err)
					}
					if r.Close != nil {
						defer r.Close()
					}
					if r.Bench != nil {
						r.Bench(b)
						return
					}
					for b.Loop() {
						figs, err := r.Run()
						if err != nil {
							b.Fatal(err)
						}
						for i, m := range g.Metrics {
							b.ReportMetric(figs[i], strings.ReplaceAll(m.Name, " ", "-"))
						}
					}
				})
			}
		})
	}
}
