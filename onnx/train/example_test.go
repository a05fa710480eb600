package train_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/ort"
	"github.com/tagpr/tagpr/onnx/train"
)

// Fine-tuning a causal LM on a stock ONNX Runtime: the training graph is
// derived from the inference graph, the Trainer runs forward and backward
// in ORT with the weights in Go, and the Loop shuffles, checkpoints and
// logs; a second Run on the same directory resumes (here: finds the job
// done).
func Example() {
	if err := ort.Init(""); err != nil {
		log.Fatal(err)
	}
	m, err := lm.Build(lm.Config{Arch: lm.Llama, Layers: 1, DModel: 32, Heads: 4, KVHeads: 2, Vocab: 16, MaxPositions: 32, Seed: 3})
	if err != nil {
		log.Fatal(err)
	}
	tg, _, err := train.BuildLMTraining(m, train.LMTraining{Batch: 2, SeqLen: 8})
	if err != nil {
		log.Fatal(err)
	}
	tr, err := train.NewTrainer(tg, train.TrainerOptions{Schedule: train.Schedule{Peak: 1e-2, Warmup: 2, Total: 40}})
	if err != nil {
		log.Fatal(err)
	}
	defer tr.Close()
	// Four rows of a repeating pattern: easy to learn.
	data := &train.LMDataset{SeqLen: 8, Pad: 0, Graph: tg, Rows: [][]int64{
		{1, 2, 3, 4, 1, 2, 3, 4}, {2, 3, 4, 1, 2, 3, 4, 1}, {3, 4, 1, 2, 3, 4, 1, 2}, {4, 1, 2, 3, 4, 1, 2, 3}}}
	dir, err := os.MkdirTemp("", "train-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	var losses []float64
	loop := &train.Loop{Trainer: tr, Data: data, BatchSize: 2, Steps: 40, Dir: dir, CheckpointEvery: 10, Seed: 1,
		Progress: func(p train.Progress) {
			if p.Note == "" {
				losses = append(losses, p.Metrics["loss"])
			}
		}}
	st, err := loop.Run(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d steps, %d epochs; loss fell below a tenth: %v\n", st.Step, st.Epoch, losses[len(losses)-1] < losses[0]/10)
	again, err := loop.Run(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	logged, err := train.ReadLog[train.StepLog](filepath.Join(dir, train.LogFile))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("rerun resumed at step %d; the log holds %d steps\n", again.Step, len(logged))
	// Output:
	// 40 steps, 19 epochs; loss fell below a tenth: true
	// rerun resumed at step 40; the log holds 40 steps
}
