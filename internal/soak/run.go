package soak

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// A Replica is one cache replica as the driver sees it: a tier.Cache in
// this process, or a service in another process reached over HTTP. Values
// are versions; Get's loader must read the [Source] the driver writes.
type Replica interface {
	// Get reads key: its version, or found false for "not found", and
	// where the value came from ("near", "far", "load").
	Get(ctx context.Context, key string) (version uint64, found bool, source string, err error)
	Set(ctx context.Context, key string, version uint64) error
	Delete(ctx context.Context, key string) error
	Invalidate(ctx context.Context, key string) error
}

// Source is the source of truth the replicas' loaders read: the version of
// each key, or nothing. The driver updates it before it tells a replica.
type Source struct {
	mu    sync.Mutex
	m     map[string]uint64
	loads atomic.Int64
}

// NewSource returns an empty source.
func NewSource() *Source { return &Source{m: map[string]uint64{}} }

// Put makes version the value of key.
func (s *Source) Put(key string, version uint64) {
	s.mu.Lock()
	s.m[key] = version
	s.mu.Unlock()
}

// Remove makes key absent.
func (s *Source) Remove(key string) {
	s.mu.Lock()
	delete(s.m, key)
	s.mu.Unlock()
}

// Load is what a loader calls: the version of key, or false if absent.
func (s *Source) Load(key string) (uint64, bool) {
	s.loads.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[key]
	return v, ok
}

// Loads returns how many times Load was called.
func (s *Source) Loads() int64 { return s.loads.Load() }

// Config configures [Run]. Zero fields take the defaults given.
type Config struct {
	Replicas []Replica
	Source   *Source

	Duration time.Duration // default 3s
	Slack    time.Duration // the tolerated staleness; default DefaultSlack
	Keys     int           // the hot key space; default 12
	Workers  int           // goroutines per replica; default 4

	// The mix of operations, in percent; the rest are reads. Defaults:
	// 12% writes, 4% deletes, 4% invalidations.
	WritePct, DeletePct, InvalidatePct int

	// OpTimeout bounds each operation's context. Default: 10s.
	OpTimeout time.Duration
}

// DefaultSlack is the staleness the soak tolerates by default. With
// subscriptions up the documented bound is one pub/sub delivery (a few
// hundred microseconds on loopback), but a Get that joins a far read or a
// load already under way gets that flight's result, which may predate a
// write completed since; so the real bound is a delivery plus one flight:
// up to two FarTimeouts (a read, then a lease) and the load. The rest is
// room for a loaded CI machine running -race.
const DefaultSlack = 500 * time.Millisecond

// Report is what a run did and what the checker found.
type Report struct {
	Counts
	Ops               int // every operation
	Invalidates       int
	FailedInvalidates int
	Elapsed           time.Duration
	Slack             time.Duration
	Sources           map[string]int // reads by where the value came from
	Examples          []Violation    // the first violations, in full
	Loads             int64          // calls of the source's Load
}

// OpsPerSec is operations per second over the run.
func (r Report) OpsPerSec() float64 { return float64(r.Ops) / r.Elapsed.Seconds() }

// String is the report in a few lines, for -v output.
func (r Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d operations in %v (%.0f ops/s): %d reads checked, %d violations (slack %v)\n",
		r.Ops, r.Elapsed.Round(time.Millisecond), r.OpsPerSec(), r.Reads, r.Violations, r.Slack)
	fmt.Fprintf(&b, "  writes %d, deletes %d (failed %d), invalidations %d (failed %d), failed reads %d\n",
		r.Writes, r.Deletes, r.FailedWrites, r.Invalidates, r.FailedInvalidates, r.FailedReads)
	fmt.Fprintf(&b, "  reads from near %d, far %d, load %d; absent %d; source loads %d\n",
		r.Sources["near"], r.Sources["far"], r.Sources["load"], r.Absent, r.Loads)
	fmt.Fprintf(&b, "  stale reads within the slack %d, longest staleness seen %v",
		r.StaleWithinSlack, time.Duration(r.MaxLag))
	for _, v := range r.Examples {
		fmt.Fprintf(&b, "\n  VIOLATION %v", v)
	}
	return b.String()
}

