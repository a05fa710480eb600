package pipeline

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/tagpr/tagpr/pipeline/grpo"
	"github.com/tagpr/tagpr/rewardmodel"
)

// Reward presets of an RL stage (docs/rewards.md): each stands for weights
// over the named rewards.
const (
	RewardGuided      = "guided"      // α·task + β·tag + γ·prmu (task is 0 unless the format holds)
	RewardExploratory = "exploratory" // task
)

// RLFromStart is RLStage.From for the model RL starts from (SFT's).
const RLFromStart = "start"

// RLChain is the stages whose models lead to stage name, in order: name,
// and before it the stage it starts from, and so on back to the start.
// Nil when no stage is named name.
func RLChain(stages []RLStage, name string) []RLStage {
	at := map[string]int{}
	for i, st := range stages {
		at[st.Name] = i
	}
	i, ok := at[name]
	var chain []RLStage
	for ok {
		chain = append([]RLStage{stages[i]}, chain...)
		switch from := stages[i].From; from {
		case RLFromStart:
			ok = false
		case "":
			i, ok = i-1, i > 0
		default:
			j, known := at[from]
			ok = known && j < i // a later or unknown stage is refused by Validate
			i = j
		}
	}
	return chain
}

// ScaleRewards is an RL stage's scale_rewards: group, batch or none
// (grpo.Config.ScaleRewards). A config file may also say true (group) or
// false (none), as TRL's GRPOConfig takes.
type ScaleRewards string

// ScaleRewardsOf reads a config file's scale_rewards: a string as it is,
// true as group and false as none (TRL's GRPOConfig).
func ScaleRewardsOf(v any) (ScaleRewards, error) {
	switch x := v.(type) {
	case string:
		return ScaleRewards(x), nil
	case bool:
		if x {
			return grpo.ScaleGroup, nil
		}
		return grpo.ScaleNone, nil
	}
	return "", fmt.Errorf("want group, batch or none (or true for group, false for none), got %v (%T)", v, v)
}

// Names of the rewards an RL stage can weigh (TagPRRewards).
const (
	RewardTask   = "task"   // R_task of the extracted answer; 0 when the format fails
	RewardFormat = "format" // 1 when the completion has exactly one <answer> after </think>
	RewardTag    = "tag"    // R_tag, the share of tag constraints met
	RewardPRMU   = "prmu"   // sigmoid(PRMU score) of the answer
)

// rewardOrder is the order rewards are summed and logged in: TagPR's
// four, then any others by name.
var rewardOrder = map[string]int{RewardTask: 0, RewardFormat: 1, RewardTag: 2, RewardPRMU: 3}

// RLStage configures one GRPO stage. The GRPO knobs carry TRL's GRPOConfig
// names (grpo.Config); the optimizer knobs match SFTConfig's.
type RLStage struct {
	Name string `mapstructure:"name" json:"name"`
	// Reward is a preset (guided or exploratory) standing for weights over
	// the named rewards; Weights are the guided preset's α, β, γ.
	Reward  string              `mapstructure:"reward" json:"reward"`
	Weights rewardmodel.Weights `mapstructure:"weights" json:"weights"`
	// Rewards, when set, are the stage's weights over named rewards (task,
	// format, tag, prmu, or a caller's own), instead of a preset's.
	Rewards map[string]float64 `mapstructure:"rewards" json:"rewards,omitempty"`
	// From is the model the stage starts from: "" the previous stage's (the
	// first stage: the model RL starts from), RLFromStart the model RL
	// starts from, or the name of an earlier stage. Ablations branch from
	// one SFT model this way.
	From string `mapstructure:"from" json:"from,omitempty"`

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

	Beta                     float64      `mapstructure:"beta" json:"beta"`                 // KL k3 coefficient; 0: no reference model
	Epsilon                  float64      `mapstructure:"epsilon" json:"epsilon"`           // lower clip; 0 → 0.2
	EpsilonHigh              float64      `mapstructure:"epsilon_high" json:"epsilon_high"` // upper clip; 0 → Epsilon
	LossType                 string       `mapstructure:"loss_type" json:"loss_type"`       // grpo, dapo (default) or dr_grpo
	ScaleRewards             ScaleRewards `mapstructure:"scale_rewards" json:"scale_rewards"`
	NumIterations            int          `mapstructure:"num_iterations" json:"num_iterations"` // updates per generated batch; 0 → 1
	MaskTruncatedCompletions bool         `mapstructure:"mask_truncated_completions" json:"mask_truncated_completions"`
	// TaskWeights repeat each named task's training prompts in the stage's
	// prompt pool (a task left out: once; 0 leaves it out), so a stage can
	// spend its groups where the policy still errs.
	TaskWeights TaskWeights `mapstructure:"task_weights" json:"task_weights,omitempty"`
	// DynamicSamplingRounds: up to this many more generation rounds per step
	// replace groups whose rewards are all equal by fresh prompts' groups
	// (DAPO's dynamic sampling); 0: off.
	DynamicSamplingRounds int `mapstructure:"dynamic_sampling_rounds" json:"dynamic_sampling_rounds,omitempty"`
	// UseBiasCorrectionKL multiplies the KL term by the importance ratio;
	// unset means TRL's default, true. The demo's stages set it false.
	UseBiasCorrectionKL *bool `mapstructure:"use_bias_correction_kl" json:"use_bias_correction_kl,omitempty"`

	// LoRASettings train adapters instead of every weight (lora_rank > 0);
	// the KL reference is then the stage's start, the adapters' base.
	LoRASettings `mapstructure:",squash"`
	// GradientCheckpointing recomputes activations in the backward pass
	// (TRL's gradient_checkpointing): far less memory for long completions.
	GradientCheckpointing bool `mapstructure:"gradient_checkpointing" json:"gradient_checkpointing,omitempty"`

	LR              float64 `mapstructure:"lr" json:"lr"`
	Warmup          int     `mapstructure:"warmup" json:"warmup"`
	WeightDecay     float64 `mapstructure:"weight_decay" json:"weight_decay"`
	Clip            float64 `mapstructure:"clip" json:"clip"` // global gradient norm; 0 disables
	CheckpointEvery int     `mapstructure:"checkpoint_every" json:"checkpoint_every"`
	Seed            uint64  `mapstructure:"seed" json:"seed"`
}

