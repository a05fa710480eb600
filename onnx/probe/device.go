package probe

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/ort"
	"github.com/tagpr/tagpr/onnx/train"
)

// What crosses between host and device per step (ort.TransferCounts), and
// half-precision generation against float32: the device-resident paths of
// onnx/lm and onnx/train, measured where they run (CUDA, or the CPU device
// with Options.DeviceResident).

// TransferSummary is bytes moved per step on the device-resident paths.
type TransferSummary struct {
	Device string `json:"device"`
	// Generation at batch GenBatch: per decode step (prefill excluded), and
	// what one step's KV cache would have weighed had it crossed.
	GenBatch        int   `json:"gen_batch"`
	GenH2DPerStep   int64 `json:"gen_host_to_device_per_step"`
	GenD2HPerStep   int64 `json:"gen_device_to_host_per_step"`
	GenCacheBytes   int64 `json:"gen_cache_bytes_last_step"`
	TrainH2DPerStep int64 `json:"train_host_to_device_per_step"`
	TrainD2HPerStep int64 `json:"train_device_to_host_per_step"`
	TrainD2DPerStep int64 `json:"train_device_to_device_per_step"`
	TrainOnDevice   bool  `json:"train_on_device"` // the timed steps ran on a DeviceTrainer
}

// HalfSummary is float16 generation (lm.LoadOptions.Half) against this
// run's float32 model.
type HalfSummary struct {
	LogitsMaxAbs float64    `json:"logits_max_abs_diff"`
	LogitsScale  float64    `json:"logits_max_abs"`
	GreedyAgree  int        `json:"greedy_tokens_agreeing"` // per row, up to the first difference
	GreedyTotal  int        `json:"greedy_tokens"`
	Generation   []GenSpeed `json:"generation"`
	Error        string     `json:"error,omitempty"` // why it could not run (the model too big to edit)
}

// probeGenTransfers measures a decode step's transfers: generations of n
// and 2 tokens differ by n-2 decode steps.
func probeGenTransfers(ctx context.Context, m *lm.Model, o Options, s *Summary, seqs func(B, T int) [][]int64) error {
	on, dev := m.DeviceResident()
	if !on {
		return nil
	}
	B := o.GenBatches[len(o.GenBatches)-1]
	prompts := seqs(B, o.PromptLen)
	moved := func(n int) (ort.Transfers, error) {
		before := ort.TransferCounts()
		_, _, err := m.Generate(ctx, prompts, lm.GenerateOptions{MaxNewTokens: n, IgnoreEOS: true, NoLogProbs: true})
		return ort.TransferCounts().Sub(before), err
	}
	n := max(o.NewTokens, 4)
	short, err := moved(2)
	if err != nil {
		return fmt.Errorf("probe: transfers: %w", err)
	}
	long, err := moved(n)
	if err != nil {
		return fmt.Errorf("probe: transfers: %w", err)
	}
	lay := m.Layout
	t := s.transfers()
	t.Device, t.GenBatch = dev.String(), B
	t.GenH2DPerStep = (long.HostToDevice - short.HostToDevice) / int64(n-2)
	t.GenD2HPerStep = (long.DeviceToHost - short.DeviceToHost) / int64(n-2)
	t.GenCacheBytes = int64(2*lay.Layers*B*lay.KVHeads*lay.HeadDim*(o.PromptLen+n-1)) * 4
	o.logf("device-resident generation on %s, batch %d: per decode step %d B in, %d B out (the cache is %d B)", dev, B, t.GenH2DPerStep, t.GenD2HPerStep, t.GenCacheBytes)
	return nil
}

func (s *Summary) transfers() *TransferSummary {
	if s.Transfers == nil {
		s.Transfers = &TransferSummary{}
	}
	return s.Transfers
}

// probeHalf runs the parity batch, greedy ids and generation speed with
// float16 MatMuls.
func probeHalf(ctx context.Context, path string, o Options, s *Summary, parity [][]int64, logits []float32, seqs func(B, T int) [][]int64) error {
	h := &HalfSummary{}
	s.Half = h
	m, err := lm.Load(path, lm.LoadOptions{Session: o.Session, DeviceResident: o.DeviceResident, Half: true})
	if err != nil {
		h.Error = err.Error()
		o.logf("float16 generation: %v", err)
		return nil
	}
	defer m.Close()
	got, _, err := m.Forward(ctx, parity, 0)
	if err != nil {
		return fmt.Errorf("probe %s: float16 forward: %w", path, err)
	}
	for i := range got {
		h.LogitsMaxAbs = math.Max(h.LogitsMaxAbs, math.Abs(float64(got[i]-logits[i])))
		h.LogitsScale = math.Max(h.LogitsScale, math.Abs(float64(logits[i])))
	}
	greedy, _, err := m.Generate(ctx, parity, lm.GenerateOptions{MaxNewTokens: o.GreedyTokens, IgnoreEOS: true, NoLogProbs: true})
	if err != nil {
		return fmt.Errorf("probe %s: float16 greedy generation: %w", path, err)
	}
	for r, c := range greedy {
		h.GreedyTotal += len(c.Tokens)
		for j, id := range c.Tokens {
			if id != s.GreedyIDs[r][j] {
				break
			}
			h.GreedyAgree++
		}
	}
	if _, _, err := m.Generate(ctx, seqs(1, o.PromptLen), lm.GenerateOptions{MaxNewTokens: 2, IgnoreEOS: true, NoLogProbs: true}); err != nil {
		return fmt.Errorf("probe %s: float16 warm-up: %w", path, err)
	}
	for _, B := range o.GenBatches {
		start := time.Now()
		_, st, err := m.Generate(ctx, seqs(B, o.PromptLen), lm.GenerateOptions{MaxNewTokens: o.NewTokens, IgnoreEOS: true, NoLogProbs: true})
		if err != nil {
			return fmt.Errorf("probe %s: float16 generation at batch %d: %w", path, B, err)
		}
		sec := time.Since(start).Seconds()
		h.Generation = append(h.Generation, GenSpeed{Batch: B, Tokens: st.GeneratedTokens, Seconds: sec, TokensPerSec: float64(st.GeneratedTokens) / sec})
	}
	o.logf("float16 generation: logits max |Δ| %.3g of %.3g, greedy %d/%d tokens agree", h.LogitsMaxAbs, h.LogitsScale, h.GreedyAgree, h.GreedyTotal)
	return nil
}

