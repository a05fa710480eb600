package lm_test

import (
	"testing"

	"github.com/tagpr/tagpr/onnx/hf"
	"github.com/tagpr/tagpr/onnx/lm"
)

// BenchmarkSampleLogProbsQwen05B is BenchmarkSampleLogProbs on a
// Qwen2.5-0.5B-shaped model (random weights, written and imported by
// import-hf; 151,936-token vocabulary): sampling with log-probs at batch 8
// against the bare decode runs of the same shapes (x_vs_bare_ort, goal
// <= 1.15). 32 new tokens and 2 rounds keep its time near the small model's.
func BenchmarkSampleLogProbsQwen05B(b *testing.B) {
	imp, err := hf.Qwen05B().WriteAndImport(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	lm.BenchSampleLogProbs(b, imp.Model, 32, 2)
}
