// Package probe runs one fixed workload of a causal LM on the runtime this
// process was started on — the logits of a seeded batch, greedy ids, one
// training step's loss and gradients, generation and training throughput —
// and writes it to a folder, so that the run on one execution provider (CUDA)
// can be compared with the run on another (the CPU): scripts/gpu/check.sh.
//
// It knows nothing of TagPR and imports only onnx/ packages (lm, train, ort,
// ir).
package probe

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/google/renameio/v2"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/ort"
	"github.com/tagpr/tagpr/onnx/train"
)

// Options size the workload. The zero value takes the defaults.
type Options struct {
	Session ort.Options `json:"-"`
	Seed    uint64
	// Parity: the logits of ParityBatch sequences of ParityLen tokens, and
	// GreedyTokens greedy tokens after them.
	ParityBatch, ParityLen, GreedyTokens int
	// Throughput: generation of NewTokens tokens after PromptLen-token
	// prompts at each batch size (EOS ignored).
	GenBatches []int
	PromptLen  int
	NewTokens  int
	// Training: TrainBatch×SeqLen next-token steps; the gradients of the
	// first are recorded, TrainSteps more are timed. TrainSteps < 0 skips
	// training (generation-only models).
	TrainBatch, SeqLen, TrainSteps int
	// GradSamples is how many elements of each gradient are recorded (at
	// seeded positions; the norm covers all).
	GradSamples int
	// DeviceResident forces the device-resident paths (automatic on CUDA)
	// and records their transfers (device.go); Half adds float16 generation.
	DeviceResident bool                             `json:"-"`
	Half           bool                             `json:"-"`
	Log            func(format string, args ...any) `json:"-"`
}

func (o Options) withDefaults() Options {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&o.ParityBatch, 2)
	def(&o.ParityLen, 16)
	def(&o.GreedyTokens, 16)
	def(&o.PromptLen, 32)
	def(&o.NewTokens, 32)
	def(&o.TrainBatch, 4)
	def(&o.SeqLen, 64)
	def(&o.TrainSteps, 3)
	def(&o.GradSamples, 2048)
	if o.GenBatches == nil {
		o.GenBatches = []int{1, 8, 32}
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	return o
}

func (o Options) logf(format string, a ...any) {
	if o.Log != nil {
		o.Log(format, a...)
	}
}

// GenSpeed is the generation throughput at one batch size.
type GenSpeed struct {
	Batch        int     `json:"batch"`
	Tokens       int     `json:"tokens"`         // generated, all rows
	Seconds      float64 `json:"seconds"`        // prefill + decode, wall
	TokensPerSec float64 `json:"tokens_per_sec"` // generated tokens / seconds
	DecodePerSec float64 `json:"decode_tokens_per_sec"`
}

// Summary is what a probe folder's probe.json holds; the tensors are in
// tensors.safetensors beside it.
type Summary struct {
	Provider     string      `json:"provider"`
	Runtime      string      `json:"onnxruntime"`
	Library      string      `json:"library"`
	Model        string      `json:"model"`
	Params       int64       `json:"params"`
	Vocab        int         `json:"vocab"`
	Options      Options     `json:"options"`
	GreedyIDs    [][]int64   `json:"greedy_ids"`
	Loss         float64     `json:"loss"`
	GradNorms    []NamedNorm `json:"grad_norms"`
	Generation   []GenSpeed  `json:"generation"`
	TrainSeconds float64     `json:"train_seconds_per_step"`
	TrainTokPS   float64     `json:"train_tokens_per_sec"`
	BuildSeconds float64     `json:"train_build_seconds"`
	// Transfers and Half: see device.go.
	Transfers *TransferSummary `json:"transfers,omitempty"`
	Half      *HalfSummary     `json:"half,omitempty"`
}

// NamedNorm is one gradient's L2 norm.
type NamedNorm struct {
	Name string  `json:"name"`
	Norm float64 `json:"norm"`
}

