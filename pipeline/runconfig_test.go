package pipeline

import (
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/datasets"

	"github.com/tagpr/tagpr/rewardmodel"
)

func TestConfigKeysAndMap(t *testing.T) {
	keys := map[string]reflect.Kind{}
	for _, k := range ConfigKeys(RunConfig{}) {
		keys[k.Key] = k.Type.Kind()
	}
	for key, kind := range map[string]reflect.Kind{"runtime.threads": reflect.Int, "stages.sft.lr": reflect.Float64, "stages.sft.steps": reflect.Int,
		"policy.builtin.d_model": reflect.Int, "data.tasks": reflect.Slice, "teacher.timeout": reflect.Int64, "out": reflect.String} {
		if keys[key] != kind {
			t.Errorf("key %s: kind %v, want %v", key, keys[key], kind)
		}
	}
	for _, gone := range []string{"stages.sft.session", "stages.sft.sftconfig", "stages.rl"} {
		if _, ok := keys[gone]; ok {
			t.Errorf("key %s should not be settable", gone)
		}
	}
	cfg := DefaultRunConfig()
	cfg.Stages.RL = []RLStage{{Name: "guided", Beta: 0.04}, {Name: "exploratory"}}
	flat := map[string]any{}
	flatten("", ConfigMap(cfg), flat)
	if flat["stages.sft.lr"] != 3e-4 || flat["stages.rl.guided.beta"] != 0.04 || flat["teacher.timeout"] != "2m0s" {
		t.Fatalf("flattened config: sft.lr %v, rl.guided.beta %v, teacher.timeout %v", flat["stages.sft.lr"], flat["stages.rl.guided.beta"], flat["teacher.timeout"])
	}
}

// A stage's stamp is written once and a changed setting is refused, naming
// the key and both values.
func TestStageStampRefusesChangedSetting(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sft")
	if err := checkStamp(dir, "sft", map[string]any{"stages.sft.lr": 0.003, "stages.sft.steps": 10}, false); err != nil {
		t.Fatal(err)
	}
	if err := checkStamp(dir, "sft", map[string]any{"stages.sft.lr": 0.003, "stages.sft.steps": 10}, true); err != nil {
		t.Fatalf("same settings: %v", err)
	}
	err := checkStamp(dir, "sft", map[string]any{"stages.sft.lr": 0.01, "stages.sft.steps": 10}, true)
	if err == nil || !strings.Contains(err.Error(), `stages.sft.lr was "0.003", now "0.01"`) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("changed lr: %v", err)
	}
	// A finished folder without a stamp was made by something else.
	other := filepath.Join(t.TempDir(), "rl")
	os.MkdirAll(other, 0o755)
	if err := checkStamp(other, "rl:guided", map[string]any{}, true); err == nil || !strings.Contains(err.Error(), "no run.json") {
		t.Fatalf("unstamped finished folder: %v", err)
	}
}

func TestTaxonomyFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "tags.yaml")
	os.WriteFile(good, []byte("- {name: recall, description: recall the history, required: true, order: 1}\n- {name: guess, description: guess}\n- {name: decide, description: decide, required: true, order: 2}\n"), 0o644)
	tx, err := LoadTaxonomy(good)
	if err != nil {
		t.Fatal(err)
	}
	want := rewardmodel.Taxonomy{{Name: "recall", Description: "recall the history", Required: true, Order: 1}, {Name: "guess", Description: "guess"},
		{Name: "decide", Description: "decide", Required: true, Order: 2}}
	if !reflect.DeepEqual(tx, want) {
		t.Fatalf("taxonomy %+v", tx)
	}
	guide := TagGuide(tx)
	for _, w := range []string{"<recall>: recall the history (required)", "<guess>: guess\n", "in this order: <recall>, <decide>", "<answer>"} {
		if !strings.Contains(guide, w) {
			t.Errorf("tag guide lacks %q:\n%s", w, guide)
		}
	}
	// The guide tells the teacher the order R_tag checks: by order values
	// (listing order said "<late>, <early>"), and none for tags without one.
	listed := rewardmodel.Taxonomy{{Name: "late", Required: true, Order: 2}, {Name: "early", Required: true, Order: 1}}
	if g := TagGuide(listed); !strings.Contains(g, "in this order: <early>, <late>") {
		t.Errorf("tag guide of %+v:\n%s", listed, g)
	}
	unordered := rewardmodel.Taxonomy{{Name: "a", Required: true}, {Name: "b", Required: true}}
	if g := TagGuide(unordered); strings.Contains(g, "in this order") {
		t.Errorf("tag guide of %+v orders tags without an order:\n%s", unordered, g)
	}
	for body, wantErr := range map[string]string{
		"- {name: recall, descripton: typo}\n":    "descripton",
		"- {name: Recall}\n":                      "must match",
		"- {name: a}\n- {name: a}\n":              "listed twice",
		"- {name: a, required: \"yes please\"}\n": "bool",
		"[]\n": "no tags",
	} {
		p := filepath.Join(dir, "bad.yaml")
		os.WriteFile(p, []byte(body), 0o644)
		if _, err := LoadTaxonomy(p); err == nil || !strings.Contains(err.Error(), wantErr) || !strings.Contains(err.Error(), p) {
			t.Errorf("%q: %v, want an error naming %s and %q", body, err, p, wantErr)
		}
	}
}

