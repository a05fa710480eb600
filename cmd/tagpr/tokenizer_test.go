package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/onnx/lock"
)

func TestTokenizerCommands(t *testing.T) {
	dir := t.TempDir()
	var corpus strings.Builder
	for i := 0; i < 400; i++ {
		corpus.WriteString("The user liked the film about robots; rating 4.5 stars. Café naïve 東京 👍\n")
	}
	cp := filepath.Join(dir, "corpus.txt")
	if err := os.WriteFile(cp, []byte(corpus.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "tokenizer.json")
	if _, stderr, err := runTagpr(t, dir, nil, "tokenizer", "train", "--corpus", cp, "--vocab-size", "300", "--out", out); err != nil {
		t.Fatalf("train: %v\n%s", err, stderr)
	}
	stdout, stderr, err := runTagpr(t, dir, nil, "tokenizer", "encode", "--tokenizer", out, "The user<|im_end|>")
	if err != nil {
		t.Fatalf("encode: %v\n%s", err, stderr)
	}
	ids := strings.TrimSpace(stdout)
	if !strings.HasPrefix(ids, "[") || !strings.HasSuffix(ids, ",2]") { // <|im_end|> is special token 2
		t.Fatalf("encode printed %q", ids)
	}
	stdout, stderr, err = runTagpr(t, dir, nil, "tokenizer", "decode", "--tokenizer", out, ids)
	if err != nil || stdout != "The user<|im_end|>\n" {
		t.Fatalf("decode %q: %q %v %s", ids, stdout, err, stderr)
	}
	stdout, _, err = runTagpr(t, dir, nil, "tokenizer", "decode", "--skip-special", "--tokenizer", out, ids)
	if err != nil || stdout != "The user\n" {
		t.Fatalf("decode --skip-special: %q %v", stdout, err)
	}

	// The pinned Qwen3 tokenizer, ids checked against the JS reference.
	lp, err := lock.Find(".")
	if err != nil {
		t.Fatal(err)
	}
	f, err := lock.Load(lp)
	if err != nil {
		t.Fatal(err)
	}
	e, _ := f.Lookup("qwen3-tokenizer")
	stdout, stderr, err = runTagpr(t, dir, nil, "tokenizer", "encode", "--special", "--tokenizer", f.Abs(e), "Hello world<|im_end|>  \n\n  it's 12345 café")
	if err != nil {
		t.Fatalf("encode qwen3: %v\n%s", err, stderr)
	}
	if want := "[9707,1879,151645,18611,220,432,594,220,16,17,18,19,20,51950]\n"; stdout != want {
		t.Errorf("qwen3 ids %s, reference %s", stdout, want)
	}

	// By models.lock entry name, from the repository.
	stdout, stderr, err = runTagpr(t, ".", nil, "tokenizer", "encode", "--tokenizer", "llama3-tokenizer", "Hello world")
	if err != nil || stdout != "[9906,1917]\n" {
		t.Errorf("encode by lock name: %q %v %s", stdout, err, stderr)
	}

	broken := filepath.Join(dir, "broken.json")
	os.WriteFile(broken, []byte(`{"model":{"type":"WordLevel","vocab":{}}}`), 0o644)
	_, stderr, err = runTagpr(t, dir, nil, "tokenizer", "encode", "--tokenizer", broken, "x")
	if err == nil || !strings.Contains(stderr, `unsupported model type "WordLevel"`) || !strings.Contains(stderr, broken) {
		t.Errorf("broken tokenizer: %v, stderr %q", err, stderr)
	}
}

// tokenizer train on a corpus with no text is refused naming the file and
// leaves no output folder behind (it created --out's folder first).
func TestTokenizerTrainEmptyCorpusLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "empty.txt"), []byte(" \n\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, err := runTagpr(t, dir, nil, "tokenizer", "train", "--corpus", "empty.txt", "--out", filepath.Join("new", "tokenizer.json"))
	if err == nil || !strings.Contains(stderr, "empty.txt") {
		t.Fatalf("empty corpus: %v %q; want a refusal naming the file", err, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "new")); !os.IsNotExist(err) {
		t.Errorf("a refused training left its output folder (%v)", err)
	}
}

// A training whose writing fails part way (here tokenizer_config.json's
// path is a folder; a full disk does the same) leaves no tokenizer.json,
// the file a rerun is refused over, and the rerun finishes without --force.
func TestTokenizerTrainFailedWriteLeavesNoTokenizer(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "corpus.txt"), []byte(strings.Repeat("the user likes short movie titles\n", 50)), 0o644); err != nil {
		t.Fatal(err)
	}
	blocker := filepath.Join(dir, "out", "tokenizer_config.json")
	if err := os.MkdirAll(filepath.Join(blocker, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	args := []string{"tokenizer", "train", "--corpus", "corpus.txt", "--vocab-size", "300", "--out", filepath.Join("out", "tokenizer.json")}
	if _, _, err := runTagpr(t, dir, nil, args...); err == nil {
		t.Fatal("tokenizer_config.json unwritable: no error")
	}
	if _, err := os.Stat(filepath.Join(dir, "out", "tokenizer.json")); !os.IsNotExist(err) {
		t.Errorf("tokenizer.json is there after a failed write (%v)", err)
	}
	os.RemoveAll(blocker)
	if _, stderr, err := runTagpr(t, dir, nil, args...); err != nil {
		t.Fatalf("rerun: %v\n%s", err, stderr)
	}
}
