package pipeline

import (
	"context"
	"sort"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/datasets"

	"github.com/tagpr/tagpr/onnx/ort"
)

// Every session the recipe creates — generation and its decode heads, the
// SFT and RL training graphs and their shape probes, the KL reference, PRMU
// training and scoring, evaluation — carries the runtime the process
// declared. With a runtime declared, ort refuses any session created
// without its options, so a stage that drops them fails this run. The
// runtime's spinning (on here) reaches every session too, RL's and PRMU's,
// which turn it off when the runtime leaves it to them.
func TestEverySessionCarriesTheRuntimeOptions(t *testing.T) {
	rc := RuntimeConfig{Provider: "cpu", Threads: 2, Spinning: "on"}
	if err := ort.Start(rc.Runtime()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ort.Start(ort.Runtime{}) })
	cfg := tinyRun(t.TempDir())
	cfg.Runtime = rc
	before := ort.SessionCount()
	if _, err := Run(context.Background(), cfg, RunOptions{}); err != nil {
		t.Fatalf("run under a declared runtime: %v", err)
	}
	kinds := map[string]bool{}
	for _, s := range ort.SessionsSince(before) {
		if s.Options.Provider != "cpu" {
			t.Errorf("session %q created with provider %q", s.Label, s.Options.Provider)
		}
		// The runtime's threads, or the one thread the demo's PRMU (training
		// and scoring) deliberately uses between generations; never ORT's
		// default, which would mean the options were rebuilt from scratch.
		if n := s.Options.IntraOpThreads; n != 2 && n != 1 {
			t.Errorf("session %q has %d intra-op threads, want the runtime's 2 (or PRMU's 1)", s.Label, n)
		}
		if v := s.Options.ConfigEntries[ort.SpinKey]; v != "1" {
			t.Errorf("session %q has %s %q, want the runtime's spinning on (\"1\")", s.Label, ort.SpinKey, v)
		}
		for _, k := range []string{"training graph", "specialization probe", "token scorer", "prmu", "decode head", "rl policy", "model.onnx"} {
			if strings.Contains(s.Label, k) {
				kinds[k] = true
			}
		}
	}
	var missing []string
	for _, k := range []string{"training graph", "specialization probe", "token scorer", "prmu", "decode head", "rl policy", "model.onnx"} {
		if !kinds[k] {
			missing = append(missing, k)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Fatalf("no session of kind %v was created: the test no longer covers them (labels changed?)", missing)
	}
}

// tinyRun is the built-in demo's recipe (configs/demo.yaml) at a size that
// runs in seconds: the synthetic benchmark, a trained tokenizer, a built-in
// policy, gold chains, SFT, PRMU, a guided and an exploratory RL stage.
func tinyRun(dir string) RunConfig {
	cfg := DefaultRunConfig()
	cfg.Out = dir
	cfg.Policy.Builtin = &BuiltinPolicy{Arch: "llama", Layers: 1, DModel: 32, Heads: 2, KVHeads: 1, MaxPositions: 512, Seed: 3}
	cfg.Tokenizer.Train = &TokenizerTrain{VocabSize: 1024}
	cfg.Data.Synth = &SynthSource{Seed: 1, Users: 15, QueriesPerUser: 2, ProfileMin: 4, ProfileMax: 6, DevFrac: 0.1, TestFrac: 0.1,
		TitleCloserMiss: datasets.DemoTitleCloserMiss}
	cfg.Retrieval = RetrievalConfig{Method: "bm25", MaxPromptTokens: 320}
	cfg.Teacher.Kind = TeacherGold
	cfg.Stages.Chains.Filter.KeepDuplicates = true
	cfg.Stages.SFT.SFTConfig = SFTConfig{Steps: 2, Batch: 2, SeqLen: 320, LR: 3e-3, Warmup: 1, Clip: 1, CheckpointEvery: 1, Seed: 5}
	cfg.Stages.PRMU.Steps, cfg.Stages.PRMU.Threads, cfg.Stages.PRMU.Seed = 20, 1, 31
	guided := RLStage{Name: "guided", Reward: RewardGuided, Steps: 1, PromptsPerStep: 2, NumGenerations: 2, MaxPromptLength: 320,
		MaxCompletionLength: 16, Temperature: 1, Beta: 0.04, LR: 1e-4, Clip: 1, CheckpointEvery: 1, Seed: 21}
	exploratory := guided
	exploratory.Name, exploratory.Reward, exploratory.Beta, exploratory.Seed = "exploratory", RewardExploratory, 0, 22
	cfg.Stages.RL = []RLStage{guided, exploratory}
	cfg.Stages.Predict = PredictStage{Models: []string{ModelBase, ModelSFT, ModelRL}, Splits: []string{"dev"}, Examples: 3, Batch: 3, MaxNewTokens: 24}
	return cfg
}
