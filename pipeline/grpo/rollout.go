package grpo

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/tagpr/tagpr/onnx/lm"
)

// rollouts are the completions of some prompts, NumGenerations each in
// prompt order (group-major), with their rewards.
type rollouts struct {
	prompts   []*Prompt
	comps     []lm.Completion
	samples   []Sample
	perReward [][]float64 // [reward][completion]
	total     []float64   // Σ weight·reward per completion
}

// rollout generates NumGenerations completions of each prompt with the
// current weights, seeded by seed, and scores them; generation and scoring
// times add to times.
func (t *Trainer) rollout(ctx context.Context, prompts []*Prompt, seed uint64, times *Times) (*rollouts, error) {
	cfg, G := t.cfg, t.cfg.NumGenerations
	start := time.Now()
	ids := make([][]int64, len(prompts))
	for i, p := range prompts {
		ids[i] = p.IDs
	}
	pad := t.opt.Pad
	// The generation model divides its logits by τ itself
	// (lm.WithTemperature): sampling at 1 draws from the policy and reports
	// its log-probs.
	comps, _, err := t.gen.Generate(ctx, ids, lm.GenerateOptions{MaxNewTokens: cfg.MaxCompletionLength, NumGenerations: G,
		Sampling: lm.Sampling{Temperature: 1, TopK: cfg.TopK, TopP: cfg.TopP},
		Seed:     seed, EOS: t.opt.EOS, Pad: &pad})
	if err != nil {
		return nil, err
	}
	tGen := time.Now()
	times.Generate += tGen.Sub(start).Seconds()
	ro := &rollouts{prompts: prompts, comps: comps, samples: make([]Sample, len(comps))}
	for i, c := range comps {
		ro.samples[i] = Sample{Prompt: prompts[i/G], Index: c.Sample, Tokens: c.Tokens, Finish: c.Finish}
		if t.opt.Detokenize != nil {
			if ro.samples[i].Text, err = t.opt.Detokenize(c.Tokens); err != nil {
				return nil, fmt.Errorf("decode a completion of %s: %w", prompts[i/G].ID, err)
			}
		}
	}
	if ro.perReward, ro.total, err = t.score(ctx, ro.samples, times); err != nil {
		return nil, err
	}
	times.Score += time.Since(tGen).Seconds()
	return ro, nil
}

// DynamicSampling is what a step's dynamic sampling did (StepLog).
type DynamicSampling struct {
	Rounds int `json:"rounds"` // generation rounds after the first
	Groups int `json:"groups"` // groups generated in all rounds
	// ZeroStdFraction is the share of all generated groups whose rewards
	// were all equal: frac_reward_zero_std as it would be without
	// dynamic sampling.
	ZeroStdFraction float64 `json:"frac_reward_zero_std"`
}

// dynamicSamplingStream keeps the replacement prompts' draw apart from the
// epoch shuffle (both are seeded by the run's seed).
const dynamicSamplingStream = 0xd5a9

// resample is DAPO's dynamic sampling: for up to DynamicSamplingRounds
// more rounds it draws as many prompts as ro has groups whose rewards are
// all equal (no advantage, so no learning signal), generates and scores
// them, and puts each new group with unequal rewards in an equal group's
// place. The batch keeps its shape; groups still equal after the last
// round stay. Draws and generation are seeded by the step, so a resumed run
// draws the same.
func (t *Trainer) resample(ctx context.Context, ro *rollouts, step int, times *Times) (*DynamicSampling, error) {
	G := t.cfg.NumGenerations
	zero := zeroStdGroups(ro.total, G)
	ds := &DynamicSampling{Groups: len(ro.prompts)}
	zeros := len(zero)
	rng := rand.New(rand.NewPCG(stepSeed(t.cfg.Seed, step), dynamicSamplingStream))
	for round := 1; round <= t.cfg.DynamicSamplingRounds && len(zero) > 0; round++ {
		draw := make([]*Prompt, len(zero))
		for i := range draw {
			draw[i] = &t.prompts[rng.IntN(len(t.prompts))]
		}
		more, err := t.rollout(ctx, draw, stepSeed(t.cfg.Seed, step)^uint64(round)*0xbf58476d1ce4e5b9, times)
		if err != nil {
			return nil, err
		}
		ds.Rounds++
		ds.Groups += len(draw)
		equal := map[int]bool{}
		for _, g := range zeroStdGroups(more.total, G) {
			equal[g] = true
		}
		zeros += len(equal)
		for g := range draw {
			if equal[g] {
				continue
			}
			ro.replaceGroup(zero[0], more, g, G)
			zero = zero[1:]
		}
	}
	ds.ZeroStdFraction = float64(zeros) / float64(ds.Groups)
	return ds, nil
}

// replaceGroup puts group src of from in the place of group dst.
func (ro *rollouts) replaceGroup(dst int, from *rollouts, src, G int) {
	ro.prompts[dst] = from.prompts[src]
	d, s := dst*G, src*G
	copy(ro.comps[d:d+G], from.comps[s:s+G])
	copy(ro.samples[d:d+G], from.samples[s:s+G])
	copy(ro.total[d:d+G], from.total[s:s+G])
	for k := range ro.perReward {
		copy(ro.perReward[k][d:d+G], from.perReward[k][s:s+G])
	}
}

// zeroStdGroups lists the groups (G consecutive rewards each) whose
// rewards are all equal, as Advantages counts them.
func zeroStdGroups(rewards []float64, G int) []int {
	var out []int
	for g := 0; g+G <= len(rewards); g += G {
		if stdUnbiased(rewards[g:g+G]) <= 1e-8 {
			out = append(out, g/G)
		}
	}
	return out
}