// WithDefaults fills the knobs whose zero value means "the usual": the
// GRPO knobs as grpo.Config.WithDefaults (TRL's defaults) and the guided
// weights α=1 β=0.3 γ=0.5.
func (s RLStage) WithDefaults() RLStage {
	g := s.GRPO().WithDefaults()
	s.Epsilon, s.EpsilonHigh, s.LossType, s.ScaleRewards = g.Epsilon, g.EpsilonHigh, g.LossType, ScaleRewards(g.ScaleRewards)
	s.NumIterations, s.Temperature, s.UseBiasCorrectionKL = g.NumIterations, g.Temperature, g.UseBiasCorrectionKL
	if s.Reward == RewardGuided && s.Weights == (rewardmodel.Weights{}) && len(s.Rewards) == 0 {
		s.Weights = rewardmodel.DefaultWeights()
	}
	return s
}

// GRPO is the stage's run config for the grpo package (without reward
// weights, which depend on the rewards at hand: RewardWeights).
func (s RLStage) GRPO() grpo.Config {
	return grpo.Config{NumGenerations: s.NumGenerations, MaxPromptLength: s.MaxPromptLength, MaxCompletionLength: s.MaxCompletionLength,
		Temperature: s.Temperature, TopK: s.TopK, TopP: s.TopP,
		Beta: s.Beta, Epsilon: s.Epsilon, EpsilonHigh: s.EpsilonHigh, LossType: s.LossType, ScaleRewards: string(s.ScaleRewards),
		NumIterations: s.NumIterations, MaskTruncatedCompletions: s.MaskTruncatedCompletions, UseBiasCorrectionKL: s.UseBiasCorrectionKL,
		DynamicSamplingRounds: s.DynamicSamplingRounds,
		Steps:                 s.Steps, PromptsPerStep: s.PromptsPerStep, LearningRate: s.LR, WarmupSteps: s.Warmup, WeightDecay: s.WeightDecay,
		MaxGradNorm: s.Clip, SaveSteps: s.CheckpointEvery, Seed: s.Seed, LoRA: s.lora(s.Seed, "stages.rl."+s.Name),
		GradientCheckpointing: s.GradientCheckpointing}
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
	case s.Reward != "" && s.Reward != RewardGuided && s.Reward != RewardExploratory:
		return fail("reward %q: want %s or %s (or rewards: weights over named rewards)", s.Reward, RewardGuided, RewardExploratory)
	case s.Reward == "" && len(s.Rewards) == 0:
		return fail("no reward: set reward (%s or %s) or rewards (weights over task, format, tag, prmu)", RewardGuided, RewardExploratory)
	case len(s.Rewards) > 0 && s.Weights != (rewardmodel.Weights{}):
		return fail("weights (α, β, γ of the guided preset) and rewards are both set: keep one")
	case s.Reward == RewardExploratory && len(s.Rewards) == 0 && s.Weights != (rewardmodel.Weights{}):
		// The preset is task alone: the weights would be ignored.
		return fail("weights (α, β, γ) belong to the guided preset; %s is the task reward alone: leave weights out, or weigh rewards yourself (rewards: {task: 1, tag: 0.3})", RewardExploratory)
	// Knobs whose names differ from grpo.Config's are checked here, so the
	// error names the key a config file has.
	case !(s.LR > 0) || !finite(s.LR):
		return fail("lr %v: want > 0", s.LR)
	case s.Warmup < 0 || s.CheckpointEvery < 0 || !(s.WeightDecay >= 0) || !(s.Clip >= 0) || !finite(s.WeightDecay) || !finite(s.Clip):
		return fail("warmup %d, checkpoint_every %d, weight_decay %v, clip %v: want finite values ≥ 0", s.Warmup, s.CheckpointEvery, s.WeightDecay, s.Clip)
	}
	for name, w := range s.Rewards {
		if name == "" || !finite(w) {
			return fail("rewards: %q = %v: want a name and a finite weight", name, w)
		}
	}
	if err := s.LoRASettings.validate(); err != nil {
		return fail("%v", err)
	}
	if s.Reward == RewardGuided && len(s.Rewards) == 0 {
		if err := s.Weights.Validate(); err != nil {
			return fail("%v", err)
		}
	}
	if err := s.GRPO().Validate(); err != nil {
		return fail("%v", err)
	}
	return nil
}

