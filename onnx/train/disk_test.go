package train

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A loop whose checkpoints and export would not fit the free disk is
// refused before its first step, naming the folder, the need and what was
// free; with room it runs, and a resumed run counts the checkpoints already
// on disk as written. RemoveCheckpoints then leaves the logs and settings.
func TestLoopChecksDiskAndRemoveCheckpoints(t *testing.T) {
	if free, ok := FreeDisk(t.TempDir()); !ok || free <= 0 {
		t.Fatalf("FreeDisk of a temp folder: %d, %v", free, ok)
	}
	tr, tg := tinyLMTrainer(t, 4)
	c := checkpointBytes(tr)
	var weights int64
	for _, p := range tr.Params {
		weights += int64(len(p.Data)) * 4
	}
	if c != 3*weights || c == 0 {
		t.Fatalf("one checkpoint: %d bytes for %d bytes of weights; want weights and two moments", c, weights)
	}
	defer func() { freeDisk = FreeDisk }()
	dir := t.TempDir()
	const export = 1 << 20
	loop := func(steps int) *Loop {
		return &Loop{Trainer: tr, Data: &LMDataset{Rows: randomRows(4, 7, 5, 9, 8), SeqLen: 9, Graph: tg},
			BatchSize: 2, Steps: steps, Dir: dir, CheckpointEvery: 1, Seed: 1, Stage: "sft", ExportBytes: export}
	}
	// Keep 2 (the default): 3 checkpoints while the third is written, or 2
	// and the export.
	need := max(3*c, 2*c+export)
	freeDisk = func(string) (int64, bool) { return need - 1, true }
	st, err := loop(2).Run(context.Background())
	var de *DiskError
	if !errors.As(err, &de) || st.Step != 0 || de.Need != need || de.Free != need-1 {
		t.Fatalf("one byte short: step %d, %v (%+v); want a DiskError needing %d", st.Step, err, de, need)
	}
	for _, s := range []string{dir, "free space on that disk", "3 checkpoints of", "the trained model"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("the refusal %q does not say %q", err, s)
		}
	}
	if old, _ := filepath.Glob(filepath.Join(dir, "step-*")); len(old) != 0 {
		t.Fatalf("a refused run wrote checkpoints %v", old)
	}
	freeDisk = func(string) (int64, bool) { return need, true }
	if st, err := loop(2).Run(context.Background()); err != nil || st.Step != 2 {
		t.Fatalf("with room: step %d, %v", st.Step, err)
	}
	// Resumed with two checkpoints on disk: the rest of the need.
	onDisk := DirBytes(filepath.Join(dir, "step-00000001")) + DirBytes(filepath.Join(dir, "step-00000002"))
	if onDisk < 2*c {
		t.Fatalf("two checkpoints take %d bytes on disk; want at least %d", onDisk, 2*c)
	}
	freeDisk = func(string) (int64, bool) { return need - onDisk, true }
	if st, err := loop(4).Run(context.Background()); err != nil || st.Step != 4 {
		t.Fatalf("resumed, counting the checkpoints on disk: step %d, %v", st.Step, err)
	}

	if err := RemoveCheckpoints(dir); err != nil {
		t.Fatal(err)
	}
	if old, _ := filepath.Glob(filepath.Join(dir, "step-*")); len(old) != 0 {
		t.Errorf("checkpoints left: %v", old)
	}
	if _, err := LatestCheckpoint(dir); !errors.Is(err, ErrNoCheckpoint) {
		t.Errorf("LatestCheckpoint after RemoveCheckpoints: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, LogFile)); err != nil {
		t.Errorf("the step log: %v", err)
	}
}
