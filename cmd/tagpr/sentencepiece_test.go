package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/tokenize"
)

// spTokenizer is a sentencepiece BPE tokenizer as transformers converts
// Llama 2's (scripts/tokenize/sentencepiece_fixture.py).
const spTokenizer = "../../tokenize/testdata/sentencepiece/legacy"

// TestRunSentencepieceEndToEnd: the whole recipe on a model with a
// sentencepiece tokenizer and Llama 2's chat template (what Llama 2,
// Mistral and TinyLlama checkpoints bring): chains from the loopback
// teacher, SFT on the assistant turns, PRMU, both RL stages, predictions,
// eval and the report. Before, such a tokenizer was refused at load.
func TestRunSentencepieceEndToEnd(t *testing.T) {
	dir := t.TempDir()
	tokDir := filepath.Join(dir, "tokenizer")
	if err := os.MkdirAll(tokDir, 0o755); err != nil {
		t.Fatal(err)
	}
	tj, err := os.ReadFile(filepath.Join(spTokenizer, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	tpl, err := os.ReadFile("../../tokenize/chattemplates/llama2.jinja")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := json.Marshal(map[string]any{"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "chat_template": string(tpl)})
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"tokenizer.json": tj, "tokenizer_config.json": cfg} {
		if err := os.WriteFile(filepath.Join(tokDir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	teacher := newChainTeacher(t, lampGolds(t))
	out := filepath.Join(dir, "run")
	body := lampConfig(t, out, teacher.URL)
	policy, _ := filepath.Abs(policyFixture)
	body = strings.Replace(body, "policy: {dir: "+policy+"}", "policy: {builtin: {arch: llama, layers: 1, d_model: 32, heads: 2, kv_heads: 1, ffn: 64, max_positions: 1024, seed: 1}}\n"+
		"tokenizer: {path: "+filepath.Join(tokDir, "tokenizer.json")+"}", 1)
	// An 8,000-token vocabulary takes more tokens for the same prompts.
	body = strings.NewReplacer("max_prompt_tokens: 384", "max_prompt_tokens: 640", "max_prompt_length: 384", "max_prompt_length: 640",
		"seq_len: 640", "seq_len: 896").Replace(body)
	if !strings.Contains(body, "builtin") {
		t.Fatal("the config's policy line was not replaced")
	}
	path := writeConfig(t, dir, "sp.yaml", body)
	stdout, stderr, err := runTagpr(t, dir, runtimeEnv(t), "run", "-c", path)
	if err != nil {
		t.Fatalf("tagpr run with a sentencepiece tokenizer: %v\n%s\n%s", err, stdout, stderr)
	}
	checkLaMPRun(t, out, stdout)
	// The template was read as Llama 2's, and the model the run built
	// stops at its end of turn, </s>.
	tok, err := tokenize.Load(filepath.Join(tokDir, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	if f := tok.ChatFormat(); f.Name != "llama2" || f.EndOfTurn != "</s>" {
		t.Fatalf("chat format %q (end of turn %q), want llama2 (</s>)", f.Name, f.EndOfTurn)
	}
	eos, _ := tok.TokenID("</s>")
	var mc struct {
		EOS any `json:"eos_token_id"`
	}
	readJSONFile(t, filepath.Join(out, "base", "config.json"), &mc)
	if fmt.Sprint(mc.EOS) != fmt.Sprint(eos) && fmt.Sprint(mc.EOS) != fmt.Sprintf("[%d]", eos) {
		t.Errorf("base model's eos_token_id %v, want </s> (%d)", mc.EOS, eos)
	}
}
