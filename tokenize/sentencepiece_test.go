package tokenize_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/tokenize"
)

// A checkpoint that ships only sentencepiece's tokenizer.model is refused
// with the command that writes its tokenizer.json, not a bare "no such file".
func TestLoadNamesSentencepieceModel(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.model"), []byte("\x0a\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := tokenize.Load(filepath.Join(dir, "tokenizer.json"))
	if err == nil || !strings.Contains(err.Error(), "tokenizer.model") || !strings.Contains(err.Error(), "save_pretrained") {
		t.Errorf("Load with only a tokenizer.model: %v, want the error to name it and the conversion", err)
	}
	if err := os.Remove(filepath.Join(dir, "tokenizer.model")); err != nil {
		t.Fatal(err)
	}
	_, err = tokenize.Load(filepath.Join(dir, "tokenizer.json"))
	if err == nil || strings.Contains(err.Error(), "tokenizer.model") {
		t.Errorf("Load of a missing file: %v, want a plain not-found error", err)
	}
}

// Sentencepiece-style files load as character-level BPE (or Unigram, XLM-R's): the model's type,
// the <s> the post-processor adds, and the unk that characters outside the
// vocabulary become without byte fallback (one per run, fuse_unk).
func TestSentencepieceShapes(t *testing.T) {
	for _, name := range []string{"sp-legacy", "sp-metaspace", "sp-split", "sp-nofallback", "sp-unigram"} {
		tok := pinnedTokenizer(t, name)
		if want := map[bool]string{false: "BPE", true: "Unigram"}[name == "sp-unigram"]; tok.ModelType() != want {
			t.Errorf("%s: model %s, want %s", name, tok.ModelType(), want)
		}
		bos, _ := tok.TokenID("<s>")
		if e := tok.EncodeFull("hello", true); len(e.IDs) < 2 || e.IDs[0] != bos || !e.Special[0] {
			t.Errorf("%s: EncodeFull(hello, true) = %v, want <s> first", name, e.IDs)
		}
	}
	unk, _ := pinnedTokenizer(t, "sp-nofallback").TokenID("<unk>")
	ids := pinnedTokenizer(t, "sp-nofallback").Encode("a 𝔘𝔫𝔦 b")
	n := 0
	for _, id := range ids {
		if id == unk {
			n++
		}
	}
	if n != 1 {
		t.Errorf("sp-nofallback: %v has %d <unk>, want the three unknown characters fused into one", ids, n)
	}
}
