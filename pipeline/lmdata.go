package pipeline

import (
	"fmt"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/tokenize"
)

// LMRowsOptions turn a text set into training rows.
type LMRowsOptions struct {
	Source string              // the data file, for messages
	Tok    *tokenize.Tokenizer // needed unless the set is pre-tokenized
	SeqLen int
	// EOS, when ≥ 0, ends every text and completion (chats end with the
	// chat format's end-of-turn token already).
	EOS int64
	// Vocab and MaxPositions, when > 0, refuse ids and lengths the model
	// cannot take; ModelConfig names the file they come from.
	Vocab, MaxPositions int
	ModelConfig         string
}

// LMRows tokenizes a text set into rows of at most SeqLen tokens. Plain
// texts are cut into windows; prompt/completion rows and chats (through the
// tokenizer's chat template) are truncated, and their prompt tokens are not
// targets: promptLen gives each row's prompt length (nil for plain texts).
// A text, or a prompt, starts with the tokens the tokenizer's post-processor
// puts before a sequence (Llama's and Mistral's BOS), as transformers'
// tokenizer(text) and so TRL's SFTTrainer do; a model trained without it
// would meet it at inference only. Pre-tokenized input_ids are used as is.
func LMRows(d datasets.TextSet, o LMRowsOptions) (rows [][]int64, promptLen []int, err error) {
	if (d.Texts != nil || d.Chats != nil) && o.Tok == nil {
		return nil, nil, fmt.Errorf("%s: texts need a tokenizer (or give an input_ids column)", o.Source)
	}
	enc := o.Tok.Encode
	skipped, shortest := 0, 0 // rows whose prompt fills the window; the shortest such prompt
	// withPrompt adds a prompt + completion row cut to SeqLen.
	withPrompt := func(ids []int64, prompt int) {
		if prompt >= min(len(ids), o.SeqLen) {
			if skipped == 0 || prompt < shortest {
				shortest = prompt
			}
			skipped++ // the prompt fills the window: nothing to learn
			return
		}
		rows = append(rows, ids[:min(len(ids), o.SeqLen)])
		promptLen = append(promptLen, prompt)
	}
	switch {
	case d.Chats != nil:
		for i, chat := range d.Chats {
			msgs := make([]tokenize.Message, len(chat))
			for k, m := range chat {
				msgs[k] = tokenize.Message{Role: m.Role, Content: m.Content}
			}
			e, err := o.Tok.EncodeChat(msgs, false)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: chat %d: %w", o.Source, i, err)
			}
			prompt := len(e.IDs)
			for k, m := range e.AssistantMask {
				if m {
					prompt = k
					break
				}
			}
			withPrompt(e.IDs, prompt)
		}
	default:
		var bos []int64 // the post-processor's prefix: on each text, or each prompt
		if o.Tok != nil {
			bos = o.Tok.SpecialPrefix()
		}
		ids := d.IDs
		for _, t := range d.Texts {
			if d.Prompts != nil { // a completion
				ids = append(ids, enc(t))
				continue
			}
			ids = append(ids, append(append([]int64{}, bos...), enc(t)...))
		}
		for i, r := range ids {
			if o.EOS >= 0 && (len(r) == 0 || r[len(r)-1] != o.EOS) {
				r = append(r, o.EOS)
			}
			if d.Prompts != nil {
				p := append(append([]int64{}, bos...), enc(d.Prompts[i])...)
				withPrompt(append(append([]int64{}, p...), r...), len(p))
				continue
			}
			for start := 0; start < len(r); start += o.SeqLen {
				end := min(start+o.SeqLen, len(r))
				if end-start >= 2 {
					rows = append(rows, r[start:end])
				}
			}
		}
	}
	if len(rows) == 0 {
		if skipped > 0 {
			return nil, nil, fmt.Errorf("%s: every prompt is at least seq_len %d tokens long (the shortest is %d tokens, chat template included), "+
				"so no completion token is left to train on: raise --seq-len above %d", o.Source, o.SeqLen, shortest, shortest)
		}
		return nil, nil, fmt.Errorf("%s holds no text of 2 tokens or more", o.Source)
	}
	if o.MaxPositions > 0 && o.SeqLen > o.MaxPositions {
		return nil, nil, fmt.Errorf("seq_len %d is longer than the model's %d positions (%s)", o.SeqLen, o.MaxPositions, o.ModelConfig)
	}
	if o.Vocab > 0 {
		for i, r := range rows {
			for _, id := range r {
				if id < 0 || id >= int64(o.Vocab) {
					return nil, nil, fmt.Errorf("token id %d (sequence %d of %s) is outside the model's vocab of %d (%s): tokenizer and model do not match",
						id, i, o.Source, o.Vocab, o.ModelConfig)
				}
			}
		}
	}
	return rows, promptLen, nil
}
