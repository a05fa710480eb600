package main

import (
	"encoding/json"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"github.com/tagpr/tagpr/configs"
)

// A TAGPR_* variable that reads as a config key but sets none (a misspelt
// key, an RL stage's knob) is refused naming it, not ignored while the run
// goes on with the file's value; TAGPR_* variables outside the config's
// sections, and the teacher's key variable, pass.
func TestUnknownConfigVariableRefused(t *testing.T) {
	dir := t.TempDir()
	for _, env := range [][]string{{"TAGPR_STAGES_SFT_STPES=5"}, {"TAGPR_STAGES_RL_GUIDED_BETA=0.1"}, {"TAGPR_POLICY_BUILTIN_ROPE_THETA=-1"}} {
		name := strings.SplitN(env[0], "=", 2)[0]
		_, stderr, err := runTagpr(t, dir, env, "config", "print")
		if err == nil || !strings.Contains(stderr, "environment "+name+": no such config key") {
			t.Errorf("%s: want it refused by name: err %v\n%s", env[0], err, stderr)
		}
	}
	out, stderr, err := runTagpr(t, dir, []string{"TAGPR_STAGES_SFT_STEPS=7", "TAGPR_SHARD_COUNT=3", "TAGPR_TEACHER_TOKEN=x"},
		"config", "print")
	if err == nil || !strings.Contains(stderr, "TAGPR_TEACHER_TOKEN") {
		t.Errorf("TAGPR_TEACHER_TOKEN is in the teacher section and no key: want it refused: %v\n%s", err, stderr)
	}
	out, stderr, err = runTagpr(t, dir, []string{"TAGPR_STAGES_SFT_STEPS=7", "TAGPR_SHARD_COUNT=3"}, "config", "print")
	if err != nil || !strings.Contains(out, "steps: 7") {
		t.Errorf("a known key and a non-config variable: %v\n%s%s", err, out, stderr)
	}
	// A list of sections has no variable: the refusal says where it is set.
	if err := unknownConfigVariables([]string{"TAGPR_DATA_IMPORTS=x"}, ""); err == nil || !strings.Contains(err.Error(), "the lists data.imports and stages.rl") {
		t.Errorf("TAGPR_DATA_IMPORTS: %v", err)
	}
	if err := unknownConfigVariables([]string{"TAGPR_TEACHER_TOKEN=x"}, "TAGPR_TEACHER_TOKEN"); err != nil {
		t.Errorf("the variable teacher.api_key_env names is not a config key: %v", err)
	}
}

// A whole number too large for its integer key (YAML reads it as a float)
// is refused, not converted to whatever the conversion gives (seed
// 99999999999999999999999 became 9223372036854775808).
func TestStrictHookRefusesOverflow(t *testing.T) {
	f64 := reflect.TypeOf(float64(0))
	for _, c := range []struct {
		to reflect.Type
		v  float64
		ok bool
	}{
		{reflect.TypeOf(uint64(0)), 1e23, false},
		{reflect.TypeOf(uint64(0)), -1, false},
		{reflect.TypeOf(uint64(0)), 1e3, true},
		{reflect.TypeOf(int(0)), 1e30, false},
		{reflect.TypeOf(int(0)), -1e30, false},
		{reflect.TypeOf(int(0)), -5, true},
	} {
		_, err := strictHook(f64, c.to, c.v)
		if (err == nil) != c.ok {
			t.Errorf("%v into %s: err %v", c.v, c.to, err)
		}
	}
}

