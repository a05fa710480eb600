package rewardmodel

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/onnx/hf"
	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/ort"
)

// encoderFixture is the tiny random BERT exported by Optimum
// (scripts/rewardmodel/export_encoder.py).
const encoderFixture = "testdata/encoder"

// encoderCheckpoint holds encoderFixture's weights as a transformers
// checkpoint (scripts/rewardmodel/encoder_checkpoint.py).
const encoderCheckpoint = "testdata/encoder-hf"

// robertaCheckpoint is a tiny random RoBERTa encoder as a transformers
// checkpoint, with its PyTorch embeddings
// (scripts/rewardmodel/roberta_checkpoint.py).
const robertaCheckpoint = "testdata/encoder-roberta"

// xlmrFixture is a tiny random XLM-RoBERTa encoder as a transformers
// checkpoint, without its tokenizer.json (xlmrCheckpoint adds it), written
// by scripts/rewardmodel/xlmr_checkpoint.py with PyTorch's embeddings.
const xlmrFixture = "testdata/encoder-xlmr"

// mpnetCheckpoint is a tiny random MPNet encoder (all-mpnet-base-v2's
// architecture) as a transformers checkpoint, with its PyTorch embeddings
// (scripts/rewardmodel/mpnet_checkpoint.py).
const mpnetCheckpoint = "testdata/encoder-mpnet"

type encoderReference struct {
	MaxLength int `json:"max_length"`
	Hidden    int `json:"hidden_size"`
	Texts     []struct {
		Text string    `json:"text"`
		IDs  []int64   `json:"ids"`
		Mean []float64 `json:"mean"`
		CLS  []float64 `json:"cls"`
	} `json:"texts"`
}

func readEncoderReference(t *testing.T, dir string) encoderReference {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "reference.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ref encoderReference
	if err := json.Unmarshal(raw, &ref); err != nil {
		t.Fatal(err)
	}
	return ref
}

func loadFixtureEncoder(t *testing.T, o EncoderOptions) *TextEncoder {
	t.Helper()
	return loadEncoderAt(t, encoderFixture, o)
}

