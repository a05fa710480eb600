package grpo

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/train"
)

// stepSeed fixes a step's sampling so a resumed run draws the same completions.
func stepSeed(seed uint64, step int) uint64 { return seed ^ (uint64(step) * 0x9e3779b97f4a7c15) }

// step is one GRPO step on the prompts idx (a train.StepFunc): generate
// G completions of each with the current weights, score them, turn the
// rewards into group advantages, lay out the batch with the sampling
// log-probs (and the reference's), and update the weights NumIterations
// times. It returns the step's StepLog; docs/rl-step.md follows it.
func (t *Trainer) step(ctx context.Context, at train.RunState, idx []int) (any, error) {
	cfg, G := t.cfg, t.cfg.NumGenerations
	sl := StepLog{Stage: t.opt.Name, Step: at.Step, Epoch: at.Epoch, Rewards: map[string]Stat{}}
	start := time.Now()
	batch := make([]*Prompt, len(idx))
	for i, k := range idx {
		batch[i] = &t.prompts[k]
	}
	if err := t.dev.refresh(t.gen); err != nil { // float16 copies of the updated weights
		return nil, err
	}
	ro, err := t.rollout(ctx, batch, stepSeed(cfg.Seed, at.Step), &sl.Seconds)
	if err != nil {
		return nil, err
	}
	if cfg.DynamicSamplingRounds > 0 {
		if sl.DynamicSampling, err = t.resample(ctx, ro, at.Step, &sl.Seconds); err != nil {
			return nil, err
		}
	}
	comps, samples, perReward, rewards := ro.comps, ro.samples, ro.perReward, ro.total
	ids := make([][]int64, len(ro.prompts))
	for i, p := range ro.prompts {
		ids[i] = p.IDs
	}
	lens := make([]float64, len(comps))
	sl.Length.Min = math.MaxInt
	for i, c := range comps {
		lens[i] = float64(len(c.Tokens))
		sl.Length.Min, sl.Length.Max = min(sl.Length.Min, len(c.Tokens)), max(sl.Length.Max, len(c.Tokens))
		if c.Finish == lm.FinishLength {
			sl.Truncated += 1 / float64(len(comps))
		}
	}
	sl.Length.Mean = meanOf(lens)
	sl.Reward = statOf(rewards)
	var names []string
	var terms [][]float64
	for k, r := range t.rewards {
		sl.Rewards[r.Name()] = statOf(perReward[k])
		if t.weights[k] == 0 {
			continue // logged, but no part of the reward
		}
		term := make([]float64, len(rewards))
		for i, x := range perReward[k] {
			term[i] = t.weights[k] * x
		}
		names, terms = append(names, r.Name()), append(terms, term)
	}
	sl.Contributions = contributions(names, terms, rewards, G)
	adv, zeroStd, err := Advantages(rewards, G, cfg.ScaleRewards)
	if err != nil {
		return nil, err
	}
	sl.ZeroStdFraction, sl.Advantage = zeroStd, statOf(adv)
	pad := t.opt.Pad
	tScore := time.Now()

	// From here on the step runs to its end: weights change.
	b, err := buildBatch(t.shared, ids, comps, adv, pad, cfg.MaskTruncatedCompletions)
	if err != nil {
		return nil, err
	}
	if t.ref != nil {
		if err := b.fillReference(t.ref); err != nil {
			return nil, err
		}
	}
	tRef := time.Now()
	sl.Seconds.Reference = tRef.Sub(tScore).Seconds()
	if err := t.update(b, &sl); err != nil {
		return nil, err
	}
	sl.Seconds.Total = time.Since(start).Seconds()
	if t.opt.Callbacks.OnStep != nil {
		scored := make([]Scored, len(comps))
		for i, c := range comps {
			rs := make([]float64, len(t.rewards))
			for k := range t.rewards {
				rs[k] = perReward[k][i]
			}
			scored[i] = Scored{Sample: samples[i], LogProbs: c.LogProbs, Rewards: rs, Reward: rewards[i], Advantage: adv[i]}
		}
		if err := t.opt.Callbacks.OnStep(at.Step, scored); err != nil {
			return nil, err
		}
	}
	return sl, nil
}

// score runs every reward on the samples and sums them with their weights:
// perReward[k][i] is reward k of sample i, total[i] = Σ_k weight_k·perReward[k][i].
// Each reward's time adds to times.Rewards.
func (t *Trainer) score(ctx context.Context, samples []Sample, times *Times) (perReward [][]float64, total []float64, err error) {
	perReward = make([][]float64, len(t.rewards))
	total = make([]float64, len(samples))
	if times.Rewards == nil {
		times.Rewards = make(map[string]float64, len(t.rewards))
	}
	for k, r := range t.rewards {
		start := time.Now()
		v, err := r.Score(ctx, samples)
		times.Rewards[r.Name()] += time.Since(start).Seconds()
		if err != nil {
			return nil, nil, fmt.Errorf("reward %s: %w", r.Name(), err)
		}
		if len(v) != len(samples) {
			return nil, nil, fmt.Errorf("reward %s gave %d values for %d completions", r.Name(), len(v), len(samples))
		}
		for i, x := range v {
			if math.IsNaN(x) || math.IsInf(x, 0) {
				s := samples[i]
				return nil, nil, fmt.Errorf("reward %s gave completion %d of %s the value %v (want a finite value)", r.Name(), s.Index, s.Prompt.ID, x)
			}
			total[i] += t.weights[k] * x
		}
		perReward[k] = v
	}
	return perReward, total, nil
}

// update applies NumIterations updates on b through train.Trainer.Step:
// an update whose loss or gradient is not finite is skipped, leaving weights
// and moments untouched, and too many in a row stop the run.
func (t *Trainer) update(b *batch, sl *StepLog) error {
	tr := t.tr
	in, err := b.Values(tr.Graph)
	if err != nil {
		return err
	}
	defer func() {
		for _, v := range in {
			v.Destroy()
		}
	}()
	var kl float64
	applied := 0
	step := tr.Step
	if d := t.dev.trainer(); d != nil {
		step = d.Step
	}
	for it := 0; it < t.cfg.NumIterations; it++ {
		res, err := step(in)
		if err != nil {
			return err
		}
		sl.Seconds.ForwardBackward += res.ForwardBackward.Seconds()
		if res.Skipped {
			sl.Skipped++
			continue
		}
		sl.Seconds.Optimizer += res.Optimizer.Seconds()
		applied++
		sl.Loss += res.Loss
		sl.GradNorm += res.GradNorm
		sl.LR = res.LR
		for name, dst := range map[string]*float64{train.ClipLowOutput: &sl.ClipLow, train.ClipHighOutput: &sl.ClipHigh,
			train.ClipRegionOutput: &sl.ClipRegion, train.PolicyKLOutput: &kl} {
			if v := res.Outputs[name]; len(v) == 1 {
				*dst += float64(v[0])
			}
		}
	}
	if applied > 0 {
		n := float64(applied)
		sl.Loss, sl.GradNorm = sl.Loss/n, sl.GradNorm/n
		sl.ClipLow, sl.ClipHigh, sl.ClipRegion = sl.ClipLow/n, sl.ClipHigh/n, sl.ClipRegion/n
		if t.cfg.Beta > 0 {
			kl /= n
			sl.KL = &kl
		}
	}
	return nil
}
