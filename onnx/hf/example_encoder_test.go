package hf_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/tagpr/tagpr/onnx/hf"
	"github.com/tagpr/tagpr/onnx/ort"
	"github.com/tagpr/tagpr/rewardmodel"
)

// A sentence encoder's checkpoint in (here a tiny random MPNet, the
// architecture of all-mpnet-base-v2, as transformers saves it), a PRMU text
// encoder out: ImportEncoder writes model.onnx as Optimum's
// feature-extraction export would, with the tokenizer and the pooling
// config, and rewardmodel embeds texts with it.
func ExampleImportEncoder() {
	if err := ort.Init(""); err != nil {
		log.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "hf-encoder-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ckpt := filepath.Join("..", "..", "rewardmodel", "testdata", "encoder-mpnet")

	imp, err := hf.ImportEncoder(ckpt, dir)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: %d layers, hidden %d, %d weights; copied %v\n", imp.ModelType, imp.Layers, imp.Hidden, imp.Params, imp.Copied)

	enc, err := rewardmodel.LoadTextEncoder(dir, rewardmodel.EncoderOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer enc.Close()
	emb, err := enc.Encode(context.Background(), []string{"a film about jokes and fights", "comedy"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d embeddings of %d floats, %s pooling\n", len(emb), len(emb[0]), enc.Pooling)
	// Output:
	// mpnet: 2 layers, hidden 32, 28992 weights; copied [tokenizer.json tokenizer_config.json 1_Pooling/config.json]
	// 2 embeddings of 32 floats, mean pooling
}
