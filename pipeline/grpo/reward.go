package grpo

import (
	"context"

	"github.com/tagpr/tagpr/onnx/lm"
)

// Prompt is one prompt of the training pool.
type Prompt struct {
	ID  string  // names the prompt in logs and samples
	IDs []int64 // the encoded prompt
	// Meta carries what rewards need to judge a completion (a gold answer,
	// a user's profile…); the trainer never reads it. It is TRL's dataset
	// columns, handed to reward functions.
	Meta any
}

// Sample is one completion to score.
type Sample struct {
	Prompt *Prompt
	Index  int // which of the prompt's NumGenerations completions
	Tokens []int64
	Text   string // Options.Detokenize(Tokens); "" without a detokenizer
	Finish lm.FinishReason
}

// Reward scores completions as a TRL reward function does: one value per
// sample, higher is better, every value finite. Score sees a whole step's
// samples at once, so a reward model can batch them.
type Reward interface {
	Name() string // the reward's name in logs ("rewards/NAME/mean")
	Score(ctx context.Context, samples []Sample) ([]float64, error)
}

// Func makes a Reward of a plain function of one sample.
func Func(name string, f func(Sample) float64) Reward { return funcReward{name, f} }

type funcReward struct {
	name string
	f    func(Sample) float64
}

func (r funcReward) Name() string { return r.name }

func (r funcReward) Score(_ context.Context, samples []Sample) ([]float64, error) {
	out := make([]float64, len(samples))
	for i, s := range samples {
		out[i] = r.f(s)
	}
	return out, nil
}
