package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// tagpr model init → info → generate, as a user runs them.
func TestModelInitInfoGenerate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tiny")
	out, stderr, err := runTagpr(t, ".", nil, "model", "init", "--arch", "llama", "--layers", "2", "--d-model", "64",
		"--heads", "4", "--kv-heads", "2", "--vocab", "300", "--eos-token-id", "2", "--seed", "7", "--out", dir)
	if err != nil {
		t.Fatalf("model init: %v\n%s", err, stderr)
	}
	if !strings.Contains(out, "model.onnx") {
		t.Errorf("init output: %s", out)
	}
	for _, f := range []string{"model.onnx", "config.json", "generation_config.json"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("init did not write %s", f)
		}
	}
	if _, stderr, err := runTagpr(t, ".", nil, "model", "init", "--out", dir); err == nil || !strings.Contains(stderr, "--force") {
		t.Errorf("init over an existing model: %v %s", err, stderr)
	}

	out, stderr, err = runTagpr(t, ".", nil, "model", "info", dir)
	if err != nil {
		t.Fatalf("model info: %v\n%s", err, stderr)
	}
	for _, want := range []string{"ir version   10", "ai.onnx 23", "layers     2", "4 query, 2 kv (head_dim 16)", "vocab      300", "past_key_values.1.value", "present.1.key"} {
		if !strings.Contains(out, want) {
			t.Errorf("info lacks %q:\n%s", want, out)
		}
	}
	if _, stderr, err := runTagpr(t, ".", nil, "model", "info", "--tokenizer-vocab", "1000", dir); err == nil || !strings.Contains(stderr, `"logits" has vocab 300`) {
		t.Errorf("info with a bigger tokenizer: %v %s", err, stderr)
	}

	out, stderr, err = runTagpr(t, ".", nil, "model", "generate", dir, "--ids", "1,5,9;1,7", "--max-new-tokens", "5",
		"--temperature", "1", "--num-generations", "2", "--seed", "3", "--ignore-eos", "--json")
	if err != nil {
		t.Fatalf("model generate: %v\n%s", err, stderr)
	}
	var res struct {
		Completions []struct {
			Prompt       int       `json:"prompt"`
			Sample       int       `json:"sample"`
			TokenIDs     []int64   `json:"token_ids"`
			LogProbs     []float32 `json:"logprobs"`
			FinishReason string    `json:"finish_reason"`
			Text         *string   `json:"text"`
		} `json:"completions"`
		Stats map[string]float64 `json:"stats"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("generate --json: %v\n%s", err, out)
	}
	if len(res.Completions) != 4 || len(res.Completions[3].TokenIDs) != 5 || len(res.Completions[3].LogProbs) != 5 ||
		res.Completions[3].Prompt != 1 || res.Completions[3].Sample != 1 || res.Completions[3].FinishReason != "length" || res.Completions[3].Text != nil {
		t.Errorf("completions: %+v", res.Completions)
	}
	for _, k := range []string{"prompt_tokens", "generated_tokens", "prefill_ms", "decode_ms", "decode_tokens_per_second"} {
		if _, ok := res.Stats[k]; !ok {
			t.Errorf("stats lack %q: %v", k, res.Stats)
		}
	}
	if res.Stats["generated_tokens"] != 20 || res.Stats["prompt_tokens"] != 5 {
		t.Errorf("stats: %v", res.Stats)
	}
	if _, stderr, err := runTagpr(t, ".", nil, "model", "generate", dir, "--ids", "1,x"); err == nil || !strings.Contains(stderr, `"x" is not a token id`) {
		t.Errorf("bad ids: %v %s", err, stderr)
	}
}

// tinyGenerateModel is a one-layer built-in model with a 300-token
// vocabulary (EOS 2), for model generate's checks.
func tinyGenerateModel(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tiny")
	if _, stderr, err := runTagpr(t, ".", nil, "model", "init", "--arch", "llama", "--layers", "1", "--d-model", "32",
		"--heads", "2", "--kv-heads", "1", "--vocab", "300", "--eos-token-id", "2", "--seed", "7", "--out", dir); err != nil {
		t.Fatalf("model init: %v\n%s", err, stderr)
	}
	return dir
}

// model generate refuses flags it cannot honour, and more sequences than the
// machine holds, before any work (a negative temperature ran greedy,
// --num-generations 0 ran one, and a huge count died with "fatal error:
// runtime: out of memory").
func TestModelGenerateRefusesBadFlags(t *testing.T) {
	dir := tinyGenerateModel(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--temperature", "-1"}, "--temperature -1: want 0 (greedy) or ≥ 1e-30"},
		{[]string{"--num-generations", "0"}, "--num-generations 0: want ≥ 1"},
		{[]string{"--stop", ""}, "--stop 1 is empty"},
		{[]string{"--num-generations", "1000000000"}, "lower --num-generations"},
	} {
		args := append([]string{"model", "generate", dir, "--ids", "1,5", "--max-new-tokens", "2"}, c.args...)
		_, stderr, err := runTagpr(t, ".", nil, args...)
		if err == nil || !strings.Contains(stderr, c.want) || strings.Contains(stderr, "goroutine") {
			t.Errorf("model generate %v: %v, stderr %q; want a refusal with %q", c.args, err, stderr, c.want)
		}
	}
}

// An interrupted model generate keeps nothing (its completions are printed
// at the end), so it says a rerun starts over; it said "rerun the same
// command to resume".
func TestModelGenerateInterruptedStartsOver(t *testing.T) {
	dir := tinyGenerateModel(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // Ctrl-C before the first step
	cmd := modelGenerateCmd()
	cmd.SetArgs([]string{dir, "--ids", "1,5", "--max-new-tokens", "8"})
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	err := cmd.ExecuteContext(ctx)
	if !errors.Is(err, context.Canceled) || !strings.Contains(interruptedMessage(err), "starts over") {
		t.Fatalf("interrupted model generate: %v, says %q; want context.Canceled and that a rerun starts over", err, interruptedMessage(err))
	}
}
