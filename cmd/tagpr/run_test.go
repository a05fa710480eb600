package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/onnx/ort"
	"github.com/tagpr/tagpr/pipeline"
)

// lampDownload is the LaMP fixture in LaMP's download layout (tasks 2, 3, 4).
const lampDownload = "../../datasets/testdata/lamp_download"

// policyFixture is a tiny Qwen2 chat model exported from PyTorch with its
// Hugging Face tokenizer (scripts/fixtures/export_policy_fixture.py).
const policyFixture = "../../onnx/testdata/pytorch/qwen2-chat"

// lampGolds maps every training question's input to its gold output.
func lampGolds(t *testing.T) map[string]string {
	t.Helper()
	golds := map[string]string{}
	for _, task := range []string{"LaMP_2", "LaMP_3", "LaMP_4"} {
		var qs []struct {
			ID, Input string
		}
		var outs struct {
			Golds []struct{ ID, Output string }
		}
		readJSONFile(t, filepath.Join(lampDownload, task, "train", "train_questions.json"), &qs)
		readJSONFile(t, filepath.Join(lampDownload, task, "train", "train_outputs.json"), &outs)
		byID := map[string]string{}
		for _, g := range outs.Golds {
			byID[g.ID] = g.Output
		}
		for _, q := range qs {
			golds[q.Input] = byID[q.ID]
		}
	}
	return golds
}

func readJSONFile(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// guideTag is a line of the teacher prompt's tag list: "<name>: what it does".
var guideTag = regexp.MustCompile(`(?m)^<([a-z_]+)>: .*$`)

// chainTeacher is an OpenAI-compatible chat endpoint on loopback that
// answers like a teacher following the prompt: it writes one step per tag
// the prompt lists as required (and the first listed tag), using the
// prompt's tag names, and the gold answer of the question it recognizes.
type chainTeacher struct {
	*httptest.Server
	mu       sync.Mutex
	requests int
	tags     map[string]bool // every tag name the prompts listed
}

func newChainTeacher(t *testing.T, golds map[string]string) *chainTeacher {
	ct := &chainTeacher{tags: map[string]bool{}}
	ct.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Model    string
			Messages []struct{ Role, Content string }
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || r.URL.Path != "/v1/chat/completions" || len(req.Messages) == 0 {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		user := req.Messages[len(req.Messages)-1].Content
		gold, found := "", false
		for input, g := range golds {
			if strings.Contains(user, input) {
				gold, found = g, true
			}
		}
		if !found {
			http.Error(w, "unknown question", http.StatusBadRequest)
			return
		}
		var b strings.Builder
		b.WriteString("<think>\n")
		for i, m := range guideTag.FindAllStringSubmatch(user, -1) {
			ct.mu.Lock()
			ct.tags[m[1]] = true
			ct.mu.Unlock()
			if i == 0 || strings.HasSuffix(m[0], "(required)") {
				fmt.Fprintf(&b, "<%s>Step %s for this user (question %x), toward %q.</%s>\n", m[1], m[1], crc32.ChecksumIEEE([]byte(user)), gold, m[1])
			}
		}
		fmt.Fprintf(&b, "</think>\n<answer>%s</answer>", gold)
		ct.mu.Lock()
		ct.requests++
		ct.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"id": "chatcmpl-test", "object": "chat.completion", "model": req.Model,
			"choices": []map[string]any{{"index": 0, "finish_reason": "stop", "message": map[string]string{"role": "assistant", "content": b.String()}}}})
	}))
	t.Cleanup(ct.Close)
	return ct
}

// lampConfig is a user's config for the LaMP fixture, the exported policy
// and the loopback teacher, sized to run in seconds.
func lampConfig(t *testing.T, out, teacherURL string) string {
	t.Helper()
	lamp, _ := filepath.Abs(lampDownload)
	policy, _ := filepath.Abs(policyFixture)
	taxonomy := filepath.Join(filepath.Dir(out), "tags.yaml")
	if err := os.WriteFile(taxonomy, []byte(lampTaxonomy), 0o644); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf(`out: %s
taxonomy: %s
runtime: {threads: 1}
policy: {dir: %s}
data:
  lamp_dir: %s
  tasks: [2, 3, 4]
retrieval: {method: bm25, top_k: 4, max_prompt_tokens: 384}
teacher:
  kind: openai
  base_url: %s/v1
  model: test-teacher
  api_key_env: ""
  max_retries: 0
stages:
  chains: {samples: 1, batch: 4}
  sft: {steps: 4, batch: 2, seq_len: 640, lr: 0.003, warmup: 1, checkpoint_every: 2, seed: 3}
  prmu: {steps: 12, pairs_per_step: 8, vocab: 300, threads: 1, policy_samples: 1, seed: 4}
  rl:
    - {name: guided, reward: guided, steps: 2, prompts_per_step: 2, num_generations: 2, max_prompt_length: 384,
       max_completion_length: 24, beta: 0.04, lr: 0.0001, checkpoint_every: 1, seed: 5, task_weights: {LaMP_3: 0, LaMP_4: 2}}
    - {name: exploratory, reward: exploratory, steps: 2, prompts_per_step: 2, num_generations: 2, max_prompt_length: 384,
       max_completion_length: 24, lr: 0.0001, checkpoint_every: 1, seed: 6, dynamic_sampling_rounds: 2}
  predict: {models: [base, sft, rl], splits: [dev, test], batch: 4, max_new_tokens: 24}
  report: {title: "tagpr on LaMP (fixture)"}
`, out, taxonomy, policy, lamp, teacherURL)
}

