package hf

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/tagpr/tagpr/internal/benchchild"
	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/train"
)

// loraChildEnv makes the test binary train one LoRA step on the model in
// the JSON loraSpec it holds and report its figures (benchchild).
const loraChildEnv = "TAGPR_HF_LORA_CHILD"

// loraSpec is one LoRA run of BenchmarkQwen05BLoRA.
type loraSpec struct {
	Model     string
	B, T      int64
	Recompute bool
	Steps     int
	NoArena   bool
}

// loraResult is what the child reports.
type loraResult struct {
	PeakRSS  int64   `json:"peak_rss"`
	Estimate int64   `json:"estimate"`
	Parts    string  `json:"parts"`
	StepS    float64 `json:"step_s"`
	BuildS   float64 `json:"build_s"`
	Adapters int64   `json:"adapter_params"`
}

// loraChild builds the LoRA training graph (rank 8 on every attention and
// MLP projection, frozen weights fed from Go) and trains Steps steps.
func loraChild(js string) (any, error) {
	var r loraResult
	var s loraSpec
	if err := json.Unmarshal([]byte(js), &s); err != nil {
		return r, err
	}
	start := time.Now()
	stage := func(name string) {
		fmt.Fprintf(os.Stderr, "stage %s: rss %d MiB, peak %d MiB\n", name, benchchild.Status("VmRSS")>>20, benchchild.Status("VmHWM")>>20)
	}
	m, err := ir.Load(s.Model)
	if err != nil {
		return r, err
	}
	stage("loaded")
	tg, _, err := train.BuildLMTraining(m, train.LMTraining{Batch: s.B, SeqLen: s.T, LoRA: &train.LoRA{Rank: 8, Alpha: 16, Seed: 1},
		FrozenAsInputs: true, Recompute: s.Recompute, Consume: true})
	if err != nil {
		return r, err
	}
	stage("built")
	m = nil
	runtime.GC()
	debug.FreeOSMemory()
	stage("gc")
	est := train.EstimateMemory(tg)
	r.Estimate, r.Parts = est.Total(), est.String()
	to := train.TrainerOptions{Schedule: train.Schedule{Peak: 1e-4}}
	to.Session.NoMemArena = s.NoArena
	tr, err := train.NewTrainer(tg, to)
	if err != nil {
		return r, err
	}
	defer tr.Close()
	stage("trainer")
	r.BuildS = time.Since(start).Seconds()
	for _, p := range tr.Params {
		r.Adapters += int64(len(p.Data))
	}
	rng := rand.New(rand.NewPCG(1, 5))
	rows := make([][]int64, s.B)
	for i := range rows {
		for range s.T {
			rows[i] = append(rows[i], 2+rng.Int64N(150000))
		}
	}
	in, err := train.NewLMBatch(rows, int(s.T), 0, nil).Values(tg)
	if err != nil {
		return r, err
	}
	for range s.Steps {
		t := time.Now()
		res, err := tr.Step(in)
		if err != nil {
			return r, err
		}
		if res.Skipped {
			return r, fmt.Errorf("step skipped: %s", res.Reason)
		}
		r.StepS = time.Since(t).Seconds()
		stage("step")
	}
	r.PeakRSS = benchchild.Status("VmHWM")
	return r, nil
}

// BenchmarkQwen05BLoRA: LoRA fine-tuning of a Qwen2.5-0.5B-shaped model
// (random weights, written and imported by import-hf; 151,936-token
// vocabulary) at batch 4 × 1024 tokens with activation recomputation, in a
// child process: peak RSS against EstimateMemory, tokens/s of a step.
// TAGPR_QWEN_LORA=BxT[,plain][,dry][,noarena] runs another shape (plain: no
// recomputation; dry: build and estimate only, no step; noarena: ORT's CPU
// memory arena off).
func BenchmarkQwen05BLoRA(b *testing.B) {
	spec := loraSpec{B: 4, T: 1024, Recompute: true, Steps: 1}
	if v := os.Getenv("TAGPR_QWEN_LORA"); v != "" {
		parts := strings.Split(v, ",")
		if _, err := fmt.Sscanf(parts[0], "%dx%d", &spec.B, &spec.T); err != nil {
			b.Fatalf("TAGPR_QWEN_LORA=%q: want BxT[,plain][,dry][,noarena]", v)
		}
		for _, p := range parts[1:] {
			switch p {
			case "plain":
				spec.Recompute = false
			case "dry":
				spec.Steps = 0
			case "noarena":
				spec.NoArena = true
			default:
				b.Fatalf("TAGPR_QWEN_LORA=%q: unknown %q", v, p)
			}
		}
	}
	dir := b.TempDir()
	src := filepath.Join(dir, "ckpt")
	if err := Qwen05B().Write(src); err != nil {
		b.Fatal(err)
	}
	imp, err := Import(src, filepath.Join(dir, "onnx"), ImportOptions{})
	if err != nil {
		b.Fatal(err)
	}
	os.RemoveAll(src)
	spec.Model = imp.Model
	var r loraResult
	var log string
	for i := 0; i < b.N; i++ {
		if log, err = benchchild.Run(loraChildEnv, spec, &r); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("%d×%d, recompute %v, arena off %v: %s\n%s", spec.B, spec.T, spec.Recompute, spec.NoArena, r.Parts, log)
	b.ReportMetric(float64(imp.Params)/1e6, "Mparams")
	b.ReportMetric(float64(r.PeakRSS)/(1<<30), "peak_rss_GiB")
	b.ReportMetric(float64(r.Estimate)/(1<<30), "estimate_GiB")
	b.ReportMetric(float64(r.PeakRSS)/float64(r.Estimate), "rss_over_estimate")
	if spec.Steps > 0 {
		b.ReportMetric(float64(spec.B*spec.T)/r.StepS, "tokens/s")
		b.ReportMetric(r.StepS, "step_s")
	}
	b.ReportMetric(r.BuildS, "build_s")
}
