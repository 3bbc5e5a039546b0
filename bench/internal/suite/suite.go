// Package suite holds every measurement of the report (cmd/report): tier
// against its peers and against the floors that no cache can beat. Each
// is a Group of implementations measured in one process, interleaved
// within every run (see Run), so that the noise of a shared machine falls
// on all of them alike.
package suite

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"slices"
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
	Name         string // "ns/op", "p50 µs", "hit %"
	Ratio        bool   // print tier / implementation for it
	HigherBetter bool   // a hit ratio, say
	Decimals     int
}

// Runner measures one implementation.
//
// Op, when set, makes the figures ns/op and allocs/op: Op(w) returns the
// loop of worker w, which does n operations per call and keeps its own
// place (in a list of keys, say) from call to call. A group of one
// goroutine has one worker; a parallel group has Parallelism×GOMAXPROCS,
// which share the operations of each timed slice as RunParallel's do.
//
// Otherwise Run returns one figure per metric of the group. Close, when
// set, frees what the setup built.
type Runner struct {
	Op    func(worker int) func(n int) error
	Run   func() ([]float64, error)
	Close func()
}

// Impl is one row of a group: its name, its role and how to set it up.
// Setup is nil in a group measured Together.
type Impl struct {
	Name  string
	Role  Role
	Note  string // shown next to the name
	Setup func(*Env) (Runner, error)
}

// Group is a comparison: implementations doing the same work, measured
// Runs times (once if Once, for deterministic figures).
type Group struct {
	Section string // heading the group is printed under
	ID      string // short name, for -only and for `go test -bench Report/ID`
	Case    string // what is measured, e.g. "10k entries, 1 goroutine"
	Metrics []Metric
	Impls   []Impl
	Once    bool // deterministic: one run is enough
	Redis   bool // needs the Redis server (its rows are marked on miniredis)

	// Parallelism, for a group of Ops, runs Parallelism×GOMAXPROCS
	// workers at once, as b.SetParallelism does; 0 runs one.
	Parallelism int

	// Fresh sets every implementation of a group of Ops up anew for each
	// run: its figures depend on where the heap happens to put a cache's
	// entries, which one setup would fix for all the runs, so that the
	// median would be one placement's rather than the middle of several.
	Fresh bool

	// Together, when set, measures every implementation of the group at
	// once, alternating between them inside each run: it returns a run
	// that gives, per implementation, one figure per metric.
	Together func(*Env) (run func() ([][]float64, error), close func(), err error)
}

// timedMetrics are the metrics of a group of Ops.
var timedMetrics = []Metric{
	{Name: "ns/op", Ratio: true, Decimals: 0},
	{Name: "allocs/op", Ratio: true, Decimals: 0},
}

// Config sizes the runs: the full report or the quick smoke run.
type Config struct {
	Runs        int           // runs of each group, medians over them
	BenchTime   time.Duration // time each implementation of a timed group is measured, per run
	Slice       time.Duration // one timed slice: implementations take turns at this grain
	TraceLen    int           // requests in a hit-ratio trace
	TraceKeys   int           // distinct keys in a hit-ratio trace
	StaleRounds int           // stale-window rounds per run, of tier and of the raw write each
	Stampede    int           // goroutines that miss one cold key together
	MemEntries  int           // entries for the bytes-per-entry figure
	Outage      OutageTimes   // phases of the outage row
	TagEntries  []int         // entries that carry the tag of the InvalidateTag rows
}

// OutageTimes are the phases of one run of the outage row.
type OutageTimes struct {
	Before, During time.Duration // with Redis up; with Redis killed
	Turn           time.Duration // tier and go-redis/cache take turns at this grain
}

// Full is the configuration of the report in RESULTS.md.
var Full = Config{
	Runs: 5, BenchTime: 300 * time.Millisecond, Slice: 20 * time.Millisecond,
	TraceLen: 1_000_000, TraceKeys: 100_000,
	StaleRounds: 10_000, Stampede: 1000, MemEntries: 100_000,
	Outage:     OutageTimes{Before: 2 * time.Second, During: 3 * time.Second, Turn: 100 * time.Millisecond},
	TagEntries: []int{1, 1000, 100_000},
}

