package lm_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/ort"
)

// A built-in Llama-style model written in Optimum's layout, loaded like an
// exported one and sampled: two completions of each of two prompts, with
// each token's log-probability.
func Example() {
	if err := ort.Init(""); err != nil {
		log.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "lm-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	cfg := lm.Config{Arch: lm.Llama, Layers: 2, DModel: 32, Heads: 4, KVHeads: 2, Vocab: 64, MaxPositions: 64, Seed: 1, EOS: 2}
	if _, err := lm.WriteModelDir(cfg, dir, false); err != nil { // model.onnx, config.json, generation_config.json
		log.Fatal(err)
	}
	m, err := lm.Load(filepath.Join(dir, "model.onnx"), lm.LoadOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	comps, _, err := m.Generate(context.Background(), [][]int64{{5, 6, 7}, {8, 9}}, lm.GenerateOptions{
		MaxNewTokens: 6, NumGenerations: 2, Sampling: lm.Sampling{Temperature: 0.8, TopK: 20}, Seed: 7, IgnoreEOS: true})
	if err != nil {
		log.Fatal(err)
	}
	for _, c := range comps {
		fmt.Printf("prompt %d sample %d: %d tokens, %d log-probs, finish %s\n", c.Prompt, c.Sample, len(c.Tokens), len(c.LogProbs), c.Finish)
	}
	// Output:
	// prompt 0 sample 0: 6 tokens, 6 log-probs, finish length
	// prompt 0 sample 1: 6 tokens, 6 log-probs, finish length
	// prompt 1 sample 0: 6 tokens, 6 log-probs, finish length
	// prompt 1 sample 1: 6 tokens, 6 log-probs, finish length
}

// WithTemperature makes the policy softmax(logits/τ) a graph of its own, so
// every session built from it — training, reference, generation — samples
// and scores the same distribution.
func ExampleWithTemperature() {
	m, err := lm.Build(lm.Config{Arch: lm.GPT2, Layers: 1, DModel: 16, Heads: 2, Vocab: 32, MaxPositions: 16})
	if err != nil {
		log.Fatal(err)
	}
	hot, err := lm.WithTemperature(m, 0.7)
	if err != nil {
		log.Fatal(err)
	}
	last := hot.Graph.Node[len(hot.Graph.Node)-1]
	fmt.Println(last.GetOpType(), last.Output[0], len(hot.Graph.Node)-len(m.Graph.Node))
	// Output: Mul logits 1
}
