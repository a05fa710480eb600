package pipeline

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/tagpr/tagpr/onnx/train"
)

// TestFinishedStageSaysItIsDone: a stage command on a finished stage
// (tagpr chains, sft, prmu train, rl --stage NAME, predict) does no work
// and says so, naming its folder and how to redo it, instead of exiting
// without a word.
func TestFinishedStageSaysItIsDone(t *testing.T) {
	cfg := tinyRun(t.TempDir())
	ctx := context.Background()
	if _, err := Run(ctx, cfg, RunOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ stage, dir string }{
		{StageChains, "chains"}, {StageSFT, "sft"}, {StagePRMU, "prmu"},
		{StageRL + ":guided", filepath.Join("rl", "guided")}, {StageRL + ":exploratory", filepath.Join("rl", "exploratory")},
		{StagePredict, filepath.Join("predictions", "sft")},
	} {
		var mu sync.Mutex
		var notes []string
		_, err := Run(ctx, cfg, RunOptions{Only: []string{c.stage}, Progress: func(p train.Progress) {
			mu.Lock()
			defer mu.Unlock()
			if p.Note != "" {
				notes = append(notes, p.Note)
			}
		}})
		if err != nil {
			t.Fatalf("%s on a finished run: %v", c.stage, err)
		}
		want := "already done in " + filepath.Join(cfg.Out, c.dir) + ", so it is skipped; to redo it, delete that folder"
		if !strings.Contains(strings.Join(notes, "\n"), want) {
			t.Errorf("%s on a finished run noted %q; want a note saying %q", c.stage, notes, want)
		}
	}
}
