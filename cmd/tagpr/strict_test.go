package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// trainTextData writes n training texts as JSON lines.
func trainTextData(t *testing.T, n int) string {
	t.Helper()
	data := filepath.Join(t.TempDir(), "train.jsonl")
	var rows []map[string]any
	for _, s := range trainTexts(n) {
		rows = append(rows, map[string]any{"text": s})
	}
	writeTrainJSONL(t, data, rows)
	return data
}

// TestTrainLMRefusesBadSettings: each out-of-range or non-finite setting
// (the issue's --clip NaN, --weight-decay inf and --lora-alpha NaN exported
// all-NaN models with exit 0) is refused before training, naming the flag
// and its range; nothing is exported.
func TestTrainLMRefusesBadSettings(t *testing.T) {
	model, data := trainModelDir(t), trainTextData(t, 8)
	base := []string{"train", "lm", "--model", model, "--data", data, "--steps", "4", "--batch", "2", "--seq-len", "16"}
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"--clip", "NaN"}, []string{"--clip NaN: want a finite value ≥ 0"}},
		{[]string{"--weight-decay", "inf"}, []string{"--weight-decay +Inf: want a finite value ≥ 0"}},
		{[]string{"--lora-rank", "4", "--lora-alpha", "NaN"}, []string{"--lora-alpha NaN: want a finite value ≥ 0"}},
		{[]string{"--lr", "0"}, []string{"--lr 0: want a finite value > 0"}},
		{[]string{"--warmup", "-5"}, []string{"--warmup -5: want a step count in [0, --steps 4], or -1 for 5% of --steps"}},
		{[]string{"--checkpoint-every", "0"}, []string{"--checkpoint-every 0: want ≥ 1"}},
		{[]string{"--checkpoint-every", "-1"}, []string{"--checkpoint-every -1: want ≥ 1"}},
		{[]string{"--schedule", "cosin"}, []string{"--schedule cosin: want cosine, linear or constant"}},
		{[]string{"--max-skipped-steps", "0"}, []string{"--max-skipped-steps 0: want ≥ 1"}},
		{[]string{"--lora-rank", "4", "--lora-targets", "re:(["}, []string{"--lora-targets", `pattern "re:(["`, "missing closing ]"}},
		{[]string{"--trainable", "re:(["}, []string{"--trainable", "missing closing ]"}},
		{[]string{"--lora-rank", "100000"}, []string{"rank 100000 exceeds weight", "want rank in [1, 32]"}},
		{[]string{"--threads", "-3"}, []string{"--threads (runtime.threads) -3: want ≥ 0 (0: one per core)"}},
		{[]string{"--spinning", "sometimes"}, []string{`--spinning (runtime.spinning) "sometimes": want auto, on or off`}},
		{[]string{"--lora-rank", "4", "--trainable", "model.norm"}, []string{"--trainable with --lora-rank", "drop --trainable"}},
		{[]string{"--lora-targets", "q_proj"}, []string{"--lora-targets without --lora-rank", "add --lora-rank"}},
		{[]string{"--lora-alpha", "16"}, []string{"--lora-alpha without --lora-rank"}},
	} {
		out := filepath.Join(t.TempDir(), "run")
		args := append(append(append([]string{}, base...), "--out", out), c.args...)
		_, stderr, err := runTagpr(t, ".", nil, args...)
		if err == nil {
			t.Errorf("%v: accepted", c.args)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(stderr, w) {
				t.Errorf("%v: stderr %q lacks %q", c.args, stderr, w)
			}
		}
		if _, err := os.Stat(filepath.Join(out, "model.onnx")); err == nil {
			t.Errorf("%v: a model was exported", c.args)
		}
		if _, err := os.Stat(filepath.Join(out, "checkpoint", "LATEST")); err == nil {
			t.Errorf("%v: a checkpoint was written", c.args)
		}
	}
}

