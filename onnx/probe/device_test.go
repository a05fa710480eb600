package probe

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/ort"
)

// A probe on the device-resident paths (the CPU device here: what a CUDA
// probe does by itself) gives the plain probe's results, records what
// crossed per step, and compares float16 generation with float32; Compare
// fails a run whose cache crossed or whose float16 logits are off.
func TestProbeDeviceResidentAndHalf(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "m")
	if _, err := lm.WriteModelDir(lm.Config{Arch: lm.Llama, Layers: 1, DModel: 32, Heads: 2, KVHeads: 1, Vocab: 97, MaxPositions: 256, Seed: 4}, model, false); err != nil {
		t.Fatal(err)
	}
	o := Options{Session: ort.Options{Provider: "cpu", IntraOpThreads: 1}, GenBatches: []int{1, 3}, NewTokens: 6, PromptLen: 8,
		TrainBatch: 2, SeqLen: 16, TrainSteps: 2, GradSamples: 64}
	if _, err := Run(context.Background(), model, filepath.Join(dir, "plain"), o); err != nil {
		t.Fatal(err)
	}
	o.DeviceResident, o.Half = true, true
	s, err := Run(context.Background(), model, filepath.Join(dir, "device"), o)
	if err != nil {
		t.Fatal(err)
	}
	tr, h := s.Transfers, s.Half
	// Out per greedy decode step: the logits and the in-graph decode head's
	// row max (lm's headgraph.go), a float per row.
	if tr == nil || tr.GenH2DPerStep <= 0 || tr.GenD2HPerStep != 3*97*4+3*4 || !tr.TrainOnDevice || tr.TrainH2DPerStep <= 0 {
		t.Fatalf("transfers %+v", tr)
	}
	if h == nil || h.Error != "" || h.LogitsMaxAbs <= 0 || h.GreedyTotal != 2*16 || len(h.Generation) != 2 {
		t.Fatalf("half %+v", h)
	}
	a, _ := Read(filepath.Join(dir, "plain"))
	b, _ := Read(filepath.Join(dir, "device"))
	c, err := Compare(a, b, Tolerances{Logits: 1e-6, Grads: 1e-6, Loss: 1e-9})
	if err != nil || len(c.Failures) > 0 || c.LogitsMaxAbs != 0 || !c.GreedySame {
		t.Fatalf("device-resident vs plain probe: %+v, %v", c, err)
	}
	rep := c.Report(a, b)
	for _, want := range []string{"per decode step", "training on the device", "float16 generation vs float32", "PARITY OK"} {
		if !strings.Contains(rep, want) {
			t.Fatalf("report lacks %q:\n%s", want, rep)
		}
	}
	b.Summary.Transfers.GenD2HPerStep = b.Summary.Transfers.GenCacheBytes
	b.Summary.Half.LogitsMaxAbs = b.Summary.Half.LogitsScale
	c, _ = Compare(a, b, Tolerances{Logits: 1e-6, Grads: 1e-6, Loss: 1e-9})
	if len(c.Failures) != 2 {
		t.Fatalf("a crossing cache and float16 logits off by 100%%: failures %q", c.Failures)
	}
}
