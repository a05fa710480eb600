// Package grpotest is a tiny verifiable GRPO task for tests of grpo and of
// its callers: a small random model and a reward it can only reach by
// changing its distribution (the share of one token in the completions).
// It does not import grpo, so grpo's own tests can use it.
package grpotest

import (
	"math/rand/v2"
	"testing"

	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/onnxpb"
)

// The task's vocabulary: a random-init model emits Target with probability ≈ 1/Vocab.
const (
	Vocab  = 32
	Target = 7
	EOS    = 1
	Pad    = 0
)

// Config is the model's; WriteModelDir(Config, …) gives it as files.
var Config = lm.Config{Arch: lm.Llama, Layers: 2, DModel: 32, Heads: 4, KVHeads: 2, Vocab: Vocab, MaxPositions: 64, Seed: 9}

// Model builds the task's model.
func Model(t testing.TB) *onnxpb.ModelProto {
	t.Helper()
	m, err := lm.Build(Config)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// Prompts are n random prompts of 3 to 6 tokens (always the same ones).
func Prompts(n int) [][]int64 {
	rng := rand.New(rand.NewPCG(4, 2))
	out := make([][]int64, n)
	for i := range out {
		out[i] = make([]int64, 3+rng.IntN(4))
		for j := range out[i] {
			out[i][j] = 2 + rng.Int64N(Vocab-2)
		}
	}
	return out
}

// TargetShare is a completion's share of Target tokens (EOS included in the
// length, so stopping early is no trick).
func TargetShare(tokens []int64) float64 {
	hit := 0
	for _, id := range tokens {
		if id == Target {
			hit++
		}
	}
	return float64(hit) / float64(max(1, len(tokens)))
}
