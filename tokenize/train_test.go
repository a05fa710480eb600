package tokenize_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tagpr/tagpr/tokenize"
	"github.com/tagpr/tagpr/tokenize/internal/corpus"
)

// trainedOptions are the options `go run ./tokenize/internal/record` trains
// testdata/trained/tokenizer.json with.
func trainedOptions() tokenize.TrainOptions {
	return tokenize.TrainOptions{
		Corpus:        corpus.Docs(48, 16<<10),
		VocabSize:     2048,
		SpecialTokens: []string{"<|endoftext|>", "<|im_start|>", "<|im_end|>"},
	}
}

// The committed trained tokenizer (whose reference ids TestParity/trained
// checks) is exactly what the current trainer produces.
func TestTrainReproducesFixture(t *testing.T) {
	tok, err := tokenize.Train(trainedOptions())
	if err != nil {
		t.Fatal(err)
	}
	if tok.VocabSize() != 2048 {
		t.Errorf("vocab size %d, want 2048", tok.VocabSize())
	}
	path := filepath.Join(t.TempDir(), "tokenizer.json")
	if err := tok.Save(path); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	want, err := os.ReadFile(filepath.Join("testdata", "trained", "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("trainer output differs from testdata/trained/tokenizer.json: re-record with `go run ./tokenize/internal/record`")
	}
}

// Reading the corpus line by line gives the same tokenizer as passing the
// lines, and the special tokens come first and stay whole.
func TestTrainReader(t *testing.T) {
	text := strings.Join(corpus.Docs(8, 8<<10), "\n")
	lines := strings.SplitAfter(text, "\n")
	opts := tokenize.TrainOptions{VocabSize: 700, SpecialTokens: []string{"<pad>", "<eos>"}}
	a, err := tokenize.Train(tokenize.TrainOptions{Corpus: lines, VocabSize: opts.VocabSize, SpecialTokens: opts.SpecialTokens})
	if err != nil {
		t.Fatal(err)
	}
	b, err := tokenize.Train(tokenize.TrainOptions{Reader: strings.NewReader(text), VocabSize: opts.VocabSize, SpecialTokens: opts.SpecialTokens})
	if err != nil {
		t.Fatal(err)
	}
	ja, _ := a.MarshalJSON()
	jb, _ := b.MarshalJSON()
	if !bytes.Equal(ja, jb) {
		t.Error("Reader and Corpus training differ")
	}
	if id, _ := b.TokenID("<eos>"); id != 1 {
		t.Errorf("<eos> id %d, want 1", id)
	}
	sample := "The user's <eos> rating: 4.5 stars 東京 👍🏽"
	ids := b.Encode(sample)
	back, err := b.Decode(ids, false)
	if err != nil || back != sample {
		t.Errorf("round trip %q, %v", back, err)
	}
	if _, err := tokenize.Train(tokenize.TrainOptions{Corpus: lines, VocabSize: 200}); err == nil {
		t.Error("vocab smaller than the byte alphabet accepted")
	}
}

// BenchmarkTrain trains a 4096-token vocabulary on 3.2 MB (the demo's use).
func BenchmarkTrain(b *testing.B) {
	docs := corpus.Docs(200, 16<<10)
	size := 0
	for _, d := range docs {
		size += len(d)
	}
	var secs float64
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if _, err := tokenize.Train(tokenize.TrainOptions{Corpus: docs, VocabSize: 4096}); err != nil {
			b.Fatal(err)
		}
		secs = time.Since(start).Seconds()
	}
	b.ReportMetric(secs, "s/train")
	b.ReportMetric(float64(size)/1e6/secs, "MB/s")
}

// The trainer learns exactly what Hugging Face's BpeTrainer learns:
// testdata/trained/hf_tokenizer.json was trained by tokenizers 0.22.1
// (scripts/tokenize/hf_train.py) on the same corpus with the same pipeline.
func TestTrainMatchesHuggingFace(t *testing.T) {
	type modelJSON struct {
		Model struct {
			Vocab  map[string]int `json:"vocab"`
			Merges [][2]string    `json:"merges"`
		} `json:"model"`
	}
	read := func(name string) modelJSON {
		raw, err := os.ReadFile(filepath.Join("testdata", "trained", name))
		if err != nil {
			t.Fatal(err)
		}
		var m modelJSON
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return m
	}
	hf, ours := read("hf_tokenizer.json"), read("tokenizer.json")
	if !reflect.DeepEqual(hf.Model.Vocab, ours.Model.Vocab) {
		t.Errorf("vocabularies differ (%d vs %d tokens)", len(hf.Model.Vocab), len(ours.Model.Vocab))
	}
	if len(hf.Model.Merges) != len(ours.Model.Merges) {
		t.Fatalf("%d merges, HF %d", len(ours.Model.Merges), len(hf.Model.Merges))
	}
	for i := range hf.Model.Merges {
		if hf.Model.Merges[i] != ours.Model.Merges[i] {
			t.Fatalf("merge %d: %q, HF %q", i, ours.Model.Merges[i], hf.Model.Merges[i])
		}
	}
}