// Quick is the configuration of the CI smoke run: every row, one run,
// small figures, in well under a minute.
var Quick = Config{
	Runs: 1, BenchTime: 20 * time.Millisecond, Slice: 5 * time.Millisecond,
	TraceLen: 100_000, TraceKeys: 10_000,
	StaleRounds: 300, Stampede: 1000, MemEntries: 100_000,
	Outage:     OutageTimes{Before: 400 * time.Millisecond, During: 800 * time.Millisecond, Turn: 50 * time.Millisecond},
	TagEntries: []int{1, 1000, 10_000},
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

// QuietRedis silences go-redis's own log, which the outage row would fill
// with failed dials.
func QuietRedis() { redis.SetLogger(quiet{}) }

type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

// Run measures a group. Every implementation is set up first and stays
// alive for the whole group (for each run, with Group.Fresh). In each run of a group of Ops, the
// implementations take turns, one slice of Config.Slice each, in an order
// that rotates from turn to turn, until each has had Config.BenchTime:
// so tier and its peers are measured over the same seconds, not one after
// the other. A group measured Together alternates inside its own run; the
// others (deterministic figures, or one event per run) run their
// implementations one after another, in an order that rotates from run to
// run.
func Run(env *Env, g Group) (gr GroupResult) {
	start := time.Now()
	gr = GroupResult{Group: g, OnMini: g.Redis && !env.Redis.Real}
	gr.Results = make([]Result, len(g.Impls))
	for i, impl := range g.Impls {
		gr.Results[i] = Result{Impl: impl, Samples: make([][]float64, len(g.Metrics))}
	}
	runs := env.Runs
	if g.Once {
		runs = 1
	}
	defer func() { gr.Duration = time.Since(start) }()
	if g.Together != nil {
		runTogether(env, g, &gr, runs)
		return gr
	}
	setup := func() []*Runner {
		runners := make([]*Runner, len(g.Impls))
		for i, impl := range g.Impls {
			r, err := impl.Setup(env)
			if err != nil {
				gr.Results[i].Err = err
				continue
			}
			runners[i] = &r
		}
		return runners
	}
	closeAll := func(runners []*Runner) {
		for _, r := range runners {
			if r != nil && r.Close != nil {
				r.Close()
			}
		}
	}
	timedGroup := g.Metrics[0].Name == timedMetrics[0].Name
	if timedGroup && g.Fresh {
		for range runs {
			runners := setup()
			runTimed(env, g, &gr, runners, 1)
			closeAll(runners)
			runtime.GC() // the next run's caches start from a heap without these
		}
		return gr
	}
	runners := setup()
	defer closeAll(runners)
	if timedGroup {
		runTimed(env, g, &gr, runners, runs)
		return gr
	}
	for run := range runs {
		for j := range g.Impls {
			i := (run + j) % len(g.Impls)
			r := runners[i]
			res := &gr.Results[i]
			if r == nil || res.Err != nil {
				continue
			}
			t0 := time.Now()
			figs, err := r.Run()
			if Debug != nil {
				fmt.Fprintf(Debug, "  %s: %v\n", g.Impls[i].Name, time.Since(t0))
			}
			if err == nil && len(figs) != len(g.Metrics) {
				err = fmt.Errorf("%d figures for %d metrics", len(figs), len(g.Metrics))
			}
			if err != nil {
				res.Err = err
				continue
			}
			for m, f := range figs {
				res.Samples[m] = append(res.Samples[m], f)
			}
		}
	}
	return gr
}

func runTogether(env *Env, g Group, gr *GroupResult, runs int) {
	fail := func(err error) {
		for i := range gr.Results {
			gr.Results[i].Err = err
		}
	}
	run, closeFn, err := g.Together(env)
	if err != nil {
		fail(err)
		return
	}
	defer closeFn()
	for range runs {
		t0 := time.Now()
		figs, err := run()
		if Debug != nil {
			fmt.Fprintf(Debug, "  run: %v\n", time.Since(t0))
		}
		if err == nil && len(figs) != len(g.Impls) {
			err = fmt.Errorf("figures for %d implementations, not %d", len(figs), len(g.Impls))
		}
		if err != nil {
			fail(err)
			return
		}
		for i, f := range figs {
			if len(f) != len(g.Metrics) {
				fail(fmt.Errorf("%s: %d figures for %d metrics", g.Impls[i].Name, len(f), len(g.Metrics)))
				return
			}
			for m, v := range f {
				gr.Results[i].Samples[m] = append(gr.Results[i].Samples[m], v)
			}
		}
	}
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
	gs = append(gs, writeGroups()...)
	gs = append(gs, staleGroups()...)
	gs = append(gs, outageGroups()...)
	gs = append(gs, tagGroups(cfg)...)
	gs = append(gs, stampedeGroups(cfg)...)
	gs = append(gs, hitRatioGroups(cfg)...)
	gs = append(gs, memoryGroups(cfg)...)
	return gs
}