// TestTrainLMDivergenceStops: --lr 1e30 (issue: "trained 20 steps", exit 0,
// 19 steps skipped) stops after --max-skipped-steps skipped steps in a row
// with a non-zero exit naming the learning rate; every step, skipped ones
// too, is a JSON line of the log; nothing non-finite is written. --lr 1e6
// (issue: no warning) trains but warns that the loss is not below the
// uniform-guess level.
func TestTrainLMDivergenceStops(t *testing.T) {
	model, data := trainModelDir(t), trainTextData(t, 8)
	out := filepath.Join(t.TempDir(), "run")
	_, stderr, err := runTagpr(t, ".", nil, "train", "lm", "--model", model, "--data", data, "--steps", "20", "--batch", "4", "--seq-len", "16",
		"--lr", "1e30", "--max-skipped-steps", "3", "--checkpoint-every", "1", "--out", out)
	if err == nil || !strings.Contains(stderr, "3 steps in a row skipped") || !strings.Contains(stderr, "learning rate 1e+30 is likely too high") {
		t.Fatalf("--lr 1e30: err %v, stderr %q; want a non-zero exit naming the learning rate", err, stderr)
	}
	if _, err := os.Stat(filepath.Join(out, "model.onnx")); err == nil {
		t.Fatal("--lr 1e30 exported a model")
	}
	log := readTrainLog(t, filepath.Join(out, "checkpoint", "train_log.jsonl")) // fails on a blank or non-JSON line
	skipped := 0
	for _, l := range log {
		if l["skipped"] == true {
			skipped++
			if l["reason"] == nil {
				t.Errorf("skipped step without a reason: %v", l)
			}
		}
	}
	if skipped != 3 {
		t.Fatalf("log has %d skipped steps of %d, want 3", skipped, len(log))
	}

	out = filepath.Join(t.TempDir(), "run")
	stdout, stderr, err := runTagpr(t, ".", nil, "train", "lm", "--model", model, "--data", data, "--steps", "30", "--batch", "4", "--seq-len", "16",
		"--lr", "1e6", "--out", out)
	if err != nil || !strings.Contains(stdout, "trained 30 steps") {
		t.Fatalf("--lr 1e6: %v\n%s", err, stderr)
	}
	if !strings.Contains(stderr, "warning: ") || !strings.Contains(stderr, "uniform-guess level 5.704") {
		t.Fatalf("--lr 1e6: no warning about the loss (ln 300 = 5.704):\n%s", stderr)
	}
}

// startHolder starts `tagpr train lm` on out for a long run and waits until
// it writes its log (it holds out's lock by then). It is killed at cleanup.
func startHolder(t *testing.T, model, data, out string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(tagprBin, "train", "lm", "--model", model, "--data", data, "--steps", "1000000", "--batch", "2", "--seq-len", "16",
		"--checkpoint-every", "1000000", "--out", out)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	logPath := filepath.Join(out, "checkpoint", "train_log.jsonl")
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if st, err := os.Stat(logPath); err == nil && st.Size() > 0 {
			return cmd
		}
	}
	t.Fatal("the first run wrote no log in 60s")
	return nil
}