// Run drives the replicas for cfg.Duration, or until ctx ends, and returns
// what happened. Each worker picks a key of the hot space and an
// operation: a write puts a new version in the source and then Sets it, a
// delete removes the key from the source and then Deletes it, an
// invalidation changes nothing but drops near copies, and a read is judged
// by the checker when it returns.
func Run(ctx context.Context, cfg Config) Report {
	if cfg.Duration == 0 {
		cfg.Duration = 3 * time.Second
	}
	if cfg.Slack == 0 {
		cfg.Slack = DefaultSlack
	}
	if cfg.Keys == 0 {
		cfg.Keys = 12
	}
	if cfg.Workers == 0 {
		cfg.Workers = 4
	}
	if cfg.WritePct+cfg.DeletePct+cfg.InvalidatePct == 0 {
		cfg.WritePct, cfg.DeletePct, cfg.InvalidatePct = 12, 4, 4
	}
	if cfg.OpTimeout == 0 {
		cfg.OpTimeout = 10 * time.Second
	}
	keys := make([]string, cfg.Keys)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%02d", i)
	}
	chk := NewChecker(cfg.Slack)
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()

	type tally struct {
		ops, invalidates, failedInvalidates int
		sources                             map[string]int
	}
	tallies := make([]tally, len(cfg.Replicas)*cfg.Workers)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range tallies {
		rep := cfg.Replicas[i%len(cfg.Replicas)]
		t := &tallies[i]
		t.sources = map[string]int{}
		rng := rand.New(rand.NewPCG(uint64(i), uint64(start.UnixNano())))
		wg.Go(func() {
			for ctx.Err() == nil {
				key := keys[rng.IntN(len(keys))]
				opCtx, opCancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.OpTimeout)
				switch p := rng.IntN(100); {
				case p < cfg.WritePct:
					w := chk.BeginWrite(key, false)
					cfg.Source.Put(key, w.Version)
					w.End(rep.Set(opCtx, key, w.Version))
				case p < cfg.WritePct+cfg.DeletePct:
					w := chk.BeginWrite(key, true)
					cfg.Source.Remove(key)
					w.End(rep.Delete(opCtx, key))
				case p < cfg.WritePct+cfg.DeletePct+cfg.InvalidatePct:
					t.invalidates++
					if rep.Invalidate(opCtx, key) != nil {
						t.failedInvalidates++
					}
				default:
					r := chk.BeginRead(key)
					v, found, src, err := rep.Get(opCtx, key)
					r.End(v, found, err)
					if err == nil {
						t.sources[src]++
					}
				}
				opCancel()
				t.ops++
			}
		})
	}
	wg.Wait()
	rep := Report{
		Counts:   chk.Counts(),
		Elapsed:  time.Since(start),
		Slack:    cfg.Slack,
		Sources:  map[string]int{},
		Examples: chk.Violations(),
		Loads:    cfg.Source.Loads(),
	}
	for _, t := range tallies {
		rep.Ops += t.ops
		rep.Invalidates += t.invalidates
		rep.FailedInvalidates += t.failedInvalidates
		for s, n := range t.sources {
			rep.Sources[s] += n
		}
	}
	return rep
}

// Duration is how long a soak runs: the environment variable TIER_SOAK
// (a Go duration, such as 5m) if set, else ci under CI=true, else local.
func Duration(local, ci time.Duration) (time.Duration, error) {
	if s := os.Getenv("TIER_SOAK"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return 0, fmt.Errorf("soak: TIER_SOAK=%q is not a positive duration (such as 30s or 5m)", s)
		}
		return d, nil
	}
	if os.Getenv("CI") == "true" {
		return ci, nil
	}
	return local, nil
}