func TestRunConfigValidate(t *testing.T) {
	base := DefaultRunConfig()
	base.Policy.Dir = "model"
	base.Data.LaMPDir, base.Data.Tasks = "lamp", []TaskRef{"2", "3"}
	base.Teacher.BaseURL, base.Teacher.Model = "http://localhost:8000/v1", "m"
	if err := base.Validate(); err != nil {
		t.Fatalf("a valid config: %v", err)
	}
	for name, c := range map[string]struct {
		edit func(*RunConfig)
		want string
	}{
		"two data sources": {func(c *RunConfig) { c.Data.Synth = &SynthSource{Users: 10} }, "exactly one of data.lamp_dir"},
		"no policy":        {func(c *RunConfig) { c.Policy.Dir = "" }, "policy: set policy.dir"},
		"gold on LaMP":     {func(c *RunConfig) { c.Teacher.Kind = TeacherGold }, "teacher.kind: gold"},
		"bad provider":     {func(c *RunConfig) { c.Runtime.Provider = "tpu" }, "runtime.provider"},
		"bad dtype":        {func(c *RunConfig) { c.Runtime.GenerationDType = "bfloat16" }, "runtime.generation_dtype"},
		"bad spinning":     {func(c *RunConfig) { c.Runtime.Spinning = "yes" }, `--spinning (runtime.spinning) "yes": want auto, on or off`},
		"rl stage":         {func(c *RunConfig) { c.Stages.RL = []RLStage{{Name: "g", Reward: "guided", Steps: 1}} }, "stages.rl[0]"},
		"predict rl":       {func(c *RunConfig) { c.Stages.Predict.Models = []string{"base", "rl"} }, `stages.predict.models: "rl": no RL stage`},
		"unknown reward": {func(c *RunConfig) {
			c.Stages.RL = []RLStage{{Name: "g", Rewards: map[string]float64{"task": 1, "style": 1}, Steps: 1, PromptsPerStep: 1, NumGenerations: 2, MaxCompletionLength: 4, LR: 1e-4}}
		}, "stages.rl[0].rewards.style: unknown reward"},
		"prmu reward without prmu": {func(c *RunConfig) {
			c.Stages.PRMU.Skip = true
			c.Stages.RL = []RLStage{{Name: "g", Rewards: map[string]float64{"prmu": 1}, Steps: 1, PromptsPerStep: 1, NumGenerations: 2, MaxCompletionLength: 4, LR: 1e-4}}
		}, "stages.rl[0].rewards.prmu: the prmu stage is skipped"},
		"sft without chains":     {func(c *RunConfig) { c.Stages.Chains.Skip = true }, "stages.sft.skip"},
		"weight of another task": {func(c *RunConfig) { c.Stages.SFT.TaskWeights = map[string]int{"LaMP_7": 2} }, "stages.sft.task_weights.LaMP_7: not a task of this run"},
		"weight out of range":    {func(c *RunConfig) { c.Stages.SFT.TaskWeights = map[string]int{"LaMP_3": 17} }, "stages.sft.task_weights.LaMP_3: 17: want 0 to 16"},
		"every weight 0": {func(c *RunConfig) { c.Stages.SFT.TaskWeights = map[string]int{"LaMP_2M": 0, "LaMP_3": 0} },
			"stages.sft.task_weights: every task is 0"},
		"rl weight of another task": {func(c *RunConfig) {
			c.Stages.RL = []RLStage{{Name: "g", Reward: RewardExploratory, Steps: 1, PromptsPerStep: 1, NumGenerations: 2, MaxCompletionLength: 4, LR: 1e-4,
				TaskWeights: TaskWeights{"LaMP_7": 1}}}
		}, "stages.rl[0].task_weights.LaMP_7: not a task of this run"},
		"rl weight out of range": {func(c *RunConfig) {
			c.Stages.RL = []RLStage{{Name: "g", Reward: RewardExploratory, Steps: 1, PromptsPerStep: 1, NumGenerations: 2, MaxCompletionLength: 4, LR: 1e-4,
				TaskWeights: TaskWeights{"lamp_3": -1}}}
		}, "stages.rl[0].task_weights.lamp_3: -1: want 0 to 16"},
		"rl every weight 0": {func(c *RunConfig) {
			c.Stages.RL = []RLStage{{Name: "g", Reward: RewardExploratory, Steps: 1, PromptsPerStep: 1, NumGenerations: 2, MaxCompletionLength: 4, LR: 1e-4,
				TaskWeights: TaskWeights{"LaMP_2M": 0, "LaMP_3": 0}}}
		}, "stages.rl[0].task_weights: every task is 0"},
		"plain teacher chains": {func(c *RunConfig) { c.Stages.Chains.Plain = true }, "stages.chains.plain"},
		"greedy samples": {func(c *RunConfig) { c.Stages.Chains.Samples, c.Teacher.Temperature = 2, 0 },
			"stages.chains.samples: 2 with teacher.temperature 0"},
		"teacher top_p NaN": {func(c *RunConfig) { c.Teacher.TopP = math.NaN() }, "top_p NaN"},
		// The scheme is read only from lamp_dir: with imports it was ignored.
		"scheme with imports": {func(c *RunConfig) {
			c.Data.LaMPDir, c.Data.Tasks, c.Data.Scheme = "", nil, "time"
			c.Data.Imports = []DataImport{{Task: "3", Train: "train.parquet"}}
		}, `data.scheme: "time": only with data.lamp_dir`},
		// What the encoder's PRMU does not read is refused, as prmu train's flags are.
		"embed with an encoder": {func(c *RunConfig) { c.Stages.PRMU.Embed, c.Stages.PRMU.Encoder = 16, &PRMUEncoderConfig{Dir: "enc"} },
			"stages.prmu.embed: 16 sizes the bag of tokens"},
		"lora settings of a frozen encoder": {func(c *RunConfig) { c.Stages.PRMU.Encoder = &PRMUEncoderConfig{Dir: "enc", LoRASteps: 50} },
			"stages.prmu.encoder: lora_rank 0, lora_steps 50: LoRA settings need tuning: lora"},
		"rl from a later stage": {func(c *RunConfig) {
			st := RLStage{Name: "a", Reward: RewardExploratory, Steps: 1, PromptsPerStep: 1, NumGenerations: 2, MaxCompletionLength: 4, LR: 1e-4, From: "b"}
			later := st
			later.Name, later.From = "b", ""
			c.Stages.RL = []RLStage{st, later}
		}, "stages.rl[0].from"},
	} {
		cfg := base
		cfg.Stages.RL = nil
		c.edit(&cfg)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
	weighted := base
	weighted.Stages.SFT.TaskWeights = map[string]int{"lamp_3": 3, "LaMP_2M": 0} // keys arrive lowercased from a file
	if err := weighted.Validate(); err != nil {
		t.Errorf("task weights of the run's tasks: %v", err)
	}
	fast := base.FastDevRun()
	if fast.Out != filepath.Join(base.Out, "fast_dev_run") || fast.Stages.SFT.Steps != 2 || fast.Data.MaxExamples == 0 {
		t.Errorf("fast dev run: out %s, sft steps %d, max examples %d", fast.Out, fast.Stages.SFT.Steps, fast.Data.MaxExamples)
	}
}

// Stages branch with from: each model's chain is the stages it was trained through.
func TestRLChain(t *testing.T) {
	stages := []RLStage{{Name: "task_only", From: RLFromStart}, {Name: "guided", From: RLFromStart}, {Name: "exploratory"}, {Name: "again", From: "task_only"}}
	for name, want := range map[string][]string{
		"task_only": {"task_only"}, "guided": {"guided"}, "exploratory": {"guided", "exploratory"},
		"again": {"task_only", "again"}, "none": nil,
	} {
		if got := stageNames(RLChain(stages, name)); !reflect.DeepEqual(got, want) && (len(got) > 0 || len(want) > 0) {
			t.Errorf("%s: chain %v, want %v", name, got, want)
		}
	}
	if got := stageNames(RLChain([]RLStage{{Name: "a"}, {Name: "b"}}, "b")); !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Errorf("default chain %v, want [a b]", got)
	}
}

