package pipeline

import (
	"context"
	"fmt"
	"math"

	"github.com/tagpr/tagpr/pipeline/grpo"
	"github.com/tagpr/tagpr/rewardmodel"
)

// RLPrompt is one prompt of an RL stage's pool, with what its rewards need.
type RLPrompt struct {
	ID      string
	IDs     []int64 // the encoded prompt
	Kind    rewardmodel.TaskKind
	Gold    string
	Profile []string // the user's profile item texts (what PRMU reads)
	// ProfileKept is how many of them the prompt holds (the first ones,
	// within the stage's max_prompt_length); not part of the stage's stamp.
	ProfileKept int `json:"-"`
}

// PRMUScorer scores responses for users known by their profile texts; it
// returns raw scores (logits), turned into R_PRMU = sigmoid(score) here.
type PRMUScorer interface {
	Score(ctx context.Context, profiles [][]string, responses []string) ([]float64, error)
}

// TagPRRewards are the rewards of docs/rewards.md for samples of RLPrompts:
// task, format and tag, and prmu when a PRMU scorer is given.
func TagPRRewards(tx rewardmodel.Taxonomy, prmu PRMUScorer) Rewards {
	r := Rewards{
		RewardTask:   partReward{RewardTask, tx, func(c rewardmodel.Components) float64 { return c.Task }},
		RewardFormat: partReward{RewardFormat, tx, func(c rewardmodel.Components) float64 { return c.Format }},
		RewardTag:    partReward{RewardTag, tx, func(c rewardmodel.Components) float64 { return c.Tag }},
	}
	if prmu != nil {
		r[RewardPRMU] = prmuReward{prmu: prmu, tx: tx}
	}
	return r
}

// promptOf is the RLPrompt a sample answers.
func promptOf(s grpo.Sample) (*RLPrompt, error) {
	p, ok := s.Prompt.Meta.(*RLPrompt)
	if !ok || p == nil {
		return nil, fmt.Errorf("prompt %s carries no RLPrompt (a TagPR reward judges RL prompts only)", s.Prompt.ID)
	}
	return p, nil
}

// partReward is one component of rewardmodel.Score.
type partReward struct {
	name string
	tx   rewardmodel.Taxonomy
	pick func(rewardmodel.Components) float64
}

func (r partReward) Name() string { return r.name }

func (r partReward) Score(_ context.Context, samples []grpo.Sample) ([]float64, error) {
	out := make([]float64, len(samples))
	for i, s := range samples {
		p, err := promptOf(s)
		if err != nil {
			return nil, err
		}
		out[i] = r.pick(rewardmodel.Score(p.Kind, s.Text, p.Gold, r.tx))
	}
	return out, nil
}

// prmuReward is R_PRMU of the extracted answer; a completion without exactly
// one answer gets 0, as it gets R_task = 0.
type prmuReward struct {
	prmu PRMUScorer
	tx   rewardmodel.Taxonomy
}

func (prmuReward) Name() string { return RewardPRMU }

// SHA256 is the PRMU's (rewardmodel.PRMU.SHA256), when it has one: a stage
// records it, so it resumes only with the reward model it started with.
func (r prmuReward) SHA256() string {
	if p, ok := r.prmu.(interface{ SHA256() string }); ok {
		return p.SHA256()
	}
	return ""
}

func (r prmuReward) Score(ctx context.Context, samples []grpo.Sample) ([]float64, error) {
	out := make([]float64, len(samples))
	var profiles [][]string
	var answers []string
	var asked []int
	for i, s := range samples {
		if !rewardmodel.CheckTags(s.Text, r.tx).OneAnswer {
			continue
		}
		p, err := promptOf(s)
		if err != nil {
			return nil, err
		}
		if ans, ok := rewardmodel.ExtractAnswer(s.Text); ok {
			profiles = append(profiles, p.Profile)
			answers = append(answers, ans)
			asked = append(asked, i)
		}
	}
	if len(asked) == 0 {
		return out, nil
	}
	scores, err := r.prmu.Score(ctx, profiles, answers)
	if err != nil {
		return nil, fmt.Errorf("prmu: %w", err)
	}
	if len(scores) != len(asked) {
		return nil, fmt.Errorf("prmu: %d scores for %d responses", len(scores), len(asked))
	}
	for j, i := range asked {
		if math.IsNaN(scores[j]) {
			return nil, fmt.Errorf("prmu: score of a %s response is NaN", samples[i].Prompt.ID)
		}
		out[i] = rewardmodel.PRMUProbability(scores[j])
	}
	return out, nil
}