// TestOneWriterPerRunFolder: while one `tagpr train lm` writes to a folder
// (issue: two runs 0.3 s apart on one --out both exit 0), a second train lm,
// a PRMU training and a demo there are refused, each naming the first
// process's PID; so is a second chains worker for the same shard of an
// output while the first waits on its teacher. SIGKILL of the first frees
// the folder at once.
func TestOneWriterPerRunFolder(t *testing.T) {
	model, data := trainModelDir(t), trainTextData(t, 8)
	dir := t.TempDir()
	out := filepath.Join(dir, "run")
	holder := startHolder(t, model, data, out)
	pid := fmt.Sprintf("pid %d", holder.Process.Pid)
	_, stderr, err := runTagpr(t, ".", nil, "train", "lm", "--model", model, "--data", data, "--steps", "2", "--batch", "2", "--seq-len", "16", "--out", out)
	if err == nil || !strings.Contains(stderr, pid) || !strings.Contains(stderr, out) {
		t.Fatalf("second train lm: err %v, stderr %q; want a refusal naming %s", err, stderr, pid)
	}
	for _, args := range [][]string{{"prmu", "train", "--out", out, "--steps", "1", "--users", "10"}, {"demo", "--dir", out}} {
		if _, stderr, err := runTagpr(t, ".", nil, args...); err == nil || !strings.Contains(stderr, pid) {
			t.Errorf("%s while the folder is held: err %v, stderr %q; want a refusal naming %s", args[0], err, stderr, pid)
		}
	}

	// Chains workers share OUT.parts/ by design, one per shard.
	synth := filepath.Join(dir, "synth")
	if _, stderr, err := runTagpr(t, ".", nil, "data", "synth", "--users", "10", "--tasks", "synth_tag", "--out", synth); err != nil {
		t.Fatalf("data synth: %v\n%s", err, stderr)
	}
	asked, release := make(chan struct{}, 1), make(chan struct{})
	teacher := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case asked <- struct{}{}:
		default:
		}
		<-release // the first worker waits here, holding its shard
		http.Error(w, "bye", http.StatusServiceUnavailable)
	}))
	defer teacher.Close()
	defer close(release)
	chains := []string{"chains", "generate", "--examples", filepath.Join(synth, "synth_tag", "train.arrow"), "--out", filepath.Join(dir, "chains.arrow"),
		"--base-url", teacher.URL + "/v1", "--model", "m", "--api-key-env", "", "--retries", "0", "--batch", "1", "--concurrency", "1"}
	first := exec.Command(tagprBin, chains...)
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { first.Process.Kill(); first.Wait() }()
	select {
	case <-asked:
	case <-time.After(60 * time.Second):
		t.Fatal("the first chains worker sent no request in 60s")
	}
	_, stderr, err = runTagpr(t, ".", nil, chains...)
	if want := fmt.Sprintf("pid %d", first.Process.Pid); err == nil || !strings.Contains(stderr, want) || !strings.Contains(stderr, "shard all") {
		t.Errorf("second chains worker on the same shard: err %v, stderr %q; want a refusal naming %s", err, stderr, want)
	}

	holder.Process.Kill() // SIGKILL: no chance to clean up
	holder.Wait()
	stdout, stderr, err := runTagpr(t, ".", nil, "train", "lm", "--model", model, "--data", data, "--steps", "2", "--batch", "2", "--seq-len", "16", "--out", out)
	if err != nil || !strings.Contains(stdout, "trained 2 steps") {
		t.Fatalf("after the holder was killed: %v\n%s", err, stderr)
	}
}