// deviceReport is the transfer and float16 lines of one probe folder.
func deviceReport(f *Folder) string {
	var b strings.Builder
	s := f.Summary
	p := s.Provider
	if t := s.Transfers; t != nil {
		fmt.Fprintf(&b, "  %s: device-resident generation on %s, batch %d: per decode step %d B host->device, %d B device->host (the KV cache, which stays, is %d B)\n",
			p, t.Device, t.GenBatch, t.GenH2DPerStep, t.GenD2HPerStep, t.GenCacheBytes)
		if t.TrainOnDevice {
			fmt.Fprintf(&b, "  %s: training on the device: per step %d B host->device, %d B device->host, %d B device->device\n", p, t.TrainH2DPerStep, t.TrainD2HPerStep, t.TrainD2DPerStep)
		}
	}
	if h := s.Half; h != nil {
		if h.Error != "" {
			fmt.Fprintf(&b, "  %s: float16 generation did not run: %s\n", p, h.Error)
		} else {
			fmt.Fprintf(&b, "  %s: float16 generation vs float32: logits max |Δ| %.3g (logits up to %.3g), greedy %d of %d tokens agree before the first difference\n",
				p, h.LogitsMaxAbs, h.LogitsScale, h.GreedyAgree, h.GreedyTotal)
			for i, g := range h.Generation {
				line := fmt.Sprintf("  %s: float16 generation batch %-3d tokens/s %10.1f", p, g.Batch, g.TokensPerSec)
				if i < len(s.Generation) && s.Generation[i].Batch == g.Batch && s.Generation[i].TokensPerSec > 0 {
					line += fmt.Sprintf("  (float32 %10.1f, ×%.2f)", s.Generation[i].TokensPerSec, g.TokensPerSec/s.Generation[i].TokensPerSec)
				}
				b.WriteString(line + "\n")
			}
		}
	}
	return b.String()
}

// trainStepper is the timed steps' Step: a DeviceTrainer's on a GPU (or
// with DeviceResident), the host Trainer's on the CPU.
func trainStepper(tr *train.Trainer, o Options, s *Summary) (func(...map[string]ort.Value) (train.StepResult, error), func(), error) {
	d, err := train.DeviceTrainerFor(tr, o.Session)
	if err == nil && d == nil && o.DeviceResident {
		d, err = train.NewDeviceTrainer(tr, o.Session, nil)
	}
	if err != nil {
		return nil, nil, err
	}
	if d == nil {
		return tr.Step, func() {}, nil
	}
	t := s.transfers()
	t.TrainOnDevice = true
	if t.Device == "" {
		t.Device = ort.DeviceFor(o.Session).String()
	}
	return d.Step, d.Close, nil
}

// seededIDs draws B×T token ids in [1, V) from its own generator
// (PCG(seed, stream)).
func seededIDs(seed, stream uint64, V int) func(B, T int) [][]int64 {
	rng := rand.New(rand.NewPCG(seed, stream))
	return func(B, T int) [][]int64 {
		out := make([][]int64, B)
		for i := range out {
			out[i] = make([]int64, T)
			for t := range out[i] {
				out[i][t] = int64(1 + rng.IntN(V-1))
			}
		}
		return out
	}
}

// deviceFailures checks one folder's device-resident figures: the KV cache
// must not have crossed per decode step, and float16 logits must be within
// tol.Half of the float32 ones (relative to the largest logit).
func deviceFailures(f *Folder, tol Tolerances) []string {
	var out []string
	s := f.Summary
	if t := s.Transfers; t != nil && t.GenCacheBytes > 0 && (t.GenH2DPerStep >= t.GenCacheBytes || t.GenD2HPerStep >= t.GenCacheBytes) {
		out = append(out, fmt.Sprintf("%s: a decode step moved %d B in and %d B out, as much as the KV cache (%d B): it is not staying on the device", f.Dir, t.GenH2DPerStep, t.GenD2HPerStep, t.GenCacheBytes))
	}
	if h := s.Half; h != nil && h.Error == "" {
		limit := tol.Half
		if limit == 0 {
			limit = 0.02
		}
		if rel := h.LogitsMaxAbs / math.Max(h.LogitsScale, 1e-12); !(rel <= limit) {
			out = append(out, fmt.Sprintf("%s: float16 logits differ from float32 by %.3g, %.3g of the largest logit (tolerance %.3g)", f.Dir, h.LogitsMaxAbs, rel, limit))
		}
	}
	return out
}
