package pipeline

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/rewardmodel"
)

// RLPrompt is one prompt of an RL stage's pool, with what its rewards need.
type RLPrompt struct {
	ID      string
	IDs     []int64 // the encoded prompt
	Kind    rewardmodel.TaskKind
	Gold    string
	Profile []string // the user's profile item texts (what PRMU reads)
}

// RLSample is one completion to score.
type RLSample struct {
	Prompt *RLPrompt
	Tokens []int64
	Text   string // decoded completion; "" when the stage has no detokenizer
	Finish lm.FinishReason
}

// RLScore is one completion's reward and its parts, in the order of the
// scorer's Components.
type RLScore struct {
	Reward float64
	Parts  []float64
}

// RLScorer gives each completion of a step its reward. Components names the
// parts that are logged separately.
type RLScorer interface {
	Components() []string
	Score(ctx context.Context, samples []RLSample) ([]RLScore, error)
	// Describe says in one line how the reward is made (for the log).
	Describe() string
}

// PRMUScorer scores responses for users known by their profile texts; it
// returns raw scores (logits), turned into R_PRMU = sigmoid(score) here.
type PRMUScorer interface {
	Score(ctx context.Context, profiles [][]string, responses []string) ([]float64, error)
}

// Names of TagPRReward's components.
const (
	CompTask   = "r_task"
	CompFormat = "format"
	CompTag    = "r_tag"
	CompPRMU   = "r_prmu"
)

// TagPRReward is SPEC's reward: guided R = α·R_task·format + β·R_tag +
// γ·R_PRMU, exploratory R = R_task·format. Without a PRMU scorer the γ term
// is left out (and Describe says so). R_task, format and R_tag are logged in
// both modes; R_PRMU only when it is computed.
type TagPRReward struct {
	Mode     string // RewardGuided or RewardExploratory
	Weights  rewardmodel.Weights
	Taxonomy rewardmodel.Taxonomy
	PRMU     PRMUScorer // optional, guided only

	prmuSeconds float64 // the last Score's time in PRMU
}

// prmuTimed is a scorer that reports the time its last Score spent in PRMU
// (logged as part of the step's score time).
type prmuTimed interface{ PRMUSeconds() float64 }

// PRMUSeconds is the time the last Score spent in PRMU: all the step's
// answers go to it in one call.
func (r *TagPRReward) PRMUSeconds() float64 { return r.prmuSeconds }

func (r *TagPRReward) usesPRMU() bool { return r.Mode == RewardGuided && r.PRMU != nil }

// Components implements RLScorer.
func (r *TagPRReward) Components() []string {
	c := []string{CompTask, CompFormat, CompTag}
	if r.usesPRMU() {
		c = append(c, CompPRMU)
	}
	return c
}

// Describe implements RLScorer.
func (r *TagPRReward) Describe() string {
	if r.Mode != RewardGuided {
		return "exploratory: R = R_task·format"
	}
	w := r.Weights
	if r.PRMU == nil {
		return fmt.Sprintf("guided: R = %g·R_task·format + %g·R_tag; PRMU absent, so the %g·R_PRMU term is left out", w.Alpha, w.Beta, w.Gamma)
	}
	return fmt.Sprintf("guided: R = %g·R_task·format + %g·R_tag + %g·R_PRMU", w.Alpha, w.Beta, w.Gamma)
}

// Score implements RLScorer. PRMU scores the extracted answer; a completion
// without exactly one answer gets R_PRMU = 0, as it gets R_task = 0.
func (r *TagPRReward) Score(ctx context.Context, samples []RLSample) ([]RLScore, error) {
	out := make([]RLScore, len(samples))
	var profiles [][]string
	var answers []string
	var asked []int
	for i, s := range samples {
		c := rewardmodel.Score(s.Prompt.Kind, s.Text, s.Prompt.Gold, r.Taxonomy)
		out[i].Parts = []float64{c.Task, c.Format, c.Tag}
		if r.usesPRMU() {
			out[i].Parts = append(out[i].Parts, 0)
			if ans, ok := rewardmodel.ExtractAnswer(s.Text); ok && c.Format == 1 {
				profiles = append(profiles, s.Prompt.Profile)
				answers = append(answers, ans)
				asked = append(asked, i)
			}
		}
	}
	r.prmuSeconds = 0
	if len(asked) > 0 {
		t := time.Now()
		scores, err := r.PRMU.Score(ctx, profiles, answers)
		r.prmuSeconds = time.Since(t).Seconds()
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
			out[i].Parts[3] = rewardmodel.PRMUProbability(scores[j])
		}
	}
	for i := range out {
		c := rewardmodel.Components{Task: out[i].Parts[0], Format: out[i].Parts[1], Tag: out[i].Parts[2]}
		if r.usesPRMU() {
			c.PRMU = out[i].Parts[3]
		}
		if r.Mode == RewardGuided {
			w := r.Weights
			if r.PRMU == nil {
				w.Gamma = 0
			}
			out[i].Reward = rewardmodel.Guided(c, w)
		} else {
			out[i].Reward = rewardmodel.Exploratory(c)
		}
	}
	return out, nil
}
