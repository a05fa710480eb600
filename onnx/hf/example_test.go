package hf_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/tagpr/tagpr/onnx/hf"
	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/ort"
)

// A Hugging Face checkpoint in, an ONNX model out, no Python: Import reads
// config.json and model.safetensors (here a tiny Qwen2 with random weights,
// as transformers' save_pretrained writes one) and writes model.onnx in the
// Optimum layout beside config.json, generation_config.json and the
// tokenizer files. The model then generates with onnx/lm and trains with
// onnx/train, pipeline.TrainSFT or pipeline/grpo; Export (or WriteTrained)
// writes a trained one back as a checkpoint transformers loads.
func ExampleImport() {
	if err := ort.Init(""); err != nil {
		log.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "hf-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ckpt := filepath.Join(dir, "checkpoint")
	tiny := hf.RandomCheckpoint{Layers: 2, Hidden: 32, Heads: 4, KVHeads: 2, Intermediate: 64, Vocab: 64, MaxPositions: 64, Tied: true, Seed: 1}
	if err := tiny.Write(ckpt); err != nil {
		log.Fatal(err)
	}

	imp, err := hf.Import(ckpt, filepath.Join(dir, "onnx"), hf.ImportOptions{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: %d weights, %d layers → %s\n", imp.ModelType, imp.Params, imp.Config.Layers, filepath.Base(imp.Model))

	m, err := lm.Load(imp.Model, lm.LoadOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	comps, _, err := m.Generate(context.Background(), [][]int64{{5, 6, 7}}, lm.GenerateOptions{MaxNewTokens: 4, IgnoreEOS: true})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("greedy: %d tokens, finish %s\n", len(comps[0].Tokens), comps[0].Finish)

	// And back: the model (trained or not) as a transformers checkpoint.
	model, err := ir.Load(imp.Model)
	if err != nil {
		log.Fatal(err)
	}
	exp, err := hf.Export(model, filepath.Join(dir, "export"), hf.ExportOptions{From: filepath.Join(dir, "onnx")})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("exported", exp.Tensors, "tensors")
	// Output:
	// qwen2: 20768 weights, 2 layers → model.onnx
	// greedy: 4 tokens, finish length
	// exported 26 tensors
}
