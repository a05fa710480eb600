package pipeline

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/ort"
	"github.com/tagpr/tagpr/onnx/train"
)

func tinyDemo(dir string) DemoConfig {
	cfg := DefaultDemoConfig(dir)
	cfg.Synth.Users = 15
	cfg.Synth.QueriesPerUser = 2
	cfg.Vocab = 1024
	cfg.Model = lm.Config{Arch: lm.Llama, Layers: 1, DModel: 32, Heads: 2, KVHeads: 1, MaxPositions: 512, Seed: 3}
	cfg.SFT = SFTConfig{Steps: 6, Batch: 2, SeqLen: 320, LR: 3e-3, Warmup: 1, Clip: 1, CheckpointEvery: 2, Seed: 5}
	cfg.Eval = EvalOptions{Examples: 3, Batch: 3, MaxNewTokens: 24}
	return cfg
}

// TestDemoEndToEndAndResume runs the whole built-in job small: an
// interrupted SFT resumes, finished stages are not redone, and the report,
// predictions and exported model are real files that load again.
func TestDemoEndToEndAndResume(t *testing.T) {
	if err := ort.Init(""); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := tinyDemo(dir)
	ctx, cancel := context.WithCancel(context.Background())
	hooks := Hooks{SFTStep: func(l train.StepLog, total int) {
		if l.Step == 3 {
			cancel() // Ctrl-C in the middle of SFT
		}
	}}
	if _, err := RunDemo(ctx, cfg, hooks); err != context.Canceled {
		t.Fatalf("interrupted run: got %v, want context.Canceled", err)
	}
	if exists(filepath.Join(dir, "sft", "model.onnx")) {
		t.Fatal("an interrupted SFT exported a model")
	}
	tokBefore, _ := os.ReadFile(filepath.Join(dir, "tokenizer", "tokenizer.json"))
	var resumedAt int
	rep, err := RunDemo(context.Background(), cfg, Hooks{SFTStep: func(l train.StepLog, total int) {
		if resumedAt == 0 {
			resumedAt = l.Step
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	// Cancelled after step 3, the loop checkpoints step 3: the rerun's first step is 4.
	if resumedAt != 4 {
		t.Fatalf("the rerun's first SFT step is %d, want 4 (resumed from the checkpoint left at cancel)", resumedAt)
	}
	tokAfter, _ := os.ReadFile(filepath.Join(dir, "tokenizer", "tokenizer.json"))
	if string(tokBefore) != string(tokAfter) {
		t.Fatal("the rerun retrained the tokenizer")
	}
	if len(rep.Tasks) != 3 {
		t.Fatalf("report has %d tasks, want 3", len(rep.Tasks))
	}
	for _, task := range rep.Tasks {
		if task.Examples != 3 || len(task.Model) == 0 || len(task.Base) == 0 {
			t.Fatalf("task %+v", task)
		}
	}
	md, err := os.ReadFile(filepath.Join(dir, "report.md"))
	if err != nil || !strings.Contains(string(md), datasets.SynthRate) {
		t.Fatalf("report.md: %v\n%s", err, md)
	}
	preds, err := datasets.ReadPredictions(filepath.Join(dir, "predictions", datasets.SynthTag+"_dev.arrow"), datasets.ReadOptions{})
	if err != nil || len(preds) != 6 {
		t.Fatalf("predictions: %d rows, %v", len(preds), err)
	}
	m, err := lm.Load(filepath.Join(dir, "sft"), lm.LoadOptions{})
	if err != nil {
		t.Fatalf("exported SFT model does not load: %v", err)
	}
	m.Close()
}