// A misspelt key, in a file or a variable, is refused naming it whole and the
// key it is nearest to, at any depth: an RL stage's knob, a section's key
// squashed in from another struct (stages.sft's steps), a guided stage's
// weights, the top level.
func TestUnknownKeySuggestsNearest(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir, "typo.yaml", `sead: 3
stages:
  sft: {stpes: 1}
  prmu: {encoder: {dri: x}}
  rl:
    - name: g
      weights: {gama: 1}
      epsilonhigh: 0.28
      zzzz: 1
`)
	_, stderr, err := runTagpr(t, dir, nil, "config", "print", "-c", cfg)
	if err == nil {
		t.Fatalf("config print accepted misspelt keys")
	}
	for _, want := range []string{
		"unknown key sead (did you mean seed?)",
		"stages.sft.stpes (did you mean steps?)",
		"stages.prmu.encoder.dri (did you mean dir?)",
		"unknown key gama (did you mean gamma?)",
		"stages.rl[0].epsilonhigh (did you mean epsilon_high?)",
		"stages.rl[0].zzzz;", // nothing near: named without a guess
		"unknown keys: check their spelling",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("the error does not say %q:\n%s", want, stderr)
		}
	}
	err = unknownConfigVariables([]string{"TAGPR_STAGES_SFT_STPES=5", "TAGPR_STAGES_RL_GUIDED_BETA=1"}, "")
	if err == nil || !strings.Contains(err.Error(), "did you mean: TAGPR_STAGES_SFT_STPES → TAGPR_STAGES_SFT_STEPS?") ||
		strings.Contains(err.Error(), "TAGPR_STAGES_RL_GUIDED_BETA →") {
		t.Errorf("variables: %v", err)
	}
}

// --fast-dev-run cuts the config's stages; a command's file mode (eval
// --golds, predict --model, predict merge --out, prmu train --out) runs no
// stage, and took the flag and ignored it (eval scored every example, exit
// 0). Now it is refused there.
func TestFastDevRunRefusedOutsideStages(t *testing.T) {
	dir := t.TempDir()
	golds := writeConfig(t, dir, "golds.json", `{"task": "LaMP_3", "golds": [{"id": "1", "output": "3"}, {"id": "2", "output": "4"}]}`)
	preds := writeConfig(t, dir, "preds.json", `{"task": "LaMP_3", "golds": [{"id": "1", "output": "3"}, {"id": "2", "output": "5"}]}`)
	if _, stderr, err := runTagpr(t, dir, nil, "eval", "--task", "3", "--golds", golds, "--predictions", preds); err != nil {
		t.Fatalf("eval without --fast-dev-run: %v\n%s", err, stderr)
	}
	for _, args := range [][]string{
		{"eval", "--task", "3", "--golds", golds, "--predictions", preds},
		{"predict", "--model", filepath.Join(dir, "m"), "--task", "3", "--questions", golds, "--out", filepath.Join(dir, "o.json")},
		{"predict", "merge", "--task", "3", "--questions", golds, "--out", filepath.Join(dir, "o.json")},
		{"prmu", "train", "--out", filepath.Join(dir, "prmu")},
	} {
		_, stderr, err := runTagpr(t, dir, nil, append(args, "--fast-dev-run")...)
		if err == nil || !strings.Contains(stderr, "--fast-dev-run cuts the config's stages") {
			t.Errorf("%v --fast-dev-run: %v\n%s", args, err, stderr)
		}
	}
}

// A flag that sets a config key has no default of its own (left out, the
// config's value holds), so its help shows none: --provider said (default
// "cpu") under a config whose runtime.provider was cuda. Its help names the
// key instead.
func TestConfigFlagsClaimNoDefault(t *testing.T) {
	n := 0
	rootCmd.PersistentFlags().VisitAll(func(f *pflag.Flag) {
		keys := f.Annotations[configKeyAnnotation]
		if len(keys) == 0 {
			return
		}
		n++
		if f.DefValue != "" && f.DefValue != "0" {
			t.Errorf("--%s shows the default %q; the config's %s is what holds without it", f.Name, f.DefValue, keys[0])
		}
		if !strings.Contains(f.Usage, keys[0]) {
			t.Errorf("--%s: its help does not name %s: %q", f.Name, keys[0], f.Usage)
		}
	})
	if n < 7 {
		t.Errorf("%d persistent flags set config keys, want 7", n)
	}
}

