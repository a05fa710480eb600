package pipeline

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/onnx/ir"
)

// TestRunWithLoRA: stages.sft.lora_rank and stages.rl[].lora_rank train
// adapters only (here with gradient checkpointing). Each LoRA stage exports the merged model (adapted weights
// moved, every other weight the stage's start bit for bit) and its adapters
// in PEFT's format, and the next stage starts from the merged model; the
// rank is part of the stage's stamp.
func TestRunWithLoRA(t *testing.T) {
	cfg := tinyRun(t.TempDir())
	cfg.Stages.SFT.LoRASettings = LoRASettings{Rank: 4}
	cfg.Stages.SFT.LR = 3e-2
	cfg.Stages.RL[0].LoRASettings = LoRASettings{Rank: 2, Alpha: 8, Targets: []string{"q_proj", "v_proj"}}
	cfg.Stages.RL[0].LR = 3e-2
	cfg.Stages.SFT.GradientCheckpointing, cfg.Stages.RL[0].GradientCheckpointing = true, true
	cfg.Stages.Predict.Models = []string{ModelSFT, ModelRL}
	cfg.Stages.KeepCheckpoints = true
	ctx := context.Background()
	if _, err := Run(ctx, cfg, RunOptions{}); err != nil {
		t.Fatal(err)
	}
	// stages.keep_checkpoints: each training stage keeps its newest two.
	for _, d := range []string{"sft", filepath.Join("rl", cfg.Stages.RL[0].Name)} {
		if old, _ := filepath.Glob(filepath.Join(cfg.Out, d, "checkpoints", "step-*")); len(old) == 0 {
			t.Errorf("%s: no checkpoints kept with stages.keep_checkpoints", d)
		}
	}
	weights := func(dir string) map[string][]float32 {
		t.Helper()
		m, err := ir.Load(filepath.Join(cfg.Out, dir, "model.onnx"))
		if err != nil {
			t.Fatal(err)
		}
		out := map[string][]float32{}
		for _, init := range m.Graph.Initializer {
			if v, err := ir.Float32s(init); err == nil && init.GetDataType() == ir.Float {
				out[init.GetName()] = v
			}
		}
		return out
	}
	// moved lists the weights of to that differ from from's.
	moved := func(from, to map[string][]float32) []string {
		var out []string
		for name, w := range to {
			f, ok := from[name]
			if !ok {
				t.Fatalf("exported weight %s is not in the stage's start", name)
			}
			if strings.Contains(name, "lora_") {
				t.Fatalf("exported model holds adapter weight %s: adapters must be merged", name)
			}
			if !slices.Equal(f, w) {
				out = append(out, name)
			}
		}
		return out
	}
	base, sft, guided := weights("base"), weights("sft"), weights("rl/guided")
	for _, c := range []struct {
		stage    string
		from, to map[string][]float32
		adapted  func(string) bool
	}{
		{"sft", base, sft, func(n string) bool { return strings.HasSuffix(n, "_proj.weight") }},
		{"rl guided", sft, guided, func(n string) bool {
			return strings.HasSuffix(n, "q_proj.weight") || strings.HasSuffix(n, "v_proj.weight")
		}},
	} {
		m := moved(c.from, c.to)
		if len(m) == 0 {
			t.Errorf("%s: no weight moved", c.stage)
		}
		for _, name := range m {
			if !c.adapted(name) {
				t.Errorf("%s: weight %s moved, but LoRA does not adapt it", c.stage, name)
			}
		}
	}
	for _, c := range []struct {
		dir  string
		rank int
	}{{"sft", 4}, {"rl/guided", 2}} {
		b, err := os.ReadFile(filepath.Join(cfg.Out, c.dir, "adapter", "adapter_config.json"))
		if err != nil {
			t.Fatalf("%s: %v", c.dir, err)
		}
		var ac struct {
			R int `json:"r"`
		}
		if err := json.Unmarshal(b, &ac); err != nil || ac.R != c.rank {
			t.Errorf("%s/adapter/adapter_config.json: r %d (%v), want %d", c.dir, ac.R, err, c.rank)
		}
	}
	if _, err := os.Stat(filepath.Join(cfg.Out, "rl", "exploratory", "adapter")); !os.IsNotExist(err) {
		t.Errorf("the full stage left an adapter folder (%v)", err)
	}
	report, err := os.ReadFile(filepath.Join(cfg.Out, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"sft trained LoRA adapters of rank 4 (alpha 8) on every linear layer but the lm head", "sft/adapter/",
		"rl guided trained LoRA adapters of rank 2 (alpha 8) on q_proj, v_proj", "rl/guided/adapter/"} {
		if !strings.Contains(string(report), want) {
			t.Errorf("report.md does not say %q", want)
		}
	}
	if strings.Contains(string(report), "rl exploratory trained LoRA") {
		t.Error("report.md says the full stage trained LoRA adapters")
	}
	// Another rank is another run, refused for the finished stage.
	cfg.Stages.SFT.Rank = 8
	_, err = Run(ctx, cfg, RunOptions{Only: []string{StageSFT}})
	if err == nil || !strings.Contains(err.Error(), "stages.sft.lora_rank") {
		t.Fatalf("sft with another lora_rank: %v", err)
	}
}

func TestLoRASettingsValidate(t *testing.T) {
	for _, c := range []struct {
		l    LoRASettings
		want string
	}{
		{LoRASettings{}, ""},
		{LoRASettings{Rank: 8, Alpha: 16, Targets: []string{"q_proj", "re:.*mlp.*"}}, ""},
		{LoRASettings{Rank: -1}, "lora_rank -1"},
		{LoRASettings{Alpha: 8}, "lora_alpha 8 without lora_rank"},
		{LoRASettings{Targets: []string{"q_proj"}}, "without lora_rank"},
		{LoRASettings{Rank: 8, Targets: []string{"re:("}}, "lora_targets"},
	} {
		err := c.l.validate()
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%+v: %v, want %q", c.l, err, c.want)
		}
	}
}

// A target pattern that selects no linear layer is refused when the run
// starts, before the chains (the teacher's cost), naming the config key it
// came from (train lm's messages name its flag).
func TestLoRATargetsNameTheKey(t *testing.T) {
	cfg := tinyRun(t.TempDir())
	cfg.Stages.SFT.LoRASettings = LoRASettings{Rank: 4, Targets: []string{"qproj"}}
	_, err := Run(context.Background(), cfg, RunOptions{})
	if err == nil || !strings.Contains(err.Error(), `stages.sft.lora_targets "qproj" matches nothing; linear layers are named like`) {
		t.Errorf("sft targets matching nothing: %v", err)
	}
	if _, err := os.Stat(filepath.Join(cfg.Out, "chains")); !os.IsNotExist(err) {
		t.Errorf("the chains stage ran before the bad targets were refused (%v)", err)
	}
	cfg = tinyRun(t.TempDir())
	cfg.Stages.RL[0].LoRASettings = LoRASettings{Rank: 4, Targets: []string{"embed_tokens"}}
	_, err = Run(context.Background(), cfg, RunOptions{})
	if err == nil || !strings.Contains(err.Error(), `stages.rl.guided.lora_targets "embed_tokens" matches no linear layer`) {
		t.Errorf("rl targets matching no linear layer: %v", err)
	}
}
