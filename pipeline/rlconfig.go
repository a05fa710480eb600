package pipeline

import (
	"fmt"
	"math"

	"github.com/tagpr/tagpr/rewardmodel"
)

// Reward modes of an RL stage (SPEC "Rewards").
const (
	RewardGuided      = "guided"      // R = α·R_task·format + β·R_tag + γ·R_PRMU
	RewardExploratory = "exploratory" // R = R_task·format
)

// Values of RLStage.ScaleRewards (TRL's scale_rewards).
const (
	ScaleGroup = "group" // divide by the group's reward std
	ScaleBatch = "batch" // divide by the whole batch's reward std
	ScaleNone  = "none"  // centre on the group mean only (Dr. GRPO)
)

// advantageEps is added to the std before dividing, as TRL does.
const advantageEps = 1e-4

// RLStage configures one GRPO-family stage. The RL knobs carry TRL's
// GRPOConfig names; the optimizer knobs match SFTConfig's.
type RLStage struct {
	Name    string              `mapstructure:"name" json:"name"`
	Reward  string              `mapstructure:"reward" json:"reward"`   // guided or exploratory
	Weights rewardmodel.Weights `mapstructure:"weights" json:"weights"` // α, β, γ of the guided reward

	Steps          int `mapstructure:"steps" json:"steps"`                       // optimizer steps = Steps × NumIterations
	PromptsPerStep int `mapstructure:"prompts_per_step" json:"prompts_per_step"` // prompts sampled per step
	NumGenerations int `mapstructure:"num_generations" json:"num_generations"`   // G completions per prompt (≥ 2)
	// MaxPromptLength is the prompt budget in tokens (profile items are
	// dropped to fit); MaxCompletionLength bounds each completion. The
	// training batch is [PromptsPerStep·G, longest prompt + MaxCompletionLength].
	MaxPromptLength     int     `mapstructure:"max_prompt_length" json:"max_prompt_length"`
	MaxCompletionLength int     `mapstructure:"max_completion_length" json:"max_completion_length"`
	Temperature         float64 `mapstructure:"temperature" json:"temperature"` // the policy is softmax(logits/τ); 0 → 1
	TopK                int     `mapstructure:"top_k" json:"top_k"`
	TopP                float64 `mapstructure:"top_p" json:"top_p"`

	Beta                     float64 `mapstructure:"beta" json:"beta"`                 // KL k3 coefficient; 0: no reference model
	Epsilon                  float64 `mapstructure:"epsilon" json:"epsilon"`           // lower clip; 0 → 0.2
	EpsilonHigh              float64 `mapstructure:"epsilon_high" json:"epsilon_high"` // upper clip; 0 → Epsilon
	LossType                 string  `mapstructure:"loss_type" json:"loss_type"`       // grpo, dapo (default) or dr_grpo
	ScaleRewards             string  `mapstructure:"scale_rewards" json:"scale_rewards"`
	NumIterations            int     `mapstructure:"num_iterations" json:"num_iterations"` // updates per generated batch; 0 → 1
	MaskTruncatedCompletions bool    `mapstructure:"mask_truncated_completions" json:"mask_truncated_completions"`

	LR              float64 `mapstructure:"lr" json:"lr"`
	Warmup          int     `mapstructure:"warmup" json:"warmup"`
	WeightDecay     float64 `mapstructure:"weight_decay" json:"weight_decay"`
	Clip            float64 `mapstructure:"clip" json:"clip"` // global gradient norm; 0 disables
	CheckpointEvery int     `mapstructure:"checkpoint_every" json:"checkpoint_every"`
	Seed            uint64  `mapstructure:"seed" json:"seed"`
}

