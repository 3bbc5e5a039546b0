// Package suite holds every measurement of the report (cmd/report): tier
// against its peers and against the floors that no cache can beat, each
// a Group of implementations measured alternately, run after run, in one
// process, so that the noise of a shared machine falls on all of them
// alike.
package suite

import (
	"fmt"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tier-cache/tier/bench/internal/redisproc"
)

// Role says what an implementation is to tier on its row.
type Role uint8

const (
	Tier    Role = iota + 1 // tier itself; the other rows' ratios are against it
	Peer                    // another cache doing the same job
	Floor                   // the bare operation underneath: no cache can beat it
	Ceiling                 // the best any cache could do (Belady's optimum)
	Info                    // a variant of tier, for explanation
)

func (r Role) String() string {
	switch r {
	case Tier:
		return "tier"
	case Peer:
		return "peer"
	case Floor:
		return "floor"
	case Ceiling:
		return "ceiling"
	case Info:
		return "tier variant"
	}
	return "?"
}

// Metric is one column of a group's figures.
type Metric struct {
	Name         string // "ns/op", "p50 µs", "loader calls"
	Ratio        bool   // print tier / implementation for it
	HigherBetter bool   // a hit ratio, say
	Decimals     int
}

// Runner measures one implementation. Bench, when set, is a Go benchmark
// and the figures are ns/op and allocs/op; else Run returns one figure per
// metric of the group. Close, when set, frees what the setup built.
type Runner struct {
	Bench func(b *testing.B)
	Run   func() ([]float64, error)
	Close func()
}

// Impl is one row of a group: its name, its role and how to set it up.
type Impl struct {
	Name  string
	Role  Role
	Note  string // shown next to the name
	Setup func(*Env) (Runner, error)
}

// Group is a comparison: implementations doing the same work, measured
// alternately Runs times (once if Once, for deterministic figures).
type Group struct {
	Section string // heading the group is printed under
	ID      string // short name, for -only and for `go test -bench Report/ID`
	Case    string // what is measured, e.g. "10k entries, 1 goroutine"
	Metrics []Metric
	Impls   []Impl
	Once    bool // deterministic: one run is enough
	Redis   bool // needs the Redis server (its rows are marked on miniredis)

	// Fresh sets every implementation up anew for each run and closes it
	// after, so that only one is alive at a time: a Go benchmark collects
	// the garbage before each of its steps, which takes long with several
	// full caches of 100k entries on the heap.
	Fresh bool
}

// timedMetrics are the metrics of a group of Go benchmarks.
var timedMetrics = []Metric{
	{Name: "ns/op", Ratio: true, Decimals: 0},
	{Name: "allocs/op", Decimals: 0},
}

// Config sizes the runs: the full report or the quick smoke run.
type Config struct {
	Runs       int           // runs of each group, medians over them
	BenchTime  time.Duration // target time of one Go benchmark run
	TraceLen   int           // requests in a hit-ratio trace
	TraceKeys  int           // distinct keys in a hit-ratio trace
	PropRounds int           // propagation rounds per run
	Stampede   int           // goroutines that miss one cold key together
	MemEntries int           // entries for the bytes-per-entry figure
}

// Full is the configuration of the report in RESULTS.md.
var Full = Config{
	Runs: 5, BenchTime: 300 * time.Millisecond,
	TraceLen: 1_000_000, TraceKeys: 100_000,
	PropRounds: 2000, Stampede: 1000, MemEntries: 100_000,
}

// Quick is the configuration of the CI smoke run: every row, one run,
// small figures, in about half a minute.
var Quick = Config{
	Runs: 1, BenchTime: 20 * time.Millisecond,
	TraceLen: 100_000, TraceKeys: 10_000,
	PropRounds: 200, Stampede: 1000, MemEntries: 100_000,
}

// Env is what the measurements share: the configuration and the Redis
// server.
type Env struct {
	Config
	Redis   *redisproc.Server
	clients []*redis.Client
	traces  map[float64][]uint32
}

// NewEnv returns an environment on the server.
func NewEnv(cfg Config, srv *redisproc.Server) *Env {
	return &Env{Config: cfg, Redis: srv, traces: map[float64][]uint32{}}
}