// File names in a probe folder.
const (
	SummaryFile = "probe.json"
	TensorsFile = "tensors.safetensors"
	logitsName  = "logits"
	gradPrefix  = "grad/"
)

// Run probes the model folder (or file) at path and writes dir/probe.json
// and dir/tensors.safetensors.
func Run(ctx context.Context, path, dir string, o Options) (*Summary, error) {
	o = o.withDefaults()
	m, err := lm.Load(path, lm.LoadOptions{Session: o.Session, DeviceResident: o.DeviceResident})
	if err != nil {
		return nil, err
	}
	defer m.Close()
	V := m.Layout.Vocab
	if V <= 1 {
		return nil, fmt.Errorf("probe %s: the model's vocabulary size is unknown (give it a config.json)", path)
	}
	s := &Summary{Provider: o.Session.Provider, Runtime: ort.Version(), Library: ort.LibraryPath(), Model: path, Vocab: V, Options: o}
	s.Options.Log, s.Options.Session = nil, ort.Options{}
	seqs := seededIDs(o.Seed, 7, V)
	tensors := map[string]train.STensor{}

	o.logf("logits of %d×%d tokens", o.ParityBatch, o.ParityLen)
	parity := seqs(o.ParityBatch, o.ParityLen)
	logits, _, err := m.Forward(ctx, parity, 0)
	if err != nil {
		return nil, fmt.Errorf("probe %s: forward: %w", path, err)
	}
	tensors[logitsName] = train.STensor{Shape: []int64{int64(o.ParityBatch), int64(o.ParityLen), int64(V)}, F32: logits}
	greedy, _, err := m.Generate(ctx, parity, lm.GenerateOptions{MaxNewTokens: o.GreedyTokens, IgnoreEOS: true, NoLogProbs: true})
	if err != nil {
		return nil, fmt.Errorf("probe %s: greedy generation: %w", path, err)
	}
	for _, c := range greedy {
		s.GreedyIDs = append(s.GreedyIDs, c.Tokens)
	}

	// Warm up (first-run allocations, kernel selection), then time each batch size.
	if _, _, err := m.Generate(ctx, seqs(1, o.PromptLen), lm.GenerateOptions{MaxNewTokens: 2, IgnoreEOS: true, NoLogProbs: true}); err != nil {
		return nil, fmt.Errorf("probe %s: warm-up: %w", path, err)
	}
	for _, B := range o.GenBatches {
		prompts := seqs(B, o.PromptLen)
		start := time.Now()
		_, st, err := m.Generate(ctx, prompts, lm.GenerateOptions{MaxNewTokens: o.NewTokens, IgnoreEOS: true, NoLogProbs: true})
		if err != nil {
			return nil, fmt.Errorf("probe %s: generation at batch %d: %w", path, B, err)
		}
		sec := time.Since(start).Seconds()
		g := GenSpeed{Batch: B, Tokens: st.GeneratedTokens, Seconds: sec, TokensPerSec: float64(st.GeneratedTokens) / sec}
		if d := st.Decode.Seconds(); d > 0 {
			g.DecodePerSec = float64(st.GeneratedTokens-B) / d
		}
		o.logf("generation batch %d: %.1f tokens/s (%d tokens in %.2fs)", B, g.TokensPerSec, g.Tokens, sec)
		s.Generation = append(s.Generation, g)
	}

	// The extra workloads draw their own ids: the training batch stays the
	// same with or without them.
	extra := seededIDs(o.Seed, 13, V)
	if err := probeGenTransfers(ctx, m, o, s, extra); err != nil {
		return nil, err
	}
	if o.Half {
		if err := probeHalf(ctx, path, o, s, parity, logits, extra); err != nil {
			return nil, err
		}
	}
	if o.TrainSteps >= 0 {
		if err := probeTraining(ctx, path, o, s, tensors, seqs); err != nil {
			return nil, err
		}
	}
	meta := map[string]string{"provider": s.Provider}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := train.WriteSafetensors(filepath.Join(dir, TensorsFile), tensors, meta); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := renameio.WriteFile(filepath.Join(dir, SummaryFile), append(b, '\n'), 0o644); err != nil {
		return nil, err
	}
	return s, nil
}

