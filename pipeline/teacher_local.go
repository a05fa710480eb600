package pipeline

import (
	"context"
	"fmt"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/ort"
	"github.com/tagpr/tagpr/tokenize"
)

// LocalTeacher writes chains with a local ONNX policy: prompts are rendered
// with the tokenizer's chat template and completed in one batched Generate.
type LocalTeacher struct {
	Policy       Policy // model, tokenizer, name and end-of-turn ids
	Sampling     lm.Sampling
	MaxNewTokens int    // default 256
	Seed         uint64 // sampling is reproducible for a fixed seed
	// MaxPromptTokens refuses longer prompts (0: no limit); the chains
	// stage never cuts a prompt silently.
	MaxPromptTokens int
}

// OpenLocalTeacher loads the model folder dir as a teacher speaking tok:
// completions end at the model's eos ids and the tokenizer's stop tokens
// (eos, end of turn). Close releases the model.
func OpenLocalTeacher(dir string, tok *tokenize.Tokenizer, sess ort.Options, s lm.Sampling, maxNewTokens int, seed uint64) (*LocalTeacher, error) {
	m, err := lm.Load(dir, lm.LoadOptions{Session: sess, TokenizerVocab: tok.VocabSize()})
	if err != nil {
		return nil, fmt.Errorf("local teacher: %w", err)
	}
	return &LocalTeacher{Policy: Policy{Model: m, Tok: tok, Name: dir, EOS: tok.StopTokens(m.DefaultEOS()...)}, Sampling: s, MaxNewTokens: maxNewTokens, Seed: seed}, nil
}

// Close releases the teacher's model.
func (t *LocalTeacher) Close() error { return t.Policy.Model.Close() }

// Name is "local:" + the policy's name.
func (t *LocalTeacher) Name() string { return "local:" + t.Policy.Name }

// Complete generates one completion per prompt.
func (t *LocalTeacher) Complete(ctx context.Context, prompts [][]datasets.Message) ([]Completion, error) {
	if t.Policy.Model == nil || t.Policy.Tok == nil {
		return nil, fmt.Errorf("local teacher %s: no model or tokenizer", t.Policy.Name)
	}
	if len(prompts) == 0 {
		return nil, nil
	}
	ids := make([][]int64, len(prompts))
	for i, p := range prompts {
		msgs := make([]tokenize.Message, len(p))
		for k, m := range p {
			msgs[k] = tokenize.Message{Role: m.Role, Content: m.Content}
		}
		enc, err := t.Policy.Tok.EncodeChat(msgs, true)
		if err != nil {
			return nil, fmt.Errorf("local teacher %s: prompt %d: %w", t.Policy.Name, i, err)
		}
		if t.MaxPromptTokens > 0 && len(enc.IDs) > t.MaxPromptTokens {
			return nil, fmt.Errorf("local teacher %s: prompt %d has %d tokens, limit %d", t.Policy.Name, i, len(enc.IDs), t.MaxPromptTokens)
		}
		ids[i] = enc.IDs
	}
	maxNew := t.MaxNewTokens
	if maxNew <= 0 {
		maxNew = 256
	}
	comps, _, err := t.Policy.Model.Generate(ctx, ids, lm.GenerateOptions{MaxNewTokens: maxNew, Sampling: t.Sampling,
		Seed: t.Seed, EOS: t.Policy.EOS, NoLogProbs: true})
	if err != nil {
		return nil, fmt.Errorf("local teacher %s: %w", t.Policy.Name, err)
	}
	out := make([]Completion, len(prompts))
	for _, c := range comps {
		text, err := t.Policy.Tok.DecodeCompletion(c.Tokens)
		if err != nil {
			return nil, fmt.Errorf("local teacher %s: decode completion %d: %w", t.Policy.Name, c.Prompt, err)
		}
		out[c.Prompt].Text = text
		if c.Finish == lm.FinishLength {
			out[c.Prompt].Cut = cutAtBudget
		}
	}
	return out, nil
}
