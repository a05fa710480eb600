package grpo

// LogFile is the per-step JSONL log, beside the checkpoints.
const LogFile = "rl_log.jsonl"

// Stat is a mean and standard deviation; the std is Bessel-corrected
// (torch.std's default, TRL's nanstd), as TRL logs reward_std and
// rewards/NAME/std.
type Stat struct {
	Mean float64 `json:"mean"`
	Std  float64 `json:"std"`
}

func statOf(x []float64) Stat {
	if len(x) == 0 {
		return Stat{}
	}
	return Stat{Mean: meanOf(x), Std: stdUnbiased(x)}
}

// Contribution is one weighted reward's part of a step's reward (the
// reward is Σ weight·reward, so each addend weight·reward is a term).
type Contribution struct {
	// Share is the term's part of the mean reward: mean(term) / mean(reward).
	Share float64 `json:"share"`
	// Signal is the term's part of the within-group reward variance, which
	// the advantages are made of: Σ_groups cov(term, reward) /
	// Σ_groups var(reward). The terms' signals sum to 1 (all 0 when every
	// group's rewards are equal); a term equal across a group's completions
	// adds nothing to it, however large its share.
	Signal float64 `json:"signal"`
}

// contributions computes each term's Contribution: terms[k][i] is weighted
// reward k of completion i, and total[i] their sum; completions come
// group-major, G per prompt.
func contributions(names []string, terms [][]float64, total []float64, G int) map[string]Contribution {
	mean := meanOf(total)
	var variance float64
	covs := make([]float64, len(names))
	for g := 0; g+G <= len(total); g += G {
		gm := meanOf(total[g : g+G])
		for i := g; i < g+G; i++ {
			d := total[i] - gm
			variance += d * d
			for k := range names {
				covs[k] += terms[k][i] * d
			}
		}
	}
	out := make(map[string]Contribution, len(names))
	for k, n := range names {
		var c Contribution
		if mean != 0 {
			c.Share = meanOf(terms[k]) / mean
		}
		if variance > 0 {
			c.Signal = covs[k] / variance
		}
		out[n] = c
	}
	return out
}

// LengthStat summarizes completion lengths in tokens.
type LengthStat struct {
	Mean float64 `json:"mean"`
	Min  int     `json:"min"`
	Max  int     `json:"max"`
}

// Times splits a step's wall time, in seconds.
type Times struct {
	Generate        float64 `json:"generate"`
	Score           float64 `json:"score"`     // decoding and rewards
	Reference       float64 `json:"reference"` // reference-model log-probs (beta > 0)
	ForwardBackward float64 `json:"forward_backward"`
	Optimizer       float64 `json:"optimizer"` // clipping and AdamW
	Total           float64 `json:"total"`
	// Rewards splits Score: each reward's own time (a reward model's share
	// of the step, say), by name.
	Rewards map[string]float64 `json:"rewards,omitempty"`
}

// Add sums o into t.
func (t *Times) Add(o Times) {
	t.Generate += o.Generate
	t.Score += o.Score
	t.Reference += o.Reference
	t.ForwardBackward += o.ForwardBackward
	t.Optimizer += o.Optimizer
	t.Total += o.Total
	for k, v := range o.Rewards {
		if t.Rewards == nil {
			t.Rewards = map[string]float64{}
		}
		t.Rewards[k] += v
	}
}

// StepLog is one line of LogFile. Loss, KL, clip ratios and gradient norm
// are means over the step's applied updates (num_iterations of them, less
// any skipped for a non-finite loss or gradient).
type StepLog struct {
	Stage   string          `json:"stage"` // the run's name (Options.Name)
	Step    int             `json:"step"`
	Epoch   int             `json:"epoch"`
	Reward  Stat            `json:"reward"`
	Rewards map[string]Stat `json:"rewards"` // each reward, by name
	// Contributions say how much each weighted reward makes of the reward
	// and of the learning signal, by name.
	Contributions   map[string]Contribution `json:"reward_contributions,omitempty"`
	ZeroStdFraction float64                 `json:"frac_reward_zero_std"` // of the groups trained on
	// DynamicSampling says what dynamic sampling did (dynamic_sampling_rounds > 0).
	DynamicSampling *DynamicSampling `json:"dynamic_sampling,omitempty"`
	Advantage       Stat             `json:"advantage"`
	KL              *float64         `json:"kl,omitempty"` // only with beta > 0
	// TRL's clip metrics: the share of completion tokens whose ratio is
	// clipped where the clip is active for the advantage's sign.
	ClipLow    float64    `json:"clip_ratio/low_mean"`    // ρ < 1−ε, A < 0
	ClipHigh   float64    `json:"clip_ratio/high_mean"`   // ρ > 1+ε_high, A > 0
	ClipRegion float64    `json:"clip_ratio/region_mean"` // either
	Loss       float64    `json:"loss"`
	GradNorm   float64    `json:"grad_norm"`
	LR         float64    `json:"lr"`
	Skipped    int        `json:"skipped,omitempty"`
	Length     LengthStat `json:"completion_length"`
	Truncated  float64    `json:"truncated_fraction"` // ended by max_completion_length
	Seconds    Times      `json:"seconds"`
}

// Metrics implements train.Metered with TRL's metric names.
func (l StepLog) Metrics() map[string]float64 {
	m := map[string]float64{
		"reward": l.Reward.Mean, "reward_std": l.Reward.Std, "frac_reward_zero_std": l.ZeroStdFraction,
		"clip_ratio/low_mean": l.ClipLow, "clip_ratio/high_mean": l.ClipHigh, "clip_ratio/region_mean": l.ClipRegion,
		"loss": l.Loss, "grad_norm": l.GradNorm, "learning_rate": l.LR, "epoch": float64(l.Epoch),
		"completions/mean_length": l.Length.Mean, "completions/min_length": float64(l.Length.Min),
		"completions/max_length": float64(l.Length.Max), "completions/clipped_ratio": l.Truncated,
	}
	for name, s := range l.Rewards {
		m["rewards/"+name+"/mean"], m["rewards/"+name+"/std"] = s.Mean, s.Std
	}
	for name, c := range l.Contributions {
		m["rewards/"+name+"/share"], m["rewards/"+name+"/signal"] = c.Share, c.Signal
	}
	if l.KL != nil {
		m["kl"] = *l.KL
	}
	if d := l.DynamicSampling; d != nil {
		m["dynamic_sampling/rounds"], m["dynamic_sampling/frac_reward_zero_std"] = float64(d.Rounds), d.ZeroStdFraction
	}
	return m
}
