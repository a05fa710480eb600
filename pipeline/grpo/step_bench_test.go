package grpo

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/internal/benchchild"
	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/ort"
)

// The GRPO step of issue 15's comparison with TRL: 4 prompts × 8
// completions, 128-token prompts, 64 new tokens (EOS ignored), beta 0,
// loss dapo, one thread, on the ~10M-parameter bench llama (8 layers,
// d_model 256, vocabulary 8000).
const (
	grpoPrompts, grpoG, grpoPromptLen, grpoNew, grpoSteps = 4, 8, 128, 64, 3
	grpoChildEnv                                          = "TAGPR_GRPO_BENCH_CHILD"
)

func grpoBenchConfig() lm.Config {
	return lm.Config{Arch: lm.Llama, Layers: 8, DModel: 256, Heads: 8, KVHeads: 8, FFN: 704, Vocab: 8000, MaxPositions: 512, Seed: 1}
}

// grpoChildResult is what the child process reports.
type grpoChildResult struct {
	StepS    float64    `json:"step_s"` // median step after the first
	Times    Times      `json:"times"`  // the same step's split
	PeakRSS  int64      `json:"peak_rss"`
	Estimate int64      `json:"estimate"`  // Trainer.Memory's total
	Prefill  [2]float64 `json:"prefill_s"` // generation prefill: each prompt once, and G times
	Generate [2]float64 `json:"generate_s"`
}

func init() { benchchild.Serve(grpoChildEnv, grpoChild) }

// grpoChild runs a Trainer for grpoSteps steps at one thread and reports its
// step time, peak RSS, and the generation prefill with and without sharing.
func grpoChild(string) (any, error) {
	var r grpoChildResult
	if err := ort.Init(""); err != nil {
		return r, err
	}
	m, err := lm.Build(grpoBenchConfig())
	if err != nil {
		return r, err
	}
	rng := rand.New(rand.NewPCG(1, 15))
	prompts := make([]Prompt, grpoPrompts*grpoSteps)
	for i := range prompts {
		ids := make([]int64, grpoPromptLen)
		for j := range ids {
			ids[j] = 2 + rng.Int64N(7998)
		}
		prompts[i] = Prompt{ID: fmt.Sprint(i), IDs: ids}
	}
	cfg := Config{Steps: grpoSteps, PromptsPerStep: grpoPrompts, NumGenerations: grpoG, MaxCompletionLength: grpoNew,
		LossType: LossDAPO, LearningRate: 1e-6, Seed: 1}
	opts := ort.Options{IntraOpThreads: 1, InterOpThreads: 1}
	dir, err := os.MkdirTemp("", "tagpr-grpo-bench")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(dir)
	cfg.OutputDir = dir
	// No EOS: every completion is grpoNew tokens long, as on the TRL side.
	tr, err := New(m, []Reward{targetShare}, prompts, cfg, Options{Session: opts})
	if err != nil {
		return r, err
	}
	r.Estimate = tr.Memory().Total()
	res, err := tr.Train(context.Background())
	tr.Close()
	if err != nil {
		return r, err
	}
	r.PeakRSS = benchchild.Status("VmHWM")
	steps := res.Logs[1:]
	sort.Slice(steps, func(i, j int) bool { return steps[i].Seconds.Total < steps[j].Seconds.Total })
	mid := steps[len(steps)/2]
	r.StepS, r.Times = mid.Seconds.Total, mid.Seconds
	// The rollout's prefill alone: each prompt prefilled once for its group
	// (what the Trainer does) against once per completion.
	mb, err := ir.Marshal(m)
	if err != nil {
		return r, err
	}
	gen, err := lm.LoadBytes(mb, "prefill bench", lm.LoadOptions{Session: opts.DefaultSpinning(false)})
	if err != nil {
		return r, err
	}
	defer gen.Close()
	ids := make([][]int64, grpoPrompts)
	var repeated [][]int64
	for i := range ids {
		ids[i] = prompts[i].IDs
		for range grpoG {
			repeated = append(repeated, prompts[i].IDs)
		}
	}
	for k, run := range []struct {
		ids [][]int64
		g   int
	}{{ids, grpoG}, {repeated, 1}} {
		best := lm.Stats{}
		for rep := 0; rep < 2; rep++ {
			_, s, err := gen.Generate(context.Background(), run.ids, lm.GenerateOptions{MaxNewTokens: grpoNew, NumGenerations: run.g,
				Sampling: lm.Sampling{Temperature: 1}, Seed: 1, IgnoreEOS: true})
			if err != nil {
				return r, err
			}
			if rep == 0 || s.Prefill+s.Decode < best.Prefill+best.Decode {
				best = s
			}
		}
		r.Prefill[k], r.Generate[k] = best.Prefill.Seconds(), (best.Prefill + best.Decode).Seconds()
	}
	return r, nil
}

