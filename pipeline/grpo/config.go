package grpo

import (
	"fmt"
	"math"

	"github.com/tagpr/tagpr/onnx/onnxpb"
	"github.com/tagpr/tagpr/onnx/train"
)

// Values of Config.LossType.
const (
	LossGRPO   = "grpo"    // mean over sequences of each sequence's token mean
	LossDAPO   = "dapo"    // token mean over the batch's active tokens
	LossDrGRPO = "dr_grpo" // token sum / (B · max_completion_length)
)

// Values of Config.ScaleRewards.
const (
	ScaleGroup = "group" // divide by the group's reward std
	ScaleBatch = "batch" // divide by the whole batch's reward std
	ScaleNone  = "none"  // centre on the group mean only (Dr. GRPO)
)

// Config holds the knobs of a GRPO run. Those TRL's GRPOConfig has carry
// its names (as Go fields and as JSON keys) and, where the zero value
// stands for "unset", its defaults (WithDefaults); the rest say in their
// comment how they map to TRL.
type Config struct {
	// NumGenerations is G, the completions sampled per prompt (≥ 2: the
	// advantages compare completions of one prompt).
	NumGenerations int `json:"num_generations"`
	// MaxPromptLength, when > 0, refuses longer prompts (TRL 1.x dropped
	// the knob; tagpr keeps it as a guard, it never cuts a prompt).
	MaxPromptLength     int `json:"max_prompt_length"`
	MaxCompletionLength int `json:"max_completion_length"`
	// Temperature τ defines the policy softmax(logits/τ): completions are
	// sampled from it and the old, reference and current log-probs are all
	// under it. 0 → 1. TopK and TopP only restrict sampling (0: off).
	Temperature float64 `json:"temperature"`
	TopK        int     `json:"top_k"`
	TopP        float64 `json:"top_p"`

	// Beta is the KL coefficient (0: no reference model, TRL's default).
	Beta float64 `json:"beta"`
	// Epsilon clips the ratio below at 1−ε (0 → 0.2; < 1); EpsilonHigh
	// above at 1+ε_high (0 → Epsilon).
	Epsilon     float64 `json:"epsilon"`
	EpsilonHigh float64 `json:"epsilon_high"`
	// LossType aggregates the token losses: grpo, dapo ("" → dapo, TRL's
	// default) or dr_grpo.
	LossType string `json:"loss_type"`
	// ScaleRewards: group ("" → group), batch or none.
	ScaleRewards string `json:"scale_rewards"`
	// NumIterations is the updates per generated batch (0 → 1).
	NumIterations int `json:"num_iterations"`
	// MaskTruncatedCompletions gives completions cut by
	// MaxCompletionLength no loss.
	MaskTruncatedCompletions bool `json:"mask_truncated_completions"`
	// UseBiasCorrectionKL multiplies the KL term by the importance ratio
	// (nil → true, TRL's default).
	UseBiasCorrectionKL *bool `json:"use_bias_correction_kl,omitempty"`
	// DynamicSamplingRounds is DAPO's dynamic sampling (TRL has no such
	// knob): up to this many more generation rounds per step replace the
	// groups whose rewards are all equal (no advantage, no learning signal)
	// by groups of freshly drawn prompts. 0: off.
	DynamicSamplingRounds int `json:"dynamic_sampling_rounds,omitempty"`
	// LoRA, when set, trains low-rank adapters on the policy's linear
	// layers instead of every weight (TRL's peft_config): the base weights
	// stay frozen, training and generation share one copy of them, the
	// policy the rollouts sample is base + adapters exactly (no merge), and
	// the KL reference is the base. Result.Adapters says what to merge.
	LoRA *train.LoRA `json:"lora,omitempty"`
	// GradientCheckpointing recomputes activations in the backward pass
	// instead of keeping them from the forward pass (TRL's, from
	// transformers' TrainingArguments), segment by segment: far less memory
	// for one more forward pass. Gradients are unchanged.
	GradientCheckpointing bool `json:"gradient_checkpointing,omitempty"`
	// RewardWeights weigh the rewards, in their order (nil: all 1). The
	// reward of a completion is Σ weight·reward.
	RewardWeights []float64 `json:"reward_weights,omitempty"`

	// Steps is the generation rounds; each makes NumIterations optimizer
	// updates (TRL's max_steps = Steps × NumIterations).
	Steps int `json:"steps"`
	// PromptsPerStep is the prompts sampled per round; the training batch
	// is their PromptsPerStep·G completions (TRL's
	// per_device_train_batch_size with one device and no accumulation).
	PromptsPerStep int `json:"prompts_per_step"`
	// LearningRate is AdamW's peak rate (0 → 1e-6, TRL's default), reached
	// after WarmupSteps and decayed by a cosine to a tenth of it
	// (transformers' cosine_with_min_lr with min_lr_rate 0.1; TRL's default
	// schedule is linear to 0).
	LearningRate float64 `json:"learning_rate"`
	// WarmupSteps counts optimizer updates, as TRL's does; update k < W
	// runs at (k+1)/W of the peak, so update W−1 reaches it, where TRL (its
	// transformers scheduler) runs update k at k/W, the first at rate 0.
	WarmupSteps int     `json:"warmup_steps"`
	WeightDecay float64 `json:"weight_decay"`
	// MaxGradNorm clips the global gradient norm; 0 does not clip (the
	// Hugging Face Trainer's default is 1).
	MaxGradNorm float64 `json:"max_grad_norm"`
	// SaveSteps checkpoints every N steps, generation rounds of
	// NumIterations updates each (TRL's save_steps counts updates; 0: only
	// at the end and when stopped).
	SaveSteps int    `json:"save_steps"`
	Seed      uint64 `json:"seed"`
	// OutputDir holds checkpoints/ and the step log (see Trainer.Train).
	OutputDir string `json:"output_dir"`
}

