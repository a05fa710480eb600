package pipeline

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/ort"
	"github.com/tagpr/tagpr/rewardmodel"
	"github.com/tagpr/tagpr/tokenize"
)

// tinyLocalTeacher is a randomly initialized built-in model with a BPE
// trained on the examples' prompts and chains: it writes nonsense, but
// through the real tokenizer, chat template and ONNX Runtime generation.
func tinyLocalTeacher(t *testing.T, dir string, exs []datasets.Example) *LocalTeacher {
	t.Helper()
	task, err := datasets.ParseTask(exs[0].Task)
	if err != nil {
		t.Fatal(err)
	}
	tx := rewardmodel.DefaultTaxonomy()
	var corpus []string
	for i := range exs {
		p := Parts(task, &exs[i], tx, PromptOptions{}, true)
		corpus = append(corpus, p.Instruction, p.Input, p.Answer)
		corpus = append(corpus, p.Profile...)
	}
	tok, err := tokenize.Train(tokenize.TrainOptions{Corpus: corpus, VocabSize: 400, SpecialTokens: []string{padToken, turnStartToken, turnEndToken}})
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, len(tx))
	for i, tag := range tx {
		names[i] = tag.Name
	}
	tok.RegisterTags(names)
	tokPath := filepath.Join(dir, "tokenizer.json")
	if err := tok.Save(tokPath); err != nil {
		t.Fatal(err)
	}
	if tok, err = tokenize.Load(tokPath); err != nil {
		t.Fatal(err)
	}
	eos, err := tokenID(tok, turnEndToken)
	if err != nil {
		t.Fatal(err)
	}
	pad, err := tokenID(tok, padToken)
	if err != nil {
		t.Fatal(err)
	}
	cfg := lm.Config{Arch: lm.Llama, Layers: 1, DModel: 32, Heads: 2, KVHeads: 1, MaxPositions: 1024, Seed: 11,
		Vocab: tok.VocabSize(), EOS: eos, BOS: eos, Pad: &pad}
	modelDir := filepath.Join(dir, "policy")
	if _, err := lm.WriteModelDir(cfg, modelDir, false); err != nil {
		t.Fatal(err)
	}
	p, err := openPolicy(modelDir, tok, "tiny", ort.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Model.Close() })
	return &LocalTeacher{Policy: p, Sampling: lm.Sampling{Temperature: 1, TopK: 50}, MaxNewTokens: 24, Seed: 5}
}

// TestLocalTeacherChainsSmoke runs the chains stage with a local ONNX
// teacher: generation runs and every example gets a row with verdicts.
// Quality is not asserted (the model is random).
func TestLocalTeacherChainsSmoke(t *testing.T) {
	if err := ort.Init(""); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	examples, exs := chainExamples(t, dir)
	teacher := tinyLocalTeacher(t, dir, exs)
	out := filepath.Join(dir, "chains.arrow")
	st, err := GenerateChains(context.Background(), ChainsConfig{Examples: examples, Out: out, Teacher: teacher, Batch: 4, Samples: 2})
	if err != nil {
		t.Fatal(err)
	}
	rows, err := datasets.ReadChains(out, datasets.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Done != len(exs) || st.Rows != 2*len(exs) || len(rows) != 2*len(exs) {
		t.Fatalf("stats %+v, %d rows, want %d examples × 2 samples", st, len(rows), len(exs))
	}
	for i, r := range rows {
		if r.ID != exs[i/2].ID || len(r.Verdicts) != 4 || r.Teacher[:len("local:tiny")] != "local:tiny" {
			t.Fatalf("row %d: id %s, %d verdicts, teacher %q", i, r.ID, len(r.Verdicts), r.Teacher)
		}
	}
	// Same seed, same completions.
	again, err := teacher.Complete(context.Background(), [][]datasets.Message{rows[0].Prompt})
	if err != nil {
		t.Fatal(err)
	}
	first, err := teacher.Complete(context.Background(), [][]datasets.Message{rows[0].Prompt})
	if err != nil {
		t.Fatal(err)
	}
	if again[0] != first[0] || first[0].Text == "" {
		t.Fatalf("local teacher is not reproducible or empty: %q vs %q", again[0], first[0])
	}
}

func openPolicy(dir string, tok *tokenize.Tokenizer, name string, so ort.Options) (Policy, error) {
	m, err := lm.Load(dir, lm.LoadOptions{Session: so})
	if err != nil {
		return Policy{}, err
	}
	eos, err := tokenID(tok, turnEndToken)
	if err != nil {
		m.Close()
		return Policy{}, err
	}
	return Policy{Model: m, Tok: tok, Name: name, EOS: []int64{eos}}, nil
}
