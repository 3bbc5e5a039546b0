package suite

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// timed is one implementation of a group of Ops, ready to be measured.
type timed struct {
	workers []func(n int) error
	n       int // operations per slice, all workers together

	// Totals of the current run.
	elapsed time.Duration
	ops     int
	mallocs uint64
}

// slice runs n operations on the workers and returns how long they took
// and how many heap allocations the process made meanwhile. One worker
// runs on the calling goroutine, as b.Loop does; several share the n
// operations in grains taken from a common counter, as RunParallel's do,
// so that none idles while another still has work.
func (t *timed) slice(n int) (time.Duration, uint64, error) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	var err error
	if len(t.workers) == 1 {
		err = t.workers[0](n)
	} else {
		grain := max(1, min(n/(len(t.workers)*50), 10_000))
		var left atomic.Int64
		left.Store(int64(n))
		var wg sync.WaitGroup
		var once sync.Once
		for _, w := range t.workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					got := left.Add(-int64(grain))
					take := grain
					if got < 0 {
						take += int(got)
					}
					if take <= 0 {
						return
					}
					if e := w(take); e != nil {
						once.Do(func() { err = e })
						return
					}
				}
			}()
		}
		wg.Wait()
	}
	elapsed := time.Since(start)
	runtime.ReadMemStats(&after)
	return elapsed, after.Mallocs - before.Mallocs, err
}

// calibrate finds how many operations take about one slice, warming the
// implementation up on the way.
func (t *timed) calibrate(target time.Duration) error {
	n := len(t.workers)
	for {
		el, _, err := t.slice(n)
		if err != nil {
			return err
		}
		if el >= target/4 || n >= 1<<30 {
			t.n = max(len(t.workers), int(float64(n)*float64(target)/float64(max(el, 1))))
			return nil
		}
		if el <= 0 {
			n *= 100
		} else {
			n = int(float64(n) * min(100, 1.2*float64(target/4)/float64(el)+1))
		}
	}
}

// runTimed measures a group of Ops: in each run, the implementations
// take turns, one slice each, until each has had BenchTime.
func runTimed(env *Env, g Group, gr *GroupResult, runners []*Runner, runs int) {
	workers := 1
	if g.Parallelism > 0 {
		workers = g.Parallelism * runtime.GOMAXPROCS(0)
	}
	ts := make([]*timed, len(runners))
	for i, r := range runners {
		if r == nil {
			continue
		}
		if r.Op == nil {
			gr.Results[i].Err = fmt.Errorf("no Op in a timed group")
			continue
		}
		t := &timed{}
		for w := range workers {
			t.workers = append(t.workers, r.Op(w))
		}
		if err := t.calibrate(env.Slice); err != nil {
			gr.Results[i].Err = err
			continue
		}
		ts[i] = t
	}
	turns := max(1, int(env.BenchTime/env.Slice))
	for range runs {
		for _, t := range ts {
			if t != nil {
				t.elapsed, t.ops, t.mallocs = 0, 0, 0
			}
		}
		t0 := time.Now()
		for turn := range turns {
			for j := range ts {
				i := (turn + j) % len(ts)
				t := ts[i]
				if t == nil || gr.Results[i].Err != nil {
					continue
				}
				el, m, err := t.slice(t.n)
				if err != nil {
					gr.Results[i].Err = err
					continue
				}
				t.elapsed += el
				t.ops += t.n
				t.mallocs += m
			}
		}
		if Debug != nil {
			fmt.Fprintf(Debug, "  run of %d turns: %v\n", turns, time.Since(t0))
		}
		for i, t := range ts {
			if t == nil || gr.Results[i].Err != nil || t.ops == 0 {
				continue
			}
			res := &gr.Results[i]
			res.Samples[0] = append(res.Samples[0], float64(t.elapsed.Nanoseconds())/float64(t.ops))
			res.Samples[1] = append(res.Samples[1], float64(t.mallocs)/float64(t.ops))
		}
	}
}