// WithDefaults fills the knobs whose zero value means "unset" with TRL's
// defaults: ε 0.2, ε_high = ε, loss dapo, scale_rewards group, one
// iteration, temperature 1, use_bias_correction_kl true, learning rate 1e-6.
func (c Config) WithDefaults() Config {
	if c.Epsilon == 0 {
		c.Epsilon = 0.2
	}
	if c.EpsilonHigh == 0 {
		c.EpsilonHigh = c.Epsilon
	}
	if c.LossType == "" {
		c.LossType = LossDAPO
	}
	if c.ScaleRewards == "" {
		c.ScaleRewards = ScaleGroup
	}
	if c.NumIterations == 0 {
		c.NumIterations = 1
	}
	if c.Temperature == 0 {
		c.Temperature = 1
	}
	if c.UseBiasCorrectionKL == nil {
		on := true
		c.UseBiasCorrectionKL = &on
	}
	if c.LearningRate == 0 {
		c.LearningRate = 1e-6
	}
	return c
}

// BiasCorrectionKL is UseBiasCorrectionKL with its default.
func (c Config) BiasCorrectionKL() bool {
	return c.UseBiasCorrectionKL == nil || *c.UseBiasCorrectionKL
}

// Validate refuses settings that cannot train, naming the knob (call it on
// WithDefaults' result).
func (c Config) Validate() error {
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	switch {
	case c.Steps < 1 || c.PromptsPerStep < 1:
		return fmt.Errorf("steps %d, prompts_per_step %d: want ≥ 1", c.Steps, c.PromptsPerStep)
	case c.NumGenerations < 2:
		return fmt.Errorf("num_generations %d: want ≥ 2 (advantages compare completions of one prompt)", c.NumGenerations)
	case c.MaxCompletionLength < 1 || c.MaxPromptLength < 0:
		return fmt.Errorf("max_completion_length %d, max_prompt_length %d: want ≥ 1 and ≥ 0", c.MaxCompletionLength, c.MaxPromptLength)
	case !(c.Temperature > 0) || !finite(c.Temperature):
		return fmt.Errorf("temperature %v: want > 0 (GRPO needs sampled, different completions)", c.Temperature)
	case c.TopK < 0 || !(c.TopP >= 0 && c.TopP <= 1):
		return fmt.Errorf("top_k %d, top_p %v: want top_k ≥ 0 and top_p in [0, 1]", c.TopK, c.TopP)
	case c.Beta < 0 || c.Epsilon < 0 || c.EpsilonHigh < 0 || !finite(c.Beta) || !finite(c.Epsilon) || !finite(c.EpsilonHigh):
		return fmt.Errorf("beta %v, epsilon %v, epsilon_high %v: want finite values ≥ 0", c.Beta, c.Epsilon, c.EpsilonHigh)
	case c.Epsilon >= 1:
		return fmt.Errorf("epsilon %v: want < 1 (the ratio is clipped below at 1 − epsilon, which is ≤ 0 here: no clip at all)", c.Epsilon)
	case c.LossType != LossGRPO && c.LossType != LossDAPO && c.LossType != LossDrGRPO:
		return fmt.Errorf("loss_type %q: want grpo, dapo or dr_grpo", c.LossType)
	case c.ScaleRewards != ScaleGroup && c.ScaleRewards != ScaleBatch && c.ScaleRewards != ScaleNone:
		return fmt.Errorf("scale_rewards %q: want group, batch or none", c.ScaleRewards)
	case c.NumIterations < 1:
		return fmt.Errorf("num_iterations %d: want ≥ 1", c.NumIterations)
	case c.DynamicSamplingRounds < 0 || c.DynamicSamplingRounds > maxDynamicSamplingRounds:
		return fmt.Errorf("dynamic_sampling_rounds %d: want 0 (off) to %d", c.DynamicSamplingRounds, maxDynamicSamplingRounds)
	case !(c.LearningRate > 0) || !finite(c.LearningRate):
		return fmt.Errorf("learning_rate %v: want > 0", c.LearningRate)
	case c.WarmupSteps < 0 || c.SaveSteps < 0 || !(c.WeightDecay >= 0) || !(c.MaxGradNorm >= 0) || !finite(c.WeightDecay) || !finite(c.MaxGradNorm):
		return fmt.Errorf("warmup_steps %d, save_steps %d, weight_decay %v, max_grad_norm %v: want finite values ≥ 0",
			c.WarmupSteps, c.SaveSteps, c.WeightDecay, c.MaxGradNorm)
	}
	if l := c.LoRA; l != nil {
		switch {
		case l.Rank < 1:
			return fmt.Errorf("lora rank %d: want ≥ 1 (or no lora: every weight trains)", l.Rank)
		case !(l.Alpha >= 0) || !finite(l.Alpha):
			return fmt.Errorf("lora alpha %v: want a finite value ≥ 0 (0: the rank)", l.Alpha)
		}
		if err := train.ValidatePatterns(l.Targets); err != nil {
			return fmt.Errorf("lora targets: %w", err)
		}
	}
	for i, w := range c.RewardWeights {
		if !finite(w) {
			return fmt.Errorf("reward_weights[%d] = %v: want a finite value", i, w)
		}
	}
	return nil
}