// xlmrCheckpoint assembles the XLM-RoBERTa fixture: the checkpoint in
// testdata/encoder-xlmr and, beside it, the sentencepiece Unigram
// tokenizer.json it was made with (kept once, in tokenize/testdata).
func xlmrCheckpoint(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "xlmr")
	if err := os.CopyFS(dir, os.DirFS(xlmrFixture)); err != nil {
		t.Fatal(err)
	}
	tj, err := os.ReadFile(filepath.Join("..", "tokenize", "testdata", "sentencepiece", "unigram", "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), tj, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// importedEncoder imports the transformers checkpoint ckpt into a
// temporary folder.
func importedEncoder(t *testing.T, ckpt string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "encoder")
	if _, err := hf.ImportEncoder(ckpt, dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

func loadEncoderAt(t *testing.T, dir string, o EncoderOptions) *TextEncoder {
	t.Helper()
	if err := ort.Init(""); err != nil {
		t.Fatalf("ONNX Runtime is needed (make setup): %v", err)
	}
	if o.Session.IntraOpThreads == 0 {
		o.Session = quietSession
	}
	e, err := LoadTextEncoder(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

// tagpr's tokens and pooled embeddings equal PyTorch's (HF tokenizer,
// BertModel, sentence-transformers pooling) within 1e-5, for mean pooling
// (the fixture's 1_Pooling config) and CLS, one by one and batched with
// padding, truncation included: the encoder as Optimum exported it, the
// same weights as a transformers checkpoint imported by hf.ImportEncoder,
// and a RoBERTa checkpoint (byte-level BPE, positions counted from the
// padding id), an MPNet one (a relative-position bias) and an XLM-RoBERTa
// one (a sentencepiece Unigram tokenizer with its Precompiled normalizer,
// on multilingual texts too) imported the same way.
func TestTextEncoderMatchesPyTorch(t *testing.T) {
	bert, roberta, mpnet := importedEncoder(t, encoderCheckpoint), importedEncoder(t, robertaCheckpoint), importedEncoder(t, mpnetCheckpoint)
	xlmr := importedEncoder(t, xlmrCheckpoint(t))
	for _, c := range []struct{ name, dir, ref, pooling string }{
		{"Optimum BERT", encoderFixture, encoderFixture, ""}, {"Optimum BERT", encoderFixture, encoderFixture, EncoderPoolCLS},
		{"imported BERT", bert, encoderFixture, ""}, {"imported BERT", bert, encoderFixture, EncoderPoolCLS},
		{"imported RoBERTa", roberta, robertaCheckpoint, ""}, {"imported RoBERTa", roberta, robertaCheckpoint, EncoderPoolCLS},
		{"imported MPNet", mpnet, mpnetCheckpoint, ""}, {"imported MPNet", mpnet, mpnetCheckpoint, EncoderPoolCLS},
		{"imported XLM-R", xlmr, xlmrFixture, ""}, {"imported XLM-R", xlmr, xlmrFixture, EncoderPoolCLS},
	} {
		ref, pooling := readEncoderReference(t, c.ref), c.pooling
		e := loadEncoderAt(t, c.dir, EncoderOptions{Pooling: pooling, MaxTokens: ref.MaxLength})
		if e.Dim != ref.Hidden || (pooling == "" && e.Pooling != EncoderPoolMean) {
			t.Fatalf("encoder dim %d pooling %q, want %d and mean from 1_Pooling/config.json", e.Dim, e.Pooling, ref.Hidden)
		}
		var texts []string
		for _, r := range ref.Texts {
			texts = append(texts, r.Text)
			if got := e.Tokens(r.Text); !slices.Equal(got, r.IDs) {
				t.Fatalf("tokens of %q:\n got %v\nwant %v", r.Text, got, r.IDs)
			}
		}
		batched, err := e.Encode(context.Background(), texts)
		if err != nil {
			t.Fatal(err)
		}
		worst := 0.0
		for i, r := range ref.Texts {
			want := r.Mean
			if e.Pooling == EncoderPoolCLS {
				want = r.CLS
			}
			alone, err := e.Encode(context.Background(), texts[i:i+1])
			if err != nil {
				t.Fatal(err)
			}
			for j, w := range want {
				worst = max(worst, math.Abs(float64(batched[i][j])-w), math.Abs(float64(alone[0][j])-w))
			}
		}
		t.Logf("%s, %s pooling: max |tagpr − PyTorch| = %.2g over %d texts", c.name, e.Pooling, worst, len(texts))
		if worst > 1e-5 {
			t.Fatalf("%s, %s pooling: max difference from PyTorch %.3g > 1e-5", c.name, e.Pooling, worst)
		}
		if st := e.Stats(); st.Runs != 1+len(texts) || st.Texts != 2*len(texts) {
			t.Fatalf("stats %+v after one batch and %d single runs", st, len(texts))
		}
	}
}

// Bad encoder directories and settings are refused with errors that name
// the file or setting and the fix.
func TestTextEncoderRefusesBadInput(t *testing.T) {
	if err := ort.Init(""); err != nil {
		t.Fatal(err)
	}
	copyFixture := func(t *testing.T) string {
		dir := t.TempDir()
		for _, f := range []string{EncoderModelFile, encoderTokenizerFile, encoderTokConfigFile, encoderHFConfigFile, encoderPoolingFile} {
			b, err := os.ReadFile(filepath.Join(encoderFixture, f))
			if err != nil {
				t.Fatal(err)
			}
			os.MkdirAll(filepath.Dir(filepath.Join(dir, f)), 0o755)
			if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	cases := []struct {
		name  string
		edit  func(dir string)
		o     EncoderOptions
		wants []string
	}{
		{"no pooling config", func(dir string) { os.RemoveAll(filepath.Join(dir, "1_Pooling")) }, EncoderOptions{}, []string{"1_Pooling", "pooling"}},
		{"max pooling", func(dir string) {
			os.WriteFile(filepath.Join(dir, encoderPoolingFile), []byte(`{"pooling_mode_max_tokens": true}`), 0o644)
		}, EncoderOptions{}, []string{"pooling_mode_max_tokens"}},
		{"unknown pooling", nil, EncoderOptions{Pooling: "max"}, []string{`pooling "max"`}},
		{"too many tokens", nil, EncoderOptions{MaxTokens: 500}, []string{"max tokens 500", "1 to 48"}},
		{"mpnet positions", func(dir string) { // MPNet's positions start after the padding index, as RoBERTa's
			os.WriteFile(filepath.Join(dir, encoderHFConfigFile), []byte(`{"model_type": "mpnet", "max_position_embeddings": 50}`), 0o644)
			var tc map[string]any
			b, _ := os.ReadFile(filepath.Join(dir, encoderTokConfigFile))
			json.Unmarshal(b, &tc)
			delete(tc, "model_max_length")
			b, _ = json.Marshal(tc)
			os.WriteFile(filepath.Join(dir, encoderTokConfigFile), b, 0o644)
		}, EncoderOptions{MaxTokens: 49}, []string{"max tokens 49", "1 to 48"}},
		{"no tokenizer", func(dir string) { os.Remove(filepath.Join(dir, encoderTokenizerFile)) }, EncoderOptions{}, []string{encoderTokenizerFile}},
		{"broken tokenizer", func(dir string) {
			os.WriteFile(filepath.Join(dir, encoderTokenizerFile), []byte(`{"model": 3}`), 0o644)
		}, EncoderOptions{}, []string{encoderTokenizerFile}},
		{"truncated model", func(dir string) {
			b, _ := os.ReadFile(filepath.Join(dir, EncoderModelFile))
			os.WriteFile(filepath.Join(dir, EncoderModelFile), b[:1000], 0o644)
		}, EncoderOptions{}, []string{EncoderModelFile}},
		{"not an encoder", func(dir string) {
			m, _ := ir.Load(filepath.Join(dir, EncoderModelFile))
			m.Graph.Output[0].Name = "logits"
			ir.Write(m, filepath.Join(dir, EncoderModelFile), ir.WriteOptions{})
		}, EncoderOptions{}, []string{"last_hidden_state", "feature-extraction"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := copyFixture(t)
			if c.edit != nil {
				c.edit(dir)
			}
			e, err := LoadTextEncoder(dir, c.o)
			if err == nil {
				e.Close()
				t.Fatal("loaded")
			}
			for _, w := range c.wants {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}
