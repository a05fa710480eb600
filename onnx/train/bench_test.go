package train

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tagpr/tagpr/internal/benchchild"
	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/onnxpb"
	"github.com/tagpr/tagpr/onnx/ort"
)

// benchConfig is a ~10M-parameter built-in Llama.
func benchConfig() lm.Config {
	return lm.Config{Arch: lm.Llama, Layers: 8, DModel: 256, Heads: 8, KVHeads: 8, Vocab: 8000, MaxPositions: 512, Seed: 1}
}

const benchB, benchT = 8, 256

// matmulFlops counts 2·M·N·K over a graph's MatMul and Gemm nodes.
func matmulFlops(g *onnxpb.GraphProto, types map[string]ValueType) float64 {
	f := 0.0
	for _, n := range g.Node {
		if n.GetOpType() != "MatMul" && n.GetOpType() != "Gemm" {
			continue
		}
		a, y := types[n.Input[0]].Shape, types[n.Output[0]].Shape
		if len(a) == 0 || len(y) == 0 {
			continue
		}
		k := a[len(a)-1]
		if n.GetOpType() == "Gemm" && ir.AttrIntOf(n, "transA", 0) == 1 {
			k = a[0]
		}
		f += 2 * float64(ir.NumElements(y)) * float64(k)
	}
	return f
}

// forwardOnly is the specialized model with only the loss as output.
func forwardOnly(sp *Specialized, loss string) ([]byte, error) {
	m := cloneModel(sp.Model)
	var keep []*onnxpb.ValueInfoProto
	for _, o := range m.Graph.Output {
		if o.GetName() == loss {
			keep = append(keep, o)
		}
	}
	m.Graph.Output = keep
	prune(m.Graph, true)
	return ir.Marshal(m)
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration{}, d...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s[len(s)/2]
}

func timeIt(n int, f func() error) (time.Duration, error) {
	var ds []time.Duration
	for i := 0; i < n; i++ {
		start := time.Now()
		if err := f(); err != nil {
			return 0, err
		}
		ds = append(ds, time.Since(start))
	}
	return median(ds), nil
}

// BenchmarkTrainStep: a ~10M-parameter built-in Llama at batch×seq 8×256:
// training tokens/s, time(fwd+bwd)/time(fwd), achieved GFLOP/s against a
// plain ORT MatMul in the same run, peak RSS against 16 bytes/param +
// activations (in a child process), and PyTorch eager when available.
func BenchmarkTrainStep(b *testing.B) {
	cfg := benchConfig()
	m, err := lm.Build(cfg)
	if err != nil {
		b.Fatal(err)
	}
	nParams := cfg.Params()
	deriveStart := time.Now()
	mm := cloneModel(m)
	loss, err := AddNextTokenLoss(mm, NextTokenLoss{})
	if err != nil {
		b.Fatal(err)
	}
	shapes, err := LMShapes(mm, benchB, benchT)
	if err != nil {
		b.Fatal(err)
	}
	sp, err := Specialize(mm, shapes)
	if err != nil {
		b.Fatal(err)
	}
	tg, err := Differentiate(sp, loss, SelectParams(sp, nil), nil)
	if err != nil {
		b.Fatal(err)
	}
	derive := time.Since(deriveStart)
	tr, err := NewTrainer(tg, TrainerOptions{Schedule: Schedule{Peak: 1e-4}})
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	fwdBytes, err := forwardOnly(sp, loss)
	if err != nil {
		b.Fatal(err)
	}
	fwd, err := ort.NewSession(fwdBytes, "forward", ort.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer fwd.Destroy()
	rows := randomRows(1, benchB, benchT, benchT, cfg.Vocab)
	batch := NewLMBatch(rows, benchT, 0, nil)
	in, err := batch.Values(tg)
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		for _, v := range in {
			v.Destroy()
		}
	}()
	runFwd := func() error {
		res, err := fwd.Run(in, nil)
		if err == nil {
			res.Destroy()
		}
		return err
	}
	runFwdBwd := func() error { _, _, err := tr.Compute(in); return err }
	runStep := func() error { _, err := tr.Step(in); return err }
	// Warm up each.
	for _, f := range []func() error{runFwd, runFwdBwd, runStep} {
		if err := f(); err != nil {
			b.Fatal(err)
		}
	}
	mmRun, mmFlops, mmClose, err := matmulBaseline()
	if err != nil {
		b.Fatal(err)
	}
	defer mmClose()
	// Rounds interleave the four measurements so that load from other
	// processes hits them alike; each figure is the median over rounds.
	const rounds = 4
	var dMM, dFwd, dFB, dStep []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for r := 0; r < rounds; r++ {
			for _, m := range []struct {
				f func() error
				d *[]time.Duration
			}{{mmRun, &dMM}, {runFwd, &dFwd}, {runFwdBwd, &dFB}, {runStep, &dStep}} {
				start := time.Now()
				if err := m.f(); err != nil {
					b.Fatal(err)
				}
				*m.d = append(*m.d, time.Since(start))
			}
		}
	}
	b.StopTimer()
	tFwd, tFB, tStep := median(dFwd), median(dFB), median(dStep)
	mmGflops := mmFlops / median(dMM).Seconds() / 1e9
	const reps = 3
	flops := 3 * matmulFlops(sp.Model.Graph, sp.Types)
	gflops := flops / tFB.Seconds() / 1e9
	tokens := float64(benchB * benchT)
	b.ReportMetric(tokens/tStep.Seconds(), "train_tokens/s")
	b.ReportMetric(tFB.Seconds()/tFwd.Seconds(), "fwdbwd_over_fwd")
	b.ReportMetric(gflops, "train_GFLOP/s")
	b.ReportMetric(mmGflops, "matmul_GFLOP/s")
	b.ReportMetric(gflops/mmGflops, "gflops_frac_of_matmul")
	b.ReportMetric(float64(nParams)/1e6, "Mparams")
	b.ReportMetric(derive.Seconds(), "derive_s") // specialize + differentiate
	b.ReportMetric(float64(tStep.Milliseconds()), "step_ms")
	// The optimizer part (norm, clip, AdamW over every weight), timed alone.
	w := make([][]float32, len(tr.Params))
	for i, p := range tr.Params {
		w[i] = p.Data
	}
	tOpt, err := timeIt(reps, func() error {
		clipTo(tr.Grads(), GlobalNorm(tr.Grads()), 1)
		return tr.Opt.Update(w, tr.Grads(), 0, nil)
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(tOpt.Microseconds())/1000, "optimizer_ms")
	if r, err := measureRSS(benchRSS()); err != nil {
		b.Logf("peak RSS not measured: %v", err)
	} else {
		b.ReportMetric(float64(r.RSS)/(1<<20), "peak_rss_MB")
		b.ReportMetric(float64(r.RSS)/float64(r.Budget), "rss_over_16Bparam_plus_act")
	}
	if peer, err := torchPeer(cfg); err != nil {
		fmt.Printf("note: no PyTorch peer for the training benchmark (%v); set TAGPR_TORCH_PYTHON to a Python with torch and transformers\n", err)
	} else {
		b.ReportMetric(peer/tStep.Seconds(), "speed_vs_torch")
	}
}

