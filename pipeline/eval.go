package pipeline

import (
	"context"
	"fmt"
	"time"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/rewardmodel"
	"github.com/tagpr/tagpr/tokenize"
)

// EvalOptions size one evaluation pass.
type EvalOptions struct {
	Examples     int // first N examples of the split (0: all)
	Batch        int // prompts per generation call (default 16)
	MaxNewTokens int // completion budget (default 160)
	Prompt       PromptOptions
	Samples      int // completions shown in the report (default 2)
}

func (o EvalOptions) withDefaults() EvalOptions {
	if o.Batch <= 0 {
		o.Batch = 16
	}
	if o.MaxNewTokens <= 0 {
		o.MaxNewTokens = 160
	}
	if o.Samples == 0 {
		o.Samples = 2
	}
	return o
}

// Policy is a model with the tokenizer it speaks.
type Policy struct {
	Model *lm.Model
	Tok   *tokenize.Tokenizer
	Name  string
	EOS   []int64 // ids that end a completion (the chat's end-of-turn)
}

// Evaluation is one policy's result on one task split.
type Evaluation struct {
	Result      TaskResult
	Predictions []datasets.Prediction
	MeanTag     float64 // mean R_tag of the completions
	MeanFormat  float64 // fraction of completions with exactly one answer after </think>
	Elapsed     time.Duration
	Tokens      int // generated tokens
}

// Evaluate generates a greedy completion for every example and scores it:
// LaMP metrics on the extracted answers, plus the tag and format rewards.
func Evaluate(ctx context.Context, p Policy, task *datasets.Task, split string, examples []datasets.Example, tx rewardmodel.Taxonomy, o EvalOptions) (*Evaluation, error) {
	o = o.withDefaults()
	if o.Examples > 0 && o.Examples < len(examples) {
		examples = examples[:o.Examples]
	}
	if len(examples) == 0 {
		return nil, fmt.Errorf("evaluate %s on %s/%s: no examples", p.Name, task.Name, split)
	}
	kind := RewardKind(task)
	ev := &Evaluation{Result: TaskResult{Task: task.Name, Split: split, Examples: len(examples)}}
	start := time.Now()
	pairs := make([]Pair, 0, len(examples))
	for lo := 0; lo < len(examples); lo += o.Batch {
		hi := min(lo+o.Batch, len(examples))
		prompts := make([][]int64, 0, hi-lo)
		for i := lo; i < hi; i++ {
			enc, err := p.Tok.EncodePrompt(Parts(task, &examples[i], tx, o.Prompt, false), tokenize.DefaultPromptLayout, o.Prompt.MaxTokens)
			if err != nil {
				return nil, fmt.Errorf("evaluate %s: prompt %s: %w", task.Name, examples[i].ID, err)
			}
			prompts = append(prompts, enc.IDs)
		}
		comps, st, err := p.Model.Generate(ctx, prompts, lm.GenerateOptions{MaxNewTokens: o.MaxNewTokens, EOS: p.EOS, NoLogProbs: true})
		if err != nil {
			return nil, fmt.Errorf("evaluate %s with %s: %w", task.Name, p.Name, err)
		}
		ev.Tokens += st.GeneratedTokens
		for j, c := range comps {
			ex := &examples[lo+j]
			text, err := p.Tok.Decode(c.Tokens, true)
			if err != nil {
				return nil, fmt.Errorf("evaluate %s: decode %s: %w", task.Name, ex.ID, err)
			}
			check := rewardmodel.CheckTags(text, tx)
			comp := rewardmodel.Score(kind, text, ex.Output, tx)
			ev.MeanTag += check.Reward()
			ev.MeanFormat += comp.Format
			answer := ""
			if check.OneAnswer {
				answer = check.Answer
			}
			pairs = append(pairs, Pair{ID: ex.ID, Prediction: answer, Gold: ex.Output})
			ev.Predictions = append(ev.Predictions, datasets.Prediction{ID: ex.ID, Task: task.Name, Model: p.Name,
				Completion: text, Prediction: answer, Gold: ex.Output, HasGold: true,
				Metrics: []datasets.NamedValue{{Name: "r_task", Value: comp.Task}, {Name: "r_tag", Value: comp.Tag}, {Name: "format", Value: comp.Format}}})
			if len(ev.Result.Samples) < o.Samples {
				ev.Result.Samples = append(ev.Result.Samples, Sample{ID: ex.ID, Input: ex.Input, Completion: text, Answer: answer, Gold: ex.Output, Reward: comp.Task * comp.Format})
			}
		}
	}
	n := float64(len(examples))
	ev.MeanTag /= n
	ev.MeanFormat /= n
	metrics, err := TaskMetrics(kind, task.Labels, pairs)
	if err != nil {
		return nil, fmt.Errorf("evaluate %s: %w", task.Name, err)
	}
	ev.Result.Model = append(metrics, Metric{Name: "r_tag", Value: ev.MeanTag, Diagnostic: true}, Metric{Name: "format", Value: ev.MeanFormat, Diagnostic: true})
	ev.Elapsed = time.Since(start)
	return ev, nil
}
