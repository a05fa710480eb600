package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/tagpr/tagpr/onnx/safetensors"
	"github.com/tagpr/tagpr/onnx/train"
)

// trlFixture is cmd/tagpr/testdata/trl_sft/expected.json, written by
// scripts/train/trl_sft_fixture.py from TRL's SFTTrainer and transformers'
// schedulers.
type trlFixture struct {
	Runs map[string]struct {
		Flags map[string]any `json:"flags"`
		Log   []struct {
			Step     int      `json:"step"`
			Loss     float64  `json:"loss"`
			GradNorm *float64 `json:"grad_norm"`
			LR       float64  `json:"learning_rate"`
		} `json:"log"`
	} `json:"runs"`
	Schedules []struct {
		Name     string    `json:"transformers"`
		Peak     float64   `json:"peak"`
		Warmup   int       `json:"warmup"`
		Total    int       `json:"total"`
		Decay    string    `json:"decay"`
		MinRatio float64   `json:"min_ratio"`
		LR       []float64 `json:"lr"`
	} `json:"schedules"`
}

func readTRLFixture(t *testing.T) trlFixture {
	t.Helper()
	var fx trlFixture
	b, err := os.ReadFile("testdata/trl_sft/expected.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &fx); err != nil {
		t.Fatalf("testdata/trl_sft/expected.json: %v", err)
	}
	return fx
}

// TestTrainLMMatchesTRLSFT: `train lm` on the Qwen2 fixture makes, step by
// step, the run TRL's SFTTrainer makes with the same settings (AdamW with
// weight decay on all but biases and norm gains, global-norm clipping,
// gradient accumulation normalised over the step's target tokens, linear and
// cosine decay): the logged loss, pre-clipping gradient norm and learning
// rate of every step, and the trained weights.
func TestTrainLMMatchesTRLSFT(t *testing.T) {
	fx := readTRLFixture(t)
	src, _ := filepath.Abs("../../onnx/testdata/hf/qwen2")
	base := filepath.Join(t.TempDir(), "base")
	if _, stderr, err := runTagpr(t, ".", nil, "model", "import-hf", src, "--out", base); err != nil {
		t.Fatalf("import-hf: %v\n%s", err, stderr)
	}
	for _, name := range []string{"full_linear", "full_cosine"} {
		run, ok := fx.Runs[name]
		if !ok {
			t.Fatalf("expected.json has no run %s", name)
		}
		out := filepath.Join(t.TempDir(), name)
		args := []string{"train", "lm", "--model", base, "--data", "testdata/trl_sft/data.jsonl", "--out", out}
		for _, f := range []string{"steps", "batch", "accum", "seq-len", "lr", "warmup", "weight-decay", "clip", "schedule"} {
			args = append(args, "--"+f, fmt.Sprint(run.Flags[f]))
		}
		if _, stderr, err := runTagpr(t, ".", nil, args...); err != nil {
			t.Fatalf("%s: train lm: %v\n%s", name, err, stderr)
		}
		log, err := train.ReadLog[train.StepLog](filepath.Join(out, "checkpoint", train.LogFile))
		if err != nil {
			t.Fatal(err)
		}
		if len(log) != len(run.Log) {
			t.Fatalf("%s: %d steps logged, TRL %d", name, len(log), len(run.Log))
		}
		var dLoss, dNorm, dLR float64
		for i, want := range run.Log {
			got := log[i]
			dLoss = math.Max(dLoss, math.Abs(got.Loss-want.Loss))
			dLR = math.Max(dLR, math.Abs(got.LR-want.LR))
			if want.GradNorm != nil {
				dNorm = math.Max(dNorm, math.Abs(got.GradNorm-*want.GradNorm)/math.Max(1, *want.GradNorm))
			}
		}
		// Weights after the run, by Hugging Face name.
		ref, err := safetensors.Open(filepath.Join("testdata", "trl_sft", name+".safetensors"))
		if err != nil {
			t.Fatal(err)
		}
		defer ref.Close()
		got, err := safetensors.Open(filepath.Join(out, "model.safetensors"))
		if err != nil {
			t.Fatal(err)
		}
		defer got.Close()
		var dW float64
		for _, n := range ref.Names() {
			w, err := ref.Float32s(n)
			if err != nil {
				t.Fatal(err)
			}
			g, err := got.Float32s(n)
			if err != nil {
				t.Fatalf("%s: %s: %v", name, n, err)
			}
			for j := range w {
				dW = math.Max(dW, math.Abs(float64(g[j]-w[j])))
			}
		}
		t.Logf("%s: %d steps vs TRL: max |Δ loss| %.2g, max rel Δ grad_norm %.2g, max |Δ lr| %.2g, max |Δ weight| %.2g",
			name, len(log), dLoss, dNorm, dLR, dW)
		// float32 on both sides, 8-10 steps at learning rates that move the
		// weights by up to 0.1: agreement is ~1e-5 in loss, ~1e-4 in weights.
		if dLoss > 1e-4 || dNorm > 1e-4 || dLR > 1e-12 || dW > 5e-4 {
			t.Errorf("%s: train lm departs from TRL's SFTTrainer: loss %.3g, grad_norm %.3g (relative), lr %.3g, weights %.3g",
				name, dLoss, dNorm, dLR, dW)
		}
	}
}

// TestScheduleAgainstTransformers pins how train.Schedule (train lm's
// --schedule, the SFT stage's cosine to a tenth, RL's) relates to
// transformers' schedulers, as docs/training-on-ort.md says: after warmup
// update k runs at transformers' rate for update k; during warmup tagpr runs
// update k at (k+1)/W of the peak, which transformers reaches one update
// later (its first update runs at rate 0).
func TestScheduleAgainstTransformers(t *testing.T) {
	fx := readTRLFixture(t)
	if len(fx.Schedules) == 0 {
		t.Fatal("expected.json has no schedules")
	}
	for _, s := range fx.Schedules {
		sch := train.Schedule{Peak: s.Peak, Warmup: s.Warmup, Total: s.Total, Decay: s.Decay, MinRatio: s.MinRatio}
		for k, want := range s.LR {
			if k < s.Warmup {
				want = s.LR[k+1] // one update ahead of transformers
			}
			if got := sch.LR(k); math.Abs(got-want) > 1e-12*s.Peak {
				t.Errorf("%s, warmup %d of %d: update %d at lr %g, want %g", s.Name, s.Warmup, s.Total, k, got, want)
			}
		}
	}
}
