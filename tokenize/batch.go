package tokenize

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
)

// EncodeBatch encodes texts on all cores (Encode semantics for each).
func (t *Tokenizer) EncodeBatch(texts []string) [][]int64 {
	out := make([][]int64, len(texts))
	parallelFor(len(texts), func(i int) { out[i] = t.Encode(texts[i]) })
	return out
}

// parallelFor runs fn(0..n-1) on GOMAXPROCS goroutines.
func parallelFor(n int, fn func(i int)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	if workers <= 1 {
		for i := 0; i < n; i++ {
			fn(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				fn(i)
			}
		}()
	}
	wg.Wait()
}

// PadSide says where padding goes: left for generation (the last real token
// sits at the end of every row), right for training.
type PadSide int

const (
	PadRight PadSide = iota
	PadLeft
)

// PadOptions configures Pad.
type PadOptions struct {
	Side PadSide
	// PadID is the id written into padding; negative means the tokenizer's
	// pad token (tokenizer_config pad_token, else eos_token, else 0).
	PadID int64
	// MaxLen truncates longer rows (keeping the start for right padding and
	// the end for left padding); 0 keeps every row whole.
	MaxLen int
	// Multiple rounds the padded length up to a multiple of it (0 or 1: none).
	Multiple int
}

// Batch is a padded batch in row-major int64 tensors, ready for ONNX inputs
// of shape [Rows, Len].
type Batch struct {
	Rows, Len     int
	IDs           []int64
	AttentionMask []int64 // 1 on real tokens, 0 on padding
	// LossMask is 1 on tokens to train on (assistant tokens); nil when Pad
	// was given no masks.
	LossMask []int64
	// Lengths are the real (unpadded, possibly truncated) lengths.
	Lengths []int
	Side    PadSide
}

// PadToken is the id Pad uses by default.
func (t *Tokenizer) PadToken() int64 {
	for _, s := range []string{t.config.PAD, t.config.EOS} {
		if id, ok := t.vocab[s]; ok && s != "" {
			return int64(id)
		}
	}
	return 0
}

// Pad lays out sequences as a batch. masks, when non-nil, holds a loss mask
// per sequence (e.g. ChatEncoding.AssistantMask) of the same lengths.
func (t *Tokenizer) Pad(seqs [][]int64, masks [][]bool, opts PadOptions) (*Batch, error) {
	if masks != nil && len(masks) != len(seqs) {
		return nil, fmt.Errorf("pad: %d masks for %d sequences", len(masks), len(seqs))
	}
	pad := opts.PadID
	if pad < 0 {
		pad = t.PadToken()
	}
	b := &Batch{Rows: len(seqs), Lengths: make([]int, len(seqs)), Side: opts.Side}
	for i, s := range seqs {
		if masks != nil && len(masks[i]) != len(s) {
			return nil, fmt.Errorf("pad: sequence %d has %d ids but %d mask entries", i, len(s), len(masks[i]))
		}
		n := len(s)
		if opts.MaxLen > 0 && n > opts.MaxLen {
			n = opts.MaxLen
		}
		b.Lengths[i] = n
		b.Len = max(b.Len, n)
	}
	if opts.Multiple > 1 && b.Len%opts.Multiple != 0 {
		b.Len += opts.Multiple - b.Len%opts.Multiple
	}
	b.IDs = make([]int64, b.Rows*b.Len)
	b.AttentionMask = make([]int64, b.Rows*b.Len)
	if masks != nil {
		b.LossMask = make([]int64, b.Rows*b.Len)
	}
	for i, s := range seqs {
		n := b.Lengths[i]
		src := s[:n]
		var m []bool
		if masks != nil {
			m = masks[i][:n]
		}
		if opts.Side == PadLeft && len(s) > n { // keep the end when left padding
			src = s[len(s)-n:]
			if masks != nil {
				m = masks[i][len(s)-n:]
			}
		}
		row := b.IDs[i*b.Len : (i+1)*b.Len]
		att := b.AttentionMask[i*b.Len : (i+1)*b.Len]
		off := 0
		if opts.Side == PadLeft {
			off = b.Len - n
		}
		for k := range row {
			row[k] = pad
		}
		for k, id := range src {
			row[off+k] = id
			att[off+k] = 1
			if m != nil && m[k] {
				b.LossMask[i*b.Len+off+k] = 1
			}
		}
	}
	return b, nil
}

// Row returns the ids of row i, padding included.
func (b *Batch) Row(i int) []int64 { return b.IDs[i*b.Len : (i+1)*b.Len] }

// DecodeBatch decodes rows of ids on all cores.
func (t *Tokenizer) DecodeBatch(rows [][]int64, skipSpecial bool) ([]string, error) {
	out := make([]string, len(rows))
	errs := make([]error, len(rows))
	parallelFor(len(rows), func(i int) { out[i], errs[i] = t.Decode(rows[i], skipSpecial) })
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("row %d: %w", i, err)
		}
	}
	return out, nil
}

// EncodePrompts is EncodePrompt for many prompts on all cores.
func (t *Tokenizer) EncodePrompts(parts []PromptParts, layout PromptLayout, maxTokens int) ([]Prompt, error) {
	out := make([]Prompt, len(parts))
	errs := make([]error, len(parts))
	parallelFor(len(parts), func(i int) { out[i], errs[i] = t.EncodePrompt(parts[i], layout, maxTokens) })
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("prompt %d: %w", i, err)
		}
	}
	return out, nil
}

// StopTokens is the one rule for the ids that end a completion: the
// model's own end-of-sequence ids (generation_config.json's eos_token_id,
// as Hugging Face's generate uses them; lm.Model.DefaultEOS), then this
// tokenizer's eos token and its chat format's end-of-turn token, those the
// vocabulary has, without repeats. A chat-tuned tokenizer whose model
// config names only the base model's EOS still stops at the end of the turn.
func (t *Tokenizer) StopTokens(modelEOS ...int64) []int64 {
	var ids []int64
	seen := map[int64]bool{}
	add := func(id int64) {
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	for _, id := range modelEOS {
		add(id)
	}
	for _, s := range []string{t.config.EOS, t.ChatFormat().EndOfTurn} {
		if id, ok := t.vocab[s]; ok && s != "" {
			add(int64(id))
		}
	}
	return ids
}