func probeTraining(ctx context.Context, path string, o Options, s *Summary, tensors map[string]train.STensor, seqs func(B, T int) [][]int64) error {
	file, err := lm.ResolveModelPath(path)
	if err != nil {
		return err
	}
	pm, err := ir.Load(file)
	if err != nil {
		return err
	}
	o.logf("training graph for %d×%d", o.TrainBatch, o.SeqLen)
	start := time.Now()
	tg, _, err := train.BuildLMTraining(pm, train.LMTraining{Batch: int64(o.TrainBatch), SeqLen: int64(o.SeqLen)})
	if err != nil {
		return fmt.Errorf("probe %s: training graph: %w", path, err)
	}
	pm = nil // the training graph holds its own copy of the weights
	tr, err := train.NewTrainer(tg, train.TrainerOptions{Schedule: train.Schedule{Peak: 1e-4, Total: 1 + o.TrainSteps}, Session: o.Session})
	if err != nil {
		return fmt.Errorf("probe %s: trainer: %w", path, err)
	}
	defer tr.Close()
	s.BuildSeconds = time.Since(start).Seconds()
	ds := &train.LMDataset{Rows: seqs(o.TrainBatch, o.SeqLen), SeqLen: o.SeqLen, Graph: tg}
	idx := make([]int, o.TrainBatch)
	for i := range idx {
		idx[i] = i
	}
	batch, free, err := ds.Batch(idx)
	if err != nil {
		return err
	}
	defer free()
	loss, _, err := tr.Compute(batch)
	if err != nil {
		return fmt.Errorf("probe %s: training step: %w", path, err)
	}
	s.Loss = loss
	sample := rand.New(rand.NewPCG(o.Seed, 11))
	for i, g := range tr.Grads() {
		p := tr.Params[i]
		var sq float64
		for _, v := range g {
			sq += float64(v) * float64(v)
		}
		s.GradNorms = append(s.GradNorms, NamedNorm{Name: p.Name, Norm: math.Sqrt(sq)})
		n := min(o.GradSamples, len(g))
		vals := make([]float32, n)
		for k := range vals {
			vals[k] = g[sample.IntN(len(g))]
		}
		tensors[gradPrefix+p.Name] = train.STensor{Shape: []int64{int64(n)}, F32: vals}
	}
	if o.TrainSteps > 0 {
		step, closeDev, err := trainStepper(tr, o, s)
		if err != nil {
			return fmt.Errorf("probe %s: %w", path, err)
		}
		defer closeDev()
		if _, err := step(batch); err != nil { // warm-up
			return err
		}
		before := ort.TransferCounts()
		start := time.Now()
		for range o.TrainSteps {
			if err := ctx.Err(); err != nil {
				return err
			}
			if _, err := step(batch); err != nil {
				return fmt.Errorf("probe %s: training step: %w", path, err)
			}
		}
		s.TrainSeconds = time.Since(start).Seconds() / float64(o.TrainSteps)
		if t := s.Transfers; t != nil && t.TrainOnDevice {
			moved := ort.TransferCounts().Sub(before)
			n := int64(o.TrainSteps)
			t.TrainH2DPerStep, t.TrainD2HPerStep, t.TrainD2DPerStep = moved.HostToDevice/n, moved.DeviceToHost/n, moved.DeviceToDevice/n
		}
		s.TrainTokPS = float64(o.TrainBatch*o.SeqLen) / s.TrainSeconds
		o.logf("training: %.3fs per step, %.0f tokens/s", s.TrainSeconds, s.TrainTokPS)
	}
	for _, p := range tr.Params {
		s.Params += int64(len(p.Data))
	}
	return nil
}
