package main

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/safetensors"
)

// copyCheckpoint copies a fixture checkpoint folder's files.
func copyCheckpoint(t *testing.T, name string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), name)
	if err := os.CopyFS(dst, os.DirFS(filepath.Join("..", "..", "onnx", "testdata", "hf", name))); err != nil {
		t.Fatal(err)
	}
	return dst
}

// `model export-hf` of a model holding a NaN exits non-zero naming the
// tensor and writes nothing; `model import-hf` of a checkpoint holding
// one is refused naming the tensor and the file.
func TestHFRefusesNonFiniteWeights(t *testing.T) {
	base := hfBase(t)
	path := filepath.Join(base, "model.onnx")
	m, err := ir.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range m.GetGraph().GetInitializer() {
		if in.GetName() == "model.layers.0.mlp.down_proj.weight" {
			binary.LittleEndian.PutUint32(in.RawData[4*2:], math.Float32bits(float32(math.NaN())))
		}
	}
	b, err := ir.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "hf")
	_, stderr, err := runTagpr(t, ".", nil, "model", "export-hf", base, "--out", out)
	if err == nil || !strings.Contains(stderr, "model.layers.0.mlp.down_proj.weight holds NaN at [2, 0]") || !strings.Contains(stderr, "no NaN or Inf") {
		t.Errorf("export-hf of a NaN weight: %v\n%s", err, stderr)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("export-hf wrote %s: %v", out, err)
	}

	ck := copyCheckpoint(t, "qwen2")
	st := filepath.Join(ck, "model.safetensors")
	f, err := safetensors.Open(st)
	if err != nil {
		t.Fatal(err)
	}
	e, _ := f.Entry("model.layers.1.mlp.up_proj.weight")
	f.Close()
	raw, _ := os.ReadFile(st)
	binary.LittleEndian.PutUint16(raw[8+int64(binary.LittleEndian.Uint64(raw))+e.DataOffsets[0]:], 0x7f80) // BF16 +Inf
	os.WriteFile(st, raw, 0o644)
	onnxOut := filepath.Join(t.TempDir(), "m")
	_, stderr, err = runTagpr(t, ".", nil, "model", "import-hf", ck, "--out", onnxOut)
	if err == nil || !strings.Contains(stderr, `tensor "model.layers.1.mlp.up_proj.weight" in `+st+" holds +Inf at [0, 0]") ||
		!strings.Contains(stderr, "the checkpoint is damaged or was saved after a diverged run") {
		t.Errorf("import-hf of an Inf weight: %v\n%s", err, stderr)
	}
	if _, err := os.Stat(filepath.Join(onnxOut, "model.onnx")); err == nil {
		t.Error("import-hf wrote model.onnx")
	}
}

// export-hf keeps an existing checkpoint unless --force, and with it
// removes what would be stale: an earlier sharded export's shards and
// index, an earlier LoRA export's adapter/.
func TestExportHFForce(t *testing.T) {
	base := hfBase(t)
	out := filepath.Join(t.TempDir(), "hf")
	if _, stderr, err := runTagpr(t, ".", nil, "model", "export-hf", base, "--out", out); err != nil {
		t.Fatalf("export-hf: %v\n%s", err, stderr)
	}
	before, _ := os.ReadFile(filepath.Join(out, "model.safetensors"))
	os.MkdirAll(filepath.Join(out, "adapter"), 0o755)
	for _, f := range []string{"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json", "adapter/adapter_config.json", "adapter/adapter_model.safetensors", "README.md"} {
		os.WriteFile(filepath.Join(out, f), []byte("stale"), 0o644)
	}
	_, stderr, err := runTagpr(t, ".", nil, "model", "export-hf", base, "--out", out)
	if err == nil || !strings.Contains(stderr, "already holds a checkpoint") || !strings.Contains(stderr, "--force") {
		t.Errorf("export-hf over a checkpoint: %v\n%s", err, stderr)
	}
	for _, f := range []string{"model-00001-of-00002.safetensors", "model.safetensors.index.json", "adapter/adapter_config.json"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("a refused export removed %s", f)
		}
	}
	if after, _ := os.ReadFile(filepath.Join(out, "model.safetensors")); string(after) != string(before) {
		t.Error("a refused export rewrote model.safetensors")
	}
	_, stderr, err = runTagpr(t, ".", nil, "model", "export-hf", base, "--out", out, "--force")
	if err != nil {
		t.Fatalf("export-hf --force: %v\n%s", err, stderr)
	}
	for _, f := range []string{"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json", "adapter"} {
		if _, err := os.Stat(filepath.Join(out, f)); err == nil {
			t.Errorf("export-hf --force left the stale %s", f)
		}
	}
	for _, f := range []string{"model.safetensors", "config.json", "README.md"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	if !strings.Contains(stderr, "removed") {
		t.Errorf("--force does not say what it removed:\n%s", stderr)
	}
	// What transformers would load is the model: tagpr imports it back.
	if _, stderr, err := runTagpr(t, ".", nil, "model", "import-hf", out, "--out", filepath.Join(t.TempDir(), "back")); err != nil {
		t.Errorf("import-hf of the replaced export: %v\n%s", err, stderr)
	}
}