// lampTaxonomy is the users' own tag taxonomy: the teacher prompt, the chain
// filter, R_tag and the report use these names, not the built-in ones.
const lampTaxonomy = `- {name: restate, description: restate what the task asks}
- {name: recall, description: recall the user's relevant history, required: true, order: 1}
- {name: infer, description: infer what this user prefers, required: true, order: 2}
- {name: decide, description: give the decision, required: true, order: 3}
`

// runtimeEnv points a run in a temp folder (no models.lock) at the
// repository's pinned ONNX Runtime.
func runtimeEnv(t *testing.T) []string {
	t.Helper()
	lib, _, err := ort.FromLockFile(".")
	if err != nil {
		t.Fatal(err)
	}
	return []string{ort.EnvLibraryPath + "=" + lib}
}

func writeConfig(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRunLaMPEndToEnd: a user's config, LaMP files in the official layout,
// an exported PyTorch policy and an OpenAI-compatible teacher on loopback;
// `tagpr run -c` goes chains → sft → prmu → guided rl → exploratory rl →
// predict → eval → report with nothing else written by the user.
func TestRunLaMPEndToEnd(t *testing.T) {
	dir := t.TempDir()
	teacher := newChainTeacher(t, lampGolds(t))
	out := filepath.Join(dir, "run")
	cfg := writeConfig(t, dir, "lamp.yaml", lampConfig(t, out, teacher.URL))
	env := runtimeEnv(t)
	start := time.Now()
	stdout, stderr, err := runTagpr(t, dir, env, "run", "-c", cfg)
	whole := time.Since(start)
	if err != nil {
		t.Fatalf("tagpr run: %v\n%s\n%s", err, stdout, stderr)
	}
	checkLaMPRun(t, out, stdout)
	// Without a terminal, progress is JSON lines: each task's chains file and
	// each predictions file ends with its own (predict's batches were not
	// reported, and every file after a stage's first logged no progress).
	for _, want := range []string{`"msg":"chains","done":`, `"msg":"predict","done":`} {
		if n := strings.Count(stderr, want); n < 3 {
			t.Errorf("stderr has %d lines with %s, want one per task file at least:\n%s", n, want, stderr)
		}
	}
	// The teacher was told the taxonomy's tag names, and asked once per training example.
	for _, tag := range []string{"restate", "recall", "infer", "decide"} {
		if !teacher.tags[tag] {
			t.Errorf("the teacher prompts never named <%s>: %v", tag, teacher.tags)
		}
	}
	if teacher.requests != 18 {
		t.Errorf("teacher asked %d times, want 18 (6 training questions × 3 tasks)", teacher.requests)
	}
	// A rerun of a finished run does no work and rebuilds the same report.
	stdout2, stderr2, err := runTagpr(t, dir, env, "run", "-c", cfg, "--log-format", "json")
	if err != nil {
		t.Fatalf("rerun: %v\n%s", err, stderr2)
	}
	if teacher.requests != 18 || strings.Contains(stderr2, `"msg":"sft"`) || strings.Contains(stderr2, `"msg":"rl `) {
		t.Errorf("the rerun of a finished run did work (teacher requests %d):\n%s", teacher.requests, stderr2)
	}
	if tables(stdout2) != tables(stdout) {
		t.Errorf("the rerun's report differs:\n%s\nfirst:\n%s", tables(stdout2), tables(stdout))
	}

	// The same run killed with SIGKILL at random moments, then rerun, ends
	// with the same weights, predictions and metrics, and its report lists
	// every stage.
	killed := filepath.Join(dir, "killed")
	kcfg := writeConfig(t, dir, "killed.yaml", lampConfig(t, killed, teacher.URL))
	// Each run is killed after 10–25% of the uninterrupted run's time, so
	// several runs are killed, each a little further along than the one
	// before (at least two even when the machine has become much faster
	// since that run was timed: a load that eased between them made four
	// kills a matter of luck).
	rng := rand.New(rand.NewPCG(7, 9))
	moments := make([]time.Duration, 5)
	for i := range moments {
		moments[i] = whole/10 + time.Duration(rng.Int64N(int64(whole)*15/100))
	}
	kills := 0
	for i, wait := range moments {
		cmd := exec.Command(tagprBin, "run", "-c", kcfg, "--log-format", "json")
		cmd.Dir, cmd.Env = dir, append(os.Environ(), env...)
		var errb bytes.Buffer
		cmd.Stderr = &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("run %d ended by itself with %v:\n%s", i, err, errb.String())
			}
		case <-time.After(wait):
			cmd.Process.Kill() // SIGKILL: no cleanup runs
			<-done
			kills++
			t.Logf("killed run %d after %v: %s", i, wait, lastStage(errb.String()))
		}
	}
	if kills < 2 {
		t.Fatalf("only %d runs were killed before the run finished; the test wants several", kills)
	}
	kout, kerr, err := runTagpr(t, dir, env, "run", "-c", kcfg)
	if err != nil {
		t.Fatalf("rerun after the kills: %v\n%s", err, kerr)
	}
	checkLaMPRun(t, killed, kout)
	for _, f := range []string{"sft/model.onnx", "prmu/model.onnx", "rl/guided/model.onnx", "rl/exploratory/model.onnx",
		"eval/LaMP_2M_dev.json", "eval/LaMP_3_dev.json", "eval/LaMP_4_dev.json", "predictions/rl/LaMP_4_test.json", "predictions/sft/LaMP_3_dev.parquet"} {
		a, errA := os.ReadFile(filepath.Join(out, f))
		b, errB := os.ReadFile(filepath.Join(killed, f))
		if errA != nil || errB != nil || !bytes.Equal(a, b) {
			t.Errorf("%s differs between the uninterrupted run and the killed and resumed one (%v, %v)", f, errA, errB)
		}
	}
	if tables(kout) != tables(stdout) {
		t.Errorf("the killed run's report differs:\n%s\nuninterrupted:\n%s", tables(kout), tables(stdout))
	}
	checkStageCommands(t, dir, env, cfg, out)
}

