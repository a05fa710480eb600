package pipeline

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/onnx/lm"
)

// An Optimum GPT-2 export stores its tied lm head as a transposed copy of
// wte. The SFT stage must train them as one tensor (as train lm does), so
// the trained model is still tied and its weights carry Hugging Face names.
func TestSFTTrainsTiedHeadAsOneTensor(t *testing.T) {
	mustORT(t)
	m, err := loadForTraining(filepath.Join("..", "onnx", "testdata", "pytorch", "gpt2", "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	var seqs []Sequence
	for i := range 6 {
		ids := make([]int64, 12)
		for j := range ids {
			ids[j] = int64(3 + (i*7+j*5)%90)
		}
		seqs = append(seqs, Sequence{IDs: ids, PromptLen: 4})
	}
	cfg := SFTConfig{Steps: 3, Batch: 2, SeqLen: 12, LR: 1e-2, Clip: 1, CheckpointEvery: 3, Seed: 1}
	res, err := TrainSFT(context.Background(), m, seqs, 0, cfg, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := res.Weights["transformer.wte.weight"]; !ok {
		t.Fatalf("no transformer.wte.weight among the trained weights")
	}
	for name := range res.Weights {
		if strings.HasPrefix(name, "onnx::") {
			t.Errorf("trained weight %q has no Hugging Face name (a tied copy trained on its own?)", name)
		}
	}
	names, err := lm.MapHFNames(m)
	if err != nil {
		t.Fatal(err)
	}
	if len(names.Copies) != 0 {
		t.Errorf("the loaded model still holds %d copies of tied weights: %+v", len(names.Copies), names.Copies)
	}
}
