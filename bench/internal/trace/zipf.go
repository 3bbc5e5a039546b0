// Package trace makes the request traces of the hit-ratio figures and
// computes the best hit ratio any cache could reach on them.
package trace

import (
	"math"
	"math/rand/v2"
	"sort"
)

// Zipf draws key ranks 0..n-1, rank r with probability proportional to
// 1/(r+1)^s, by inverting the exact cumulative distribution. Unlike
// math/rand's Zipf it takes any s > 0, and tests can check it against the
// formula.
type Zipf struct {
	cdf []float64
	rng *rand.Rand
}

// NewZipf returns a generator over n keys with exponent s, seeded so that
// the same seed gives the same trace.
func NewZipf(n int, s float64, seed uint64) *Zipf {
	cdf := make([]float64, n)
	sum := 0.0
	for r := range n {
		sum += math.Pow(float64(r+1), -s)
		cdf[r] = sum
	}
	for r := range cdf {
		cdf[r] /= sum
	}
	cdf[n-1] = 1
	return &Zipf{cdf: cdf, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// P returns the probability of rank r.
func (z *Zipf) P(r int) float64 {
	if r == 0 {
		return z.cdf[0]
	}
	return z.cdf[r] - z.cdf[r-1]
}

// Next returns the next rank.
func (z *Zipf) Next() uint32 {
	u := z.rng.Float64()
	return uint32(sort.SearchFloat64s(z.cdf, u))
}

// Generate returns a trace of length requests.
func (z *Zipf) Generate(length int) []uint32 {
	t := make([]uint32, length)
	for i := range t {
		t[i] = z.Next()
	}
	return t
}
