package pipeline

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"github.com/tagpr/tagpr/onnx/train"
)

// TestPRMUPolicySamplesReportProgress: sampling stages.prmu.policy_samples
// completions from the SFT model said it began and then nothing until the
// PRMU training's first step (a minute a task at 0.5B with 8 examples);
// each batch now reports its progress, ending at the task's example count.
func TestPRMUPolicySamplesReportProgress(t *testing.T) {
	cfg := tinyRun(filepath.Join(t.TempDir(), "run"))
	cfg.Stages.PRMU.PolicySamples = 2
	var mu sync.Mutex
	var reports []train.Progress
	opts := RunOptions{Only: []string{StageChains, StageSFT, StagePRMU}, Progress: func(p train.Progress) {
		mu.Lock()
		defer mu.Unlock()
		reports = append(reports, p)
	}}
	if _, err := Run(context.Background(), cfg, opts); err != nil {
		t.Fatal(err)
	}
	ends := 0
	for _, p := range reports {
		if p.Task == StagePRMU && p.Note == "" && p.Metrics["samples"] > 0 && p.Step == p.Total {
			ends++
		}
	}
	if ends == 0 {
		t.Fatalf("no progress of the policy samples in %d reports", len(reports))
	}
}