func TestRunConfigTitleCloserMiss(t *testing.T) {
	for _, share := range []float64{-0.5, 2, math.NaN(), 0, datasets.DemoTitleCloserMiss} {
		c := DefaultRunConfig()
		c.Data.Synth = &SynthSource{Seed: 1, Users: 15, QueriesPerUser: 2, ProfileMin: 4, ProfileMax: 6, DevFrac: 0.1,
			TestFrac: 0.1, TitleCloserMiss: share}
		err := c.Validate()
		refused := err != nil && strings.Contains(err.Error(), "data.synth.title_closer_miss")
		if want := !(share >= 0 && share <= 1); refused != want {
			t.Errorf("title_closer_miss %v: %v (want refused: %v)", share, err, want)
		}
	}
}

// Effective (what `tagpr config print` shows) fills the zeros a run
// replaces with the values it uses: the bootstrap's 1000 resamples and the
// PRMU's sizes, not 0.
func TestEffectiveShowsWhatARunUses(t *testing.T) {
	c := DefaultRunConfig()
	c.Stages.Eval.Bootstrap, c.Stages.PRMU.Embed, c.Stages.PRMU.Hidden, c.Stages.PRMU.MaxItems = 0, 0, 0, 0
	e := c.Effective()
	if e.Stages.Eval.Bootstrap != DefaultResamples {
		t.Errorf("stages.eval.bootstrap shown as %d; the eval stage uses %d", e.Stages.Eval.Bootstrap, DefaultResamples)
	}
	if p := e.Stages.PRMU; p.Embed != 64 || p.Hidden != 64 || p.MaxItems != 8 || p.Pool != "mean" {
		t.Errorf("stages.prmu shown as embed %d, hidden %d, max_items %d, pool %q; PRMU trains with 64, 64, 8, mean", p.Embed, p.Hidden, p.MaxItems, p.Pool)
	}
	c.Stages.PRMU.Encoder = &PRMUEncoderConfig{Dir: "enc", Tuning: "lora"}
	if enc := c.Effective().Stages.PRMU.Encoder; enc.LoRARank != 4 || enc.LoRASteps != 100 {
		t.Errorf("stages.prmu.encoder shown with lora_rank %d, lora_steps %d; PRMU trains with 4, 100", enc.LoRARank, enc.LoRASteps)
	}
	if c.Stages.PRMU.Encoder.LoRARank != 0 || c.Stages.Eval.Bootstrap != 0 {
		t.Error("Effective changed the config it was called on")
	}
	c.Stages.Eval.Bootstrap = 500
	if got := c.Effective().Stages.Eval.Bootstrap; got != 500 {
		t.Errorf("a set bootstrap of 500 shown as %d", got)
	}
}