// NamedWeight is one reward's weight in a stage.
type NamedWeight struct {
	Name   string
	Weight float64
}

// RewardWeights are the stage's weights over named rewards, in summing
// order (task, format, tag, prmu, then others by name): Rewards when set,
// else the preset's. guided is task α, format 0, tag β, prmu γ; exploratory
// task 1, format 0, tag 0 (a reward of weight 0 is computed and logged and
// adds nothing). task is already 0 when the format fails, so α·task is the
// recipe's α·R_task·format (docs/rewards.md).
func (s RLStage) RewardWeights() []NamedWeight {
	var out []NamedWeight
	switch {
	case len(s.Rewards) > 0:
		for n, w := range s.Rewards {
			out = append(out, NamedWeight{n, w})
		}
	case s.Reward == RewardGuided:
		w := s.Weights
		out = []NamedWeight{{RewardTask, w.Alpha}, {RewardFormat, 0}, {RewardTag, w.Beta}, {RewardPRMU, w.Gamma}}
	case s.Reward == RewardExploratory:
		out = []NamedWeight{{RewardTask, 1}, {RewardFormat, 0}, {RewardTag, 0}}
	}
	sort.Slice(out, func(i, j int) bool {
		oi, iKnown := rewardOrder[out[i].Name]
		oj, jKnown := rewardOrder[out[j].Name]
		switch {
		case iKnown && jKnown:
			return oi < oj
		case iKnown != jKnown:
			return iKnown
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// Rewards are the named rewards a stage's weights may name.
type Rewards map[string]grpo.Reward

// Names lists the rewards by name, sorted.
func (r Rewards) Names() []string {
	var out []string
	for n := range r {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// stageReward is a stage's rewards and weights, ready for grpo.
type stageReward struct {
	rewards []grpo.Reward
	weights []float64
	// about says how the reward is made, for logs and the report.
	about string
}

// compose picks the rewards the stage weighs. A preset's prmu term is left
// out (and said so) when no PRMU is at hand; a name the stage sets itself
// that r lacks is an error naming the stage, the reward and those there are.
func (r Rewards) compose(st RLStage) (stageReward, error) {
	var out stageReward
	var terms, notes []string
	for _, nw := range st.RewardWeights() {
		rw, ok := r[nw.Name]
		if !ok {
			if len(st.Rewards) == 0 && nw.Name == RewardPRMU {
				notes = append(notes, fmt.Sprintf("PRMU absent, so the %g·prmu term is left out", nw.Weight))
				continue
			}
			return out, fmt.Errorf("rl stage %q: reward %q: unknown (have %s)", st.Name, nw.Name, strings.Join(r.Names(), ", "))
		}
		out.rewards = append(out.rewards, rw)
		out.weights = append(out.weights, nw.Weight)
		if nw.Weight != 0 {
			terms = append(terms, fmt.Sprintf("%g·%s", nw.Weight, nw.Name))
		}
	}
	if len(out.rewards) == 0 {
		return out, fmt.Errorf("rl stage %q: no reward to train on", st.Name)
	}
	out.about = "R = " + strings.Join(terms, " + ")
	if st.Reward != "" && len(st.Rewards) == 0 {
		out.about = st.Reward + ": " + out.about
	}
	if len(notes) > 0 {
		out.about += "; " + strings.Join(notes, "; ")
	}
	return out, nil
}
