package tokenize_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/tagpr/tagpr/tokenize"
	"github.com/tagpr/tagpr/tokenize/internal/corpus"
)

// benchCorpus is 1.3 MB of the parity corpus: enough for stable MB/s, short
// enough that the JS reference finishes in seconds.
func benchCorpus() []string { return corpus.Docs(80, 16<<10) }

// jsReferenceMBps runs scripts/tokenize/reference.js bench on the same
// documents and tokenizer and returns its single-threaded MB/s.
func jsReferenceMBps(b *testing.B, tokenizerPath, configPath string, docs []string) float64 {
	b.Helper()
	dir := b.TempDir()
	cp := filepath.Join(dir, "corpus.json")
	raw, err := json.Marshal(map[string]any{"version": corpus.Version, "docs": docs})
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(cp, raw, 0o644); err != nil {
		b.Fatal(err)
	}
	args := []string{filepath.Join("..", "scripts", "tokenize", "reference.js"), "bench",
		"--lib", pinnedPath(b, "tokenizer-reference-js"), "--tokenizer", tokenizerPath, "--corpus", cp, "--min-seconds", "4"}
	if configPath != "" {
		args = append(args, "--config", configPath)
	}
	out, err := exec.Command("node", args...).Output()
	if err != nil {
		b.Fatalf("node reference bench: %v", err)
	}
	var r struct {
		MBps float64 `json:"mb_per_s"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		b.Fatalf("node reference bench output %q: %v", out, err)
	}
	return r.MBps
}

// goMBps encodes docs repeatedly for at least minDur on one goroutine.
func goMBps(tok *tokenize.Tokenizer, docs []string, minDur time.Duration) float64 {
	bytes := 0
	for _, d := range docs {
		bytes += len(d)
	}
	for _, d := range docs[:8] {
		tok.Encode(d) // warm the merge cache, as the JS run warms its JIT
	}
	total := 0
	start := time.Now()
	for time.Since(start) < minDur {
		for _, d := range docs {
			tok.Encode(d)
		}
		total += bytes
	}
	return float64(total) / 1e6 / time.Since(start).Seconds()
}

// batchMBps encodes docs with EncodeBatch on all cores.
func batchMBps(tok *tokenize.Tokenizer, docs []string, minDur time.Duration) float64 {
	bytes := 0
	for _, d := range docs {
		bytes += len(d)
	}
	total := 0
	start := time.Now()
	for time.Since(start) < minDur {
		tok.EncodeBatch(docs)
		total += bytes
	}
	return float64(total) / 1e6 / time.Since(start).Seconds()
}

// BenchmarkEncode reports encode MB/s for Qwen3, Llama-3 (hand-written
// split) and GPT-4o (split regex through regexp2): tagpr single
// threaded, tagpr batched on all cores, and the JS reference (node,
// single-threaded) on the same documents in the same run, with the ratios.
func BenchmarkEncode(b *testing.B) {
	docs := benchCorpus()
	for _, name := range []string{"qwen3", "llama3", "gpt4o"} {
		b.Run(name, func(b *testing.B) {
			tok := pinnedTokenizer(b, name)
			ref := jsReferenceMBps(b, pinnedPath(b, name+"-tokenizer"), pinnedPath(b, name+"-tokenizer-config"), docs)
			var single, batch float64
			for i := 0; i < b.N; i++ {
				single = goMBps(tok, docs, 3*time.Second)
				batch = batchMBps(tok, docs, 3*time.Second)
			}
			b.ReportMetric(single, "MB/s")
			b.ReportMetric(batch, "MB/s_batch")
			b.ReportMetric(ref, "MB/s_js_ref")
			b.ReportMetric(single/ref, "x_vs_ref")
			b.ReportMetric(sugarmeMBps(b, tok, docs[:16], 2*time.Second), "MB/s_sugarme_pipeline")
			b.ReportMetric(batch/ref, "x_batch_vs_ref")
			fmt.Printf("bench: tokenize_encode_%s_threads %d count\n", name, runtime.GOMAXPROCS(0))
		})
	}
}

// BenchmarkEncodeSentencepiece reports single-threaded encode MB/s for the
// sentencepiece fixtures (Llama 2's legacy BPE shape and XLM-R's Unigram
// with its Precompiled normalizer) against Hugging Face tokenizers (Rust,
// through scripts/bench/hf_tokenize_peer.py with $TAGPR_ORT_PYTHON) on the
// same documents in the same run.
func BenchmarkEncodeSentencepiece(b *testing.B) {
	docs := benchCorpus()
	for _, name := range []string{"sp-legacy", "sp-unigram"} {
		b.Run(name, func(b *testing.B) {
			tok := pinnedTokenizer(b, name)
			ref, err := hfPeerMBps(b, tok.Path(), docs)
			var single float64
			for i := 0; i < b.N; i++ {
				single = goMBps(tok, docs, 3*time.Second)
			}
			b.ReportMetric(single, "MB/s")
			if err != nil {
				fmt.Printf("note: no HF tokenizers peer for %s (%v); set TAGPR_ORT_PYTHON to a Python with tokenizers\n", name, err)
				return
			}
			b.ReportMetric(ref, "MB/s_hf")
			b.ReportMetric(single/ref, "x_vs_hf")
		})
	}
}

// hfPeerMBps runs scripts/bench/hf_tokenize_peer.py on docs.
func hfPeerMBps(b *testing.B, tokenizerPath string, docs []string) (float64, error) {
	b.Helper()
	python := os.Getenv("TAGPR_ORT_PYTHON")
	if python == "" {
		python = "python3"
	}
	cp := filepath.Join(b.TempDir(), "corpus.json")
	raw, err := json.Marshal(map[string]any{"docs": docs})
	if err != nil {
		return 0, err
	}
	if err := os.WriteFile(cp, raw, 0o644); err != nil {
		return 0, err
	}
	out, err := exec.Command(python, filepath.Join("..", "scripts", "bench", "hf_tokenize_peer.py"),
		"--tokenizer", tokenizerPath, "--corpus", cp, "--min-seconds", "3").Output()
	if err != nil {
		return 0, err
	}
	var r struct {
		MBps float64 `json:"mb_per_s"`
	}
	if err := json.Unmarshal(out, &r); err != nil || r.MBps <= 0 {
		return 0, fmt.Errorf("peer output %q: %v", out, err)
	}
	return r.MBps, nil
}

// sugarmeMBps measures the same components inside sugarme/tokenizer's
// pipeline (SugarmePipeline), single-threaded.
func sugarmeMBps(b *testing.B, tok *tokenize.Tokenizer, docs []string, minDur time.Duration) float64 {
	p := tok.SugarmePipeline()
	bytes, total := 0, 0
	for _, d := range docs {
		bytes += len(d)
	}
	start := time.Now()
	for time.Since(start) < minDur {
		for _, d := range docs {
			if _, err := p.Encode(d); err != nil {
				b.Fatal(err)
			}
		}
		total += bytes
	}
	return float64(total) / 1e6 / time.Since(start).Seconds()
}