// WithDefaults fills the knobs whose zero value means "the usual":
// ε 0.2, ε_high = ε, loss dapo, scale_rewards group, one iteration,
// temperature 1, guided weights α=1 β=0.3 γ=0.5.
func (s RLStage) WithDefaults() RLStage {
	if s.Epsilon == 0 {
		s.Epsilon = 0.2
	}
	if s.EpsilonHigh == 0 {
		s.EpsilonHigh = s.Epsilon
	}
	if s.LossType == "" {
		s.LossType = "dapo"
	}
	if s.ScaleRewards == "" {
		s.ScaleRewards = ScaleGroup
	}
	if s.NumIterations == 0 {
		s.NumIterations = 1
	}
	if s.Temperature == 0 {
		s.Temperature = 1
	}
	if s.Reward == RewardGuided && s.Weights == (rewardmodel.Weights{}) {
		s.Weights = rewardmodel.DefaultWeights()
	}
	return s
}

// Validate refuses settings that cannot train, naming the stage and knob.
func (s RLStage) Validate() error {
	fail := func(format string, a ...any) error {
		return fmt.Errorf("rl stage %q: "+format, append([]any{s.Name}, a...)...)
	}
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	switch {
	case s.Name == "":
		return fmt.Errorf("rl stage: name is empty")
	case s.Reward != RewardGuided && s.Reward != RewardExploratory:
		return fail("reward %q: want %s or %s", s.Reward, RewardGuided, RewardExploratory)
	case s.Steps < 1 || s.PromptsPerStep < 1:
		return fail("steps %d, prompts_per_step %d: want ≥ 1", s.Steps, s.PromptsPerStep)
	case s.NumGenerations < 2:
		return fail("num_generations %d: want ≥ 2 (advantages compare completions of one prompt)", s.NumGenerations)
	case s.MaxCompletionLength < 1 || s.MaxPromptLength < 0:
		return fail("max_completion_length %d, max_prompt_length %d: want ≥ 1 and ≥ 0", s.MaxCompletionLength, s.MaxPromptLength)
	case !(s.Temperature > 0) || !finite(s.Temperature):
		return fail("temperature %v: want > 0 (GRPO needs sampled, different completions)", s.Temperature)
	case s.TopK < 0 || s.TopP < 0 || s.TopP > 1:
		return fail("top_k %d, top_p %v: want top_k ≥ 0 and top_p in [0, 1]", s.TopK, s.TopP)
	case s.Beta < 0 || s.Epsilon < 0 || s.EpsilonHigh < 0 || !finite(s.Beta) || !finite(s.Epsilon) || !finite(s.EpsilonHigh):
		return fail("beta %v, epsilon %v, epsilon_high %v: want finite values ≥ 0", s.Beta, s.Epsilon, s.EpsilonHigh)
	case s.LossType != "grpo" && s.LossType != "dapo" && s.LossType != "dr_grpo":
		return fail("loss_type %q: want grpo, dapo or dr_grpo", s.LossType)
	case s.ScaleRewards != ScaleGroup && s.ScaleRewards != ScaleBatch && s.ScaleRewards != ScaleNone:
		return fail("scale_rewards %q: want group, batch or none", s.ScaleRewards)
	case s.NumIterations < 1:
		return fail("num_iterations %d: want ≥ 1", s.NumIterations)
	case !(s.LR > 0) || !finite(s.LR):
		return fail("lr %v: want > 0", s.LR)
	case s.Warmup < 0 || s.CheckpointEvery < 0 || !(s.WeightDecay >= 0) || !(s.Clip >= 0) || !finite(s.WeightDecay) || !finite(s.Clip):
		return fail("warmup %d, checkpoint_every %d, weight_decay %v, clip %v: want ≥ 0 (and finite)", s.Warmup, s.CheckpointEvery, s.WeightDecay, s.Clip)
	}
	if s.Reward == RewardGuided {
		if err := s.Weights.Validate(); err != nil {
			return fail("%v", err)
		}
	}
	return nil
}

// batchRows is B of the fixed training shape.
func (s RLStage) batchRows() int { return s.PromptsPerStep * s.NumGenerations }