// trlPeer runs scripts/bench/trl_grpo_peer.py with $TAGPR_TRL_PYTHON (else
// python3) on the same model and shapes; it returns the peer's JSON.
func trlPeer(dir string) (map[string]any, error) {
	python := os.Getenv("TAGPR_TRL_PYTHON") // a Python with torch, transformers and trl
	if python == "" {
		python = "python3"
	}
	script, err := filepath.Abs("../../scripts/bench/trl_grpo_peer.py")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(python, script, "--config", dir, "--prompts", fmt.Sprint(grpoPrompts), "--generations", fmt.Sprint(grpoG),
		"--prompt-len", fmt.Sprint(grpoPromptLen), "--new-tokens", fmt.Sprint(grpoNew), "--steps", fmt.Sprint(grpoSteps), "--threads", "1")
	out, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return nil, fmt.Errorf("%v: %s", err, ee.Stderr)
		}
		return nil, err
	}
	var r map[string]any
	if err := json.Unmarshal(out, &r); err != nil {
		return nil, fmt.Errorf("peer output %q: %v", out, err)
	}
	return r, nil
}

// BenchmarkGRPOStep: one GRPO step (4 prompts × 8 completions, 128-token
// prompts, 64 new tokens, one thread) in a child process — seconds, its
// split, peak RSS, the share of the step the rollout's prefill takes with
// each prompt prefilled once (as the Trainer does) and G times — and TRL's
// GRPOTrainer on the same model and shapes when $TAGPR_TRL_PYTHON (else
// python3) has trl (scripts/bench/trl_grpo_peer.py).
func BenchmarkGRPOStep(b *testing.B) {
	var r grpoChildResult
	for i := 0; i < b.N; i++ {
		if _, err := benchchild.Run(grpoChildEnv, nil, &r); err != nil {
			b.Fatal(err)
		}
	}
	if r.StepS == 0 {
		b.Fatal("the child reported no step")
	}
	b.ReportMetric(r.StepS, "step_s")
	b.ReportMetric(r.Times.Generate, "generate_s")
	b.ReportMetric(r.Times.ForwardBackward, "forward_backward_s")
	b.ReportMetric(r.Times.Optimizer, "optimizer_s")
	b.ReportMetric(float64(r.PeakRSS)/(1<<20), "peak_rss_MB")
	b.ReportMetric(float64(r.PeakRSS)/float64(r.Estimate), "peak_vs_estimate")
	b.ReportMetric(r.Prefill[0]/r.StepS, "prefill_share")
	b.ReportMetric(r.Prefill[1]/(r.StepS-r.Prefill[0]+r.Prefill[1]), "prefill_share_unshared")
	dir := b.TempDir()
	if _, err := lm.WriteModelDir(grpoBenchConfig(), dir, false); err != nil {
		b.Fatal(err)
	}
	peer, err := trlPeer(dir)
	if err != nil {
		fmt.Printf("note: no TRL peer for the GRPO step (%v); set TAGPR_TRL_PYTHON to a Python with trl\n", strings.ReplaceAll(err.Error(), "\n", " "))
		return
	}
	stepMS, _ := peer["step_ms"].(float64)
	rss, _ := peer["peak_rss_mb"].(float64)
	gen, _ := peer["generate_ms"].(float64)
	b.ReportMetric(stepMS/1e3, "trl_step_s")
	b.ReportMetric(gen/1e3, "trl_generate_s")
	b.ReportMetric(rss, "trl_peak_rss_MB")
	b.ReportMetric(stepMS/1e3/r.StepS, "speed_vs_trl")
	b.ReportMetric(float64(r.PeakRSS)/(1<<20)/rss, "rss_vs_trl")
}
