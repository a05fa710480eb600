package train

import (
	"fmt"
	"math"
)

// AdamW is Adam with decoupled weight decay (Loshchilov & Hutter): the decay
// multiplies the weight by (1 − lr·wd) and is not folded into the moments.
// Its state (moments and step count) is part of a checkpoint, so a resumed run
// continues bit for bit.
type AdamW struct {
	Beta1, Beta2 float64
	Eps          float64
	WeightDecay  float64
	// Step is the number of updates applied so far (bias correction uses it).
	Step int
	M, V [][]float32
}

// NewAdamW makes the optimizer for params of the given sizes with the usual
// defaults (β1 0.9, β2 0.999, ε 1e-8) and the given weight decay.
func NewAdamW(sizes []int, weightDecay float64) *AdamW {
	o := &AdamW{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: weightDecay}
	o.M = make([][]float32, len(sizes))
	o.V = make([][]float32, len(sizes))
	for i, n := range sizes {
		o.M[i] = make([]float32, n)
		o.V[i] = make([]float32, n)
	}
	return o
}

// Update applies one step with learning rate lr to weights in place. decay[i]
// says whether weight decay applies to param i (norm gains and biases usually
// do not decay); nil means all decay.
func (o *AdamW) Update(weights, grads [][]float32, lr float64, decay []bool) error {
	if len(weights) != len(o.M) || len(grads) != len(o.M) {
		return fmt.Errorf("adamw: %d weights and %d grads for %d params", len(weights), len(grads), len(o.M))
	}
	o.Step++
	bc1 := 1 - math.Pow(o.Beta1, float64(o.Step))
	bc2 := 1 - math.Pow(o.Beta2, float64(o.Step))
	b1, b2 := float32(o.Beta1), float32(o.Beta2)
	stepSize := float32(lr / bc1)
	invSqrtBC2 := float32(1 / math.Sqrt(bc2))
	eps := float32(o.Eps)
	for i, w := range weights {
		if len(w) != len(o.M[i]) || len(grads[i]) != len(o.M[i]) {
			return fmt.Errorf("adamw: param %d has %d weights and %d grads, want %d", i, len(w), len(grads[i]), len(o.M[i]))
		}
	}
	cs := chunksOf(lensOf(weights))
	// check sums x−x over the new weights and second moments: 0 while all
	// are finite, NaN from the first NaN or ±Inf (no branch in the loop).
	check := make([]float32, len(cs))
	forChunks(cs, func(i int, c chunk) {
		w, g, m, v := weights[c.p][c.lo:c.hi], grads[c.p][c.lo:c.hi], o.M[c.p][c.lo:c.hi], o.V[c.p][c.lo:c.hi]
		shrink := float32(1)
		if decay == nil || decay[c.p] {
			shrink = float32(1 - lr*o.WeightDecay)
		}
		var chk float32
		for j := range w {
			gj := g[j]
			m[j] = b1*m[j] + (1-b1)*gj
			v[j] = b2*v[j] + (1-b2)*gj*gj
			denom := float32(math.Sqrt(float64(v[j])))*invSqrtBC2 + eps
			w[j] = w[j]*shrink - stepSize*m[j]/denom
			chk += (w[j] - w[j]) + (v[j] - v[j])
		}
		check[i] = chk
	})
	for i, chk := range check {
		if chk != 0 {
			return &NonFiniteUpdateError{Param: cs[i].p, LR: lr}
		}
	}
	return nil
}

// GlobalNorm is the L2 norm over all gradients together, summed in float64
// (per fixed chunk, then in order, so it is the same on every run). It is
// NaN or +Inf exactly when some gradient is not finite.
func GlobalNorm(grads [][]float32) float64 {
	cs := chunksOf(lensOf(grads))
	part := make([]float64, len(cs))
	forChunks(cs, func(i int, c chunk) {
		s := 0.0
		for _, x := range grads[c.p][c.lo:c.hi] {
			s += float64(x) * float64(x)
		}
		part[i] = s
	})
	s := 0.0
	for _, p := range part {
		s += p
	}
	return math.Sqrt(s)
}

// ClipGlobalNorm scales all gradients in place so their global norm is at
// most maxNorm, and returns the norm before clipping. maxNorm ≤ 0 disables
// clipping.
func ClipGlobalNorm(grads [][]float32, maxNorm float64) float64 {
	norm := GlobalNorm(grads)
	clipTo(grads, norm, maxNorm)
	return norm
}

// clipScale is the factor clipping multiplies the gradients by: 1 when the
// norm is within maxNorm (or clipping is off, or the norm not finite).
func clipScale(norm, maxNorm float64) float32 {
	if maxNorm <= 0 || norm <= maxNorm || math.IsNaN(norm) || math.IsInf(norm, 0) {
		return 1
	}
	return float32(maxNorm / (norm + 1e-6))
}

func clipTo(grads [][]float32, norm, maxNorm float64) {
	scale := clipScale(norm, maxNorm)
	if scale == 1 {
		return
	}
	forChunks(chunksOf(lensOf(grads)), func(_ int, c chunk) {
		g := grads[c.p][c.lo:c.hi]
		for j := range g {
			g[j] *= scale
		}
	})
}