// checkStageCommands runs the stage commands on the finished run of cfg in out.
func checkStageCommands(t *testing.T, dir string, env []string, cfg, out string) {
	t.Helper()
	run := func(extraEnv []string, args ...string) (string, string, error) {
		return runTagpr(t, dir, append(append([]string{}, env...), extraEnv...), args...)
	}
	// A setting changed after its stage finished is refused, naming it.
	_, stderr, err := run([]string{"TAGPR_STAGES_SFT_LR=0.01"}, "run", "-c", cfg)
	if err == nil || !strings.Contains(stderr, `stages.sft.lr was "0.003", now "0.01"`) || !strings.Contains(stderr, filepath.Join(out, "sft")) {
		t.Errorf("a changed stages.sft.lr: err %v\n%s", err, stderr)
	}
	// One stage alone needs the stages it reads.
	fresh := filepath.Join(dir, "fresh")
	if _, stderr, err := run(nil, "sft", "-c", cfg, "--out", fresh); err == nil || !strings.Contains(stderr, "tagpr chains") {
		t.Errorf("sft before chains: err %v\n%s", err, stderr)
	}
	// Finished stages are no-ops when run alone, and say so.
	for _, args := range [][]string{{"chains"}, {"sft"}, {"prmu", "train"}, {"rl", "--stage", "exploratory"}, {"predict"}, {"eval"}, {"report"}} {
		_, stderr, err := run(nil, append(args, "-c", cfg)...)
		if err != nil {
			t.Errorf("tagpr %v on a finished run: %v\n%s", args, err, stderr)
		}
		if args[0] != "eval" && args[0] != "report" && !strings.Contains(stderr, "already done in "+out) {
			t.Errorf("tagpr %v on a finished run did not say the stage is done:\n%s", args, stderr)
		}
	}
	// predict --model on one questions file, scored by eval against the golds.
	dev, _ := filepath.Abs(filepath.Join(lampDownload, "LaMP_3", "dev"))
	preds := filepath.Join(dir, "rl_lamp3_dev.json")
	if _, stderr, err := run(nil, "predict", "--model", filepath.Join(out, "rl", "exploratory"), "--task", "3",
		"--questions", filepath.Join(dev, "dev_questions.json"), "--out", preds, "-c", cfg); err != nil {
		t.Fatalf("predict --model: %v\n%s", err, stderr)
	}
	a, _ := os.ReadFile(preds)
	b, _ := os.ReadFile(filepath.Join(out, "predictions", "rl", "LaMP_3_dev.json"))
	if !bytes.Equal(a, b) {
		t.Errorf("predict --model gives other answers than the run's predict stage:\n%s\n%s", a, b)
	}
	evalOut, stderr, err := run(nil, "eval", "--task", "3", "--golds", filepath.Join(dev, "dev_outputs.json"), "--predictions", preds)
	if err != nil || !strings.Contains(evalOut, "| LaMP_3 | dev | 3 | mae ↓ |") {
		t.Errorf("eval of predict's file: %v\n%s%s", err, evalOut, stderr)
	}
	checkEvalReproducesReport(t, run, out, dev)
	// The runtime reaches every session: the process declares it (ort.Start)
	// and ort refuses any session created without its options, so the runs
	// above prove every stage passes them down. Asked for CUDA on this
	// CPU-only runtime, a run stops before any work, naming what is missing.
	gpu := filepath.Join(dir, "gpu")
	if _, stderr, err := run(nil, "run", "-c", cfg, "--out", gpu, "--provider", "cuda"); err == nil || !strings.Contains(strings.ToLower(stderr), "cuda") {
		t.Errorf("tagpr run --provider cuda on a CPU-only runtime: err %v\n%s", err, stderr)
	}
	if fileExists(gpu) {
		t.Errorf("--provider cuda: the run started work in %s before refusing", gpu)
	}
}