// `train lm` reruns into the same OUT keep working: a LoRA run over a
// full one, then a full run over the LoRA one (its adapter goes); the
// LoRA adapter names the checkpoint import-hf read as its base.
func TestTrainLMRerunsReplaceCheckpoint(t *testing.T) {
	base := hfBase(t)
	data := idsData(t, 96)
	out := filepath.Join(t.TempDir(), "run")
	train := func(extra ...string) string {
		t.Helper()
		args := append([]string{"train", "lm", "--model", base, "--data", data, "--steps", "4", "--batch", "4", "--seq-len", "10", "--lr", "1e-2", "--out", out}, extra...)
		stdout, stderr, err := runTagpr(t, ".", nil, args...)
		if err != nil {
			t.Fatalf("train lm %v: %v\n%s", extra, err, stderr)
		}
		return stdout
	}
	train()
	stdout := train("--fresh", "--lora-rank", "4", "--lora-targets", "q_proj")
	src, _ := filepath.Abs("../../onnx/testdata/hf/qwen2")
	var cfg map[string]any
	b, err := os.ReadFile(filepath.Join(out, "adapter", "adapter_config.json"))
	if err != nil || json.Unmarshal(b, &cfg) != nil {
		t.Fatalf("adapter_config.json: %v", err)
	}
	if cfg["base_model_name_or_path"] != src {
		t.Errorf("base_model_name_or_path %v, want the imported checkpoint %s", cfg["base_model_name_or_path"], src)
	}
	if !strings.Contains(stdout, "base_model_name_or_path "+src) {
		t.Errorf("train lm does not say the adapter's base:\n%s", stdout)
	}
	train("--fresh")
	if _, err := os.Stat(filepath.Join(out, "adapter")); err == nil {
		t.Error("a full run left the earlier LoRA run's adapter/")
	}
	if _, err := os.Stat(filepath.Join(out, "model.safetensors")); err != nil {
		t.Error(err)
	}
}

// Without the original checkpoint, the LoRA run says how to load its
// adapter.
func TestTrainLMAdapterWithoutCheckpoint(t *testing.T) {
	ck := copyCheckpoint(t, "qwen2")
	base := filepath.Join(t.TempDir(), "base")
	if _, stderr, err := runTagpr(t, ".", nil, "model", "import-hf", ck, "--out", base); err != nil {
		t.Fatalf("import-hf: %v\n%s", err, stderr)
	}
	os.Remove(filepath.Join(ck, "model.safetensors"))
	out := filepath.Join(t.TempDir(), "run")
	stdout, stderr, err := runTagpr(t, ".", nil, "train", "lm", "--model", base, "--data", idsData(t, 96), "--steps", "2", "--batch", "4",
		"--seq-len", "10", "--out", out, "--lora-rank", "2", "--lora-targets", "q_proj")
	if err != nil {
		t.Fatalf("train lm: %v\n%s", err, stderr)
	}
	if !strings.Contains(stdout, "PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(CKPT)") {
		t.Errorf("train lm does not say how to load the adapter:\n%s", stdout)
	}
}

// serve and generate name a missing model folder as missing, not as one
// without a tokenizer.
func TestServeGenerateMissingModel(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nonexist")
	for _, args := range [][]string{{"serve", "--model", missing}, {"model", "generate", missing, "--chat", "hi"}, {"model", "generate", missing, "--prompt", "hi"}} {
		_, stderr, err := runTagpr(t, ".", nil, args...)
		if err == nil || !strings.Contains(stderr, "stat "+missing+": no such file or directory") || strings.Contains(stderr, "tokenizer.json") {
			t.Errorf("%v: %v\n%s", args, err, stderr)
		}
	}
}

// import-hf of a checkpoint without tokenizer.json says that text
// generation and serving will need one.
func TestImportHFNotesMissingTokenizer(t *testing.T) {
	src, _ := filepath.Abs("../../onnx/testdata/hf/qwen3")
	_, stderr, err := runTagpr(t, ".", nil, "model", "import-hf", src, "--out", filepath.Join(t.TempDir(), "m"))
	if err != nil {
		t.Fatalf("import-hf: %v\n%s", err, stderr)
	}
	if !strings.Contains(stderr, "has no tokenizer.json") || !strings.Contains(stderr, "tagpr serve") {
		t.Errorf("no note on the missing tokenizer:\n%s", stderr)
	}
	// A checkpoint with sentencepiece's tokenizer.model only (Llama 2 and
	// Mistral repositories that ship the slow tokenizer's file): the note
	// says how to write the tokenizer.json.
	sp := t.TempDir()
	shards, _ := filepath.Glob(filepath.Join(src, "model*.safetensors*"))
	for _, f := range append(shards, filepath.Join(src, "config.json")) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(sp, filepath.Base(f)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(sp, "tokenizer.model"), []byte("\x0a\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, err = runTagpr(t, ".", nil, "model", "import-hf", sp, "--out", filepath.Join(t.TempDir(), "m"))
	if err != nil || !strings.Contains(stderr, "tokenizer.model") || !strings.Contains(stderr, "save_pretrained") {
		t.Errorf("import of a checkpoint with only tokenizer.model: %v; want a note with the conversion:\n%s", err, stderr)
	}
}
