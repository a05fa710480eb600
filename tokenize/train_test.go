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

// A corpus with no text (empty, or whitespace only) is refused: it once gave
// a bytes-only tokenizer without a word.
func TestTrainRefusesEmptyCorpus(t *testing.T) {
	for name, o := range map[string]tokenize.TrainOptions{
		"no documents": {}, "empty documents": {Corpus: []string{"", " \n"}},
		"empty reader": {Reader: strings.NewReader("")}, "blank lines": {Reader: strings.NewReader("\n \n\t\n")},
	} {
		o.VocabSize = 300
		if _, err := tokenize.Train(o); err == nil || !strings.Contains(err.Error(), "holds no text") {
			t.Errorf("%s: got %v", name, err)
		}
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

// A trained tokenizer comes with a ChatML tokenizer_config.json: the JS
// reference renders and encodes a conversation with it (apply_chat_template,
// tokenize: true) exactly as EncodeChat does.
func TestTrainedChatMatchesReference(t *testing.T) {
	tok := pinnedTokenizer(t, "trained")
	if tok.ChatFormat().Name != "chatml" || tok.Config().EOS != "<|im_end|>" || tok.Config().PAD != "<|endoftext|>" {
		t.Fatalf("trained config: %+v", tok.Config())
	}
	msgs := []tokenize.Message{
		{Role: "system", Content: "You are helpful."},
		{Role: "user", Content: " Hi there\n"},
		{Role: "assistant", Content: "<think>\n<recall_history>liked robots</recall_history>\n</think>\n<answer>sci-fi</answer>"},
		{Role: "user", Content: "Rate it: 4.5 ★"},
	}
	// Recorded with @lenml/tokenizers 3.7.2 from testdata/trained.
	js := []int64{1, 85, 91, 297, 429, 201, 59, 306, 718, 223, 274, 78, 82, 72, 87, 78, 16, 2, 201, 1, 1332, 201, 625, 75, 802, 201, 2, 201,
		1, 488, 85, 75, 297, 431, 86, 201, 30, 884, 32, 201, 30, 277, 503, 417, 65, 627, 32, 374, 77, 71, 70, 223, 84, 81, 68, 365, 85, 30,
		17, 277, 503, 417, 65, 627, 32, 201, 30, 17, 884, 32, 201, 30, 1330, 32, 85, 69, 75, 15, 72, 75, 30, 17, 1330, 32, 2, 201, 1, 1332,
		201, 52, 360, 71, 223, 315, 28, 223, 22, 16, 23, 408, 249, 230, 2, 201, 1, 488, 85, 75, 297, 431, 86, 201}
	enc, err := tok.EncodeChat(msgs, true)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(enc.IDs, js) {
		t.Errorf("EncodeChat ids differ from the reference:\n got %v\nwant %v", enc.IDs, js)
	}
	if got := tok.StopTokens(); !reflect.DeepEqual(got, []int64{2}) {
		t.Errorf("stop tokens %v, want [2] (eos and end of turn are <|im_end|>)", got)
	}
}
