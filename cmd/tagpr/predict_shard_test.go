package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// predictConfig runs the predict stage alone on the synthetic benchmark
// with the exported test policy.
func predictConfig(t *testing.T, dir, out string) string {
	t.Helper()
	policy, _ := filepath.Abs(policyFixture)
	return writeConfig(t, dir, "predict.yaml", fmt.Sprintf(`out: %s
runtime: {threads: 1}
policy: {dir: %s}
data:
  synth: {seed: 5, users: 40, queries_per_user: 2, profile_min: 3, profile_max: 5, tasks: [synth_tag, synth_rate], dev_frac: 0.25, test_frac: 0.25}
retrieval: {max_prompt_tokens: 512} # the fixture policy has 1,024 positions
teacher: {kind: gold}
stages:
  chains: {skip: true}
  sft: {skip: true}
  prmu: {skip: true}
  predict: {models: [base], splits: [dev, test], batch: 2, max_new_tokens: 16}
`, out, policy))
}

// The config's predict stage as three worker processes (`predict -c FILE
// --shard auto`, as the pods of an Indexed Job), then `predict merge -c
// FILE`: every predictions file has the bytes of the one-process run, and
// eval reads them. The merge refuses while a shard is missing.
func TestConfigPredictShardsMergeToTheSingleRun(t *testing.T) {
	dir := t.TempDir()
	env := append(runtimeEnv(t), "TAGPR_LOG_FORMAT=json")
	single, sharded := filepath.Join(dir, "single"), filepath.Join(dir, "sharded")
	cfg := predictConfig(t, dir, single)
	if _, stderr, err := runTagpr(t, dir, env, "predict", "-c", cfg); err != nil {
		t.Fatalf("single run: %v\n%s", err, stderr)
	}
	files, _ := filepath.Glob(filepath.Join(single, "predictions", "base", "*_*.*"))
	if len(files) != 8 {
		t.Fatalf("the single run wrote %d predictions files, want 8: %v", len(files), files)
	}

	const workers = 3
	shardedEnv := append(append([]string{}, env...), "TAGPR_OUT="+sharded) // predict's --out is the standalone form's file
	worker := func(i int) *exec.Cmd {
		cmd := exec.Command(tagprBin, "predict", "-c", cfg, "--shard", "auto")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), append(shardedEnv, "JOB_COMPLETION_INDEX="+strconv.Itoa(i), "TAGPR_SHARD_COUNT="+strconv.Itoa(workers))...)
		return cmd
	}
	// Workers 0 and 1 at once (they share the run folder: the first
	// prepares the data, the other waits for it).
	var outs [2]bytes.Buffer
	var cmds [2]*exec.Cmd
	for i := range cmds {
		cmds[i] = worker(i)
		cmds[i].Stdout, cmds[i].Stderr = &outs[i], &outs[i]
		if err := cmds[i].Start(); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range cmds {
		if err := c.Wait(); err != nil || !strings.Contains(outs[i].String(), fmt.Sprintf("shard %d/%d done", i, workers)) {
			t.Fatalf("worker %d: %v\n%s", i, err, outs[i].String())
		}
	}
	merge := []string{"predict", "merge", "-c", cfg}
	if _, stderr, err := runTagpr(t, dir, shardedEnv, merge...); err == nil || !strings.Contains(stderr, "has not finished") {
		t.Fatalf("merge without shard 2: err %v\n%s", err, stderr)
	}
	if _, stderr, err := runTagpr(t, dir, shardedEnv, "eval", "-c", cfg); err == nil || !strings.Contains(stderr, "predict") {
		t.Fatalf("eval before the merge: err %v\n%s", err, stderr)
	}
	if out, err := worker(2).CombinedOutput(); err != nil {
		t.Fatalf("worker 2: %v\n%s", err, out)
	}
	if out, stderr, err := runTagpr(t, dir, shardedEnv, merge...); err != nil || !strings.Contains(out, "merged") {
		t.Fatalf("merge: %v\n%s%s", err, out, stderr)
	}
	for _, f := range files {
		rel, _ := filepath.Rel(single, f)
		a, _ := os.ReadFile(f)
		b, err := os.ReadFile(filepath.Join(sharded, rel))
		if err != nil || len(a) == 0 || !bytes.Equal(a, b) {
			t.Errorf("%s: the merged shards (%d bytes, %v) differ from the single run (%d bytes)", rel, len(b), err, len(a))
		}
	}
	if parts, _ := filepath.Glob(filepath.Join(sharded, "predictions", "base", "*.parts")); len(parts) > 0 {
		t.Errorf("parts left after the merge: %v", parts)
	}
	// Eval (corpus-level metrics) reads the merged files like a single run's.
	evalMsgs := func(env []string, out string) string {
		_, stderr, err := runTagpr(t, dir, env, "eval", "-c", cfg)
		if err != nil {
			t.Fatalf("eval: %v\n%s", err, stderr)
		}
		msgs := strings.Join(regexp.MustCompile(`"msg":"([^"]*)"`).FindAllString(stderr, -1), "\n")
		return strings.ReplaceAll(msgs, out, "OUT") // the note naming the run folder
	}
	a, b := evalMsgs(env, single), evalMsgs(shardedEnv, sharded)
	if a != b || !strings.Contains(a, "synth_tag dev (n=20)") {
		t.Errorf("eval of the merged shards:\n%s\nof the single run:\n%s", b, a)
	}
}

