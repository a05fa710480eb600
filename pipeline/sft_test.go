package pipeline

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/train"
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

// Packing changes what an SFT run trains on: resuming a finished unpacked
// run with packing on is refused, not continued from the other layout's
// checkpoint.
func TestSFTPackingIsPartOfTheRun(t *testing.T) {
	mustORT(t)
	m, err := lm.Build(lm.Config{Arch: lm.Llama, Layers: 1, DModel: 16, Heads: 2, KVHeads: 2, Vocab: 40, MaxPositions: 32, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	var seqs []Sequence
	for i := range 4 {
		seqs = append(seqs, Sequence{IDs: []int64{3, int64(4 + i), 5, 6}, PromptLen: 1})
	}
	cfg := SFTConfig{Steps: 2, Batch: 2, SeqLen: 8, LR: 1e-3, Seed: 1}
	dir := t.TempDir()
	if _, err := TrainSFT(context.Background(), m, seqs, 0, cfg, dir, nil); err != nil {
		t.Fatal(err)
	}
	cfg.Packing = true
	_, err = TrainSFT(context.Background(), m, seqs, 0, cfg, dir, nil)
	var mismatch *train.SettingsMismatchError
	if !errors.As(err, &mismatch) || !strings.Contains(err.Error(), "packing") {
		t.Fatalf("packed resume of an unpacked run: %v", err)
	}
}

// The SFT stage reports its peak-memory estimate before training and
// refuses a run past runtime.max_memory_gb, naming the config keys to
// reduce, without writing a checkpoint.
func TestSFTRefusesPastItsMemory(t *testing.T) {
	mustORT(t)
	m, err := lm.Build(lm.Config{Arch: lm.Llama, Layers: 1, DModel: 16, Heads: 2, KVHeads: 2, Vocab: 40, MaxPositions: 32, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	seqs := []Sequence{{IDs: []int64{3, 4, 5, 6}, PromptLen: 1}, {IDs: []int64{3, 7, 5, 6}, PromptLen: 1}}
	var notes []string
	progress := func(p train.Progress) {
		if p.Note != "" {
			notes = append(notes, p.Note)
		}
	}
	cfg := SFTConfig{Steps: 2, Batch: 2, SeqLen: 8, LR: 1e-3, Seed: 1, MaxMemoryGB: 0.05} // 51 MiB: under ORT's own baseline
	dir := t.TempDir()
	_, err = TrainSFT(context.Background(), m, seqs, 0, cfg, dir, progress)
	if err == nil || !strings.Contains(err.Error(), "exceeds the 51 MiB") || !strings.Contains(err.Error(), "stages.sft.batch") ||
		!strings.Contains(err.Error(), "runtime.max_memory_gb") {
		t.Fatalf("a run past max_memory_gb: %v", err)
	}
	if len(notes) != 1 || !strings.HasPrefix(notes[0], "memory estimate: weights ") {
		t.Fatalf("notes %q, want the memory estimate", notes)
	}
	if _, err := train.LatestCheckpoint(dir); err == nil {
		t.Fatal("a refused run wrote a checkpoint")
	}
	cfg.MaxMemoryGB = -1
	if _, err := TrainSFT(context.Background(), m, seqs, 0, cfg, dir, progress); err != nil {
		t.Fatalf("max_memory_gb -1 (no check): %v", err)
	}
}

// TestSFTRefusesNoModel: a nil model is an error naming it, as an empty data
// set is, not a nil-pointer panic.
func TestSFTRefusesNoModel(t *testing.T) {
	cfg := SFTConfig{Steps: 1, Batch: 1, SeqLen: 8, LR: 1e-3}
	_, err := TrainSFT(context.Background(), nil, []Sequence{{IDs: []int64{3, 4, 5}}}, 0, cfg, t.TempDir(), nil)
	if err == nil || err.Error() != "sft: no model" {
		t.Fatalf("got %v, want sft: no model", err)
	}
}

// TestSFTRefusesNegativeIDs: a negative token id (ORT's Gather reads it from
// the end of the embedding, so it trained as another token without a word)
// or a prompt length outside the sequence is refused before any work,
// naming the sequence.
func TestSFTRefusesNegativeIDs(t *testing.T) {
	mustORT(t)
	m, err := lm.Build(lm.Config{Arch: lm.Llama, Layers: 1, DModel: 16, Heads: 2, KVHeads: 2, Vocab: 40, MaxPositions: 32, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	cfg := SFTConfig{Steps: 1, Batch: 1, SeqLen: 8, LR: 1e-3}
	for want, seqs := range map[string][]Sequence{
		"sequence 1 token 2: id -1 is negative":       {{IDs: []int64{3, 4, 5}}, {IDs: []int64{3, 4, -1}}},
		"sequence 0: prompt length 4 outside [0, 3]":  {{IDs: []int64{3, 4, 5}, PromptLen: 4}},
		"sequence 0: prompt length -1 outside [0, 3]": {{IDs: []int64{3, 4, 5}, PromptLen: -1}},
	} {
		dir := t.TempDir()
		if _, err := TrainSFT(context.Background(), m, seqs, 0, cfg, dir, nil); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want an error saying %q", err, want)
		}
	}
}