// TestTrainLMResumeIdentity: a resume with another --lr (issue: "resuming
// from step 100" with two settings mixed in one run) is refused naming the
// setting, both values and --fresh; --fresh starts over; the same settings
// resume, and the checkpoint interval may change.
func TestTrainLMResumeIdentity(t *testing.T) {
	model, data := trainModelDir(t), trainTextData(t, 8)
	out := filepath.Join(t.TempDir(), "run")
	args := func(extra ...string) []string {
		return append([]string{"train", "lm", "--model", model, "--data", data, "--steps", "6", "--batch", "2", "--seq-len", "16",
			"--out", out, "--checkpoint-every", "3"}, extra...)
	}
	if _, stderr, err := runTagpr(t, ".", nil, args("--lr", "1e-2")...); err != nil {
		t.Fatalf("first run: %v\n%s", err, stderr)
	}
	for _, c := range []struct {
		flag, value, want string
	}{
		{"--lr", "2e-2", `lr was "0.01", now "0.02"`},
		{"--schedule", "linear", `schedule was "cosine", now "linear"`},
		{"--clip", "0.5", `clip was "1", now "0.5"`},
		{"--weight-decay", "0.1", `weight_decay was "0", now "0.1"`},
		{"--warmup", "2", `warmup was "0", now "2"`},
		{"--seed", "2", `seed was "1", now "2"`},
	} {
		_, stderr, err := runTagpr(t, ".", nil, args("--lr", "1e-2", c.flag, c.value)...)
		if err == nil || !strings.Contains(stderr, c.want) || !strings.Contains(stderr, "--fresh") || strings.Contains(stderr, "resuming") {
			t.Errorf("resume with %s %s: err %v, stderr %q; want a refusal saying %s and naming --fresh", c.flag, c.value, err, stderr, c.want)
		}
	}
	// Another data file (by content) is another run too.
	other := trainTextData(t, 5)
	if _, stderr, err := runTagpr(t, ".", nil, "train", "lm", "--model", model, "--data", other, "--steps", "6", "--batch", "2", "--seq-len", "16",
		"--out", out, "--checkpoint-every", "3", "--lr", "1e-2"); err == nil || !strings.Contains(stderr, "data_sha256 was") {
		t.Errorf("resume on other data: err %v, stderr %q", err, stderr)
	}
	_, stderr, err := runTagpr(t, ".", nil, args("--lr", "1e-2", "--checkpoint-every", "2")...)
	if err != nil || !strings.Contains(stderr, "resuming from step 6") {
		t.Fatalf("resume with the same settings (another checkpoint interval): %v\n%s", err, stderr)
	}
	stdout, stderr, err := runTagpr(t, ".", nil, args("--lr", "2e-2", "--fresh")...)
	if err != nil || strings.Contains(stderr, "resuming") || !strings.Contains(stdout, "trained 6 steps") {
		t.Fatalf("--fresh: %v\n%s%s", err, stdout, stderr)
	}
	if n := len(readTrainLog(t, filepath.Join(out, "checkpoint", "train_log.jsonl"))); n != 6 {
		t.Fatalf("log after --fresh has %d lines, want 6", n)
	}
	var rec struct{ Settings map[string]string }
	b, _ := os.ReadFile(filepath.Join(out, "checkpoint", "run.json"))
	if err := json.Unmarshal(b, &rec); err != nil || rec.Settings["lr"] != "0.02" || len(rec.Settings["model_sha256"]) != 64 {
		t.Fatalf("run.json after --fresh: %s (%v)", b, err)
	}
}

