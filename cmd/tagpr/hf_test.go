package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/onnx/hf"
	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/safetensors"
)

// hfBase imports the tied Qwen2 fixture with the binary and gives it a
// tokenizer config with a chat template (the files are only copied).
func hfBase(t *testing.T) string {
	t.Helper()
	base := filepath.Join(t.TempDir(), "base")
	src, _ := filepath.Abs("../../onnx/testdata/hf/qwen2")
	if _, stderr, err := runTagpr(t, ".", nil, "model", "import-hf", src, "--out", base); err != nil {
		t.Fatalf("import-hf: %v\n%s", err, stderr)
	}
	os.WriteFile(filepath.Join(base, "tokenizer_config.json"), []byte(`{"chat_template": "{% for m in messages %}{{ m.content }}{% endfor %}", "eos_token": "<e>"}`), 0o644)
	os.WriteFile(filepath.Join(base, "chat_template.jinja"), []byte("{% for m in messages %}{{ m.content }}{% endfor %}"), 0o644)
	return base
}

func idsData(t *testing.T, vocab int) string {
	t.Helper()
	data := filepath.Join(t.TempDir(), "ids.jsonl")
	var rows []map[string]any
	for i := 0; i < 8; i++ {
		row := make([]int, 10)
		for j := range row {
			row[j] = 3 + (i*17+j*j*5+j)%(vocab-3)
		}
		rows = append(rows, map[string]any{"input_ids": row})
	}
	writeTrainJSONL(t, data, rows)
	return data
}

