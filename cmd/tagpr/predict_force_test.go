package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// README: existing output files are kept unless --force. A finished
// `predict --model` run leaves OUT and no parts; running it again used to
// redo every batch and replace OUT without a word. Now it is refused unless
// --force, while an interrupted run (parts left) still resumes.
func TestPredictModelKeepsAFinishedOutUnlessForce(t *testing.T) {
	dir := t.TempDir()
	questions, model := predictModelFixture(t, dir, "4", "dev")
	env := append(runtimeEnv(t), "TAGPR_STAGES_PREDICT_MAX_NEW_TOKENS=4")
	out := filepath.Join(dir, "preds.json")
	predict := []string{"predict", "--model", model, "--task", "synth_tag", "--questions", questions, "--out", out}
	if _, stderr, err := runTagpr(t, dir, env, predict...); err != nil {
		t.Fatalf("first run: %v\n%s", err, stderr)
	}
	if err := os.WriteFile(out, []byte("kept"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := runTagpr(t, dir, env, predict...); err == nil || !strings.Contains(stderr, "preds.json exists; pass --force") {
		t.Fatalf("second run without --force: err %v, stderr:\n%s", err, stderr)
	}
	if b, _ := os.ReadFile(out); string(b) != "kept" {
		t.Fatalf("a refused run changed %s", out)
	}
	if stdout, stderr, err := runTagpr(t, dir, env, append(predict, "--force")...); err != nil || !strings.Contains(stdout, "predicted") {
		t.Fatalf("--force: %v\n%s%s", err, stdout, stderr)
	}
	if b, _ := os.ReadFile(out); !strings.Contains(string(b), `"golds"`) {
		t.Fatalf("--force did not rewrite %s: %.80s", out, b)
	}
}

// predict --model reads stages.predict.batch and max_new_tokens and the
// retrieval keys from the config; 0 or less was silently taken as 16 or 160
// (TAGPR_STAGES_PREDICT_MAX_NEW_TOKENS=0 generated 160 tokens). Refused now,
// naming the key and the variable, before any work.
func TestPredictModelChecksTheConfigKeysItReads(t *testing.T) {
	dir := t.TempDir()
	questions, model := predictModelFixture(t, dir, "4", "dev")
	for _, c := range []struct{ env, want string }{
		{"TAGPR_STAGES_PREDICT_MAX_NEW_TOKENS=0", "stages.predict.max_new_tokens from TAGPR_STAGES_PREDICT_MAX_NEW_TOKENS"},
		{"TAGPR_STAGES_PREDICT_BATCH=-1", "stages.predict.batch from TAGPR_STAGES_PREDICT_BATCH"},
		{"TAGPR_RETRIEVAL_TOP_K=-1", "retrieval.top_k from TAGPR_RETRIEVAL_TOP_K"},
	} {
		out := filepath.Join(dir, "preds.json")
		_, stderr, err := runTagpr(t, dir, append(runtimeEnv(t), c.env), "predict", "--model", model, "--task", "synth_tag", "--questions", questions, "--out", out)
		if err == nil || !strings.Contains(stderr, c.want) {
			t.Errorf("%s: %v\n%s", c.env, err, stderr)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("%s: predictions were written", c.env)
			os.Remove(out)
		}
	}
}