// Effective (what `tagpr config print` shows) gives an RL stage's knobs the
// values it runs with: temperature 0 runs at 1, num_iterations 0 at 1, as
// grpo.Config.WithDefaults sets them; print showed the 0s.
func TestEffectiveShowsRLDefaults(t *testing.T) {
	cfg := DefaultRunConfig()
	cfg.Stages.RL = []RLStage{{Name: "g", Reward: RewardExploratory}}
	st := cfg.Effective().Stages.RL[0]
	run := cfg.Stages.RL[0].WithDefaults()
	if st.Temperature != run.Temperature || st.Temperature != 1 || st.NumIterations != 1 || st.LossType != run.LossType || st.Epsilon != run.Epsilon {
		t.Fatalf("effective RL stage %+v, runs with %+v", st, run)
	}
}

// TestEffectiveShowsTheBuiltinInitStd: a built-in policy's init_std left
// at 0 is shown as the standard deviation the builder uses.
func TestEffectiveShowsTheBuiltinInitStd(t *testing.T) {
	c := DefaultRunConfig()
	c.Policy.Builtin = &BuiltinPolicy{Arch: "llama", Layers: 1, DModel: 32, Heads: 2, KVHeads: 1}
	built := c.Policy.Builtin.lmConfig().Defaults().InitStd
	if got := c.Effective().Policy.Builtin.InitStd; got != built || got == 0 {
		t.Errorf("policy.builtin.init_std shown as %v; the builder uses %v", got, built)
	}
	if c.Policy.Builtin.InitStd != 0 {
		t.Error("Effective changed the config it was called on")
	}
	c.Policy.Builtin.InitStd = 0.05
	if got := c.Effective().Policy.Builtin.InitStd; got != 0.05 {
		t.Errorf("a set init_std of 0.05 shown as %v", got)
	}
	c.Policy.Builtin = nil
	if c.Effective().Policy.Builtin != nil {
		t.Error("Effective added a built-in policy to a config without one")
	}
}

