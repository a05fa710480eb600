package grpo_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/ort"
	"github.com/tagpr/tagpr/pipeline/grpo"
)

// TRL's GRPOTrainer example in Go: a reward function, a config under TRL's
// names, a prompt pool, and Train. Here the reward favours short
// completions; the model is a built-in one (an Optimum export loads with
// ir.Load the same way).
func Example() {
	if err := ort.Init(""); err != nil {
		log.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "grpo-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	model, _ := lm.Build(lm.Config{Arch: lm.Llama, Layers: 2, DModel: 32, Heads: 4, KVHeads: 2, Vocab: 32, MaxPositions: 64, Seed: 1})
	short := grpo.Func("short", func(s grpo.Sample) float64 { return -float64(len(s.Tokens)) })
	prompts := []grpo.Prompt{{ID: "a", IDs: []int64{5, 6, 7}}, {ID: "b", IDs: []int64{8, 9}}}
	t, err := grpo.New(model, []grpo.Reward{short}, prompts, grpo.Config{
		NumGenerations: 4, MaxCompletionLength: 8, Steps: 3, PromptsPerStep: 2,
		LearningRate: 1e-3, Beta: 0.04, OutputDir: dir}, grpo.Options{EOS: []int64{1}})
	if err != nil {
		log.Fatal(err)
	}
	defer t.Close()
	res, err := t.Train(context.Background()) // res.Weights: train.Export writes them as an ONNX model
	if err != nil {
		log.Fatal(err)
	}
	last := res.Logs[len(res.Logs)-1]
	_, logged := last.Metrics()["rewards/short/mean"]
	fmt.Printf("%d steps of %d completions; reward logged: %v, KL logged: %v\n", len(res.Logs), 2*4, logged, last.KL != nil)
	// Output: 3 steps of 8 completions; reward logged: true, KL logged: true
}