// TestChainsFlags: --concurrency 0 and --batch 0 are refused with their
// range; --retries 0 makes exactly one request (issue: five).
func TestChainsFlags(t *testing.T) {
	dir := t.TempDir()
	synth := filepath.Join(dir, "synth")
	if _, stderr, err := runTagpr(t, ".", nil, "data", "synth", "--users", "10", "--tasks", "synth_tag", "--out", synth); err != nil {
		t.Fatalf("data synth: %v\n%s", err, stderr)
	}
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Error(w, "overloaded", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	base := []string{"chains", "generate", "--examples", filepath.Join(synth, "synth_tag", "train.arrow"), "--out", filepath.Join(dir, "chains.arrow"),
		"--base-url", srv.URL + "/v1", "--model", "m", "--api-key-env", ""}
	for flag, want := range map[string]string{"--concurrency": "--concurrency 0: want ≥ 1", "--batch": "--batch 0: want ≥ 1", "--samples": "--samples 0: want ≥ 1"} {
		_, stderr, err := runTagpr(t, ".", nil, append(base, flag, "0")...)
		if err == nil || !strings.Contains(stderr, want) {
			t.Errorf("%s 0: err %v, stderr %q", flag, err, stderr)
		}
	}
	// Greedy samples are all the same chain: paid for, then dropped as duplicates.
	if _, stderr, err := runTagpr(t, ".", nil, append(base, "--samples", "2", "--temperature", "0")...); err == nil ||
		!strings.Contains(stderr, "--samples 2: want 1 with --temperature 0") {
		t.Errorf("--samples 2 --temperature 0: err %v, stderr %q", err, stderr)
	}
	if hits.Load() != 0 {
		t.Fatalf("refused runs sent %d requests", hits.Load())
	}
	_, stderr, err := runTagpr(t, ".", nil, append(base, "--retries", "0", "--batch", "1", "--concurrency", "1")...)
	if err == nil || !strings.Contains(stderr, "HTTP 503") {
		t.Fatalf("--retries 0 against a failing server: err %v, stderr %q", err, stderr)
	}
	if n := hits.Load(); n != 1 {
		t.Fatalf("--retries 0 made %d requests, want 1", n)
	}
}

// TestOutputsAndInputsChecked: an existing output is refused unless --force
// (issue: import-lamp overwrote it silently); a missing parent folder is
// created (issue: tokenizer train failed with a temp-file path); a pinned
// tokenizer_config.json that was altered is refused at load (issue: only
// `models verify` noticed).
func TestOutputsAndInputsChecked(t *testing.T) {
	dir := t.TempDir()
	lamp, _ := filepath.Abs("../../datasets/testdata/lamp/user/LaMP_3")
	out := filepath.Join(dir, "existing.arrow")
	os.WriteFile(out, []byte("keep me"), 0o644)
	imp := []string{"data", "import-lamp", "--task", "3", "--questions", filepath.Join(lamp, "dev_questions.json"),
		"--outputs", filepath.Join(lamp, "dev_outputs.json"), "--out", out}
	if _, stderr, err := runTagpr(t, ".", nil, imp...); err == nil || !strings.Contains(stderr, "exists; pass --force") {
		t.Fatalf("import-lamp onto an existing file: err %v, stderr %q", err, stderr)
	}
	if b, _ := os.ReadFile(out); string(b) != "keep me" {
		t.Fatal("the existing file was overwritten")
	}
	if _, stderr, err := runTagpr(t, ".", nil, append(imp, "--force")...); err != nil {
		t.Fatalf("import-lamp --force: %v\n%s", err, stderr)
	}
	nested := filepath.Join(dir, "new", "sub", "lamp.arrow")
	if _, stderr, err := runTagpr(t, ".", nil, append(imp[:len(imp)-1], nested)...); err != nil {
		t.Fatalf("import-lamp into a missing folder: %v\n%s", err, stderr)
	}

	corpus := filepath.Join(dir, "corpus.txt")
	os.WriteFile(corpus, []byte(strings.Join(trainTexts(20), "\n")), 0o644)
	tok := filepath.Join(dir, "tok", "deeper", "tokenizer.json")
	if _, stderr, err := runTagpr(t, ".", nil, "tokenizer", "train", "--corpus", corpus, "--vocab-size", "280", "--out", tok); err != nil {
		t.Fatalf("tokenizer train into a missing folder: %v\n%s", err, stderr)
	}
	if _, stderr, err := runTagpr(t, ".", nil, "tokenizer", "train", "--corpus", corpus, "--vocab-size", "280", "--out", tok); err == nil || !strings.Contains(stderr, "pass --force") {
		t.Fatalf("tokenizer train onto an existing file: err %v, stderr %q", err, stderr)
	}

	// Pin the tokenizer and its config, then alter the config.
	tokDir := filepath.Dir(tok)
	if _, stderr, err := runTagpr(t, tokDir, nil, "models", "lock", "--kind", "tokenizer", "tokenizer.json", "tokenizer_config.json"); err != nil {
		t.Fatalf("models lock: %v\n%s", err, stderr)
	}
	if _, stderr, err := runTagpr(t, tokDir, nil, "tokenizer", "encode", "--tokenizer", "tokenizer.json", "the fox"); err != nil {
		t.Fatalf("encode with intact pins: %v\n%s", err, stderr)
	}
	cfg := filepath.Join(tokDir, "tokenizer_config.json")
	b, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, append(b, ' '), 0o644)
	_, stderr, err := runTagpr(t, tokDir, nil, "tokenizer", "encode", "--tokenizer", "tokenizer.json", "the fox")
	if err == nil || !strings.Contains(stderr, "tokenizer_config.json") || !strings.Contains(stderr, "expected sha256") {
		t.Fatalf("encode with an altered pinned tokenizer_config.json: err %v, stderr %q", err, stderr)
	}
}

