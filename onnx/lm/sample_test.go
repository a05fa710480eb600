package lm

import (
	"math"
	"testing"
)

func softmax(logits []float32, temp float64) []float64 {
	mx := math.Inf(-1)
	for _, v := range logits {
		mx = math.Max(mx, float64(v))
	}
	p := make([]float64, len(logits))
	var z float64
	for i, v := range logits {
		p[i] = math.Exp((float64(v) - mx) / temp)
		z += p[i]
	}
	for i := range p {
		p[i] /= z
	}
	return p
}

func TestPickGreedyAndLogProb(t *testing.T) {
	logits := []float32{0.5, 2, -1, 2, 0}
	var pk picker
	tok, lp := pk.pick(logits, Sampling{}, nil, true)
	if tok != 1 {
		t.Fatalf("greedy picked %d, want 1 (first of the tied maxima)", tok)
	}
	want := math.Log(softmax(logits, 1)[1])
	if math.Abs(lp-want) > 1e-12 {
		t.Fatalf("log-prob %v, want %v", lp, want)
	}
}

func TestSampleMatchesDistribution(t *testing.T) {
	logits := []float32{1, 0, -0.5, 2, 0.3, -3}
	const n = 200000
	for _, tc := range []struct {
		name string
		s    Sampling
		want []float64
	}{
		{"temperature", Sampling{Temperature: 0.7}, softmax(logits, 0.7)},
		{"top-k", Sampling{Temperature: 1, TopK: 3}, renorm(softmax(logits, 1), []int{3, 0, 4})},
		// Sorted probs at T=1: id3 .564, id0 .207, id4 .103 … p=0.75 keeps {3,0}, p=0.8 {3,0,4}.
		{"top-p", Sampling{Temperature: 1, TopP: 0.75}, renorm(softmax(logits, 1), []int{3, 0})},
		{"top-p wider", Sampling{Temperature: 1, TopP: 0.8}, renorm(softmax(logits, 1), []int{3, 0, 4})},
		{"top-k then top-p", Sampling{Temperature: 1, TopK: 2, TopP: 0.5}, renorm(softmax(logits, 1), []int{3})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rowRNG(42, 0, 0)
			var pk picker
			counts := make([]float64, len(logits))
			for i := 0; i < n; i++ {
				tok, lp := pk.pick(logits, tc.s, rng, true)
				counts[tok]++
				if want := math.Log(softmax(logits, 1)[tok]); math.Abs(lp-want) > 1e-9 {
					t.Fatalf("log-prob of %d = %v, want the raw model's %v", tok, lp, want)
				}
			}
			for i, c := range counts {
				f := c / n
				// 5 standard errors of a binomial proportion.
				tol := 5*math.Sqrt(tc.want[i]*(1-tc.want[i])/n) + 1e-12
				if math.Abs(f-tc.want[i]) > tol {
					t.Errorf("token %d drawn with frequency %.4f, want %.4f ± %.4f", i, f, tc.want[i], tol)
				}
			}
		})
	}
}

func renorm(p []float64, keep []int) []float64 {
	out := make([]float64, len(p))
	var z float64
	for _, i := range keep {
		z += p[i]
	}
	for _, i := range keep {
		out[i] = p[i] / z
	}
	return out
}

func TestSampleReproducible(t *testing.T) {
	logits := make([]float32, 1000)
	for i := range logits {
		logits[i] = float32(math.Sin(float64(i)))
	}
	draw := func(seed uint64, prompt, sample int) []int {
		rng := rowRNG(seed, prompt, sample)
		var pk picker
		out := make([]int, 50)
		for i := range out {
			out[i], _ = pk.pick(logits, Sampling{Temperature: 1.3, TopK: 100, TopP: 0.9}, rng, false)
		}
		return out
	}
	a, b := draw(7, 1, 2), draw(7, 1, 2)
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("same seed drew %v then %v", a, b)
		}
	}
	c := draw(7, 1, 3)
	same := 0
	for i := range a {
		if a[i] == c[i] {
			same++
		}
	}
	if same == len(a) {
		t.Fatal("two samples of the same prompt drew identical streams")
	}
}

func TestTopKOrderAndTies(t *testing.T) {
	logits := []float32{3, 1, 3, 2, 5, 2}
	got := topK(nil, logits, 4)
	want := []int32{4, 0, 2, 3}
	for i, c := range got {
		if c.id != want[i] {
			t.Fatalf("topK = %v, want ids %v", got, want)
		}
	}
}

func TestSamplingValidate(t *testing.T) {
	for _, s := range []Sampling{{Temperature: math.NaN()}, {TopK: -1}, {TopP: 1.5}, {TopP: -0.1}} {
		if s.validate() == nil {
			t.Errorf("%+v accepted", s)
		}
	}
}

func TestExpNeg(t *testing.T) {
	var worst float64
	for x := 0.0; x > -700; x -= 0.0137 {
		want := math.Exp(x)
		got := expNeg(x)
		if want > 0 {
			worst = math.Max(worst, math.Abs(got-want)/want)
		}
	}
	if worst > 1e-14 {
		t.Fatalf("expNeg relative error %.3e", worst)
	}
	if expNeg(-800) != 0 || expNeg(math.NaN()) != 0 {
		t.Fatal("expNeg of very negative / NaN input")
	}
}