// docs/config.md lists every key the code reads, and no key it does not:
// a key added to RunConfig or RLStage without a line there, or a line left
// for a key that is gone, fails here.
func TestConfigDocListsEveryKey(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "docs", "config.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	top, rl, found := strings.Cut(doc, "## RL stages")
	if !found {
		t.Fatal("docs/config.md has no RL stages section")
	}
	rows := func(s string) map[string]bool {
		out := map[string]bool{}
		for _, line := range strings.Split(s, "\n") {
			if k, ok := strings.CutPrefix(line, "| `"); ok {
				if i := strings.Index(k, "` |"); i > 0 {
					out[k[:i]] = true
				}
			}
		}
		return out
	}
	for _, c := range []struct {
		section string
		rows    map[string]bool
		keys    []ConfigKey
		lists   []string // lists of sections: not leaves, documented whole
	}{
		{"top", rows(top), ConfigKeys(RunConfig{}), []string{"data.imports"}},
		{"RL stages", rows(rl), ConfigKeys(RLStage{}), nil},
	} {
		known := map[string]bool{}
		for _, k := range c.keys {
			known[k.Key] = true
			if !c.rows[k.Key] {
				t.Errorf("docs/config.md (%s): no row for %s", c.section, k.Key)
			}
		}
		for _, k := range c.lists {
			known[k] = true
		}
		for k := range c.rows {
			if !known[k] {
				t.Errorf("docs/config.md (%s): %s is no config key", c.section, k)
			}
		}
	}
}

// A built-in policy too large to build in runtime.max_memory_gb is refused
// before the build: the run was killed for memory while building it, with
// no message.
func TestBuiltinPolicyMustFitTheMemoryLimit(t *testing.T) {
	small := BuiltinPolicy{Layers: 2, DModel: 64, Heads: 2}.lmConfig()
	small.Vocab = 512
	if err := builtinFits(small, 1); err != nil {
		t.Fatalf("a small model in 1 GiB: %v", err)
	}
	big := BuiltinPolicy{Layers: 32, DModel: 4096, Heads: 32}.lmConfig()
	big.Vocab = 32000
	if err := builtinFits(big, 8); err == nil || !strings.Contains(err.Error(), "policy.builtin: 32 layers, d_model 4096") || !strings.Contains(err.Error(), "runtime.max_memory_gb") {
		t.Fatalf("a 7B-sized model in 8 GiB: %v", err)
	}
	if err := builtinFits(big, -1); err != nil {
		t.Fatalf("max_memory_gb -1 checks nothing: %v", err)
	}
}