// maxLogitDiff loads two models and compares their logits on a left-padded batch.
func maxLogitDiff(t *testing.T, a, b string) float64 {
	t.Helper()
	ma, err := lm.Load(a, lm.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer ma.Close()
	mb, err := lm.Load(b, lm.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	prompts := [][]int64{{5, 17, 33, 80, 12, 9, 44}, {60, 7, 21}}
	la, pad, err := ma.Forward(context.Background(), prompts, 0)
	if err != nil {
		t.Fatal(err)
	}
	lb, _, err := mb.Forward(context.Background(), prompts, 0)
	if err != nil {
		t.Fatal(err)
	}
	T, V := 7, ma.Layout.Vocab
	worst := 0.0
	for r := range prompts {
		for j := pad[r]; j < T; j++ {
			for v := 0; v < V; v++ {
				worst = math.Max(worst, math.Abs(float64(la[(r*T+j)*V+v]-lb[(r*T+j)*V+v])))
			}
		}
	}
	return worst
}

// A `train lm` run leaves a Hugging Face checkpoint beside model.onnx (and a
// LoRA run its PEFT adapter); tagpr's own importer loads that checkpoint
// back to a model computing the trained model.onnx's logits.
func TestTrainLMWritesHFCheckpoint(t *testing.T) {
	base := hfBase(t)
	data := idsData(t, 96)
	for _, lora := range []bool{false, true} {
		out := filepath.Join(t.TempDir(), "run")
		args := []string{"train", "lm", "--model", base, "--data", data, "--steps", "8", "--batch", "4", "--seq-len", "10", "--lr", "1e-2", "--out", out}
		if lora {
			args = append(args, "--lora-rank", "4", "--lora-targets", "q_proj,down_proj")
		}
		stdout, stderr, err := runTagpr(t, ".", nil, args...)
		if err != nil {
			t.Fatalf("train lm (lora %v): %v\n%s", lora, err, stderr)
		}
		for _, f := range []string{"model.onnx", "model.safetensors", "config.json", "generation_config.json", "tokenizer_config.json", "chat_template.jinja"} {
			if _, err := os.Stat(filepath.Join(out, f)); err != nil {
				t.Errorf("lora %v: %s not written: %v", lora, f, err)
			}
		}
		if !strings.Contains(stderr, "lm_head.weight is tied to model.embed_tokens.weight") {
			t.Errorf("the tie is not reported:\n%s", stderr)
		}
		if lora {
			for _, want := range []string{"--lora-targets q_proj → 2: model.layers.0.self_attn.q_proj, model.layers.1.self_attn.q_proj",
				"--lora-targets down_proj → 2: model.layers.0.mlp.down_proj, model.layers.1.mlp.down_proj"} {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr does not say %q:\n%s", want, stderr)
				}
			}
			var cfg map[string]any
			b, err := os.ReadFile(filepath.Join(out, "adapter", "adapter_config.json"))
			if err != nil || json.Unmarshal(b, &cfg) != nil {
				t.Fatalf("adapter_config.json: %v", err)
			}
			if tm, _ := json.Marshal(cfg["target_modules"]); string(tm) != `["down_proj","q_proj"]` || cfg["r"] != 4.0 {
				t.Errorf("adapter_config %v", cfg)
			}
		}
		back := filepath.Join(t.TempDir(), "back")
		if _, stderr, err := runTagpr(t, ".", nil, "model", "import-hf", out, "--out", back); err != nil {
			t.Fatalf("import-hf of the run: %v\n%s", err, stderr)
		}
		d := maxLogitDiff(t, out, back)
		moved := maxLogitDiff(t, base, out)
		t.Logf("lora %v: re-imported checkpoint vs trained model.onnx: max |Δ logits| %.2g (training moved them by %.2g)\n%s", lora, d, moved, stdout)
		if d > 1e-5 || moved < 1e-3 {
			t.Errorf("lora %v: re-imported vs trained %.3g (want ≤ 1e-5); trained vs base %.3g", lora, d, moved)
		}
	}
}

// GPT-2's tied wte (stored twice by the exporter) stays one weight through
// `train lm`: one tensor in the checkpoint, none named by the exporter's
// numbering, the head still reading wte in model.onnx and left to
// tie_word_embeddings in model.safetensors.
func TestTrainLMKeepsTiedWeightsTied(t *testing.T) {
	model, _ := filepath.Abs("../../onnx/testdata/pytorch/gpt2")
	out := filepath.Join(t.TempDir(), "run")
	if _, stderr, err := runTagpr(t, ".", nil, "train", "lm", "--model", model, "--data", idsData(t, 96), "--steps", "6",
		"--out", out, "--batch", "4", "--seq-len", "8", "--lr", "1e-2"); err != nil {
		t.Fatalf("train lm: %v\n%s", err, stderr)
	}
	latest, _ := os.ReadFile(filepath.Join(out, "checkpoint", "LATEST"))
	ck, err := safetensors.Open(filepath.Join(out, "checkpoint", strings.TrimSpace(string(latest)), "weights.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	names := ck.Names()
	if len(names) != 28 || !strings.Contains(strings.Join(names, " "), "transformer.wte.weight") || strings.Contains(strings.Join(names, " "), "onnx::") {
		t.Errorf("checkpoint weights: %v", names)
	}
	m, err := ir.Load(filepath.Join(out, "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	hn, err := lm.MapHFNames(m)
	if err != nil {
		t.Fatal(err)
	}
	if hn.Tied["lm_head.weight"] != "transformer.wte.weight" || len(hn.Copies) != 0 {
		t.Errorf("trained model: tied %v, copies %v", hn.Tied, hn.Copies)
	}
	st, err := safetensors.Open(filepath.Join(out, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, ok := st.Entry("lm_head.weight"); ok || len(st.Names()) != 28 {
		t.Errorf("model.safetensors: %v", st.Names())
	}
	var cfg map[string]any
	b, _ := os.ReadFile(filepath.Join(out, "config.json"))
	json.Unmarshal(b, &cfg)
	if cfg["tie_word_embeddings"] != true {
		t.Errorf("config.json tie_word_embeddings %v", cfg["tie_word_embeddings"])
	}
}

func TestModelHFCommands(t *testing.T) {
	base := hfBase(t)
	// Overwriting needs --force.
	src, _ := filepath.Abs("../../onnx/testdata/hf/qwen2")
	if _, stderr, err := runTagpr(t, ".", nil, "model", "import-hf", src, "--out", base); err == nil || !strings.Contains(stderr, "--force") {
		t.Errorf("import-hf over an existing model: %v\n%s", err, stderr)
	}
	out := filepath.Join(t.TempDir(), "hf")
	stdout, stderr, err := runTagpr(t, ".", nil, "model", "export-hf", base, "--out", out)
	if err != nil {
		t.Fatalf("export-hf: %v\n%s", err, stderr)
	}
	for _, f := range []string{"model.safetensors", "config.json", "generation_config.json", "tokenizer_config.json", "chat_template.jinja"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("%s missing: %v", f, err)
		}
	}
	t.Log(stdout)
	// A run that has not finished has nothing to export yet.
	run := filepath.Join(t.TempDir(), "run")
	os.MkdirAll(filepath.Join(run, "checkpoint"), 0o755)
	os.WriteFile(filepath.Join(run, "checkpoint", "run.json"), []byte("{}"), 0o644)
	if _, stderr, err := runTagpr(t, ".", nil, "model", "export-hf", run, "--out", out); err == nil || !strings.Contains(stderr, "has not finished") {
		t.Errorf("export-hf of an unfinished run: %v\n%s", err, stderr)
	}
	// A built-in gpt2 has no transformers names: refused, saying why.
	g := filepath.Join(t.TempDir(), "g")
	if _, stderr, err := runTagpr(t, ".", nil, "model", "init", "--arch", "gpt2", "--layers", "1", "--d-model", "16", "--heads", "2", "--vocab", "32", "--out", g); err != nil {
		t.Fatalf("init: %v\n%s", err, stderr)
	}
	if _, stderr, err := runTagpr(t, ".", nil, "model", "export-hf", g, "--out", out); err == nil || !strings.Contains(stderr, "built-in gpt2") {
		t.Errorf("export-hf of a built-in gpt2: %v\n%s", err, stderr)
	}
	// A refused config field is named.
	bad := t.TempDir()
	for _, f := range []string{"config.json", "model.safetensors"} {
		b, _ := os.ReadFile(filepath.Join(src, f))
		if f == "config.json" {
			b = []byte(strings.Replace(string(b), `"rope_scaling": null`, `"rope_scaling": {"rope_type": "llama3", "factor": 8}`, 1))
		}
		os.WriteFile(filepath.Join(bad, f), b, 0o644)
	}
	if _, stderr, err := runTagpr(t, ".", nil, "model", "import-hf", bad, "--out", filepath.Join(t.TempDir(), "x")); err == nil || !strings.Contains(stderr, `rotary scaling of type "llama3" is not supported`) {
		t.Errorf("import-hf with rope_scaling llama3: %v\n%s", err, stderr)
	}
}

// `train lm --fresh` discards what an earlier run exported to OUT: a fresh
// run that fails (here a file-size limit stops its first write; a full
// disk does the same) leaves no model of the earlier settings beside its
// own checkpoints, to be taken for its result by export-hf or predict.
func TestTrainLMFreshDiscardsEarlierModel(t *testing.T) {
	base := hfBase(t)
	data := idsData(t, 96)
	out := filepath.Join(t.TempDir(), "run")
	args := []string{"train", "lm", "--model", base, "--data", data, "--steps", "2", "--batch", "4", "--seq-len", "10", "--out", out}
	if _, stderr, err := runTagpr(t, ".", nil, args...); err != nil {
		t.Fatalf("train lm: %v\n%s", err, stderr)
	}
	cmd := exec.Command("sh", append([]string{"-c", `ulimit -f 1; exec "$@"`, "sh", tagprBin}, append(args, "--fresh", "--lr", "1e-2")...)...)
	if b, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(b), "file too large") {
		t.Fatalf("train lm --fresh under a 512-byte file limit: %v\n%s", err, b)
	}
	for _, f := range []string{"model.onnx", "model.safetensors"} {
		if _, err := os.Stat(filepath.Join(out, f)); !os.IsNotExist(err) {
			t.Errorf("the earlier run's %s is there after a failed --fresh run (%v)", f, err)
		}
	}
	if _, _, err := runTagpr(t, ".", nil, "model", "export-hf", out, "--out", filepath.Join(t.TempDir(), "hf")); err == nil {
		t.Error("export-hf of the unfinished fresh run exported a model")
	}
}

// TestImportHFProgress: without a terminal, an import under 1 GiB (converted
// in memory, which reported nothing) logs its progress in MiB, ending at
// its total once.
func TestImportHFProgress(t *testing.T) {
	src := t.TempDir()
	rc := hf.RandomCheckpoint{Layers: 2, Hidden: 128, Heads: 4, KVHeads: 2, Intermediate: 256, Vocab: 4096, MaxPositions: 64, DType: "BF16", Seed: 3}
	if err := rc.Write(src); err != nil {
		t.Fatal(err)
	}
	_, stderr, err := runTagpr(t, ".", nil, "model", "import-hf", src, "--out", filepath.Join(t.TempDir(), "m"))
	if err != nil {
		t.Fatalf("import-hf: %v\n%s", err, stderr)
	}
	mib := rc.Params() * 4 >> 20
	if n := strings.Count(stderr, fmt.Sprintf(`"msg":"import (MiB)","done":%d,"total":%d,`, mib, mib)); n != 1 {
		t.Fatalf("logged the end %d times, want once:\n%s", n, stderr)
	}
}

// TestTiedNote: export-hf's line printed Go's map syntax, "tied map[]" for
// a model without ties; it says which weight was left out, tied to which.
func TestTiedNote(t *testing.T) {
	if got := tiedNote(nil); got != "" {
		t.Errorf("no ties: %q, want nothing", got)
	}
	got := tiedNote(map[string]string{"lm_head.weight": "model.embed_tokens.weight"})
	if got != "; lm_head.weight left out, tied to model.embed_tokens.weight" {
		t.Errorf("tied head: %q", got)
	}
}
