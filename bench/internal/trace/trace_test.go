package trace

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestZipfFollowsTheFormula(t *testing.T) {
	for _, s := range []float64{1.01, 1.2} {
		const n, draws = 1000, 2_000_000
		z := NewZipf(n, s, 1)
		counts := make([]int, n)
		for range draws {
			counts[z.Next()]++
		}
		// The head ranks each get many draws: their frequencies must be
		// within a few standard deviations of the formula.
		h := 0.0
		for r := range n {
			h += math.Pow(float64(r+1), -s)
		}
		for r := range 10 {
			want := math.Pow(float64(r+1), -s) / h
			if d := math.Abs(z.P(r) - want); d > 1e-12 {
				t.Fatalf("s=%v: P(%d) = %v, want %v", s, r, z.P(r), want)
			}
			got := float64(counts[r]) / draws
			sd := math.Sqrt(want * (1 - want) / draws)
			if math.Abs(got-want) > 5*sd {
				t.Errorf("s=%v: rank %d drawn %.5f of the time, want %.5f ± %.5f", s, r, got, want, 5*sd)
			}
		}
		// Rank 1 is 2^s times as likely as rank 2.
		if ratio := float64(counts[0]) / float64(counts[1]); math.Abs(ratio-math.Pow(2, s)) > 0.03 {
			t.Errorf("s=%v: rank 1 / rank 2 = %.3f, want %.3f", s, ratio, math.Pow(2, s))
		}
	}
}

func TestZipfIsDeterministic(t *testing.T) {
	a, b := NewZipf(100, 1.2, 7).Generate(1000), NewZipf(100, 1.2, 7).Generate(1000)
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("same seed, different traces at %d", i)
		}
	}
}

func TestOptimalByHand(t *testing.T) {
	const a, b, c, d = 0, 1, 2, 3
	for _, tc := range []struct {
		name     string
		trace    []uint32
		capacity int
		hits     int
	}{
		// LRU gets no hit here; the optimum keeps a and b, skips c the
		// first time: hits at a, b.
		{"loop of three in two", []uint32{a, b, c, a, b, c}, 2, 2},
		// c is skipped (a and b are wanted sooner); a and b hit; d is
		// never wanted again, so skipped; the second c replaces a key
		// never wanted again, and the third c hits.
		{"skip and evict", []uint32{a, b, c, a, d, b, c, c}, 2, 3},
		{"one slot", []uint32{a, a, b, a, a}, 1, 3},
		{"room for all", []uint32{a, b, c, a, b, c, d, d}, 4, 4},
		{"no room", []uint32{a, a, a}, 0, 0},
	} {
		if got := OptimalHits(tc.trace, tc.capacity); got != tc.hits {
			t.Errorf("%s: %d hits, want %d", tc.name, got, tc.hits)
		}
	}
}

// TestOptimalBeatsLRU checks the bound on random traces: never fewer
// hits than an exact LRU, never more than requests minus distinct keys.
func TestOptimalBeatsLRU(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 200 {
		keys, capacity := 2+rng.IntN(20), 1+rng.IntN(8)
		tr := make([]uint32, 200)
		for i := range tr {
			tr[i] = uint32(rng.IntN(keys))
		}
		opt, lru := OptimalHits(tr, capacity), lruHits(tr, capacity)
		distinct := map[uint32]bool{}
		for _, k := range tr {
			distinct[k] = true
		}
		if opt < lru || opt > len(tr)-len(distinct) {
			t.Fatalf("capacity %d: optimum %d, LRU %d, ceiling %d", capacity, opt, lru, len(tr)-len(distinct))
		}
	}
}

func lruHits(t []uint32, capacity int) int {
	var order []uint32 // most recent last
	hits := 0
	for _, k := range t {
		found := -1
		for i, o := range order {
			if o == k {
				found = i
			}
		}
		if found >= 0 {
			hits++
			order = append(order[:found], order[found+1:]...)
		} else if len(order) == capacity {
			order = order[1:]
		}
		order = append(order, k)
	}
	return hits
}
