package lm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
)

// Sampling chooses how the next token is picked from the logits, in the
// order Hugging Face and vLLM apply their processors: the penalties, then
// temperature, then top-k, then top-p.
type Sampling struct {
	// Temperature <= 0 means greedy (argmax; ties go to the lowest id).
	Temperature float64
	// TopK > 0 keeps only the k most likely tokens.
	TopK int
	// TopP in (0,1) keeps the smallest set of most likely tokens whose
	// probability reaches TopP (nucleus sampling); 0 or 1 turns it off.
	TopP float64
	// RepetitionPenalty is transformers' repetition_penalty (and vLLM's):
	// the logit of every token in the prompt or generated so far is
	// divided by it when positive and multiplied by it otherwise. 0 or 1
	// turns it off. It applies to greedy decoding too.
	RepetitionPenalty float64
	// FrequencyPenalty and PresencePenalty are OpenAI's (as vLLM applies
	// them, after the repetition penalty): a token generated n > 0 times so
	// far (the prompt does not count) has n·FrequencyPenalty +
	// PresencePenalty subtracted from its logit. 0 turns each off;
	// negative values favour repeats.
	FrequencyPenalty, PresencePenalty float64
}

// Greedy reports whether no randomness is involved.
func (s Sampling) Greedy() bool { return s.Temperature <= 0 }

// topKOn and topPOn report whether top-k or top-p filters a vocabulary of
// V; a sampled draw with neither is the plain draw (scan, scanBlocks).
func (s Sampling) topKOn(V int) bool { return s.TopK > 0 && s.TopK < V }
func (s Sampling) topPOn() bool      { return s.TopP > 0 && s.TopP < 1 }

// MinTemperature is the smallest temperature that samples: the decode head
// scales float32 logits by 1/temperature, which below it overflows (from
// ~1e-38 every row came out non-finite, blamed on the weights).
// Temperature 0 is greedy.
const MinTemperature = 1e-30

func (s Sampling) validate() error {
	if math.IsNaN(s.Temperature) || math.IsInf(s.Temperature, 0) {
		return fmt.Errorf("temperature %v is not a finite number", s.Temperature)
	}
	if s.Temperature > 0 && s.Temperature < MinTemperature {
		return fmt.Errorf("temperature %v is too small to sample with (1/temperature overflows float32 logits): use 0 for greedy or at least %g", s.Temperature, MinTemperature)
	}
	if s.TopK < 0 {
		return fmt.Errorf("top_k %d is negative (0 turns it off)", s.TopK)
	}
	if !(s.TopP >= 0 && s.TopP <= 1) {
		return fmt.Errorf("top_p %v is outside [0, 1] (0 or 1 turns it off)", s.TopP)
	}
	if r := s.RepetitionPenalty; !(r >= 0) || math.IsInf(r, 0) {
		return fmt.Errorf("repetition_penalty %v is not a finite number > 0 (1 or 0 turns it off)", r)
	}
	for _, p := range []struct {
		name string
		v    float64
	}{{"frequency_penalty", s.FrequencyPenalty}, {"presence_penalty", s.PresencePenalty}} {
		if math.IsNaN(p.v) || math.IsInf(p.v, 0) {
			return fmt.Errorf("%s %v is not a finite number (0 turns it off)", p.name, p.v)
		}
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
	// a row's probabilities and block sums with the penalties applied
	// (sampleAdjusted), and the tokens they change
	probs, blocks []float32
	mods          []adjusted
	// the adjusted block sums, the changed tokens' weights and one block's
	// weights of a draw over blocks (drawOverBlocks)
	sums, w, blockW []float64
}

// sample draws a token from one row of probabilities (the decode head's
// softmax of logits/temperature), applying top-k, then top-p over the
// renormalized top-k, as Hugging Face orders its processors.
// total is the row's sum (1 up to rounding), which the plain draw scans
// against, over the row's block sums when the head gave them (blocks; nil:
// over probs); the filtered draws renormalize their own candidates.
func (p *picker) sample(probs, blocks []float32, total float64, s Sampling, rng *rand.Rand) int {
	var c []candidate
	var z float64
	switch {
	case s.topKOn(len(probs)):
		c = topK(p.cands[:0], probs, s.TopK)
		for _, x := range c {
			z += x.w
		}
	case s.topPOn():
		// Only tokens above a small probability can be in the nucleus:
		// dropping everything below t loses at most len·t = (1-p)/2 of the
		// mass, so the rest still reaches p. This keeps the sort short.
		t := float32(0.5 * (1 - s.TopP) / float64(len(probs)))
		c = p.cands[:0]
		var z0, z1 float64
		n := len(probs) &^ 1
		for i := 0; i < n; i += 2 {
			a, b := probs[i], probs[i+1]
			z0 += float64(a)
			z1 += float64(b)
			if a >= t {
				c = append(c, candidate{int32(i), float64(a)})
			}
			if b >= t {
				c = append(c, candidate{int32(i + 1), float64(b)})
			}
		}
		if n < len(probs) {
			z0 += float64(probs[n])
			if probs[n] >= t {
				c = append(c, candidate{int32(n), float64(probs[n])})
			}
		}
		z = z0 + z1
		sort.Slice(c, func(i, j int) bool {
			if c[i].w != c[j].w {
				return c[i].w > c[j].w
			}
			return c[i].id < c[j].id
		})
	case blocks != nil:
		return scanBlocks(probs, blocks, rng.Float64()*total)
	default:
		return scan(probs, rng.Float64()*total)
	}
	if s.topPOn() {
		target, cum := s.TopP*z, 0.0
		n := len(c)
		for i, x := range c {
			cum += x.w
			if cum >= target {
				n = i + 1
				break
			}
		}
		c, z = c[:n], cum
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

// scan returns the first index where the running sum passes u. It skips
// whole blocks by their sums (independent adds run in parallel in the CPU;
// a running sum is one long dependency chain) and walks only the block
// that holds u.
func scan(probs []float32, u float64) int {
	const blk = 64
	i := 0
	for ; i+blk <= len(probs); i += blk {
		b := probs[i : i+blk : i+blk]
		var s0, s1, s2, s3 float32
		for j := 0; j < blk; j += 4 {
			s0 += b[j]
			s1 += b[j+1]
			s2 += b[j+2]
			s3 += b[j+3]
		}
		bs := float64(s0 + s1 + s2 + s3)
		if u < bs {
			break
		}
		u -= bs
	}
	last := i
	for ; i < len(probs); i++ {
		x := probs[i]
		u -= float64(x)
		if u < 0 {
			return i
		}
		if x > 0 {
			last = i
		}
	}
	// Rounding left u at ~0 past the end: the last token with mass.
	for last > 0 && probs[last] == 0 {
		last--
	}
	return last
}

// topK returns the k largest values (ties: lower id first) in c's storage,
// using a min-heap on (value, -id), sorted from the largest.
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
