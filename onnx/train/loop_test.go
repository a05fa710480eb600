package train

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/onnx/lm"
)

// TestTrimLog: lines past the checkpoint go, a last line cut by a crash
// goes, a broken line before the end is an error naming file and line.
func TestTrimLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), LogFile)
	good := `{"step":1,"loss":2}` + "\n" + `{"step":2,"loss":1}` + "\n"
	for _, c := range []struct {
		name, log, want string
		step            int
	}{
		{"past the checkpoint", good + `{"step":3,"loss":0.5}` + "\n", good, 2},
		{"cut mid-write", good + `{"step":3,"lo`, good, 3},
		{"nothing to drop", good, good, 2},
		{"all redone", good, "", 0},
	} {
		if err := os.WriteFile(path, []byte(c.log), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := TrimLog(path, c.step); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got, _ := os.ReadFile(path); string(got) != c.want {
			t.Errorf("%s: log after trimming to step %d:\n%s\nwant\n%s", c.name, c.step, got, c.want)
		}
	}
	if err := os.WriteFile(path, []byte(`{"step":1}`+"\ngarbage\n"+`{"step":2}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := TrimLog(path, 2); err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("broken middle line: %v", err)
	}
	if _, err := ReadLog[StepLog](path); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("reading a log with a broken middle line: %v", err)
	}
	if err := TrimLog(filepath.Join(t.TempDir(), "none.jsonl"), 3); err != nil {
		t.Fatalf("a missing log: %v", err)
	}
}

// TestLoopSaysWhereItStopped: an interrupted loop saves a checkpoint of its
// last whole step and says which step and where, so the message on Ctrl-C
// tells what a rerun resumes from.
// tinyLMTrainer is a trainer of the tiny Llama (batch 2 × 9 tokens) for a
// run of steps; it closes with the test.
func tinyLMTrainer(t *testing.T, steps int) (*Trainer, *TrainingGraph) {
	t.Helper()
	m, err := lm.Build(tinyConfig(lm.Llama, "float32"))
	if err != nil {
		t.Fatal(err)
	}
	tg, _, err := BuildLMTraining(m, LMTraining{Batch: 2, SeqLen: 9})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := NewTrainer(tg, TrainerOptions{Schedule: Schedule{Peak: 1e-3, Total: steps}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Close)
	return tr, tg
}

func TestLoopSaysWhereItStopped(t *testing.T) {
	tr, tg := tinyLMTrainer(t, 10)
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var notes []string
	var last Progress
	loop := &Loop{Trainer: tr, Data: &LMDataset{Rows: randomRows(4, 7, 5, 9, 8), SeqLen: 9, Graph: tg},
		BatchSize: 2, Steps: 10, Dir: dir, CheckpointEvery: 5, Seed: 1, Stage: "sft",
		Progress: func(p Progress) {
			last = p
			if p.Note != "" {
				notes = append(notes, p.Note)
			}
			if p.Step == 2 {
				cancel()
			}
		}}
	st, err := loop.Run(ctx)
	if !errors.Is(err, context.Canceled) || st.Step != 2 {
		t.Fatalf("interrupted after step 2: step %d, %v", st.Step, err)
	}
	want := "stopped after step 2 of 10; checkpoint in " + dir
	if len(notes) != 1 || !strings.Contains(notes[0], want) {
		t.Errorf("notes %q; want one saying %q", notes, want)
	}
	// A progress bar reading Step and Total stays at 2 of 10, not 0 of 0.
	if last.Note == "" || last.Step != 2 || last.Total != 10 {
		t.Errorf("the stop note reports step %d of %d; want 2 of 10", last.Step, last.Total)
	}
	if saved, err := LoadCheckpoint(dir, tr.Params, nil); err != nil || saved.Step != 2 {
		t.Errorf("checkpoint after the interrupt: step %d, %v", saved.Step, err)
	}
}
