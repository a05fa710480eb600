package pipeline

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
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
	for i := range cfg.RL {
		cfg.RL[i].Steps, cfg.RL[i].PromptsPerStep, cfg.RL[i].NumGenerations = 3, 2, 2
		cfg.RL[i].MaxCompletionLength, cfg.RL[i].CheckpointEvery = 16, 1
	}
	return cfg
}

// TestDemoEndToEndAndResume runs the whole built-in job small: an
// interrupted SFT and an interrupted RL stage resume, finished stages are not
// redone, and the report, predictions and exported models are real files
// that load again.
func TestDemoEndToEndAndResume(t *testing.T) {
	if err := ort.Init(""); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := tinyDemo(dir)
	ctx, cancel := context.WithCancel(context.Background())
	// steps calls f with every step a run reports.
	steps := func(f func(task string, step int)) train.ProgressFunc {
		return func(p train.Progress) {
			if p.Note == "" {
				f(p.Task, p.Step)
			}
		}
	}
	hooks := steps(func(task string, step int) {
		if task == "sft" && step == 3 {
			cancel() // Ctrl-C in the middle of SFT
		}
	})
	if _, err := RunDemo(ctx, cfg, hooks); err != context.Canceled {
		t.Fatalf("interrupted run: got %v, want context.Canceled", err)
	}
	if exists(filepath.Join(dir, "sft", "model.onnx")) {
		t.Fatal("an interrupted SFT exported a model")
	}
	// Resuming the SFT checkpoint with another learning rate is refused, naming it.
	changed := cfg
	changed.SFT.LR = 1e-3
	if _, err := RunDemo(context.Background(), changed, nil); err == nil || !strings.Contains(err.Error(), `lr was "0.003", now "0.001"`) ||
		!strings.Contains(err.Error(), "remove "+filepath.Join(dir, "sft", "checkpoints")) {
		t.Fatalf("resume with another SFT lr: %v", err)
	}
	tokBefore, _ := os.ReadFile(filepath.Join(dir, "tokenizer", "tokenizer.json"))
	var resumedAt int
	ctx, cancel = context.WithCancel(context.Background())
	_, err := RunDemo(ctx, cfg, steps(func(task string, step int) {
		if task == "sft" && resumedAt == 0 {
			resumedAt = step
		}
		if task == "rl guided" && step == 2 {
			cancel() // Ctrl-C in the middle of the first RL stage
		}
	}))
	if err != context.Canceled {
		t.Fatalf("run interrupted in RL: got %v, want context.Canceled", err)
	}
	// Cancelled after step 3, the loop checkpoints step 3: the rerun's first step is 4.
	if resumedAt != 4 {
		t.Fatalf("the rerun's first SFT step is %d, want 4 (resumed from the checkpoint left at cancel)", resumedAt)
	}
	if !exists(filepath.Join(dir, "sft", "model.onnx")) || exists(filepath.Join(dir, "rl", "guided", "model.onnx")) {
		t.Fatal("after an interrupted RL stage: want the SFT model and no guided model")
	}
	var rlSteps []string
	rep, err := RunDemo(context.Background(), cfg, steps(func(task string, step int) {
		if task == "sft" {
			t.Errorf("finished SFT redid step %d", step)
		}
		if stage, ok := strings.CutPrefix(task, "rl "); ok {
			rlSteps = append(rlSteps, fmt.Sprintf("%s%d", stage, step))
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(rlSteps, " "); got != "guided3 exploratory1 exploratory2 exploratory3" {
		t.Fatalf("RL steps of the rerun: %s; want guided resumed at 3, then the exploratory stage", got)
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
	if err != nil || len(preds) != 9 { // base, sft, rl × 3 examples
		t.Fatalf("predictions: %d rows, %v", len(preds), err)
	}
	for _, d := range []string{"sft", "rl/guided", "rl/exploratory"} {
		m, err := lm.Load(filepath.Join(dir, d), lm.LoadOptions{})
		if err != nil {
			t.Fatalf("exported %s model does not load: %v", d, err)
		}
		m.Close()
	}
	if rep.Model != filepath.Join(dir, "rl", "exploratory", "model.onnx") || !strings.Contains(string(md), "rl guided") || !strings.Contains(string(md), "| base | sft | rl |") {
		t.Fatalf("report model %s; report.md:\n%s", rep.Model, md)
	}
	rolls, err := ReadRolloutDir(filepath.Join(dir, "rl", "guided", rlRolloutDir))
	if err != nil || len(rolls) != 3*4 || rolls[0].Completion == "" {
		t.Fatalf("guided rollouts: %d rows, %v", len(rolls), err)
	}

	// A rerun of a finished demo trains nothing and reports the RL stages from their summaries.
	rep2, err := RunDemo(context.Background(), cfg, steps(func(task string, step int) {
		if task == "sft" || strings.HasPrefix(task, "rl ") {
			t.Errorf("finished stage %s redid step %d", task, step)
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep2.Stages) != 2 || rep2.Stages[0].Name != "rl guided" || !reflect.DeepEqual(rep2.Stages, rep.Stages) {
		t.Fatalf("rerun report stages %+v, want the RL stages as first reported %+v", rep2.Stages, rep.Stages)
	}
	// The saved PRMU is reused only under its own recipe.
	changed = cfg
	changed.Prompt.TopK = cfg.Prompt.TopK + 3
	if _, err := RunDemo(context.Background(), changed, nil); err == nil || !strings.Contains(err.Error(), "top_k was") || !strings.Contains(err.Error(), "remove "+filepath.Join(dir, "prmu")) {
		t.Fatalf("reuse of the PRMU under another recipe: %v", err)
	}
}
