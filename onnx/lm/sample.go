package lm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
)

// Sampling chooses how the next token is picked from the logits, in the
// order Hugging Face applies its processors: temperature, then top-k, then
// top-p.
type Sampling struct {
	// Temperature <= 0 means greedy (argmax; ties go to the lowest id).
	Temperature float64
	// TopK > 0 keeps only the k most likely tokens.
	TopK int
	// TopP in (0,1) keeps the smallest set of most likely tokens whose
	// probability reaches TopP (nucleus sampling); 0 or 1 turns it off.
	TopP float64
}

// Greedy reports whether no randomness is involved.
func (s Sampling) Greedy() bool { return s.Temperature <= 0 }

func (s Sampling) validate() error {
	if math.IsNaN(s.Temperature) || math.IsInf(s.Temperature, 0) {
		return fmt.Errorf("temperature %v is not a finite number", s.Temperature)
	}
	if s.TopK < 0 {
		return fmt.Errorf("top_k %d is negative (0 turns it off)", s.TopK)
	}
	if !(s.TopP >= 0 && s.TopP <= 1) {
		return fmt.Errorf("top_p %v is outside [0, 1] (0 or 1 turns it off)", s.TopP)
	}
	return nil
}

// rowRNG is the random stream of one sequence: it depends only on the seed
// and the sequence's (prompt, sample) position, so a run is reproducible and a
// sequence's tokens do not depend on which others share its batch.
func rowRNG(seed uint64, prompt, sample int) *rand.Rand {
	return rand.New(rand.NewPCG(seed, uint64(prompt)<<32|uint64(uint32(sample))))
}

// candidate is a token still in the running, with its unnormalized weight.
type candidate struct {
	id int32
	w  float64
}

// picker holds scratch space reused across rows and steps.
type picker struct {
	cands []candidate
}

// pick chooses the next token from one row of logits. It returns the token
// and, when withLogProb, the log-softmax of the raw logits (temperature 1,
// unfiltered) at that token — the model's own log-probability, which is what
// policy-gradient methods need.
func (p *picker) pick(logits []float32, s Sampling, rng *rand.Rand, withLogProb bool) (int, float64) {
	best, mx := argmax(logits)
	tok := best
	if !s.Greedy() {
		tok = p.sample(logits, mx, s, rng)
	}
	if !withLogProb {
		return tok, 0
	}
	return tok, float64(logits[tok]) - mx - math.Log(sumExp(logits, mx))
}

// argmax returns the first index of the largest logit and its value.
func argmax(logits []float32) (int, float64) {
	best, mx := 0, logits[0]
	for i, v := range logits {
		if v > mx {
			best, mx = i, v
		}
	}
	return best, float64(mx)
}

func sumExp(logits []float32, mx float64) float64 {
	// Four accumulators let the CPU overlap the independent exps.
	var z0, z1, z2, z3 float64
	n := len(logits) &^ 3
	for i := 0; i < n; i += 4 {
		z0 += expNeg(float64(logits[i]) - mx)
		z1 += expNeg(float64(logits[i+1]) - mx)
		z2 += expNeg(float64(logits[i+2]) - mx)
		z3 += expNeg(float64(logits[i+3]) - mx)
	}
	for _, v := range logits[n:] {
		z0 += expNeg(float64(v) - mx)
	}
	return z0 + z1 + z2 + z3
}

// expNeg is e^x for x <= 0 (a logit minus the row's max), to ~1e-15
// relative error, several times faster than math.Exp: it skips the special
// cases math.Exp handles and that cannot occur here. The log-softmax pass
// runs it once per vocabulary entry per generated token.
func expNeg(x float64) float64 {
	if x < -700 || x != x {
		return 0
	}
	const (
		log2e = 1.44269504088896338700e+00
		ln2hi = 6.93147180369123816490e-01
		ln2lo = 1.90821492927058770002e-10
	)
	k := float64(int64(x*log2e - 0.5)) // round(x·log2 e) for x <= 0, without math.Floor's call
	r := (x - k*ln2hi) - k*ln2lo       // |r| <= ln2/2
	// e^r by its Taylor series to r^11 (truncation < 1e-16 for |r| <= 0.35).
	p := 1 + r*(1+r*(1.0/2+r*(1.0/6+r*(1.0/24+r*(1.0/120+r*(1.0/720+r*(1.0/5040+r*(1.0/40320+r*(1.0/362880+r*(1.0/3628800+r*(1.0/39916800)))))))))))
	return p * math.Float64frombits(uint64(int64(k)+1023)<<52)
}

func (p *picker) sample(logits []float32, mx float64, s Sampling, rng *rand.Rand) int {
	invT := 1 / s.Temperature
	c := p.cands[:0]
	if s.TopK > 0 && s.TopK < len(logits) {
		c = topK(c, logits, s.TopK)
		for i := range c {
			c[i].w = expNeg((float64(logits[c[i].id]) - mx) * invT)
		}
	} else {
		for i, v := range logits {
			c = append(c, candidate{int32(i), expNeg((float64(v) - mx) * invT)})
		}
	}
	var z float64
	for _, x := range c {
		z += x.w
	}
	if s.TopP > 0 && s.TopP < 1 {
		// Only tokens above a small weight can be in the nucleus: dropping
		// everything below t loses at most len(c)·t = (1-p)/2 of the mass,
		// so the rest still reaches p. This keeps the sort short.
		t := 0.5 * (1 - s.TopP) * z / float64(len(c))
		kept := c[:0]
		for _, x := range c {
			if x.w >= t {
				kept = append(kept, x)
			}
		}
		sort.Slice(kept, func(i, j int) bool {
			if kept[i].w != kept[j].w {
				return kept[i].w > kept[j].w
			}
			return kept[i].id < kept[j].id
		})
		target, cum := s.TopP*z, 0.0
		n := len(kept)
		for i, x := range kept {
			cum += x.w
			if cum >= target {
				n = i + 1
				break
			}
		}
		c, z = kept[:n], cum
	}
	p.cands = c
	u := rng.Float64() * z
	for _, x := range c {
		u -= x.w
		if u < 0 {
			return int(x.id)
		}
	}
	return int(c[len(c)-1].id) // rounding left u at ~0
}

// topK returns the k largest logits (ties: lower id first) in c's storage,
// using a min-heap on (logit, -id).
func topK(c []candidate, logits []float32, k int) []candidate {
	// less: a is a worse candidate than b.
	less := func(a, b candidate) bool {
		if a.w != b.w {
			return a.w < b.w
		}
		return a.id > b.id
	}
	down := func(h []candidate, i int) {
		for {
			l := 2*i + 1
			if l >= len(h) {
				return
			}
			m := l
			if r := l + 1; r < len(h) && less(h[r], h[l]) {
				m = r
			}
			if !less(h[m], h[i]) {
				return
			}
			h[i], h[m] = h[m], h[i]
			i = m
		}
	}
	h := c[:0]
	for i := 0; i < k; i++ {
		h = append(h, candidate{int32(i), float64(logits[i])})
	}
	for i := k/2 - 1; i >= 0; i-- {
		down(h, i)
	}
	for i := k; i < len(logits); i++ {
		x := candidate{int32(i), float64(logits[i])}
		if less(h[0], x) {
			h[0] = x
			down(h, 0)
		}
	}
	sort.Slice(h, func(i, j int) bool { return less(h[j], h[i]) })
	return h
}