// NonFinite returns the index of the first gradient holding a NaN or ±Inf,
// or -1 when all are finite.
func NonFinite(grads [][]float32) int {
	for i, g := range grads {
		for _, x := range g {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				return i
			}
		}
	}
	return -1
}

// Schedule gives the learning rate at a step: linear warmup to Peak over
// Warmup steps, then a decay to Peak·MinRatio at Total steps. After warmup
// update k runs at the rate transformers' scheduler of the same name gives
// it (cosine, linear, constant_with_warmup; cosine_with_min_lr for MinRatio
// > 0). During warmup update k (0-based) runs at (k+1)/Warmup of Peak, so the
// first update already moves the weights and update Warmup−1 runs at Peak;
// transformers runs update k at k/Warmup, the first at rate 0, and reaches
// Peak one update later (TestScheduleAgainstTransformers).
type Schedule struct {
	Peak     float64
	Warmup   int
	Total    int
	Decay    string // "cosine" (default), "linear" or "constant"
	MinRatio float64
}

// LR is the learning rate for update number step (0-based).
func (s Schedule) LR(step int) float64 {
	if s.Warmup > 0 && step < s.Warmup {
		return s.Peak * float64(step+1) / float64(s.Warmup)
	}
	if s.Total <= s.Warmup || s.Decay == "constant" {
		return s.Peak
	}
	p := float64(step-s.Warmup) / float64(s.Total-s.Warmup)
	p = math.Min(math.Max(p, 0), 1)
	var f float64
	switch s.Decay {
	case "linear":
		f = 1 - p
	default:
		f = 0.5 * (1 + math.Cos(math.Pi*p))
	}
	return s.Peak * (s.MinRatio + (1-s.MinRatio)*f)
}

// Validate reports a schedule that cannot be used.
func (s Schedule) Validate() error {
	switch s.Decay {
	case "", "cosine", "linear", "constant":
	default:
		return fmt.Errorf("schedule: unknown decay %q (want cosine, linear or constant)", s.Decay)
	}
	if s.Peak <= 0 || math.IsNaN(s.Peak) || math.IsInf(s.Peak, 0) {
		return fmt.Errorf("schedule: learning rate %v must be positive", s.Peak)
	}
	if s.Warmup < 0 || s.Total < 0 {
		return fmt.Errorf("schedule: negative warmup %d or total %d", s.Warmup, s.Total)
	}
	if s.MinRatio < 0 || s.MinRatio > 1 {
		return fmt.Errorf("schedule: min ratio %v outside [0,1]", s.MinRatio)
	}
	return nil
}

// Accumulator sums gradients over micro-batches; Mean divides by their count.
type Accumulator struct {
	Sum   [][]float32
	Count int
}

// NewAccumulator makes zeroed sums for params of the given sizes.
func NewAccumulator(sizes []int) *Accumulator {
	a := &Accumulator{Sum: make([][]float32, len(sizes))}
	for i, n := range sizes {
		a.Sum[i] = make([]float32, n)
	}
	return a
}

// Add adds one micro-batch's gradients.
func (a *Accumulator) Add(grads [][]float32) error {
	if err := a.check(grads); err != nil {
		return err
	}
	forChunks(chunksOf(lensOf(grads)), func(_ int, c chunk) {
		s := a.Sum[c.p][c.lo:c.hi]
		for j, x := range grads[c.p][c.lo:c.hi] {
			s[j] += x
		}
	})
	a.Count++
	return nil
}

// AddScaled adds one micro-batch's gradients times w (Loop's weighted
// accumulation: Sum is then the step's gradient, no Mean).
func (a *Accumulator) AddScaled(grads [][]float32, w float32) error {
	if err := a.check(grads); err != nil {
		return err
	}
	forChunks(chunksOf(lensOf(grads)), func(_ int, c chunk) {
		s := a.Sum[c.p][c.lo:c.hi]
		for j, x := range grads[c.p][c.lo:c.hi] {
			s[j] += float32(w * x) // rounded before the add, as the device graph's Mul then Add
		}
	})
	a.Count++
	return nil
}

// check refuses gradients that are not one per param, of its size.
func (a *Accumulator) check(grads [][]float32) error {
	if len(grads) != len(a.Sum) {
		return fmt.Errorf("accumulate: %d grads for %d params", len(grads), len(a.Sum))
	}
	for i, g := range grads {
		if len(g) != len(a.Sum[i]) {
			return fmt.Errorf("accumulate: param %d has %d grads, want %d", i, len(g), len(a.Sum[i]))
		}
	}
	return nil
}

// Mean turns the sums into the mean gradient in place and returns them;
// call Reset before the next accumulation.
func (a *Accumulator) Mean() [][]float32 {
	if a.Count > 1 {
		inv := 1 / float32(a.Count)
		for _, s := range a.Sum {
			for j := range s {
				s[j] *= inv
			}
		}
	}
	return a.Sum
}

// Reset zeroes the sums.
func (a *Accumulator) Reset() {
	for _, s := range a.Sum {
		clear(s)
	}
	a.Count = 0
}