// maxDynamicSamplingRounds bounds DynamicSamplingRounds: each round is a
// generation pass, and past a few the groups left equal are prompts the
// policy always solves (or always fails).
const maxDynamicSamplingRounds = 16

// batchRows is B of the fixed training shape.
func (c Config) batchRows() int { return c.PromptsPerStep * c.NumGenerations }

// settings decide a run's result: a resume must have the same (the
// checkpoint interval and where the run is written may change). extra are
// the caller's; the run's own take precedence.
func (c Config) settings(model *onnxpb.ModelProto, rewards []Reward, prompts []Prompt, extra train.RunSettings) (train.RunSettings, error) {
	s, err := train.SettingsOf(c, "output_dir", "save_steps")
	if err != nil {
		return nil, err
	}
	if s["model_sha256"], err = train.ModelSHA256(model); err != nil {
		return nil, err
	}
	names := make([]string, len(rewards))
	for i, r := range rewards {
		names[i] = r.Name()
	}
	s.Set("rewards", names)
	ids := make([][]int64, len(prompts))
	for i := range prompts {
		ids[i] = prompts[i].IDs
	}
	s["prompt_ids_sha256"] = train.DataSHA256(ids, nil)
	for k, v := range extra {
		if _, own := s[k]; !own {
			s[k] = v
		}
	}
	return s, nil
}
