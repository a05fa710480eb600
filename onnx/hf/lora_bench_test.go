package hf

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
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
	OptLevel  string // ORT's graph optimization level; "" for the default
	Profile   string // ORT profile file prefix; "" for none
}

// loraResult is what the child reports.
type loraResult struct {
	PeakRSS  int64   `json:"peak_rss"`
	StepPeak int64   `json:"step_peak"` // peak RSS during the steps alone
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
	if path := os.Getenv("TAGPR_QWEN_LORA_DUMP"); path != "" {
		// The training graph, for inspection (frozen weights are inputs).
		data, err := ir.Marshal(tg.Model)
		if err == nil {
			err = os.WriteFile(path, data, 0o644)
		}
		if err != nil {
			return r, err
		}
	}
	m = nil
	runtime.GC()
	debug.FreeOSMemory()
	stage("gc")
	est := train.EstimateMemory(tg)
	r.Estimate, r.Parts = est.Total(), est.String()
	to := train.TrainerOptions{Schedule: train.Schedule{Peak: 1e-4}}
	to.Session.NoMemArena = s.NoArena
	to.Session.OptLevel = s.OptLevel
	to.Session.ProfilePrefix = s.Profile
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
	r.PeakRSS = benchchild.Status("VmHWM")
	// Reset the peak (Linux: 5 → clear_refs) so the steps' own peak shows.
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		return r, fmt.Errorf("reset peak RSS: %w", err)
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
	r.StepPeak = benchchild.Status("VmHWM")
	r.PeakRSS = max(r.PeakRSS, r.StepPeak)
	return r, nil
}

// BenchmarkQwen05BLoRA: LoRA fine-tuning of a Qwen2.5-0.5B-shaped model
// (random weights, written and imported by import-hf; 151,936-token
// vocabulary) at batch 4 × 1024 tokens with activation recomputation, in a
// child process: peak RSS against EstimateMemory, tokens/s of a step.
// TAGPR_QWEN_LORA=BxT[,plain][,dry][,noarena][,layers=N][,opt=LEVEL][,profile=PREFIX]
// runs another shape (plain: no recomputation; dry: build and estimate only,
// no step; noarena: ORT's CPU memory arena off; layers: fewer layers, for
// quick memory checks; opt: ORT's optimization level; profile: ORT's JSON
// profile of the step).
func BenchmarkQwen05BLoRA(b *testing.B) {
	spec := loraSpec{B: 4, T: 1024, Recompute: true, Steps: 1}
	ckpt := Qwen05B()
	if v := os.Getenv("TAGPR_QWEN_LORA"); v != "" {
		parts := strings.Split(v, ",")
		if _, err := fmt.Sscanf(parts[0], "%dx%d", &spec.B, &spec.T); err != nil {
			b.Fatalf("TAGPR_QWEN_LORA=%q: want BxT[,plain][,dry][,noarena]", v)
		}
		for _, p := range parts[1:] {
			key, val, _ := strings.Cut(p, "=")
			switch key {
			case "layers":
				if _, err := fmt.Sscanf(val, "%d", &ckpt.Layers); err != nil || ckpt.Layers < 1 {
					b.Fatalf("TAGPR_QWEN_LORA=%q: layers=%q is not a positive integer", v, val)
				}
				continue
			case "opt":
				spec.OptLevel = val
				continue
			case "profile":
				spec.Profile = val
				continue
			}
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
	imp, err := ckpt.WriteAndImport(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	spec.Model = imp.Model
	var r loraResult
	var log string
	for i := 0; i < b.N; i++ {
		if log, err = benchchild.Run(loraChildEnv, spec, &r); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("%d layers, %d×%d, recompute %v, arena off %v: %s\n%s", ckpt.Layers, spec.B, spec.T, spec.Recompute, spec.NoArena, r.Parts, log)
	b.ReportMetric(float64(imp.Params)/1e6, "Mparams")
	b.ReportMetric(float64(r.PeakRSS)/(1<<30), "peak_rss_GiB")
	b.ReportMetric(float64(r.Estimate)/(1<<30), "estimate_GiB")
	b.ReportMetric(float64(r.PeakRSS)/float64(r.Estimate), "rss_over_estimate")
	if spec.Steps > 0 {
		b.ReportMetric(float64(r.StepPeak)/(1<<30), "step_peak_GiB")
	}
	if spec.Steps > 0 {
		b.ReportMetric(float64(spec.B*spec.T)/r.StepS, "tokens/s")
		b.ReportMetric(r.StepS, "step_s")
	}
	b.ReportMetric(r.BuildS, "build_s")
}