// checkEvalReproducesReport: `tagpr eval` on a model's predictions file,
// with the split and the bootstrap a run's report gives, prints the same
// LaMP-3 values and intervals as the report.
func checkEvalReproducesReport(t *testing.T, run func([]string, ...string) (string, string, error), out, dev string) {
	t.Helper()
	var rep pipeline.Report
	b, err := os.ReadFile(filepath.Join(out, "report.json"))
	if err != nil || json.Unmarshal(b, &rep) != nil {
		t.Fatalf("report.json: %v", err)
	}
	for _, te := range rep.Tasks {
		if te.Task != "LaMP_3" || te.Split != "dev" {
			continue
		}
		for _, m := range te.Models {
			if m.Baseline {
				continue
			}
			// predict's folder is the model as stages.predict.models names it:
			// "rl" for the last RL stage's model, which the report names rl:NAME.
			file := filepath.Join(out, "predictions", strings.ReplaceAll(m.Name, ":", "_"), "LaMP_3_dev.json")
			if !fileExists(file) && strings.HasPrefix(m.Name, "rl:") {
				file = filepath.Join(out, "predictions", "rl", "LaMP_3_dev.json")
			}
			repDir := filepath.Join(t.TempDir(), "rep")
			if _, stderr, err := run(nil, "eval", "--task", "3", "--golds", filepath.Join(dev, "dev_outputs.json"), "--predictions", file,
				"--split", "dev", "--seed", strconv.FormatUint(te.Bootstrap.Seed, 10), "--bootstrap", strconv.Itoa(te.Bootstrap.Resamples), "--out", repDir); err != nil {
				t.Fatalf("eval of %s: %v\n%s", file, err, stderr)
			}
			var got pipeline.Report
			if b, err := os.ReadFile(filepath.Join(repDir, "report.json")); err != nil || json.Unmarshal(b, &got) != nil || len(got.Tasks) != 1 || len(got.Tasks[0].Models) != 1 {
				t.Fatalf("eval's report.json: %v", err)
			}
			want, _ := json.Marshal(m.Metrics)
			have, _ := json.Marshal(got.Tasks[0].Models[0].Metrics)
			if !bytes.Equal(want, have) {
				t.Errorf("%s: tagpr eval --split dev --seed %d gives %s, the run's report %s", m.Name, te.Bootstrap.Seed, have, want)
			}
		}
	}
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// lastStage is the stage of the last JSON log line a run wrote.
func lastStage(stderr string) string {
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		var l struct{ Msg, Stage string }
		if json.Unmarshal([]byte(lines[i]), &l) == nil && l.Msg != "" {
			return strings.TrimSpace(l.Stage + " " + l.Msg)
		}
	}
	return "(nothing logged)"
}

// tables keeps a report's training and evaluation tables without timings.
func tables(md string) string {
	var keep []string
	for _, line := range strings.Split(md, "\n") {
		if strings.HasPrefix(line, "| ") && !strings.HasPrefix(line, "| stage") {
			cells := strings.Split(line, "|")
			if len(cells) > 4 && (strings.HasPrefix(line, "| sft") || strings.HasPrefix(line, "| prmu") || strings.HasPrefix(line, "| rl") || strings.HasPrefix(line, "| chains")) {
				cells[3] = "" // seconds
				line = strings.Join(cells, "|")
			}
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "\n")
}

// checkLaMPRun checks what a finished run of lampConfig leaves.
func checkLaMPRun(t *testing.T, out, stdout string) {
	t.Helper()
	for _, task := range []string{"LaMP_2M", "LaMP_3", "LaMP_4"} {
		chains, err := datasets.ReadChains(filepath.Join(out, "chains", task+".parquet"), datasets.ReadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		kept := 0
		for _, c := range chains {
			if c.Keep {
				kept++
			}
		}
		if len(chains) != 6 || kept != 6 {
			t.Errorf("%s: %d chains, %d kept; want 6 of 6 (the teacher used the prompt's tag names)", task, len(chains), kept)
		}
		// LaMP's outputs format, one file per model, for dev (scored) and test (golds withheld).
		for _, model := range []string{"base", "sft", "rl"} {
			for split, n := range map[string]int{"dev": 3, "test": 2} {
				var got struct {
					Task  string
					Golds []struct{ ID, Output string }
				}
				readJSONFile(t, filepath.Join(out, "predictions", model, task+"_"+split+".json"), &got)
				lampName := strings.TrimSuffix(task, "M")
				if got.Task != lampName || len(got.Golds) != n {
					t.Errorf("%s %s %s predictions: task %q, %d golds; want %s, %d", model, task, split, got.Task, len(got.Golds), lampName, n)
				}
			}
		}
	}
	for _, f := range []string{"sft/model.onnx", "sft/tokenizer.json", "prmu/prmu.json", "rl/guided/model.onnx", "rl/exploratory/model.onnx",
		"rl/exploratory/tokenizer.json", "eval/LaMP_2M_dev.json", "eval/LaMP_3_dev.json", "eval/LaMP_4_dev.json", "report.md", "report.json",
		"report.html", "metrics.json"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("the run left no %s: %v", f, err)
		}
	}
	// LaMP's rules: profile_blind and profile_reading for labels and
	// ratings, profile_reading (the most similar item's title) for text.
	checkReportHTML(t, out, func(task string) int {
		if strings.HasPrefix(task, "LaMP_4") {
			return 1
		}
		return 2
	})
	checkEventFiles(t, out)
	checkRLTaskWeights(t, out)
	var prmu struct{ Final map[string]float64 }
	readJSONFile(t, filepath.Join(out, "prmu", "summary.json"), &prmu)
	// One SFT-model sample per training question (pairs come from those
	// with a wrong answer; an SFT of 4 steps rarely writes one).
	if prmu.Final["policy_samples"] != 18 {
		t.Errorf("PRMU sampled %v completions from the SFT model, want 18: %v", prmu.Final["policy_samples"], prmu.Final)
	}
	for _, want := range []string{"| chains |", "| sft | 4 |", "| prmu | 12 |", "| rl guided | 2 |", "| rl exploratory | 2 |",
		"| LaMP_2M | dev | 3 | accuracy ↑ |", "| LaMP_3 | dev | 3 | mae ↓ |", "| LaMP_4 | dev | 3 | rougeL ↑ |", "| base | sft | rl:exploratory |",
		"restate, recall, infer, decide; required: recall, infer, decide; in order: recall → infer → decide"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("report lacks %q:\n%s", want, stdout)
		}
	}
}

