package probe

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/ort"
	"github.com/tagpr/tagpr/onnx/train"
)

// Two probes of one model on the same provider agree exactly; a run whose
// logits, greedy ids or gradients differ is caught and named.
func TestProbeRunAndCompare(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "m")
	if _, err := lm.WriteModelDir(lm.Config{Arch: lm.Llama, Layers: 1, DModel: 32, Heads: 2, KVHeads: 1, Vocab: 97, MaxPositions: 256, Seed: 4}, model, false); err != nil {
		t.Fatal(err)
	}
	o := Options{Session: ort.Options{Provider: "cpu", IntraOpThreads: 1}, GenBatches: []int{1, 3}, NewTokens: 4, PromptLen: 8,
		TrainBatch: 2, SeqLen: 16, TrainSteps: 1, GradSamples: 64}
	var runs []*Folder
	for _, name := range []string{"a", "b"} {
		s, err := Run(context.Background(), model, filepath.Join(dir, name), o)
		if err != nil {
			t.Fatal(err)
		}
		if len(s.GreedyIDs) != 2 || len(s.GreedyIDs[0]) != 16 || len(s.Generation) != 2 || s.TrainTokPS <= 0 || s.Loss <= 0 || len(s.GradNorms) == 0 {
			t.Fatalf("summary %+v", s)
		}
		f, err := Read(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		runs = append(runs, f)
	}
	tol := Tolerances{Logits: 1e-3, Grads: 1e-3, Loss: 1e-4}
	c, err := Compare(runs[0], runs[1], tol)
	if err != nil || len(c.Failures) != 0 || c.LogitsMaxAbs != 0 || !c.GreedySame || c.GradWorst != 0 {
		t.Fatalf("same provider twice: %+v, %v", c, err)
	}
	if rep := c.Report(runs[0], runs[1]); !strings.Contains(rep, "PARITY OK") || !strings.Contains(rep, "generation batch 3") {
		t.Fatalf("report:\n%s", rep)
	}
	// Perturb b: logits off by 2e-3, one greedy id, one gradient element.
	b := runs[1]
	l := append([]float32(nil), b.Tensors[logitsName].F32...)
	l[5] += 2e-3
	b.Tensors[logitsName] = train.STensor{Shape: b.Tensors[logitsName].Shape, F32: l}
	b.Summary.GreedyIDs[1][3]++
	for k, v := range b.Tensors {
		if strings.HasPrefix(k, gradPrefix) {
			g := append([]float32(nil), v.F32...)
			g[0] += 1
			b.Tensors[k] = train.STensor{Shape: v.Shape, F32: g}
			break
		}
	}
	c, err = Compare(runs[0], b, tol)
	if err != nil || len(c.Failures) != 3 || c.GreedyFirstOff != "row 1, token 3" {
		t.Fatalf("perturbed run: %+v, %v", c, err)
	}
	b.Summary.Options.NewTokens++
	if _, err := Compare(runs[0], b, tol); err == nil {
		t.Fatal("runs of different workloads were compared")
	}
}