// matmulBaseline is one plain ORT [2048,256]×[256,2048] float32 MatMul
// (into a preallocated output): a run function and its FLOPs.
func matmulBaseline() (func() error, float64, func(), error) {
	const M, K, N = 2048, 256, 2048
	g := ir.NewGraph("mm")
	a := g.Input("a", ir.Float, M, K)
	w := g.Input("w", ir.Float, K, N)
	y := g.Op("MatMul", []string{a, w})
	g.Output(y, ir.Float, M, N)
	bts, err := ir.Marshal(ir.MustModel(g, 18))
	if err != nil {
		return nil, 0, nil, err
	}
	s, err := ort.NewSession(bts, "matmul baseline", ort.Options{})
	if err != nil {
		return nil, 0, nil, err
	}
	av, _ := ort.NewTensor([]int64{M, K}, make([]float32, M*K))
	wv, _ := ort.NewTensor([]int64{K, N}, make([]float32, K*N))
	yv, _ := ort.NewTensor([]int64{M, N}, make([]float32, M*N))
	closeAll := func() { s.Destroy(); av.Destroy(); wv.Destroy(); yv.Destroy() }
	in := map[string]ort.Value{"a": av, "w": wv}
	out := map[string]ort.Value{y: yv}
	run := func() error { _, err := s.Run(in, out); return err }
	if err := run(); err != nil {
		closeAll()
		return nil, 0, nil, err
	}
	return run, 2 * M * K * N, closeAll, nil
}

// rssChildEnv makes the test binary run training steps (the JSON rssSpec
// it holds) and report its RSS.
const rssChildEnv = "TAGPR_TRAIN_RSS_CHILD"

// rssSpec is one training run measured for peak RSS in a child process.
type rssSpec struct {
	Cfg   lm.Config
	B, T  int64
	Chunk int // LMTraining.Chunk
	LoRA  int // adapter rank; 0: full fine-tuning
	Steps int
	// Recompute: LMTraining.Recompute.
	Recompute bool
}

// benchRSS is BenchmarkTrainStep's run.
func benchRSS() rssSpec { return rssSpec{Cfg: benchConfig(), B: benchB, T: benchT, Steps: 3} }