// checkRLTaskWeights: the guided stage's task_weights leave LaMP_3 out of
// its prompt pool, so none of its rollouts is a LaMP_3 question.
func checkRLTaskWeights(t *testing.T, out string) {
	t.Helper()
	train, _, err := datasets.ReadExamples(filepath.Join(out, "data", "LaMP_3", "train.parquet"), datasets.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	lamp3 := map[string]bool{}
	for _, ex := range train {
		lamp3[ex.ID] = true
	}
	segs, _ := filepath.Glob(filepath.Join(out, "rl", "guided", "rollouts", "*.parquet"))
	n := 0
	for _, seg := range segs {
		rows, err := datasets.ReadRollouts(seg, datasets.ReadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			n++
			if lamp3[r.PromptID] {
				t.Errorf("guided rollout of %s, a LaMP_3 question: task_weights gave LaMP_3 0", r.PromptID)
			}
		}
	}
	if n == 0 || len(lamp3) == 0 {
		t.Errorf("%d guided rollouts, %d LaMP_3 training questions: want some of each", n, len(lamp3))
	}
}

// TestRunConfigErrors: each bad config, variable or input file fails before
// any work starts (no run folder appears), naming the key or the file.
func TestRunConfigErrors(t *testing.T) {
	dir := t.TempDir()
	env := runtimeEnv(t)
	// A private copy of the LaMP files, one of them pinned in models.lock.
	lamp := filepath.Join(dir, "lamp")
	if err := os.CopyFS(lamp, os.DirFS(lampDownload)); err != nil {
		t.Fatal(err)
	}
	pinned := filepath.Join(lamp, "LaMP_3", "dev", "dev_outputs.json")
	if _, stderr, err := runTagpr(t, dir, nil, "models", "lock", "--kind", "dataset", "--name", "lamp3-dev-golds", pinned); err != nil {
		t.Fatalf("models lock: %v\n%s", err, stderr)
	}
	os.WriteFile(pinned, []byte(`{"task": "LaMP_3", "golds": []}`), 0o644)
	out := filepath.Join(dir, "run")
	base := lampConfig(t, out, "http://127.0.0.1:9")
	abs, _ := filepath.Abs(lampDownload)
	cases := []struct {
		name      string
		edit      func(string) string
		env       []string
		wantInErr []string
	}{
		{"unknown key", func(s string) string { return strings.Replace(s, "steps: 4,", "stepz: 4,", 1) }, nil, []string{"stages.sft", "stepz", "lamp.yaml"}},
		{"wrong type", func(s string) string { return strings.Replace(s, "steps: 4,", `steps: "four",`, 1) }, nil, []string{"stages.sft.steps", "lamp.yaml"}},
		{"threads abc", func(s string) string { return strings.Replace(s, "threads: 1}", `threads: "abc"}`, 1) }, nil, []string{"runtime.threads"}},
		{"threads list", func(s string) string { return strings.Replace(s, "threads: 1}", `threads: [1, 2]}`, 1) }, nil, []string{"runtime.threads"}},
		{"runtime scalar", func(s string) string { return strings.Replace(s, "runtime: {threads: 1}", "runtime: 5", 1) }, nil, []string{"'runtime'"}},
		{"log format", func(s string) string { return s + "log: {format: xml}\n" }, nil, []string{"log.format", "xml"}},
		{"misspelled key", func(s string) string { return strings.Replace(s, "runtime: {threads: 1}", "runtime: {thread: 1}", 1) }, nil, []string{"runtime", "thread", "unknown keys"}},
		{"env threads", nil, []string{"TAGPR_RUNTIME_THREADS=abc"}, []string{"TAGPR_RUNTIME_THREADS", "runtime.threads"}},
		{"env float", nil, []string{"TAGPR_STAGES_SFT_LR=fast"}, []string{"TAGPR_STAGES_SFT_LR", "stages.sft.lr"}},
		// A value that parses but is out of range names the variable too, not only the file.
		{"env spinning", nil, []string{"TAGPR_RUNTIME_SPINNING=sometimes"}, []string{"runtime.spinning from TAGPR_RUNTIME_SPINNING", `"sometimes": want auto, on or off`}},
		{"env lr", nil, []string{"TAGPR_STAGES_SFT_LR=-1"}, []string{"stages.sft.lr from TAGPR_STAGES_SFT_LR"}},
		{"unknown reward", func(s string) string { return strings.Replace(s, "reward: guided", "reward: helpfulness", 1) }, nil, []string{"stages.rl[0]", "helpfulness", "lamp.yaml"}},
		{"duplicate stage", func(s string) string { return strings.Replace(s, "name: exploratory", "name: guided", 1) }, nil, []string{"stages.rl[1].name", "guided"}},
		{"missing data", func(s string) string { return strings.Replace(s, abs, filepath.Join(dir, "nowhere"), 1) }, nil, []string{"data.lamp_dir", filepath.Join(dir, "nowhere")}},
		{"missing policy", func(s string) string {
			return strings.Replace(s, "policy: {dir: ", "policy: {dir: "+filepath.Join(dir, "nomodel")+"} #", 1)
		}, nil, []string{"policy.dir", "nomodel"}},
		{"missing taxonomy", func(s string) string { return strings.Replace(s, "tags.yaml", "missing-tags.yaml", 1) }, nil, []string{"taxonomy", "missing-tags.yaml"}},
		{"duplicate key", func(s string) string { return s + "taxonomy: \"\"\n" }, nil, []string{"lamp.yaml", `"taxonomy" already defined`}},
		{"unknown task", func(s string) string { return strings.Replace(s, "tasks: [2, 3, 4]", "tasks: [2, 9]", 1) }, nil, []string{"data.tasks[1]", `"9"`}},
		{"api key unset", func(s string) string {
			return strings.Replace(s, `api_key_env: ""`, "api_key_env: TAGPR_TEST_UNSET_KEY", 1)
		}, nil, []string{"teacher.api_key_env", "TAGPR_TEST_UNSET_KEY"}},
		{"pinned file altered", func(s string) string { return strings.Replace(s, abs, lamp, 1) }, nil, []string{"lamp3-dev-golds", pinned, "sha256"}},
	}
	for _, c := range cases {
		body := base
		if c.edit != nil {
			body = c.edit(base)
		}
		cfg := writeConfig(t, dir, "lamp.yaml", body)
		_, stderr, err := runTagpr(t, dir, append(append([]string{}, env...), c.env...), "run", "-c", cfg)
		if err == nil {
			t.Errorf("%s: tagpr run succeeded", c.name)
			continue
		}
		for _, w := range c.wantInErr {
			if !strings.Contains(stderr, w) {
				t.Errorf("%s: the error does not name %q:\n%s", c.name, w, stderr)
			}
		}
		if _, err := os.Stat(out); err == nil {
			t.Fatalf("%s: the run folder was created before the config was refused", c.name)
		}
	}
}

// The shipped configs: demo.yaml is what runs without -c, and it runs end
// to end (as --fast-dev-run) from a folder that is not the repository;
// lamp.example.yaml is well formed down to its first missing input.
func TestShippedConfigs(t *testing.T) {
	dir := t.TempDir()
	env := runtimeEnv(t)
	file, _ := filepath.Abs("../../configs/demo.yaml")
	fromFile, stderr, err := runTagpr(t, dir, env, "config", "print", "-c", file)
	if err != nil {
		t.Fatalf("config print demo.yaml: %v\n%s", err, stderr)
	}
	builtIn, stderr, err := runTagpr(t, dir, env, "config", "print")
	if err != nil {
		t.Fatalf("config print: %v\n%s", err, stderr)
	}
	body := func(s string) string { return s[strings.Index(s, "\n")+1:] }
	if body(fromFile) != body(builtIn) || !strings.Contains(builtIn, "# config file: configs/demo.yaml (built in)") {
		t.Fatalf("the built-in config differs from configs/demo.yaml:\n%s\n%s", fromFile, builtIn)
	}
	example, _ := filepath.Abs("../../configs/lamp.example.yaml")
	if _, stderr, err := runTagpr(t, dir, env, "run", "-c", example); err == nil || !strings.Contains(stderr, "data.lamp_dir: "+filepath.Join(dir, "data", "LaMP")) {
		t.Fatalf("lamp.example.yaml: want it refused only for its missing data folder: %v\n%s", err, stderr)
	}
	out, stderr, err := runTagpr(t, dir, env, "demo", "--fast-dev-run", "--dir", "d")
	if err != nil {
		t.Fatalf("demo --fast-dev-run: %v\n%s", err, stderr)
	}
	for _, want := range []string{"| sft | 2 |", "| rl exploratory | 1 |", "| synth_rate | dev | 2 | mae ↓ |",
		"| base | sft | rl:guided | rl:exploratory | profile_blind | profile_reading | teacher |", "### Differences"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo --fast-dev-run report lacks %q:\n%s", want, out)
		}
	}
	if !fileExists(filepath.Join(dir, "d", "fast_dev_run", "report.md")) {
		t.Error("no report in d/fast_dev_run")
	}
	checkReportHTML(t, filepath.Join(dir, "d", "fast_dev_run"), func(string) int { return 3 }) // profile_blind, profile_reading, teacher
	checkEventFiles(t, filepath.Join(dir, "d", "fast_dev_run"))
	// make experiment's two configs, reduced: every ablation on the test users.
	for name, wants := range map[string][]string{
		"experiment.yaml": {"| rl no_prmu | 1 |", "| base | sft | rl:task_only | rl:no_prmu | rl:guided | rl:exploratory | profile_blind | profile_reading | teacher |",
			"| synth_tag | test | 2 | accuracy ↑ |", "rl:exploratory = after the RL stages guided → exploratory", "rl:guided = after the RL stages guided;",
			"share of the mean reward / of the learning signal",
			// Each RL stage against the model it started from (its from), not the column before it.
			"| synth_tag | rl:task_only − sft |", "| synth_tag | rl:no_prmu − sft |", "| synth_tag | rl:guided − sft |", "| synth_tag | rl:exploratory − rl:guided |",
			// The chains' own answers, and each model against them.
			"teacher = the answers of the benchmark's gold chains", "| synth_gen | rl:guided − teacher |"},
		"experiment-plain.yaml": {"| base | sft | rl:task_only | profile_blind | profile_reading | teacher |", "| synth_rate | test | 2 | mae ↓ |"},
	} {
		cfg, _ := filepath.Abs("../../configs/" + name)
		out, stderr, err := runTagpr(t, dir, env, "run", "-c", cfg, "--fast-dev-run", "--out", filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("%s --fast-dev-run: %v\n%s", name, err, stderr)
		}
		for _, want := range wants {
			if !strings.Contains(out, want) {
				t.Errorf("%s --fast-dev-run report lacks %q:\n%s", name, want, out)
			}
		}
	}
}