// With --fast-dev-run the shard workers and their merge write the config's
// fast_dev_run folder, and the merge names that folder.
func TestConfigPredictMergeFastDevRunNamesItsFolder(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "run")
	cfg := predictConfig(t, dir, out)
	env := runtimeEnv(t)
	for i := 0; i < 2; i++ {
		stdout, stderr, err := runTagpr(t, dir, env, "predict", "-c", cfg, "--fast-dev-run", "--shard", fmt.Sprintf("%d/2", i))
		if err != nil || !strings.Contains(stdout, "predict merge -c "+cfg+" --fast-dev-run") {
			t.Fatalf("worker %d: %v\n%s%s", i, err, stdout, stderr)
		}
	}
	stdout, stderr, err := runTagpr(t, dir, env, "predict", "merge", "-c", cfg, "--fast-dev-run")
	want := filepath.Join(out, "fast_dev_run", "predictions")
	if err != nil || !strings.Contains(stdout, "merged in "+want+"\n") {
		t.Fatalf("merge: %v, want it to name %s\n%s%s", err, want, stdout, stderr)
	}
	if files, _ := filepath.Glob(filepath.Join(want, "base", "*_*.*")); len(files) == 0 {
		t.Fatalf("nothing merged in %s", want)
	}
}

// runtime.generation_dtype: a value other than float32 or float16 is
// refused naming the key; float16 predicts, and the run folder's stamp
// then refuses the same stage in float32.
func TestConfigPredictGenerationDType(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "run")
	cfg := predictConfig(t, dir, out)
	env := runtimeEnv(t)
	if _, stderr, err := runTagpr(t, dir, env, "predict", "-c", cfg, "--generation-dtype", "bfloat16"); err == nil || !strings.Contains(stderr, "runtime.generation_dtype") {
		t.Fatalf("bfloat16: err %v\n%s", err, stderr)
	}
	if _, stderr, err := runTagpr(t, dir, env, "predict", "-c", cfg, "--fast-dev-run", "--generation-dtype", "float16"); err != nil {
		t.Fatalf("float16: %v\n%s", err, stderr)
	}
	if files, _ := filepath.Glob(filepath.Join(out, "fast_dev_run", "predictions", "base", "*_*.json")); len(files) == 0 {
		t.Fatal("float16 predict wrote no predictions")
	}
	if _, stderr, err := runTagpr(t, dir, env, "predict", "-c", cfg, "--fast-dev-run"); err == nil || !strings.Contains(stderr, "generation_dtype") {
		t.Fatalf("float32 over the float16 stage: err %v\n%s", err, stderr)
	}
}
