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
	start := time.Now()
	preds, tokens, err := PredictExamples(ctx, p, task, split, examples, tx, o)
	if err != nil {
		return nil, err
	}
	ev := &Evaluation{Predictions: preds, Tokens: tokens}
	if ev.Result, ev.MeanTag, ev.MeanFormat, err = ScorePredictions(task, split, preds, examples, tx, o.Samples); err != nil {
		return nil, err
	}
	ev.Elapsed = time.Since(start)
	return ev, nil
}

// PredictExamples generates a greedy completion for each of the first
// o.Examples examples (prompt through the tokenizer's chat template) and
// extracts its answer: the text of the one <answer> after </think>, "" when
// the format is broken. Rows with a gold carry r_task, r_tag and format.
func PredictExamples(ctx context.Context, p Policy, task *datasets.Task, split string, examples []datasets.Example, tx rewardmodel.Taxonomy, o EvalOptions) ([]datasets.Prediction, int, error) {
	o = o.withDefaults()
	if o.Examples > 0 && o.Examples < len(examples) {
		examples = examples[:o.Examples]
	}
	if len(examples) == 0 {
		return nil, 0, fmt.Errorf("predict %s on %s/%s: no examples", p.Name, task.Name, split)
	}
	kind := RewardKind(task)
	var preds []datasets.Prediction
	tokens := 0
	for lo := 0; lo < len(examples); lo += o.Batch {
		hi := min(lo+o.Batch, len(examples))
		prompts := make([][]int64, 0, hi-lo)
		for i := lo; i < hi; i++ {
			enc, err := p.Tok.EncodePrompt(Parts(task, &examples[i], tx, o.Prompt, false), tokenize.DefaultPromptLayout, o.Prompt.MaxTokens)
			if err != nil {
				return nil, 0, fmt.Errorf("predict %s: prompt %s: %w", task.Name, examples[i].ID, err)
			}
			prompts = append(prompts, enc.IDs)
		}
		comps, st, err := p.Model.Generate(ctx, prompts, lm.GenerateOptions{MaxNewTokens: o.MaxNewTokens, EOS: p.EOS, NoLogProbs: true})
		if err != nil {
			return nil, 0, fmt.Errorf("predict %s with %s: %w", task.Name, p.Name, err)
		}
		tokens += st.GeneratedTokens
		for j, c := range comps {
			ex := &examples[lo+j]
			text, err := p.Tok.Decode(c.Tokens, true)
			if err != nil {
				return nil, 0, fmt.Errorf("predict %s: decode %s: %w", task.Name, ex.ID, err)
			}
			answer, _ := rewardmodel.ExtractAnswer(text)
			pr := datasets.Prediction{ID: ex.ID, Task: task.Name, Model: p.Name, Completion: text, Prediction: answer, Gold: ex.Output, HasGold: ex.HasOutput}
			if ex.HasOutput {
				comp := rewardmodel.Score(kind, text, ex.Output, tx)
				pr.Metrics = []datasets.NamedValue{{Name: "r_task", Value: comp.Task}, {Name: "r_tag", Value: comp.Tag}, {Name: "format", Value: comp.Format}}
			}
			preds = append(preds, pr)
		}
	}
	return preds, tokens, nil
}

// ScorePredictions computes a task's LaMP metrics on predictions against
// their golds, plus the mean tag reward and format rate of the completions
// as diagnostics; examples (matched by id) give the samples shown.
func ScorePredictions(task *datasets.Task, split string, preds []datasets.Prediction, examples []datasets.Example, tx rewardmodel.Taxonomy, samples int) (TaskResult, float64, float64, error) {
	r := TaskResult{Task: task.Name, Split: split, Examples: len(preds)}
	if len(preds) == 0 {
		return r, 0, 0, fmt.Errorf("score %s/%s: no predictions", task.Name, split)
	}
	inputs := map[string]string{}
	for i := range examples {
		inputs[examples[i].ID] = examples[i].Input
	}
	kind := RewardKind(task)
	pairs := make([]Pair, 0, len(preds))
	var meanTag, meanFormat float64
	for _, p := range preds {
		if !p.HasGold {
			return r, 0, 0, fmt.Errorf("score %s/%s: prediction %s has no gold", task.Name, split, p.ID)
		}
		comp := rewardmodel.Score(kind, p.Completion, p.Gold, tx)
		meanTag += comp.Tag
		meanFormat += comp.Format
		pairs = append(pairs, Pair{ID: p.ID, Prediction: p.Prediction, Gold: p.Gold})
		if len(r.Samples) < samples {
			r.Samples = append(r.Samples, Sample{ID: p.ID, Input: inputs[p.ID], Completion: p.Completion, Answer: p.Prediction, Gold: p.Gold, Reward: comp.Task * comp.Format})
		}
	}
	n := float64(len(preds))
	meanTag /= n
	meanFormat /= n
	metrics, err := TaskMetrics(kind, task.Labels, pairs)
	if err != nil {
		return r, 0, 0, fmt.Errorf("score %s: %w", task.Name, err)
	}
	r.Model = append(metrics, Metric{Name: "r_tag", Value: meanTag, Diagnostic: true}, Metric{Name: "format", Value: meanFormat, Diagnostic: true})
	return r, meanTag, meanFormat, nil
}