// A key given twice in a JSON config: YAML's and TOML's parsers refuse it,
// JSON's kept the last, so a second "stages" dropped the first whole (its
// sft steps gone, exit 0); so did YAML's for keys that differ in case only.
// Now refused naming the key.
func TestJSONConfigDuplicateKeyRefused(t *testing.T) {
	dir := t.TempDir()
	var demo map[string]any
	if err := yaml.Unmarshal(configs.Demo, &demo); err != nil {
		t.Fatal(err)
	}
	whole, err := json.Marshal(demo)
	if err != nil {
		t.Fatal(err)
	}
	plain := writeConfig(t, dir, "demo.json", string(whole))
	if _, stderr, err := runTagpr(t, dir, nil, "config", "print", "-c", plain); err != nil {
		t.Fatalf("the demo as JSON: %v\n%s", err, stderr)
	}
	twice := writeConfig(t, dir, "twice.json", `{"stages": {"sft": {"steps": 3}}, `+string(whole[1:]))
	_, stderr, err := runTagpr(t, dir, nil, "config", "print", "-c", twice)
	if err == nil || !strings.Contains(stderr, "key stages is given twice") {
		t.Errorf("a second stages key: %v\n%s", err, stderr)
	}
	// Keys are read without regard to case: YAML's Seed replaced seed.
	cased := writeConfig(t, dir, "cased.yaml", string(configs.Demo)+"\nStages: {sft: {steps: 3}}\n")
	_, stderr, err = runTagpr(t, dir, nil, "config", "print", "-c", cased)
	if err == nil || !strings.Contains(stderr, "key Stages is given twice") {
		t.Errorf("stages and Stages: %v\n%s", err, stderr)
	}
	if got, err := yamlDuplicateKey([]byte("a:\n  - {b: 1, c: {d: 1, D: 2}}\n")); got != "a[0].c.D" || err != nil {
		t.Errorf("yaml: %q, %v", got, err)
	}
	// TOML's parser too refuses only a repeat in the same case.
	valid := `seed = 1
[policy.builtin]
layers = 1
[tokenizer.train]
vocab_size = 300
[teacher]
kind = "gold"
[data.synth]
seed = 1
users = 10
queries_per_user = 1
profile_min = 3
profile_max = 3
tasks = ["synth_tag"]
dev_frac = 0.2
test_frac = 0.2
`
	if _, stderr, err := runTagpr(t, dir, nil, "config", "print", "-c", writeConfig(t, dir, "ok.toml", valid)); err != nil {
		t.Fatalf("a valid TOML config: %v\n%s", err, stderr)
	}
	_, stderr, err = runTagpr(t, dir, nil, "config", "print", "-c", writeConfig(t, dir, "cased.toml", "Seed = 5\n"+valid))
	if err == nil || !strings.Contains(stderr, "key seed is given twice") {
		t.Errorf("TOML seed and Seed: %v\n%s", err, stderr)
	}
	for body, want := range map[string]string{
		`{"a": {"b": [{"c": 1, "C": 2}]}}`:    "a.b[0].C",
		`{"a": [1, {"b": 1}], "b": {"a": 1}}`: "",
	} {
		if got, err := jsonDuplicateKey([]byte(body)); got != want || err != nil {
			t.Errorf("%s: %q, %v; want %q", body, got, err, want)
		}
	}
}

// sft, rl, chains and report take the run folder as --out; predict's and
// eval's --out is a file mode's output. Given for the run folder, the
// refusal said only that --out goes with --model (--golds), not how to name
// the run folder; it now does.
func TestStageOutRefusalSaysHowToNameTheRunFolder(t *testing.T) {
	dir := t.TempDir()
	for _, cmd := range []string{"predict", "eval"} {
		_, stderr, err := runTagpr(t, dir, nil, cmd, "--out", filepath.Join(dir, "run"))
		if err == nil || !strings.Contains(stderr, "TAGPR_OUT=DIR") {
			t.Errorf("%s --out RUN: %v\n%s", cmd, err, stderr)
		}
	}
}