// rssResult is what the child reports.
type rssResult struct {
	RSS      int64   `json:"rss"`      // peak RSS above the runtime's baseline
	Budget   int64   `json:"budget"`   // 16 bytes/param + every forward activation
	Estimate int64   `json:"estimate"` // EstimateMemory's total
	Params   int64   `json:"params"`   // trainable
	StepS    float64 `json:"step_s"`   // the last step's seconds
	Log      string  `json:"-"`        // the child's other output
}

// measureRSS runs a training run in a fresh process and returns what it
// reports.
func measureRSS(spec rssSpec) (rssResult, error) {
	var r rssResult
	log, err := benchchild.Run(rssChildEnv, spec, &r)
	r.Log = log
	return r, err
}

func init() { benchchild.Serve(rssChildEnv, rssChild) }

// rssChild trains as the spec says and returns its rssResult.
func rssChild(js string) (any, error) {
	base := benchchild.Status("VmRSS")
	var spec rssSpec
	if err := json.Unmarshal([]byte(js), &spec); err != nil {
		return nil, err
	}
	m, err := lm.Build(spec.Cfg)
	if err != nil {
		return nil, err
	}
	o := LMTraining{Batch: spec.B, SeqLen: spec.T, Chunk: spec.Chunk, Recompute: spec.Recompute}
	if spec.LoRA > 0 {
		o.LoRA = &LoRA{Rank: spec.LoRA, Alpha: float64(2 * spec.LoRA), Seed: 1}
		o.FrozenAsInputs = true
	}
	// Each stage's RSS and peak so far, in MiB, for the log.
	stage := func(name string) {
		fmt.Fprintf(os.Stderr, "stage %s: rss %d MiB, peak %d MiB\n", name, (benchchild.Status("VmRSS")-base)>>20, (benchchild.Status("VmHWM")-base)>>20)
	}
	stage("model")
	tg, _, err := BuildLMTraining(m, o)
	if err != nil {
		return nil, err
	}
	m = nil
	tg.ReleaseInitial = true // as the stages and train lm build theirs
	stage("built")
	act := int64(0)
	isOut := map[string]bool{}
	for _, n := range tg.Model.Graph.Node {
		if strings.HasPrefix(n.GetName(), "grad/") {
			continue
		}
		for _, o := range n.Output {
			isOut[o] = true
		}
	}
	for v := range isOut {
		t := tg.Types[v]
		if sz := ir.ElemSize(t.Elem); sz > 0 {
			act += ir.NumElements(t.Shape) * int64(sz)
		}
	}
	est := EstimateMemory(tg)
	tr, err := NewTrainer(tg, TrainerOptions{Schedule: Schedule{Peak: 1e-4}})
	if err != nil {
		return nil, err
	}
	stage("trainer")
	runtime.GC()
	debug.FreeOSMemory()
	stage("gc")
	in, err := NewLMBatch(randomRows(1, int(spec.B), int(spec.T), int(spec.T), spec.Cfg.Vocab), int(spec.T), 0, nil).Values(tg)
	if err != nil {
		return nil, err
	}
	var stepS float64
	for range max(spec.Steps, 1) {
		start := time.Now()
		if _, err := tr.Step(in); err != nil {
			return nil, err
		}
		stepS = time.Since(start).Seconds()
		stage("step")
	}
	n := int64(0)
	for _, p := range tr.Params {
		n += int64(len(p.Data))
	}
	return rssResult{RSS: benchchild.Status("VmHWM") - base, Budget: 16*n + act, Estimate: est.Total(), Params: n, StepS: stepS}, nil
}

// torchPeer times PyTorch eager on the same model and batch with
// scripts/bench/torch_train_peer.py when python3 (or $TAGPR_TORCH_PYTHON)
// has torch; it returns the peer's seconds per training step.
func torchPeer(cfg lm.Config) (float64, error) {
	script, err := filepath.Abs("../../scripts/bench/torch_train_peer.py")
	if err != nil {
		return 0, err
	}
	if _, err := os.Stat(script); err != nil {
		return 0, err
	}
	dir, err := os.MkdirTemp("", "tagpr-peer")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	if _, err := lm.WriteModelDir(cfg, dir, false); err != nil {
		return 0, err
	}
	python := os.Getenv("TAGPR_TORCH_PYTHON") // a Python with torch and transformers
	if python == "" {
		python = "python3"
	}
	cmd := exec.Command(python, script, "--config", dir, "--batch", strconv.Itoa(benchB), "--seq", strconv.Itoa(benchT), "--steps", "3", "--threads", strconv.Itoa(numCPU()))
	out, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 3 {
			return 0, fmt.Errorf("python3 has no torch/transformers")
		}
		return 0, err
	}
	var r struct {
		StepMS float64 `json:"step_ms"`
	}
	if err := jsonUnmarshal(out, &r); err != nil || r.StepMS <= 0 {
		return 0, fmt.Errorf("peer output %q: %v", out, err)
	}
	return r.StepMS / 1000, nil
}

func numCPU() int { return runtime.NumCPU() }

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
