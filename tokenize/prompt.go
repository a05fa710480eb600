package tokenize

import (
	"fmt"
	"strconv"
	"strings"
)

// PromptParts is a personalization prompt in the parts truncation treats
// differently: only profile items may be dropped.
type PromptParts struct {
	System      string   // optional system message
	Instruction string   // the task instruction; never cut
	Profile     []string // profile items, most relevant first; cut from the end
	Input       string   // the query; never cut
	Answer      string   // the target for training; "" for generation
}

// PromptLayout renders the user message from the parts.
type PromptLayout struct {
	ProfileHeader string // written before the items, e.g. "User history:\n"
	// Item formats profile item i (0-based).
	Item      func(i int, item string) string
	InputHead string // written before the input, e.g. "\nInput:\n"
}

// DefaultPromptLayout numbers the items: "[1] …".
var DefaultPromptLayout = PromptLayout{
	ProfileHeader: "User profile:\n",
	Item:          func(i int, item string) string { return "[" + strconv.Itoa(i+1) + "] " + item + "\n" },
	InputHead:     "\nInput:\n",
}

// Messages renders the parts with the first k profile items.
func (l PromptLayout) Messages(p PromptParts, k int) []Message {
	var u strings.Builder
	u.WriteString(p.Instruction)
	if k > 0 {
		if u.Len() > 0 {
			u.WriteString("\n\n")
		}
		u.WriteString(l.ProfileHeader)
		for i := 0; i < k; i++ {
			u.WriteString(l.Item(i, p.Profile[i]))
		}
	}
	u.WriteString(l.InputHead)
	u.WriteString(p.Input)
	var msgs []Message
	if p.System != "" {
		msgs = append(msgs, Message{Role: "system", Content: p.System})
	}
	msgs = append(msgs, Message{Role: "user", Content: u.String()})
	if p.Answer != "" {
		msgs = append(msgs, Message{Role: "assistant", Content: p.Answer})
	}
	return msgs
}

// Prompt is an encoded, budget-fitted prompt.
type Prompt struct {
	ChatEncoding
	ProfileKept int // how many profile items survived truncation
}

// ErrPromptTooLong is returned when even without profile items the prompt
// exceeds the budget: tagpr never cuts the instruction, input or answer.
var ErrPromptTooLong = fmt.Errorf("prompt too long")

// EncodePrompt renders parts as a chat (with the generation prompt when
// Answer is empty) and keeps as many leading profile items as fit in
// maxTokens (0: no limit).
func (t *Tokenizer) EncodePrompt(p PromptParts, layout PromptLayout, maxTokens int) (Prompt, error) {
	if layout.Item == nil {
		layout = DefaultPromptLayout
	}
	gen := p.Answer == ""
	encode := func(k int) (ChatEncoding, error) {
		return t.EncodeChat(layout.Messages(p, k), gen)
	}
	full, err := encode(len(p.Profile))
	if err != nil {
		return Prompt{}, err
	}
	if maxTokens <= 0 || len(full.IDs) <= maxTokens {
		return Prompt{ChatEncoding: full, ProfileKept: len(p.Profile)}, nil
	}
	// Token count grows with k: binary search the largest k that fits.
	lo, hi := 0, len(p.Profile)-1 // answer in [lo, hi]; hi+1 known too long
	best, err := encode(0)
	if err != nil {
		return Prompt{}, err
	}
	if len(best.IDs) > maxTokens {
		return Prompt{}, fmt.Errorf("%w: %d tokens without any profile item, budget %d", ErrPromptTooLong, len(best.IDs), maxTokens)
	}
	bestK := 0
	lo = 1
	for lo <= hi {
		mid := (lo + hi) / 2
		e, err := encode(mid)
		if err != nil {
			return Prompt{}, err
		}
		if len(e.IDs) <= maxTokens {
			best, bestK, lo = e, mid, mid+1
		} else {
			hi = mid - 1
		}
	}
	return Prompt{ChatEncoding: best, ProfileKept: bestK}, nil
}

// TagTokens lists the strings to register for a tag taxonomy: <think>,
// </think>, <answer>, </answer> and an opening and closing tag per name.
func TagTokens(taxonomy []string) []string {
	out := []string{"<think>", "</think>", "<answer>", "</answer>"}
	for _, n := range taxonomy {
		out = append(out, "<"+n+">", "</"+n+">")
	}
	return out
}

// RegisterTags adds the tag tokens of a taxonomy as (non-special) added
// tokens, so each tag is one id; tags the vocabulary already has keep their
// id. It returns the ids in TagTokens order and the new vocabulary size the
// model's embedding must be resized to.
func (t *Tokenizer) RegisterTags(taxonomy []string) (ids []int64, vocabSize int) {
	ids = t.AddTokens(TagTokens(taxonomy), false)
	return ids, t.VocabSize()
}
