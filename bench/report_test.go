package bench

import (
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
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
	if suite.ReplicaRequested() { // replica B of the stale-window row
		os.Exit(suite.ReplicaMain())
	}
	suite.QuietRedis()
	code := m.Run()
	if env != nil {
		env.Close()
		env.Redis.Close()
	}
	os.Exit(code)
}

// BenchmarkReport runs the report's rows one implementation at a time,
// so that a row can be profiled:
//
//	go test -run x -bench 'Report/near-100k-1g/tier$' -cpuprofile cpu.out
//	go tool pprof -top cpu.out
//
// Its IDs are those of `go run ./cmd/report -list`; a "/" in a name is
// "-". A timed row runs as a Go benchmark (RunParallel with the row's
// parallelism for a parallel one); the other rows run once per b.N and
// report their figures as metrics; rows that measure their
// implementations together (the stale window, the outage) run as one.
func BenchmarkReport(b *testing.B) {
	for _, g := range suite.Groups(suite.Full) {
		b.Run(g.ID, func(b *testing.B) {
			if g.Together != nil {
				run, closeFn, err := g.Together(reportEnv(b))
				if err != nil {
					b.Fatal(err)
				}
				defer closeFn()
				for b.Loop() {
					figs, err := run()
					if err != nil {
						b.Fatal(err)
					}
					for i, impl := range g.Impls {
						for m, metric := range g.Metrics {
							b.ReportMetric(figs[i][m], unit(impl.Name+" "+metric.Name))
						}
					}
				}
				return
			}
			for _, impl := range g.Impls {
				b.Run(strings.ReplaceAll(impl.Name, "/", "-"), func(b *testing.B) {
					r, err := impl.Setup(reportEnv(b))
					if err != nil {
						b.Fatal(err)
					}
					if r.Close != nil {
						defer r.Close()
					}
					if r.Op != nil {
						benchOp(b, g, r)
						return
					}
					for b.Loop() {
						figs, err := r.Run()
						if err != nil {
							b.Fatal(err)
						}
						for i, m := range g.Metrics {
							b.ReportMetric(figs[i], unit(m.Name))
						}
					}
				})
			}
		})
	}
}

// unit makes a metric's name a unit for b.ReportMetric, which takes no
// spaces.
func unit(name string) string {
	return strings.NewReplacer(" ", "-", ",", "", "/", "-").Replace(name)
}

func benchOp(b *testing.B, g suite.Group, r suite.Runner) {
	b.ReportAllocs()
	if g.Parallelism == 0 {
		op := r.Op(0)
		b.ResetTimer()
		if err := op(b.N); err != nil {
			b.Fatal(err)
		}
		return
	}
	ops := make(chan func(int) error, g.Parallelism*runtime.GOMAXPROCS(0))
	for w := range cap(ops) {
		ops <- r.Op(w)
	}
	var failed atomic.Pointer[error]
	b.SetParallelism(g.Parallelism)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		op := <-ops
		for {
			// Calls of up to 100 operations, so that the call and what
			// an Op does once per call weigh as little as in the report.
			n := 0
			for n < 100 && pb.Next() {
				n++
			}
			if n == 0 {
				return
			}
			if err := op(n); err != nil {
				failed.Store(&err)
				return
			}
		}
	})
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
}
