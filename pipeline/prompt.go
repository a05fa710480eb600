package pipeline

import (
	"fmt"
	"strings"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/rewardmodel"
	"github.com/tagpr/tagpr/tokenize"
)

// PromptOptions choose how a prompt is built from an example.
type PromptOptions struct {
	TopK      int    // profile items retrieved before truncation (0: all)
	Retrieval string // "bm25" (default) or "recency"
	// MaxTokens is the prompt budget; profile items are dropped from the
	// least relevant end until the prompt fits (0: no budget).
	MaxTokens int
}

// Validate refuses unknown retrieval methods and negative sizes.
func (o PromptOptions) Validate() error {
	switch o.Retrieval {
	case "", "bm25", "recency":
	default:
		return fmt.Errorf("prompt retrieval %q: want bm25 or recency", o.Retrieval)
	}
	if o.TopK < 0 || o.MaxTokens < 0 {
		return fmt.Errorf("prompt top_k %d / max_tokens %d: want >= 0", o.TopK, o.MaxTokens)
	}
	return nil
}

// Parts lays an example out as prompt parts: the instruction (task, tag
// format, label set), the retrieved profile items most relevant first, the
// input and, for training, the gold chain as the answer.
func Parts(t *datasets.Task, ex *datasets.Example, tx rewardmodel.Taxonomy, o PromptOptions, withAnswer bool) tokenize.PromptParts {
	k := o.TopK
	if k <= 0 || k > len(ex.Profile) {
		k = len(ex.Profile)
	}
	var order []int
	if o.Retrieval == "recency" {
		order = datasets.TopKRecent(ex, k)
	} else {
		order = datasets.TopKBM25(t, ex, k)
	}
	profile := make([]string, len(order))
	for i, idx := range order {
		profile[i] = rewardmodel.ProfileItemText(t, &ex.Profile[idx]) // one format for prompts and PRMU
	}
	p := tokenize.PromptParts{Instruction: Instruction(t, tx), Profile: profile, Input: ex.Input}
	if withAnswer {
		p.Answer = ex.Chain
		if p.Answer == "" {
			p.Answer = "<answer>" + ex.Output + "</answer>"
		}
	}
	return p
}

// Instruction tells the model the task, the reasoning format and the label set.
func Instruction(t *datasets.Task, tx rewardmodel.Taxonomy) string {
	var b strings.Builder
	// Short on purpose: it is repeated in every prompt, and the tag names
	// themselves are learnt from the chains (each is one token).
	b.WriteString("Answer as this user would: reason from their history in tagged steps inside <think>, then give the answer inside <answer>.")
	switch t.Kind {
	case datasets.Classification:
		if len(t.Labels) > 0 {
			b.WriteString(" Labels: " + strings.Join(t.Labels, ", ") + ".")
		}
	case datasets.Rating:
		b.WriteString(" Answer 1 to 5.")
	case datasets.Generation:
		b.WriteString(" Answer with a short text.")
	}
	return b.String()
}

// RewardKind maps a dataset task to its reward.
func RewardKind(t *datasets.Task) rewardmodel.TaskKind {
	switch t.Kind {
	case datasets.Rating:
		return rewardmodel.Rating
	case datasets.Generation:
		return rewardmodel.Generation
	}
	return rewardmodel.Classification
}

// ProfileUse is how many of their retrieved profile items prompts held
// after the budget cut: what the model saw of each user.
type ProfileUse struct {
	Prompts   int // prompts counted
	Retrieved int // profile items retrieved, over all prompts (top_k each, or fewer when the profile is shorter)
	Kept      int // of those, items the prompts held
	Fewest    int // the fewest items a prompt held
	Cut       int // prompts that dropped at least one item
}

// MeasureProfileUse encodes each example's prompt as the predict stage
// does (tok's chat template, o's retrieval and budget) and counts the
// profile items kept.
func MeasureProfileUse(tok *tokenize.Tokenizer, t *datasets.Task, examples []*datasets.Example, tx rewardmodel.Taxonomy, o PromptOptions) (ProfileUse, error) {
	parts := make([]tokenize.PromptParts, len(examples))
	for i, ex := range examples {
		parts[i] = Parts(t, ex, tx, o, false)
	}
	encs, err := tok.EncodePrompts(parts, tokenize.DefaultPromptLayout, o.MaxTokens)
	if err != nil {
		return ProfileUse{}, fmt.Errorf("profile items in %s prompts: %w", t.Name, err)
	}
	var u ProfileUse
	for i, e := range encs {
		u.Add(len(parts[i].Profile), e.ProfileKept)
	}
	return u, nil
}

// Add counts one prompt that held kept of its retrieved items.
func (u *ProfileUse) Add(retrieved, kept int) {
	if u.Prompts == 0 || kept < u.Fewest {
		u.Fewest = kept
	}
	u.Prompts++
	u.Retrieved += retrieved
	u.Kept += kept
	if kept < retrieved {
		u.Cut++
	}
}

// Note says it in a sentence for a report or a log: what the prompts are
// ("prompts", "SFT sequences") and the key of their budget.
func (u ProfileUse) Note(what, budgetKey string, budget int) string {
	if u.Prompts == 0 {
		return ""
	}
	n := float64(u.Prompts)
	s := fmt.Sprintf("%s held %.1f of %.1f retrieved profile items on average", what, float64(u.Kept)/n, float64(u.Retrieved)/n)
	if u.Cut == 0 {
		return s + " (none dropped)"
	}
	return s + fmt.Sprintf("; %d of %d dropped items to fit %s %d (the fewest held: %d)", u.Cut, u.Prompts, budgetKey, budget, u.Fewest)
}
