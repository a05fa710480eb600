package pipeline

import (
	"context"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/onnx/ort"
	"github.com/tagpr/tagpr/onnx/train"
)

// The predict stage holds one model at a time: when it starts on a model,
// the sessions of the models before it are closed (they stayed open until
// the stage ended, so its memory grew with every model it predicted with),
// and a whole run leaves no session open.
func TestPredictClosesEachModelBeforeTheNext(t *testing.T) {
	if err := ort.Init(""); err != nil {
		t.Fatal(err)
	}
	cfg := tinyRun(t.TempDir())
	before := ort.LiveSessions()
	live := map[string]int64{} // open sessions when predicting with each model begins
	var order []string
	progress := train.ProgressFunc(func(p train.Progress) {
		if p.Task != StagePredict {
			return
		}
		for _, m := range cfg.Stages.Predict.Models {
			if _, seen := live[m]; !seen && strings.HasPrefix(p.Note, m+": ") {
				live[m] = ort.LiveSessions()
				order = append(order, m)
			}
		}
	})
	if _, err := Run(context.Background(), cfg, RunOptions{Progress: progress}); err != nil {
		t.Fatal(err)
	}
	if len(order) != len(cfg.Stages.Predict.Models) {
		t.Fatalf("predicted with %v, want %v", order, cfg.Stages.Predict.Models)
	}
	for _, m := range order[1:] {
		if live[m] != live[order[0]] {
			t.Errorf("%d sessions open when predicting with %s began, %d when %s began: the models before it are still open", live[m], m, live[order[0]], order[0])
		}
	}
	if after := ort.LiveSessions(); after != before {
		t.Errorf("%d sessions open after the run, %d before", after, before)
	}
}
