package rewardmodel

import (
	"fmt"
	"math"
)

// Weights of the guided-stage reward R = α·R_task·format + β·R_tag + γ·R_PRMU.
type Weights struct {
	Alpha float64 `mapstructure:"alpha" json:"alpha"`
	Beta  float64 `mapstructure:"beta" json:"beta"`
	Gamma float64 `mapstructure:"gamma" json:"gamma"`
}

// DefaultWeights are the guided preset's defaults (docs/rewards.md).
func DefaultWeights() Weights { return Weights{Alpha: 1, Beta: 0.3, Gamma: 0.5} }

// Validate refuses negative or non-finite weights.
func (w Weights) Validate() error {
	for name, v := range map[string]float64{"alpha": w.Alpha, "beta": w.Beta, "gamma": w.Gamma} {
		if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("reward weight %s = %v: want a finite value >= 0", name, v)
		}
	}
	return nil
}

// Components are the separately logged parts of one completion's reward.
type Components struct {
	Task   float64 // R_task of the extracted answer
	Format float64 // 1 when the completion has exactly one <answer> after </think>
	Tag    float64 // R_tag
	PRMU   float64 // sigmoid(PRMU score); 0 when no PRMU is used
}

// Score computes every component of a completion except PRMU, which the
// caller fills in from the reward model (PRMUProbability).
func Score(kind TaskKind, completion, gold string, tx Taxonomy) Components {
	check := CheckTags(completion, tx)
	c := Components{Tag: check.Reward()}
	if check.OneAnswer {
		c.Format = 1
		c.Task = TaskReward(kind, check.Answer, gold)
	}
	return c
}

// PRMUProbability maps a raw PRMU score to R_PRMU = sigmoid(score).
func PRMUProbability(score float64) float64 { return 1 / (1 + math.Exp(-score)) }

// Guided is the guided stage's composite reward.
func Guided(c Components, w Weights) float64 {
	return w.Alpha*c.Task*c.Format + w.Beta*c.Tag + w.Gamma*c.PRMU
}

// Exploratory is the exploratory stage's reward: task correctness only.
func Exploratory(c Components) float64 { return c.Task * c.Format }