// An input edited in place at the same size (a corrected gold here; a new
// checkpoint exported over the old one is the same) is not the input the
// run's stages were made from: the rerun is refused naming data.sha256,
// not resumed on the stale copy. Before, stamps held paths and sizes
// only, and the run reported on the old golds. A stamp an older tagpr
// wrote (no hashes) still resumes.
func TestRunRefusesInputEditedAtSameSize(t *testing.T) {
	dir := t.TempDir()
	env := runtimeEnv(t)
	lamp := filepath.Join(dir, "LaMP")
	for _, f := range []string{"train/train_questions.json", "train/train_outputs.json", "dev/dev_questions.json", "dev/dev_outputs.json"} {
		b, err := os.ReadFile(filepath.Join(lampDownload, "LaMP_3", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(lamp, "LaMP_3", filepath.Dir(f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(lamp, "LaMP_3", f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	policy, _ := filepath.Abs(policyFixture)
	out := filepath.Join(dir, "run")
	cfg := predictBaseConfig(t, dir, "c.yaml", out, policy, lamp)
	if _, stderr, err := runTagpr(t, dir, env, "run", "-c", cfg); err != nil {
		t.Fatalf("run: %v\n%s", err, stderr)
	}
	golds := filepath.Join(lamp, "LaMP_3", "dev", "dev_outputs.json")
	b, _ := os.ReadFile(golds)
	edited := strings.Replace(string(b), `"output": "3"`, `"output": "1"`, 1)
	if edited == string(b) {
		t.Fatalf("no gold 3 to correct in %s:\n%s", golds, b)
	}
	if err := os.WriteFile(golds, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, err := runTagpr(t, dir, env, "run", "-c", cfg)
	if err == nil || !strings.Contains(stderr, "stage data: cannot resume") || !strings.Contains(stderr, "data.sha256") {
		t.Fatalf("a gold edited at the same size: want the rerun refused naming data.sha256, got %v:\n%s", err, stderr)
	}
	// The stamps of an older tagpr have sizes only: with the golds as they
	// were, such a run folder resumes as before.
	if err := os.WriteFile(golds, b, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, stage := range []string{"data", "predictions/base"} {
		p := filepath.Join(out, stage, "run.json")
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var rec map[string]map[string]string
		if err := json.Unmarshal(raw, &rec); err != nil {
			t.Fatal(err)
		}
		for k := range rec["settings"] {
			if strings.HasSuffix(k, ".sha256") && k != "taxonomy.sha256" {
				delete(rec["settings"], k)
			}
		}
		raw, _ = json.Marshal(rec)
		if err := os.WriteFile(p, raw, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, stderr, err := runTagpr(t, dir, env, "run", "-c", cfg); err != nil {
		t.Fatalf("a run stamped without hashes no longer resumes: %v\n%s", err, stderr)
	}
}

// predictBaseConfig writes dir/file: a run into out that only predicts
// LaMP_3's dev split (from lamp) with the starting policy.
func predictBaseConfig(t *testing.T, dir, file, out, policy, lamp string) string {
	t.Helper()
	return writeConfig(t, dir, file, fmt.Sprintf(`out: %s
runtime: {threads: 1}
policy: {dir: %s}
data: {lamp_dir: %s, tasks: [3]}
retrieval: {max_prompt_tokens: 512} # the fixture policy has 1,024 positions
stages:
  chains: {skip: true}
  sft: {skip: true}
  prmu: {skip: true}
  rl: []
  predict: {models: [base], splits: [dev], batch: 4, max_new_tokens: 4}
`, out, policy, lamp))
}

// A finished stage made from a model that was made again since (SFT
// redone, on another machine say, after its folder was deleted) is not
// skipped as if it still followed from it: the RL stages and the
// predictions record their model's files by content. Before, the rerun
// skipped them and the report compared an RL model with an SFT model it
// was not trained from. An identical remake passes.
func TestRunRefusesStagesOfAnEarlierModel(t *testing.T) {
	dir := t.TempDir()
	env := runtimeEnv(t)
	if _, stderr, err := runTagpr(t, dir, env, "demo", "--fast-dev-run", "--dir", "d"); err != nil {
		t.Fatalf("demo --fast-dev-run: %v\n%s", err, stderr)
	}
	out := filepath.Join(dir, "d", "fast_dev_run")
	// SFT made again, with the same config on the same machine: the same
	// model, so the later stages still follow from it.
	if err := os.RemoveAll(filepath.Join(out, "sft")); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := runTagpr(t, dir, env, "demo", "--fast-dev-run", "--dir", "d"); err != nil {
		t.Fatalf("rerun after SFT was made again identically: %v\n%s", err, stderr)
	}
	// Another SFT model (what another machine's SFT is): here the base's
	// weights in its place.
	base, err := os.ReadFile(filepath.Join(out, "base", "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, "sft", "model.onnx"), base, 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, err := runTagpr(t, dir, env, "demo", "--fast-dev-run", "--dir", "d")
	if err == nil || !strings.Contains(stderr, "rl stage guided: "+filepath.Join(out, "rl", "guided")+" was made from another model than "+filepath.Join(out, "sft")) ||
		!strings.Contains(stderr, "model.onnx changed since") {
		t.Fatalf("RL stages of an earlier SFT model: want a refusal naming rl/guided and sft, got %v:\n%s", err, stderr)
	}
	if err := os.RemoveAll(filepath.Join(out, "rl")); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"rl_guided", "rl_exploratory"} {
		os.RemoveAll(filepath.Join(out, "predictions", m))
	}
	_, stderr, err = runTagpr(t, dir, env, "demo", "--fast-dev-run", "--dir", "d")
	if err == nil || !strings.Contains(stderr, "predict sft: "+filepath.Join(out, "predictions", "sft")+" was made from another model") {
		t.Fatalf("predictions of an earlier SFT model: want a refusal naming predictions/sft, got %v:\n%s", err, stderr)
	}
}

// policy.dir may be a transformers checkpoint (config.json and
// model.safetensors, no model.onnx): the run imports it into OUT/base once,
// and predicts what the ONNX model it was exported from predicts. Before,
// the run stopped and asked for `tagpr model import-hf` first.
func TestRunImportsAHuggingFaceCheckpoint(t *testing.T) {
	dir := t.TempDir()
	env := runtimeEnv(t)
	policy, _ := filepath.Abs(policyFixture)
	ckpt := filepath.Join(dir, "ckpt")
	if _, stderr, err := runTagpr(t, dir, env, "model", "export-hf", policy, "--out", ckpt); err != nil {
		t.Fatalf("export-hf: %v\n%s", err, stderr)
	}
	lamp, _ := filepath.Abs(lampDownload)
	config := func(name, policy string) string {
		return predictBaseConfig(t, dir, name+".yaml", filepath.Join(dir, name), policy, lamp)
	}
	_, stderr, err := runTagpr(t, dir, env, "run", "-c", config("fromckpt", ckpt))
	if err != nil {
		t.Fatalf("run on a checkpoint: %v\n%s", err, stderr)
	}
	if !strings.Contains(stderr, "imported the qwen2 checkpoint "+ckpt) {
		t.Errorf("the run does not say it imported the checkpoint:\n%s", stderr)
	}
	base := filepath.Join(dir, "fromckpt", "base")
	if rec, err := os.ReadFile(filepath.Join(base, "tagpr_import.json")); err != nil || !strings.Contains(string(rec), ckpt) {
		t.Errorf("%s/tagpr_import.json: %s, %v; want it to name %s", base, rec, err, ckpt)
	}
	if _, stderr, err := runTagpr(t, dir, env, "run", "-c", config("fromonnx", policy)); err != nil {
		t.Fatalf("run on the ONNX model: %v\n%s", err, stderr)
	}
	preds := filepath.Join("predictions", "base", "LaMP_3_dev.parquet")
	a, errA := os.ReadFile(filepath.Join(dir, "fromckpt", preds))
	b, errB := os.ReadFile(filepath.Join(dir, "fromonnx", preds))
	if errA != nil || errB != nil || !bytes.Equal(a, b) {
		t.Errorf("predictions from the imported checkpoint differ from the ONNX model's (%v, %v)", errA, errB)
	}
	_, stderr, err = runTagpr(t, dir, env, "run", "-c", config("fromckpt", ckpt))
	if err != nil || strings.Contains(stderr, "imported the") {
		t.Errorf("the rerun: %v, or it imported again:\n%s", err, stderr)
	}
}
