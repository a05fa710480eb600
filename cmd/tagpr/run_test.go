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
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/onnx/ort"
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
	return fmt.Sprintf(`out: %s
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
       max_completion_length: 24, beta: 0.04, lr: 0.0001, checkpoint_every: 1, seed: 5}
    - {name: exploratory, reward: exploratory, steps: 2, prompts_per_step: 2, num_generations: 2, max_prompt_length: 384,
       max_completion_length: 24, lr: 0.0001, checkpoint_every: 1, seed: 6}
  predict: {models: [base, sft, rl], splits: [dev, test], batch: 4, max_new_tokens: 24}
  report: {title: "tagpr on LaMP (fixture)"}
`, out, policy, lamp, teacherURL)
}

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
	// The teacher was told the taxonomy's tag names, and asked once per training example.
	for _, tag := range []string{"recall_history", "infer_preference", "conclude", "verify"} {
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
	// Kill moments spread over the uninterrupted run's length, in
	// increasing order: each rerun resumes, so they land in later stages.
	rng := rand.New(rand.NewPCG(7, 9))
	moments := make([]time.Duration, 4)
	for i := range moments {
		moments[i] = 300*time.Millisecond + time.Duration(rng.Int64N(int64(whole)))
	}
	slices.Sort(moments)
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
}

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
		"rl/exploratory/tokenizer.json", "eval/LaMP_2M_dev.json", "eval/LaMP_3_dev.json", "eval/LaMP_4_dev.json", "report.md", "report.json"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("the run left no %s: %v", f, err)
		}
	}
	var prmu struct{ Final map[string]float64 }
	readJSONFile(t, filepath.Join(out, "prmu", "summary.json"), &prmu)
	// One SFT-model sample per training question (pairs come from those
	// with a wrong answer; an SFT of 4 steps rarely writes one).
	if prmu.Final["policy_samples"] != 18 {
		t.Errorf("PRMU sampled %v completions from the SFT model, want 18: %v", prmu.Final["policy_samples"], prmu.Final)
	}
	for _, want := range []string{"| chains |", "| sft | 4 |", "| prmu | 12 |", "| rl guided | 2 |", "| rl exploratory | 2 |",
		"| LaMP_2M | dev | 3 | accuracy ↑ |", "| LaMP_3 | dev | 3 | mae ↓ |", "| LaMP_4 | dev | 3 | rougeL ↑ |", "| base | sft | rl |"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("report lacks %q:\n%s", want, stdout)
		}
	}
}
