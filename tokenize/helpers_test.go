package tokenize_test

import (
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/tagpr/tagpr/onnx/lock"
	"github.com/tagpr/tagpr/tokenize"
	"github.com/tagpr/tagpr/tokenize/internal/corpus"
)

// pinnedPath returns the verified path of a models.lock entry; tests fail
// (never skip) when `make setup` has not fetched it.
func pinnedPath(t testing.TB, name string) string {
	t.Helper()
	lp, err := lock.Find(".")
	if err != nil {
		t.Fatal(err)
	}
	f, err := lock.Load(lp)
	if err != nil {
		t.Fatal(err)
	}
	e, ok := f.Lookup(name)
	if !ok {
		t.Fatalf("%s has no entry %q", lp, name)
	}
	if err := f.Verify(e); err != nil {
		t.Fatalf("%s: %v (run `make setup`)", name, err)
	}
	return f.Abs(e)
}

var loaded sync.Map // name → *tokenize.Tokenizer

// pinnedTokenizer loads one of the test tokenizers: qwen3, llama3, bert
// (built from the pinned BERT vocabulary) or trained (testdata).
func pinnedTokenizer(t testing.TB, name string) *tokenize.Tokenizer {
	t.Helper()
	if v, ok := loaded.Load(name); ok {
		return v.(*tokenize.Tokenizer)
	}
	var tok *tokenize.Tokenizer
	var err error
	switch name {
	case "bert":
		raw, rerr := os.ReadFile(pinnedPath(t, "bert-uncased-vocab"))
		if rerr != nil {
			t.Fatal(rerr)
		}
		var vocab []string
		if err := json.Unmarshal(raw, &vocab); err != nil {
			t.Fatal(err)
		}
		tj, berr := corpus.BertTokenizerJSON(corpus.BertVocabFromMarked(vocab))
		if berr != nil {
			t.Fatal(berr)
		}
		tok, err = tokenize.Parse(tj, corpus.BertTokenizerConfigJSON())
	case "trained":
		tok, err = tokenize.Load(filepath.Join("testdata", "trained", "tokenizer.json"))
	case "sp-legacy", "sp-metaspace", "sp-split", "sp-nofallback", "sp-unigram":
		// scripts/tokenize/sentencepiece_fixture.py: sentencepiece BPE as
		// transformers converts Llama 2's and Mistral's.
		tok, err = tokenize.Load(filepath.Join("testdata", "sentencepiece", strings.TrimPrefix(name, "sp-"), "tokenizer.json"))
	default:
		tok, err = tokenize.Load(pinnedPath(t, name+"-tokenizer"))
	}
	if err != nil {
		t.Fatal(err)
	}
	loaded.Store(name, tok)
	return tok
}

var parityCorpus = sync.OnceValue(corpus.Parity)

type fixtureDoc struct {
	TextSHA256 string  `json:"text_sha256"`
	N          int     `json:"n"`
	IDsSHA256  string  `json:"ids_sha256"`
	IDs        []int64 `json:"ids"`
}

type fixture struct {
	Name            string       `json:"name"`
	Reference       string       `json:"reference"`
	TokenizerSHA256 string       `json:"tokenizer_sha256"`
	CorpusVersion   int          `json:"corpus_version"`
	Docs            []fixtureDoc `json:"docs"`
}

func readFixture(t testing.TB, name string) *fixture {
	t.Helper()
	fh, err := os.Open(filepath.Join("testdata", "parity_"+name+".json.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	zr, err := gzip.NewReader(fh)
	if err != nil {
		t.Fatal(err)
	}
	var f fixture
	if err := json.NewDecoder(zr).Decode(&f); err != nil {
		t.Fatalf("fixture %s: %v", name, err)
	}
	if f.CorpusVersion != corpus.Version {
		t.Fatalf("fixture %s was recorded on corpus version %d, generator is %d: run `go run ./tokenize/internal/record`",
			name, f.CorpusVersion, corpus.Version)
	}
	return &f
}

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func idsSHA(ids []int64) string {
	var b strings.Builder
	for i, id := range ids {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(id, 10))
	}
	return sha(b.String())
}
