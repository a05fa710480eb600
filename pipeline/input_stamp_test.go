package pipeline

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/rewardmodel"
)

// TestRunRefusesChangedPRMUEncoder: a run whose PRMU was trained with the
// encoder in stages.prmu.encoder.dir refuses to go on when another export
// (here: CLS pooling instead of mean) has taken that folder's place, naming
// the setting, instead of skipping the finished PRMU stage and scoring RL
// with the old encoder while the config names the new one.
func TestRunRefusesChangedPRMUEncoder(t *testing.T) {
	dir := t.TempDir()
	enc := filepath.Join(dir, "encoder")
	for _, f := range rewardmodel.EncoderFiles(encoderFixture) {
		b, err := os.ReadFile(f)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		to := filepath.Join(enc, strings.TrimPrefix(f, encoderFixture+"/"))
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := tinyRun(filepath.Join(dir, "run"))
	cfg.Stages.PRMU.Encoder = &PRMUEncoderConfig{Dir: enc, Tuning: rewardmodel.TuneFrozen}
	ctx := context.Background()
	only := RunOptions{Only: []string{StagePRMU}}
	if _, err := Run(ctx, cfg, only); err != nil {
		t.Fatal(err)
	}
	if _, err := Run(ctx, cfg, only); err != nil {
		t.Fatalf("the same encoder: %v", err)
	}
	pool := filepath.Join(enc, "1_Pooling", "config.json")
	if err := os.WriteFile(pool, []byte(`{"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Run(ctx, cfg, only)
	if err == nil || !strings.Contains(err.Error(), "stages.prmu.encoder.files") {
		t.Fatalf("a run whose encoder folder holds another export: %v, want a refusal naming stages.prmu.encoder.files", err)
	}
}

// TestRunRefusesChangedLocalTeacher: chains made by the local teacher in
// teacher.dir are not reused once another model has been exported into that
// folder at the same size (here: one weight byte changed); the rerun is
// refused naming teacher.sha256. Before, the folder's path was all the
// stamp held of the teacher.
func TestRunRefusesChangedLocalTeacher(t *testing.T) {
	dir := t.TempDir()
	teacher := filepath.Join(dir, "teacher")
	if err := os.CopyFS(teacher, os.DirFS(filepath.Join("..", "onnx", "testdata", "pytorch", "qwen2-chat"))); err != nil {
		t.Fatal(err)
	}
	cfg := tinyRun(filepath.Join(dir, "run"))
	cfg.Teacher = TeacherConfig{Kind: TeacherLocal, Dir: teacher, Temperature: 1, MaxTokens: 8, Labeller: cfg.Teacher.Labeller}
	cfg.Stages.Chains.Samples = 1
	ctx := context.Background()
	only := RunOptions{Only: []string{StageChains}}
	if _, err := Run(ctx, cfg, only); err != nil {
		t.Fatal(err)
	}
	if _, err := Run(ctx, cfg, only); err != nil {
		t.Fatalf("the same teacher: %v", err)
	}
	model := filepath.Join(teacher, "model.onnx")
	b, err := os.ReadFile(model)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-64] ^= 1 // a weight's low bit, near the end of the file
	if err := os.WriteFile(model, b, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Run(ctx, cfg, only)
	if err == nil || !strings.Contains(err.Error(), "teacher.sha256") {
		t.Fatalf("a run whose teacher folder holds another model: %v, want a refusal naming teacher.sha256", err)
	}
}
