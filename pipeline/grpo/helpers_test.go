package grpo

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/onnxpb"
	"github.com/tagpr/tagpr/onnx/ort"
)

func init() {
	// Tests run real ONNX Runtime: fail loudly when it is missing.
	if err := ort.Init(""); err != nil {
		panic("pipeline/grpo tests need ONNX Runtime (run `make setup`): " + err.Error())
	}
}

// Tiny verifiable task: the reward is the fraction of completion tokens equal
// to target. A random-init model emits it with probability ≈ 1/vocab.
const (
	vocab  = 32
	target = 7
	eos    = 1
	pad    = 0
)

func tinyModel(t testing.TB) *onnxpb.ModelProto {
	t.Helper()
	m, err := lm.Build(lm.Config{Arch: lm.Llama, Layers: 2, DModel: 32, Heads: 4, KVHeads: 2, Vocab: vocab, MaxPositions: 64, Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func tinyPrompts(n int) []Prompt {
	rng := rand.New(rand.NewPCG(4, 2))
	out := make([]Prompt, n)
	for i := range out {
		ids := make([]int64, 3+rng.IntN(4))
		for j := range ids {
			ids[j] = 2 + rng.Int64N(vocab-2)
		}
		out[i] = Prompt{ID: fmt.Sprintf("p%02d", i), IDs: ids}
	}
	return out
}

// targetShare scores a completion by its share of target tokens (EOS
// included in the length, so stopping early is no trick).
var targetShare = Func("target_share", func(s Sample) float64 {
	hit := 0
	for _, id := range s.Tokens {
		if id == target {
			hit++
		}
	}
	return float64(hit) / float64(max(1, len(s.Tokens)))
})

func tinyConfig(dir string) Config {
	off := false
	return Config{NumGenerations: 8, MaxCompletionLength: 8, Steps: 30, PromptsPerStep: 4, LearningRate: 1e-2,
		WarmupSteps: 2, MaxGradNorm: 1, Beta: 0.02, UseBiasCorrectionKL: &off, SaveSteps: 10, Seed: 3, OutputDir: dir}
}

func tinyOptions() Options { return Options{EOS: []int64{eos}, Pad: pad} }

// run trains a tiny run to its end.
func run(t testing.TB, cfg Config, prompts []Prompt, o Options, rewards ...Reward) *Result {
	t.Helper()
	if len(rewards) == 0 {
		rewards = []Reward{targetShare}
	}
	tr, err := New(tinyModel(t), rewards, prompts, cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	res, err := tr.Train(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func mustMarshal(t testing.TB, m *onnxpb.ModelProto) []byte {
	t.Helper()
	b, err := ir.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
