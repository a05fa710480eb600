// Command record runs the JS reference tokenizer (scripts/tokenize/reference.js
// on the @lenml/tokenizers bundle pinned in models.lock) over the parity
// corpus and writes the fixtures that tokenize's parity tests compare with:
//
//	go run ./tokenize/internal/record            # from the repository root, after `make setup`
//
// It also trains a small tokenizer with tagpr's trainer and records the
// reference ids for it (testdata/trained/).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/tagpr/tagpr/onnx/lock"
	"github.com/tagpr/tagpr/tokenize"
	"github.com/tagpr/tagpr/tokenize/internal/corpus"
)

func main() {
	only := flag.String("only", "", "record just this tokenizer (qwen3, llama3, bert, trained)")
	corpusOut := flag.String("corpus-out", "", "only write the trainer's corpus as JSON to this file (for scripts/tokenize/hf_train.py)")
	parityOut := flag.String("parity-corpus-out", "", "only write the parity corpus as JSON to this file")
	bertOut := flag.String("bert-out", "", "only write the BERT tokenizer.json and tokenizer_config.json into this directory")
	flag.Parse()
	if *parityOut != "" || *bertOut != "" {
		if err := writeExtras(*parityOut, *bertOut); err != nil {
			fmt.Fprintln(os.Stderr, "record:", err)
			os.Exit(1)
		}
		return
	}
	if *corpusOut != "" {
		if err := writeCorpus(*corpusOut, trainCorpus()); err != nil {
			fmt.Fprintln(os.Stderr, "record:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*only); err != nil {
		fmt.Fprintln(os.Stderr, "record:", err)
		os.Exit(1)
	}
}

func pinned(f *lock.File, name string) (string, error) {
	e, ok := f.Lookup(name)
	if !ok {
		return "", fmt.Errorf("%s has no entry %q", f.Path, name)
	}
	if err := f.Verify(e); err != nil {
		return "", fmt.Errorf("%s: %w (run `make setup`)", name, err)
	}
	return f.Abs(e), nil
}

func run(only string) error {
	lp, err := lock.Find(".")
	if err != nil {
		return err
	}
	f, err := lock.Load(lp)
	if err != nil {
		return err
	}
	root := f.Dir()
	lib, err := pinned(f, "tokenizer-reference-js")
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "tagpr-record-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	corpusPath := filepath.Join(tmp, "corpus.json")
	if err := writeCorpus(corpusPath, corpus.Parity()); err != nil {
		return err
	}
	type target struct{ name, tokenizer, config string }
	var targets []target
	for _, n := range []string{"qwen3", "llama3", "gpt4o", "claude"} {
		tj, err := pinned(f, n+"-tokenizer")
		if err != nil {
			return err
		}
		cj, err := pinned(f, n+"-tokenizer-config")
		if err != nil {
			return err
		}
		targets = append(targets, target{n, tj, cj})
	}
	bertJSON, bertCfg, err := writeBert(f, tmp)
	if err != nil {
		return err
	}
	targets = append(targets, target{"bert", bertJSON, bertCfg})

	// The trainer's evidence: a tokenizer trained by tagpr on a training
	// corpus, encoded by the reference on the parity corpus.
	trainedDir := filepath.Join(root, "tokenize", "testdata", "trained")
	if only == "" || only == "trained" {
		if err := os.MkdirAll(trainedDir, 0o755); err != nil {
			return err
		}
		tok, err := tokenize.Train(tokenize.TrainOptions{
			Corpus:        trainCorpus(),
			VocabSize:     2048,
			SpecialTokens: []string{"<|endoftext|>", "<|im_start|>", "<|im_end|>"},
		})
		if err != nil {
			return err
		}
		if err := tok.Save(filepath.Join(trainedDir, "tokenizer.json")); err != nil {
			return err
		}
		if err := tok.SaveConfig(filepath.Join(trainedDir, "tokenizer_config.json")); err != nil {
			return err
		}
	}
	targets = append(targets, target{"trained", filepath.Join(trainedDir, "tokenizer.json"), ""})

	for _, t := range targets {
		if only != "" && only != t.name {
			continue
		}
		out := filepath.Join(root, "tokenize", "testdata", "parity_"+t.name+".json.gz")
		args := []string{filepath.Join(root, "scripts", "tokenize", "reference.js"), "record",
			"--lib", lib, "--tokenizer", t.tokenizer, "--corpus", corpusPath, "--out", out, "--name", t.name}
		if t.config != "" {
			args = append(args, "--config", t.config)
		}
		cmd := exec.Command("node", args...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("node reference for %s: %w", t.name, err)
		}
	}
	return nil
}

// trainCorpus is what testdata/trained/tokenizer.json is trained on.
func trainCorpus() []string { return corpus.Docs(48, 16<<10) }

func writeCorpus(path string, docs []string) error {
	b, err := json.Marshal(map[string]any{"version": corpus.Version, "docs": docs})
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// writeBert builds the BERT tokenizer.json from the pinned vocabulary.
func writeBert(f *lock.File, dir string) (string, string, error) {
	vp, err := pinned(f, "bert-uncased-vocab")
	if err != nil {
		return "", "", err
	}
	raw, err := os.ReadFile(vp)
	if err != nil {
		return "", "", err
	}
	var vocab []string
	if err := json.Unmarshal(raw, &vocab); err != nil {
		return "", "", fmt.Errorf("%s: %w", vp, err)
	}
	tj, err := corpus.BertTokenizerJSON(corpus.BertVocabFromMarked(vocab))
	if err != nil {
		return "", "", err
	}
	tp, cp := filepath.Join(dir, "bert-tokenizer.json"), filepath.Join(dir, "bert-tokenizer_config.json")
	if err := os.WriteFile(tp, tj, 0o644); err != nil {
		return "", "", err
	}
	return tp, cp, os.WriteFile(cp, corpus.BertTokenizerConfigJSON(), 0o644)
}

func writeExtras(parityOut, bertOut string) error {
	if parityOut != "" {
		if err := writeCorpus(parityOut, corpus.Parity()); err != nil {
			return err
		}
	}
	if bertOut == "" {
		return nil
	}
	lp, err := lock.Find(".")
	if err != nil {
		return err
	}
	f, err := lock.Load(lp)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(bertOut, 0o755); err != nil {
		return err
	}
	_, _, err = writeBert(f, bertOut)
	return err
}
