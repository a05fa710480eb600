package grpo

import (
	"fmt"
	"math"

	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/train"
)

// advantageEps is added to the std before dividing, as TRL does.
const advantageEps = 1e-4

// Advantages computes A_i = (r_i − mean_group)/(std + 1e-4) for rewards laid
// out group-major (G consecutive completions per prompt), as TRL does: the
// std is the unbiased one of the group (scale "group") or of the whole batch
// ("batch"); "none" only centres. It also returns TRL's
// frac_reward_zero_std: the share of completions whose std (the group's, or
// with "batch" the batch's) is 0 — groups whose rewards are all equal carry
// no learning signal.
func Advantages(rewards []float64, G int, scale string) (adv []float64, zeroStd float64, err error) {
	if G < 2 || len(rewards)%G != 0 {
		return nil, 0, fmt.Errorf("advantages: %d rewards in groups of %d", len(rewards), G)
	}
	switch scale {
	case ScaleGroup, ScaleBatch, ScaleNone:
	default:
		return nil, 0, fmt.Errorf("advantages: scale_rewards %q: want group, batch or none", scale)
	}
	adv = make([]float64, len(rewards))
	batchStd := stdUnbiased(rewards)
	groups := len(rewards) / G
	zero := 0
	for g := 0; g < groups; g++ {
		rs := rewards[g*G : (g+1)*G]
		mean := meanOf(rs)
		std := stdUnbiased(rs)
		if std <= 1e-8 { // torch.isclose(std, 0)'s absolute tolerance
			zero++
		}
		for i, r := range rs {
			a := r - mean
			switch scale {
			case ScaleGroup:
				a /= std + advantageEps
			case ScaleBatch:
				a /= batchStd + advantageEps
			}
			adv[g*G+i] = a
		}
	}
	if scale == ScaleBatch {
		zero = 0
		if batchStd <= 1e-8 {
			zero = groups
		}
	}
	return adv, float64(zero) / float64(groups), nil
}

func meanOf(x []float64) float64 {
	s := 0.0
	for _, v := range x {
		s += v
	}
	return s / float64(len(x))
}

// stdUnbiased is torch.std's default (Bessel-corrected); 0 for one value.
func stdUnbiased(x []float64) float64 {
	if len(x) < 2 {
		return 0
	}
	m := meanOf(x)
	s := 0.0
	for _, v := range x {
		s += (v - m) * (v - m)
	}
	return math.Sqrt(s / float64(len(x)-1))
}

// batch is one step's training batch at the graph's fixed [B,T]: each row
// is prompt + completion, right-padded; the loss mask marks completion
// tokens; OldLogprobs[b,t] is the generation's log-prob of token t.
type batch struct {
	*train.LMBatch
	Truncated []bool // [B] the completion hit the length limit
}

// buildBatch lays out the completions (row r continues prompts[r/G]).
// With maskTruncated, completions that ended by the length limit get no
// loss (TRL's mask_truncated_completions).
func buildBatch(prompts [][]int64, comps []lm.Completion, adv []float64, G, T int, pad int64, maskTruncated bool) (*batch, error) {
	B := len(comps)
	if B != len(prompts)*G || len(adv) != B {
		return nil, fmt.Errorf("grpo batch: %d completions and %d advantages for %d prompts × %d", B, len(adv), len(prompts), G)
	}
	rows := make([][]int64, B)
	plen := make([]int, B)
	for r, c := range comps {
		p := prompts[r/G]
		if len(p)+len(c.Tokens) > T {
			return nil, fmt.Errorf("grpo batch: row %d: prompt %d + completion %d tokens exceed the batch length %d", r, len(p), len(c.Tokens), T)
		}
		if len(c.LogProbs) != len(c.Tokens) {
			return nil, fmt.Errorf("grpo batch: row %d: %d log-probs for %d tokens (generate with log-probs)", r, len(c.LogProbs), len(c.Tokens))
		}
		rows[r] = append(append(make([]int64, 0, len(p)+len(c.Tokens)), p...), c.Tokens...)
		plen[r] = len(p)
	}
	b := &batch{LMBatch: train.NewLMBatch(rows, T, pad, plen), Truncated: make([]bool, B)}
	b.Advantages, b.OldLogprobs, b.RefLogprobs = make([]float32, B), make([]float32, B*T), make([]float32, B*T)
	for r, c := range comps {
		b.Advantages[r] = float32(adv[r])
		copy(b.OldLogprobs[r*T+plen[r]:], c.LogProbs)
		b.Truncated[r] = c.Finish == lm.FinishLength
		if maskTruncated && b.Truncated[r] {
			clear(b.LossMask[r*T : (r+1)*T])
		}
	}
	return b, nil
}

// fillReference writes the reference model's log-prob of each token t ≥ 1
// into RefLogprobs[b*T+t] (the scorer returns log π(token t+1 | ≤ t), [B,T-1]).
func (b *batch) fillReference(s *train.TokenScorer) error {
	lp, err := s.Logprobs(b.LMBatch)
	if err != nil {
		return fmt.Errorf("reference log-probs: %w", err)
	}
	B, T := int(b.B), int(b.T)
	if len(lp) != B*(T-1) {
		return fmt.Errorf("reference log-probs: %d values, want %d×%d", len(lp), B, T-1)
	}
	for r := 0; r < B; r++ {
		b.RefLogprobs[r*T] = 0
		copy(b.RefLogprobs[r*T+1:(r+1)*T], lp[r*(T-1):(r+1)*(T-1)])
	}
	return nil
}
