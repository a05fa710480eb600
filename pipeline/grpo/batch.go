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

// batch is one step's training batch: each prompt (left-padded to the
// longest) runs once through the model for its G completions (onnx/train's
// shared-prefix graphs); loss inputs are laid out [P·G, Tc+1], entry j+1
// about completion token j.
type batch struct {
	*train.SharedPrefixBatch
	Truncated []bool // [P·G] the completion hit the length limit
}

// buildBatch lays out the prompts and their completions (row r continues
// prompts[r/G]) with the generation's log-probs as the old ones. With
// maskTruncated, completions that ended by the length limit get no loss
// (TRL's mask_truncated_completions).
func buildBatch(s train.SharedPrefix, prompts [][]int64, comps []lm.Completion, adv []float64, pad int64, maskTruncated bool) (*batch, error) {
	if len(adv) != len(comps) {
		return nil, fmt.Errorf("grpo batch: %d advantages for %d completions", len(adv), len(comps))
	}
	toks := make([][]int64, len(comps))
	for r, c := range comps {
		if len(c.LogProbs) != len(c.Tokens) {
			return nil, fmt.Errorf("grpo batch: row %d: %d log-probs for %d tokens (generate with log-probs)", r, len(c.LogProbs), len(c.Tokens))
		}
		toks[r] = c.Tokens
	}
	sb, err := train.NewSharedPrefixBatch(s, prompts, toks, pad)
	if err != nil {
		return nil, fmt.Errorf("grpo batch: %w", err)
	}
	b := &batch{SharedPrefixBatch: sb, Truncated: make([]bool, len(comps))}
	w := int(s.CompletionLen) + 1
	for r, c := range comps {
		sb.Advantages[r] = float32(adv[r])
		copy(sb.OldLogprobs[r*w+1:], c.LogProbs)
		b.Truncated[r] = c.Finish == lm.FinishLength
		if maskTruncated && b.Truncated[r] {
			clear(sb.LossMask[r*w : (r+1)*w])
		}
	}
	return b, nil
}

// fillReference writes the reference model's log-prob of each completion
// token into RefLogprobs (the scorer is NewSharedPrefixScorer's).
func (b *batch) fillReference(s *train.TokenScorer) error {
	lp, err := s.SharedLogprobs(b.SharedPrefixBatch)
	if err != nil {
		return fmt.Errorf("reference log-probs: %w", err)
	}
	tc := int(b.S.CompletionLen)
	for r := 0; r < len(lp)/tc; r++ {
		copy(b.RefLogprobs[r*(tc+1)+1:(r+1)*(tc+1)], lp[r*tc:(r+1)*tc])
	}
	return nil
}
