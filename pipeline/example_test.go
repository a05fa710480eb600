package pipeline_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/ort"
	"github.com/tagpr/tagpr/onnx/train"
	"github.com/tagpr/tagpr/pipeline"
	"github.com/tagpr/tagpr/tokenize"
)

// Supervised fine-tuning from Go, as TRL's SFTTrainer does it: texts (or
// prompt/completion pairs, or chats; datasets.ReadTextSet reads them from
// JSON lines, Arrow or Parquet) are tokenized into rows by LMRows, TrainSFT
// trains on them with a progress callback, checkpointing into a folder that
// a rerun resumes from, and the trained weights are exported as an ONNX
// model that generates. A model imported with onnx/hf (ir.Load of its
// model.onnx) trains the same way; hf.WriteTrained also writes it back as a
// transformers checkpoint.
func ExampleTrainSFT() {
	if err := ort.Init(""); err != nil {
		log.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "sft-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	texts := []string{"the cat sat on the mat", "the dog sat on the log", "a cat and a dog"}
	tok, err := tokenize.Train(tokenize.TrainOptions{Corpus: texts, VocabSize: 300, SpecialTokens: []string{"<|endoftext|>"}})
	if err != nil {
		log.Fatal(err)
	}
	eos, _ := tok.TokenID("<|endoftext|>")
	model, err := lm.Build(lm.Config{Arch: lm.Llama, Layers: 1, DModel: 32, Heads: 4, KVHeads: 2, Vocab: tok.VocabSize(), MaxPositions: 32, Seed: 1})
	if err != nil {
		log.Fatal(err)
	}

	rows, promptLen, err := pipeline.LMRows(datasets.TextSet{Texts: texts}, pipeline.LMRowsOptions{Tok: tok, SeqLen: 16, EOS: eos})
	if err != nil {
		log.Fatal(err)
	}
	data := make([]pipeline.Sequence, len(rows))
	for i, r := range rows {
		data[i].IDs = r
		if promptLen != nil { // prompt/completion rows: the prompt is not a target
			data[i].PromptLen = promptLen[i]
		}
	}
	var losses []float64
	progress := func(p train.Progress) { // also a memory estimate first (p.Note)
		if p.Note == "" {
			losses = append(losses, p.Metrics["loss"])
		}
	}
	res, err := pipeline.TrainSFT(context.Background(), model, data, eos,
		pipeline.SFTConfig{Steps: 30, Batch: 2, SeqLen: 16, LR: 1e-2, Warmup: 2, Clip: 1}, filepath.Join(dir, "sft"), progress)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d steps, %d progress reports; loss fell by more than half: %v\n", res.Steps, len(losses), losses[len(losses)-1] < losses[0]/2)

	out := filepath.Join(dir, "model.onnx")
	if err := train.Export(out, model, res.Weights, nil); err != nil {
		log.Fatal(err)
	}
	m, err := lm.Load(out, lm.LoadOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	comps, _, err := m.Generate(context.Background(), [][]int64{tok.Encode("the cat")}, lm.GenerateOptions{MaxNewTokens: 8, EOS: []int64{eos}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("generated", len(comps[0].Tokens) > 0)
	// Output:
	// 30 steps, 30 progress reports; loss fell by more than half: true
	// generated true
}