// Client returns a new client of the Redis server, closed by Close.
func (e *Env) Client() *redis.Client {
	c := e.Redis.Client()
	e.clients = append(e.clients, c)
	return c
}

// Close closes the clients.
func (e *Env) Close() {
	for _, c := range e.clients {
		c.Close()
	}
	e.clients = nil
}

// Result is the figures of one implementation of a group: per metric,
// one sample per run.
type Result struct {
	Impl    Impl
	Samples [][]float64 // [metric][run]
	Err     error
}

// GroupResult is a measured group.
type GroupResult struct {
	Group
	Results  []Result
	OnMini   bool // measured on miniredis, not a real server
	Duration time.Duration
}

// Debug, when set, receives the time of each measurement.
var Debug io.Writer

// Run measures a group: every implementation is set up, then each run
// measures them one after another, so that tier and its peers share the
// machine's moods.
func Run(env *Env, g Group) GroupResult {
	start := time.Now()
	gr := GroupResult{Group: g, OnMini: g.Redis && !env.Redis.Real}
	gr.Results = make([]Result, len(g.Impls))
	for i, impl := range g.Impls {
		gr.Results[i] = Result{Impl: impl, Samples: make([][]float64, len(g.Metrics))}
	}
	runners := make([]*Runner, len(g.Impls))
	setup := func(i int) *Runner {
		if runners[i] == nil && gr.Results[i].Err == nil {
			r, err := g.Impls[i].Setup(env)
			if err != nil {
				gr.Results[i].Err = err
				return nil
			}
			runners[i] = &r
		}
		return runners[i]
	}
	closeRunner := func(i int) {
		if r := runners[i]; r != nil && r.Close != nil {
			r.Close()
		}
		runners[i] = nil
	}
	defer func() {
		for i := range runners {
			closeRunner(i)
		}
	}()
	if !g.Fresh {
		for i := range g.Impls {
			setup(i)
		}
	}
	runs := env.Runs
	if g.Once {
		runs = 1
	}
	for range runs {
		for i := range g.Impls {
			r := setup(i)
			if r == nil {
				continue
			}
			res := &gr.Results[i]
			t0 := time.Now()
			figs, err := measure(*r)
			if Debug != nil {
				fmt.Fprintf(Debug, "  %s: %v\n", g.Impls[i].Name, time.Since(t0))
			}
			if g.Fresh {
				closeRunner(i)
			}
			if err != nil {
				res.Err = err
				continue
			}
			if len(figs) != len(g.Metrics) {
				res.Err = fmt.Errorf("%d figures for %d metrics", len(figs), len(g.Metrics))
				continue
			}
			for m, f := range figs {
				res.Samples[m] = append(res.Samples[m], f)
			}
		}
	}
	gr.Duration = time.Since(start)
	return gr
}

func measure(r Runner) ([]float64, error) {
	if r.Bench == nil {
		return r.Run()
	}
	var failed error
	br := testing.Benchmark(func(b *testing.B) {
		defer func() {
			if b.Failed() {
				failed = fmt.Errorf("benchmark failed")
			}
		}()
		r.Bench(b)
	})
	if failed != nil {
		return nil, failed
	}
	if br.N == 0 {
		return nil, fmt.Errorf("benchmark failed or was skipped")
	}
	return []float64{float64(br.T.Nanoseconds()) / float64(br.N), float64(br.AllocsPerOp())}, nil
}

// Stat is a median with its range.
type Stat struct{ Median, Min, Max float64 }

// Summarize returns the median, min and max of samples.
func Summarize(samples []float64) (Stat, bool) {
	if len(samples) == 0 {
		return Stat{}, false
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Stat{med, s[0], s[len(s)-1]}, true
}

// Groups returns every group of the report, in report order.
func Groups(cfg Config) []Group {
	var gs []Group
	gs = append(gs, nearGroups()...)
	gs = append(gs, farGroups()...)
	gs = append(gs, propagationGroups()...)
	gs = append(gs, stampedeGroups(cfg)...)
	gs = append(gs, hitRatioGroups(cfg)...)
	gs = append(gs, memoryGroups(cfg)...)
	return gs
}
