package train

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestResumeWithOtherSettingsIsRefused: a loop records its settings; resuming
// its checkpoint with a changed one fails naming the setting and both values,
// before any step; the same settings resume.
func TestResumeWithOtherSettingsIsRefused(t *testing.T) {
	tg, data := guardLM(t, 0.02)
	dir := t.TempDir()
	run := func(steps int, s RunSettings) error {
		tr, err := NewTrainer(tg, TrainerOptions{Schedule: Schedule{Peak: 1e-3, Total: 4}})
		if err != nil {
			t.Fatal(err)
		}
		defer tr.Close()
		_, err = (&Loop{Trainer: tr, Data: data, BatchSize: 2, Steps: steps, Dir: dir, Seed: 1, Settings: s}).Run(t.Context())
		return err
	}
	base := func() RunSettings {
		return RunSettings{}.Set("lr", 1e-3).Set("clip", 1.0).Set("trainable", []string{"a*", "re:b"}).Set("seed", uint64(1)).Set("model", "/models/qwen")
	}
	if err := run(2, base()); err != nil {
		t.Fatal(err)
	}
	changed := base().Set("lr", 2e-3).Set("clip", 0.5).Set("model", "/models/qwen-2")
	delete(changed, "seed")
	err := run(4, changed)
	var mm *SettingsMismatchError
	if !errors.As(err, &mm) {
		t.Fatalf("resume with other settings: %v", err)
	}
	for _, want := range []string{`clip was "1", now "0.5"`, `lr was "0.001", now "0.002"`, `seed was "1", now (unset)`, `model was "/models/qwen", now "/models/qwen-2"`, filepath.Join(dir, SettingsFile)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%v\nlacks %q", err, want)
		}
	}
	latest, _ := LatestCheckpoint(dir)
	if filepath.Base(latest) != "step-00000002" {
		t.Fatalf("refused resume trained on: %s", latest)
	}
	if err := run(4, base()); err != nil {
		t.Fatalf("resume with the same settings: %v", err)
	}
	// Without a checkpoint there is nothing to resume: new settings are recorded.
	fresh := t.TempDir()
	if err := changed.Record(fresh); err != nil {
		t.Fatal(err)
	}
	dir = fresh
	if err := run(1, base()); err != nil {
		t.Fatalf("run in a folder with settings but no checkpoint: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(fresh, SettingsFile)); !strings.Contains(string(b), `"lr": "0.001"`) {
		t.Fatalf("settings not re-recorded: %s", b)
	}
}

func TestSettingsOf(t *testing.T) {
	type inner struct {
		A float64 `json:"alpha"`
	}
	s, err := SettingsOf(struct {
		LR    float64  `json:"lr"`
		Every int      `json:"checkpoint_every"`
		W     inner    `json:"weights"`
		Pats  []string `json:"patterns"`
	}{LR: 3e-4, Every: 5, W: inner{0.5}, Pats: []string{"x"}}, "checkpoint_every")
	if err != nil {
		t.Fatal(err)
	}
	want := RunSettings{"lr": "0.0003", "weights.alpha": "0.5", "patterns": `["x"]`}
	if len(s) != len(want) {
		t.Fatalf("%v, want %v", s, want)
	}
	for k, v := range want {
		if s[k] != v {
			t.Errorf("%s = %q, want %q", k, s[k], v)
		}
	}
}