// readLogSteps returns the step numbers of a train log, in order.
func readLogSteps(t *testing.T, path string) []int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var steps []int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l struct{ Step int }
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		steps = append(steps, l.Step)
	}
	return steps
}

// TestPinnedModelConfigVerified: a model's config.json pinned beside it is
// verified whenever the model loads, like the model file.
func TestPinnedModelConfigVerified(t *testing.T) {
	dir := t.TempDir()
	if _, stderr, err := runTagpr(t, dir, nil, "model", "init", "--layers", "1", "--d-model", "32", "--vocab", "64", "--out", "m"); err != nil {
		t.Fatalf("model init: %v\n%s", err, stderr)
	}
	if _, stderr, err := runTagpr(t, dir, nil, "models", "lock", "--kind", "model", "m/model.onnx", "m/config.json"); err != nil {
		t.Fatalf("models lock: %v\n%s", err, stderr)
	}
	if _, stderr, err := runTagpr(t, dir, nil, "model", "info", "m"); err != nil {
		t.Fatalf("model info with intact pins: %v\n%s", err, stderr)
	}
	cfg := filepath.Join(dir, "m", "config.json")
	b, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, append(b, ' '), 0o644)
	if _, stderr, err := runTagpr(t, dir, nil, "model", "info", "m"); err == nil || !strings.Contains(stderr, "config.json") || !strings.Contains(stderr, "expected sha256") {
		t.Fatalf("model info with an altered pinned config.json: err %v, stderr %q", err, stderr)
	}
}

// TestPinnedModelTokenizerVerified: the tokenizer.json beside a model, when
// pinned, is verified by every command that reads it from the folder
// (generate and serve read it through serve.Open, not loadTokenizer).
func TestPinnedModelTokenizerVerified(t *testing.T) {
	dir := t.TempDir()
	env := runtimeEnv(t)
	if _, stderr, err := runTagpr(t, dir, nil, "model", "init", "--layers", "1", "--d-model", "32", "--vocab", "300", "--out", "m"); err != nil {
		t.Fatalf("model init: %v\n%s", err, stderr)
	}
	corpus := filepath.Join(dir, "corpus.txt")
	os.WriteFile(corpus, []byte(strings.Repeat("hello world of tags\n", 50)), 0o644)
	if _, stderr, err := runTagpr(t, dir, nil, "tokenizer", "train", "--corpus", corpus, "--vocab-size", "300", "--out", "m/tokenizer.json"); err != nil {
		t.Fatalf("tokenizer train: %v\n%s", err, stderr)
	}
	if _, stderr, err := runTagpr(t, dir, nil, "models", "lock", "--kind", "tokenizer", "m/tokenizer.json"); err != nil {
		t.Fatalf("models lock: %v\n%s", err, stderr)
	}
	gen := []string{"model", "generate", "m", "--prompt", "hello", "--max-new-tokens", "2"}
	if _, stderr, err := runTagpr(t, dir, env, gen...); err != nil {
		t.Fatalf("generate with intact pins: %v\n%s", err, stderr)
	}
	tok := filepath.Join(dir, "m", "tokenizer.json")
	b, _ := os.ReadFile(tok)
	os.WriteFile(tok, append(b, ' '), 0o644)
	// (serve opens the folder the same way; it is not run here, since a
	// server that wrongly starts would not return.)
	for _, args := range [][]string{gen, {"model", "generate", "m", "--ids", "1,2", "--max-new-tokens", "2"}} {
		if _, stderr, err := runTagpr(t, dir, env, args...); err == nil || !strings.Contains(stderr, "tokenizer.json does not match models.lock") {
			t.Errorf("%v with an altered pinned tokenizer.json: err %v, stderr %q", args, err, stderr)
		}
	}
}
