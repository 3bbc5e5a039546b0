package soak

import (
	"sync"
	"testing"
	"time"
)

const ms = time.Millisecond

func w(key string, version uint64, start, end time.Duration) Op {
	return Op{Kind: KindWrite, Key: key, Version: version, Start: start, End: end}
}

func del(key string, version uint64, start, end time.Duration) Op {
	return Op{Kind: KindDelete, Key: key, Version: version, Start: start, End: end}
}

func read(key string, version uint64, start, end time.Duration) Op {
	return Op{Kind: KindRead, Key: key, Version: version, Found: version != 0, Start: start, End: end}
}

// Hand-made histories, each with the number of violations the checker
// must find: the checker can fail, and fails only on real-time staleness.
func TestCheckHistories(t *testing.T) {
	for _, tc := range []struct {
		name  string
		slack time.Duration
		ops   []Op
		want  int
	}{
		{"fresh read", 0, []Op{w("k", 1, 0, 10*ms), read("k", 1, 20*ms, 21*ms)}, 0},
		{"stale read after an overwrite", 0, []Op{
			w("k", 1, 0, 10*ms), w("k", 2, 20*ms, 30*ms), read("k", 1, 40*ms, 41*ms),
		}, 1},
		{"stale read within the slack", 50 * ms, []Op{
			w("k", 1, 0, 10*ms), w("k", 2, 20*ms, 30*ms), read("k", 1, 40*ms, 41*ms),
		}, 0},
		{"stale read beyond the slack", 5 * ms, []Op{
			w("k", 1, 0, 10*ms), w("k", 2, 20*ms, 30*ms), read("k", 1, 40*ms, 41*ms),
		}, 1},
		{"read overlapping the overwrite", 0, []Op{
			w("k", 1, 0, 10*ms), w("k", 2, 20*ms, 30*ms), read("k", 1, 25*ms, 41*ms),
		}, 0},
		{"concurrent writes land in either order", 0, []Op{
			// 2 and 3 overlap: after both, either may be read...
			w("k", 2, 0, 20*ms), w("k", 3, 10*ms, 30*ms),
			read("k", 2, 40*ms, 41*ms), read("k", 3, 50*ms, 51*ms),
		}, 0},
		{"...but not the one before both", 0, []Op{
			w("k", 1, 0, 5*ms), w("k", 2, 10*ms, 20*ms), w("k", 3, 15*ms, 30*ms),
			read("k", 1, 40*ms, 41*ms),
		}, 1},
		{"a lower version written later is the newer one", 0, []Op{
			w("k", 9, 0, 10*ms), w("k", 4, 20*ms, 30*ms),
			read("k", 4, 40*ms, 41*ms), read("k", 9, 50*ms, 51*ms),
		}, 1},
		{"absent before any write", 0, []Op{read("k", 0, 0, 1*ms), w("k", 1, 5*ms, 10*ms)}, 0},
		{"absent after a write", 0, []Op{w("k", 1, 0, 10*ms), read("k", 0, 20*ms, 21*ms)}, 1},
		{"absent after a delete", 0, []Op{
			w("k", 1, 0, 10*ms), del("k", 2, 20*ms, 30*ms), read("k", 0, 40*ms, 41*ms),
		}, 0},
		{"deleted value read after the delete", 0, []Op{
			w("k", 1, 0, 10*ms), del("k", 2, 20*ms, 30*ms), read("k", 1, 40*ms, 41*ms),
		}, 1},
		{"absent after a delete and a newer write", 0, []Op{
			del("k", 1, 0, 10*ms), w("k", 2, 20*ms, 30*ms), read("k", 0, 40*ms, 41*ms),
		}, 1},
		{"absent while a delete is under way", 0, []Op{
			w("k", 1, 0, 10*ms), del("k", 2, 20*ms, 60*ms), read("k", 0, 40*ms, 41*ms),
		}, 0},
		{"a failed write may land at any time", 0, []Op{
			w("k", 1, 0, 10*ms), {Kind: KindWrite, Key: "k", Version: 2, Failed: true, Start: 20 * ms, End: 30 * ms},
			read("k", 1, 40*ms, 41*ms), read("k", 2, 50*ms, 51*ms), read("k", 1, 60*ms, 61*ms),
		}, 0},
		{"a version from the future", 0, []Op{read("k", 1, 0, 1*ms), w("k", 1, 5*ms, 10*ms)}, 1},
		{"another key's version", 0, []Op{w("a", 1, 0, 10*ms), read("b", 1, 20*ms, 21*ms)}, 1},
		{"keys are separate", 0, []Op{
			w("a", 1, 0, 10*ms), w("b", 2, 20*ms, 30*ms), read("a", 1, 40*ms, 41*ms),
		}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			counts, vs := Check(tc.ops, tc.slack)
			if counts.Violations != tc.want {
				t.Fatalf("violations = %d, want %d; %+v %v", counts.Violations, tc.want, counts, vs)
			}
			for _, v := range vs {
				t.Log(v)
			}
		})
	}
}

// The violation names the write that overwrote the value, and the lag.
func TestViolationDetails(t *testing.T) {
	counts, vs := Check([]Op{
		w("k", 10, 0, 10*ms), w("k", 20, 20*ms, 30*ms), w("k", 30, 35*ms, 38*ms), read("k", 10, 100*ms, 101*ms),
	}, 0)
	if counts.Violations != 1 || len(vs) != 1 {
		t.Fatalf("%+v %v", counts, vs)
	}
	v := vs[0]
	if v.Returned != 10 || v.Newer != 20 || v.Lag != 70*ms || v.NewerEnd != 30*ms {
		t.Fatalf("violation %+v: want version 10 overwritten by 20, 70ms before the read", v)
	}
	if time.Duration(counts.MaxLagOfViolation) != 70*ms {
		t.Fatalf("MaxLagOfViolation = %v", time.Duration(counts.MaxLagOfViolation))
	}
	t.Log(v)
}

// The live checker, driven by goroutines, sees a stale read that a hand-made
// replica returns on purpose after a write completed.
func TestLiveCheckerCatchesStaleRead(t *testing.T) {
	c := NewChecker(0)
	w1 := c.BeginWrite("k", false)
	w1.End(nil)
	w2 := c.BeginWrite("k", false)
	w2.End(nil)
	var wg sync.WaitGroup
	var fresh, stale bool
	wg.Go(func() { fresh = c.BeginRead("k").End(w2.Version, true, nil) })
	wg.Go(func() { stale = c.BeginRead("k").End(w1.Version, true, nil) })
	wg.Wait()
	if fresh || !stale {
		t.Fatalf("fresh read flagged %v, stale read flagged %v", fresh, stale)
	}
	if got := c.Counts(); got.Violations != 1 || got.Reads != 2 || got.Writes != 2 {
		t.Fatalf("counts %+v", got)
	}
	if vs := c.Violations(); len(vs) != 1 || vs[0].Returned != w1.Version || vs[0].Newer != w2.Version {
		t.Fatalf("violations %v", vs)
	}
}