// A map key (stages.sft.task_weights) has a variable name but no variable
// sets it: the refusal said it "wants a string".
func TestMapKeyVariableRefusedAsAMap(t *testing.T) {
	_, stderr, err := runTagpr(t, t.TempDir(), []string{"TAGPR_STAGES_SFT_TASK_WEIGHTS=synth_tag:2"}, "config", "print")
	if err == nil || !strings.Contains(stderr, "stages.sft.task_weights is a map") || strings.Contains(stderr, "wants a string") {
		t.Errorf("%v\n%s", err, stderr)
	}
}

// LaMP names its files by split: import-lamp without --split imported
// train_questions.json as dev examples, exit 0, and eval reported train
// golds as dev. The split now comes from the file name, and a --split the
// name contradicts is refused.
func TestImportLaMPSplitFromFileName(t *testing.T) {
	dir := t.TempDir()
	lamp, _ := filepath.Abs(filepath.Join(lampDownload, "LaMP_3", "train"))
	q, o := filepath.Join(lamp, "train_questions.json"), filepath.Join(lamp, "train_outputs.json")
	stdout, stderr, err := runTagpr(t, dir, nil, "data", "import-lamp", "--task", "3", "--questions", q, "--outputs", o, "--out", filepath.Join(dir, "a.parquet"))
	if err != nil || !strings.Contains(stdout, "LaMP_3 train examples") {
		t.Errorf("import-lamp of train files without --split: %v\n%s%s", err, stdout, stderr)
	}
	_, stderr, err = runTagpr(t, dir, nil, "data", "import-lamp", "--task", "3", "--split", "dev", "--questions", q, "--outputs", o, "--out", filepath.Join(dir, "b.parquet"))
	if err == nil || !strings.Contains(stderr, "give --split train") {
		t.Errorf("--split dev of train files: %v\n%s", err, stderr)
	}
	// eval's report named train golds' split dev the same way.
	stdout, stderr, err = runTagpr(t, dir, nil, "eval", "--task", "3", "--golds", o, "--predictions", o)
	if err != nil || !strings.Contains(stdout, "| LaMP_3 | train |") {
		t.Errorf("eval of train golds without --split: %v\n%s%s", err, stdout, stderr)
	}
	_, stderr, err = runTagpr(t, dir, nil, "eval", "--task", "3", "--split", "dev", "--golds", o, "--predictions", o)
	if err == nil || !strings.Contains(stderr, "give --split train") {
		t.Errorf("eval --split dev of train golds: %v\n%s", err, stderr)
	}
}

// Help and shell completion read no config: a bad TAGPR_* variable failed
// `tagpr help run` (while `tagpr run --help` worked) and emptied tab
// completion; the commands that read the config still refuse it.
func TestHelpAndCompletionReadNoConfig(t *testing.T) {
	dir := t.TempDir()
	bad := []string{"TAGPR_RUNTIME_THREADS=abc"}
	for _, args := range [][]string{{"help", "run"}, {"completion", "bash"}, {"__complete", "r"}} {
		stdout, stderr, err := runTagpr(t, dir, bad, args...)
		if err != nil || stdout == "" {
			t.Errorf("%v with a bad variable: %v\n%s", args, err, stderr)
		}
	}
	if _, stderr, err := runTagpr(t, dir, bad, "config", "print"); err == nil || !strings.Contains(stderr, "TAGPR_RUNTIME_THREADS") {
		t.Errorf("config print with a bad variable: %v\n%s", err, stderr)
	}
}

// The run config is YAML, TOML or JSON; viper reads more (.env, .ini,
// .hcl), which failed with its own messages ("'seed' expected type
// 'uint64'" for seed=3 in a .env). Another extension is refused by name.
func TestConfigFileFormatRefused(t *testing.T) {
	dir := t.TempDir()
	env := writeConfig(t, dir, "run.env", "seed=3\n")
	_, stderr, err := runTagpr(t, dir, nil, "config", "print", "-c", env)
	if err == nil || !strings.Contains(stderr, "want a .yaml, .yml, .toml or .json file") {
		t.Errorf("a .env config: %v\n%s", err, stderr)
	}
}
