package pipeline

import (
	"context"
	"errors"
	"fmt"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/rewardmodel"
	"github.com/tagpr/tagpr/tokenize"
)

// EvalOptions size one prediction pass.
type EvalOptions struct {
	Examples     int // first N examples of the split (0: all)
	Batch        int // prompts per generation call (default 16)
	MaxNewTokens int // completion budget (default 160)
	Prompt       PromptOptions
}

func (o EvalOptions) withDefaults() EvalOptions {
	if o.Batch <= 0 {
		o.Batch = 16
	}
	if o.MaxNewTokens <= 0 {
		o.MaxNewTokens = 160
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
			if errors.Is(err, tokenize.ErrPromptTooLong) {
				return nil, 0, fmt.Errorf("predict %s: prompt %s: %w (the budget is retrieval.max_prompt_tokens; the instruction and the question are never cut)", task.Name, examples[i].ID, err)
			}
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
			text, err := p.Tok.DecodeCompletion(c.Tokens)
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
