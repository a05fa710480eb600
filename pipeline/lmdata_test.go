package pipeline

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/tokenize"
)

// bosTokenizer is a small trained BPE tokenizer whose post-processor puts
// <s> before a sequence, as Llama's and Mistral's do.
func bosTokenizer(t *testing.T) *tokenize.Tokenizer {
	t.Helper()
	tok, err := tokenize.Train(tokenize.TrainOptions{Corpus: []string{"the cat sat on the mat", "a dog ran to the cat"},
		VocabSize: 300, SpecialTokens: []string{"<s>", "</s>"}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "tokenizer.json")
	if err := tok.Save(path); err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	b, _ := os.ReadFile(path)
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	raw["post_processor"] = map[string]any{"type": "TemplateProcessing",
		"single":         []any{map[string]any{"SpecialToken": map[string]any{"id": "<s>", "type_id": 0}}, map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}}},
		"pair":           []any{map[string]any{"SpecialToken": map[string]any{"id": "<s>", "type_id": 0}}, map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}}, map[string]any{"Sequence": map[string]any{"id": "B", "type_id": 1}}},
		"special_tokens": map[string]any{"<s>": map[string]any{"id": "<s>", "ids": []any{0}, "tokens": []any{"<s>"}}}}
	b, _ = json.Marshal(raw)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if tok, err = tokenize.Load(path); err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestLMRowsStartWithBOS: texts and prompts start with the tokenizer's BOS,
// as transformers' tokenizer (and so TRL's SFTTrainer) and tagpr's own
// generation (`model generate --prompt`, `serve`) put it there; the prompt
// length counts it; pre-tokenized ids are used as is.
func TestLMRowsStartWithBOS(t *testing.T) {
	tok := bosTokenizer(t)
	const bos, eos = 0, 1
	enc := tok.Encode
	o := LMRowsOptions{Source: "test", Tok: tok, SeqLen: 64, EOS: eos}

	rows, prompts, err := LMRows(datasets.TextSet{Texts: []string{"the cat sat"}}, o)
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Concat([]int64{bos}, enc("the cat sat"), []int64{eos})
	if len(rows) != 1 || !slices.Equal(rows[0], want) || prompts != nil {
		t.Errorf("text row %v (prompts %v), want %v (as tokenizer(text) + EOS)", rows, prompts, want)
	}

	rows, prompts, err = LMRows(datasets.TextSet{Prompts: []string{"the cat"}, Texts: []string{" sat on"}}, o)
	if err != nil {
		t.Fatal(err)
	}
	p := slices.Concat([]int64{bos}, enc("the cat"))
	want = slices.Concat(p, enc(" sat on"), []int64{eos})
	if len(rows) != 1 || !slices.Equal(rows[0], want) || len(prompts) != 1 || prompts[0] != len(p) {
		t.Errorf("prompt/completion row %v with prompt %v, want %v with prompt %d", rows, prompts, want, len(p))
	}

	ids := []int64{5, 6, 7, eos}
	rows, _, err = LMRows(datasets.TextSet{IDs: [][]int64{ids}}, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || !slices.Equal(rows[0], ids) {
		t.Errorf("pre-tokenized row %v, want %v as given", rows, ids)
	}
}

// chatTemplates are the chat templates transformers' fixture was recorded
// with, by name (llama3.2: Llama-3.2-Instruct's, which writes today's date).
func chatTemplates(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "tokenize", "testdata", "chat_hf.json"))
	if err != nil {
		t.Fatal(err)
	}
	var fx struct{ Templates map[string]string }
	if err := json.Unmarshal(raw, &fx); err != nil {
		t.Fatal(err)
	}
	return fx.Templates
}

// A run renders Llama 3.2's chats with the template's own fallback date, not
// today's, whether the template is detected or named: its prompts (SFT data,
// rollouts, predictions, their stamps) must not change with the day.
func TestRunChatFormatUndated(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokenizer.json")
	if err := bosTokenizer(t).Save(path); err != nil {
		t.Fatal(err)
	}
	tj, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := json.Marshal(map[string]string{"chat_template": chatTemplates(t)["llama3.2"]})
	for _, name := range []string{"auto", "llama3.2"} {
		tok, err := tokenize.Parse(tj, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := setChatFormat(tok, name); err != nil {
			t.Fatal(err)
		}
		e, err := tok.EncodeChatWith([]tokenize.Message{{Role: "user", Content: "q"}}, tokenize.ChatOptions{AddGenerationPrompt: true})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(e.Text, "Today Date: 26 Jul 2024\n") {
			t.Errorf("chat_template %s: %q; want the template's fixed date", name, e.Text)
		}
	}
}

// TestLMRowsLongPromptsSayTheLength: when every prompt filled seq_len the
// error said so but not how long the prompts were, so the fix (a longer
// --seq-len) was a guess; it names the shortest prompt's length.
func TestLMRowsLongPromptsSayTheLength(t *testing.T) {
	tok := bosTokenizer(t)
	o := LMRowsOptions{Source: "chains.parquet", Tok: tok, SeqLen: 3, EOS: 1}
	p1, p2 := "the cat sat on the mat", "the cat sat"
	n := len(tok.Encode(p2)) + len(tok.SpecialPrefix())
	_, _, err := LMRows(datasets.TextSet{Prompts: []string{p1, p2}, Texts: []string{" ok", " ok"}}, o)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("the shortest is %d tokens", n)) || !strings.Contains(err.Error(), "--seq-len") {
		t.Fatalf("err %v, want the shortest prompt's %d tokens and --seq-len", err, n)
	}
}
