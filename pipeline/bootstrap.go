package pipeline

import (
	"hash/fnv"
	"math"
	"math/rand/v2"
	"sort"
)

// Bootstrap settings of an evaluation.
type Bootstrap struct {
	Resamples int    `json:"resamples"`
	Seed      uint64 `json:"seed"`
}

// DefaultResamples is the bootstrap's resample count when none is set.
const DefaultResamples = 1000

// resamples draws b resamples of n example indexes with replacement, from
// a PCG seeded by seed and the key (a task and split), so the same
// evaluation always gets the same intervals. Every model of a task is
// scored on the same resamples: differences between models are paired.
func resamples(n, b int, seed uint64, key string) [][]int {
	h := fnv.New64a()
	h.Write([]byte(key))
	rng := rand.New(rand.NewPCG(seed, h.Sum64()))
	out := make([][]int, b)
	for r := range out {
		idx := make([]int, n)
		for i := range idx {
			idx[i] = rng.IntN(n)
		}
		out[r] = idx
	}
	return out
}

// percentileCI is the 2.5th and 97.5th percentiles of vals (linear
// interpolation between order statistics, as numpy's default).
func percentileCI(vals []float64) [2]float64 {
	s := append([]float64(nil), vals...)
	sort.Float64s(s)
	q := func(p float64) float64 {
		if len(s) == 0 {
			return math.NaN()
		}
		x := p * float64(len(s)-1)
		lo := int(math.Floor(x))
		hi := min(lo+1, len(s)-1)
		return s[lo] + (x-float64(lo))*(s[hi]-s[lo])
	}
	return [2]float64{q(0.025), q(0.975)}
}

// resampledMetrics computes s's metrics on every resample: out[k][r] is
// metric k on resample r.
func resampledMetrics(s *exampleScores, rs [][]int) [][]float64 {
	var out [][]float64
	for r, idx := range rs {
		ms := s.metrics(idx)
		if out == nil {
			out = make([][]float64, len(ms))
			for k := range out {
				out[k] = make([]float64, len(rs))
			}
		}
		for k, m := range ms {
			out[k][r] = m.Value
		}
	}
	return out
}
