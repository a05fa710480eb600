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
