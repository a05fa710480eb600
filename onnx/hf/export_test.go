package hf

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/safetensors"
	"github.com/tagpr/tagpr/onnx/train"
)

// readAll reads every tensor of a checkpoint folder as float32.
func readAll(t *testing.T, dir string) map[string][]float32 {
	t.Helper()
	ck, err := OpenCheckpoint(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	out := map[string][]float32{}
	for _, n := range ck.Names() {
		f, _, _ := ck.Lookup(n)
		v, err := f.Float32s(n)
		if err != nil {
			t.Fatal(err)
		}
		out[n] = v
	}
	return out
}

func readJSON(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// Import then export gives back the checkpoint: the same tensor names,
// the same values (widened to float32), the same tie.
func TestExportRoundTrip(t *testing.T) {
	for _, name := range []string{"qwen2", "qwen3", "qwen3-tied", "mistral"} {
		t.Run(name, func(t *testing.T) {
			src := filepath.Join(fixtures, name)
			onnxDir, hfDir := t.TempDir(), t.TempDir()
			if _, err := Import(src, onnxDir, ImportOptions{}); err != nil {
				t.Fatal(err)
			}
			m, err := ir.Load(filepath.Join(onnxDir, "model.onnx"))
			if err != nil {
				t.Fatal(err)
			}
			res, err := Export(m, hfDir, ExportOptions{From: onnxDir})
			if err != nil {
				t.Fatal(err)
			}
			want, got := readAll(t, src), readAll(t, hfDir)
			if strings.Join(sortedNames(want), " ") != strings.Join(sortedNames(got), " ") {
				t.Fatalf("exported tensors\n%v\nthe checkpoint's\n%v", sortedNames(got), sortedNames(want))
			}
			for k, w := range want {
				for i := range w {
					if got[k][i] != w[i] {
						t.Fatalf("%s[%d] = %v, the checkpoint has %v", k, i, got[k][i], w[i])
					}
				}
			}
			a, b := readJSON(t, filepath.Join(src, "config.json")), readJSON(t, filepath.Join(hfDir, "config.json"))
			if a["tie_word_embeddings"] != b["tie_word_embeddings"] || b["dtype"] != "float32" {
				t.Errorf("config: tie %v → %v, dtype %v", a["tie_word_embeddings"], b["tie_word_embeddings"], b["dtype"])
			}
			t.Logf("%d tensors, tied %v, copied %v", res.Tensors, res.Tied, res.Copied)
		})
	}
}

func sortedNames(m map[string][]float32) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Optimum's exports (numbered initializers, GPT-2's tied head stored
// twice) export to exactly PyTorch's parameters.
func TestExportOptimumFixtures(t *testing.T) {
	for _, name := range []string{"gpt2", "llama"} {
		t.Run(name, func(t *testing.T) {
			src := filepath.Join("..", "testdata", "pytorch", name)
			m, err := ir.Load(filepath.Join(src, "model.onnx"))
			if err != nil {
				t.Fatal(err)
			}
			out := t.TempDir()
			if _, err := Export(m, out, ExportOptions{From: src}); err != nil {
				t.Fatal(err)
			}
			torch, _, err := train.ReadSafetensors(filepath.Join(src, "params.safetensors"))
			if err != nil {
				t.Fatal(err)
			}
			got := readAll(t, out)
			if len(got) != len(torch) {
				t.Fatalf("%d tensors exported, PyTorch has %d", len(got), len(torch))
			}
			for k, w := range torch {
				for i := range w.F32 {
					if got[k][i] != w.F32[i] {
						t.Fatalf("%s[%d] = %v, PyTorch %v", k, i, got[k][i], w.F32[i])
					}
				}
			}
			if tie := readJSON(t, filepath.Join(out, "config.json"))["tie_word_embeddings"]; tie != (name == "gpt2") {
				t.Errorf("tie_word_embeddings %v", tie)
			}
		})
	}
}

// An Optimum export stores tensors with equal values once (the Qwen2
// fixture's zero v/k biases and unit norms share initializers): the export
// still writes every parameter Qwen2ForCausalLM has under its own name, so
// from_pretrained initializes none anew (it did for three before), and the
// checkpoint imports back to a model with the same logits.
func TestExportWritesSharedInitializersUnderEachName(t *testing.T) {
	src := filepath.Join("..", "testdata", "pytorch", "qwen2-chat")
	m, err := ir.Load(filepath.Join(src, "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	names, err := lm.MapHFNames(m)
	if err != nil {
		t.Fatal(err)
	}
	if len(names.Tied) == 0 {
		t.Fatal("the fixture shares no initializer between parameters: the test needs one that does")
	}
	out := t.TempDir()
	if _, err := Export(m, out, ExportOptions{From: src}); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, out)
	want := []string{"lm_head.weight", "model.embed_tokens.weight", "model.norm.weight"}
	for _, leaf := range []string{"input_layernorm.weight", "post_attention_layernorm.weight", "self_attn.q_proj.weight", "self_attn.q_proj.bias",
		"self_attn.k_proj.weight", "self_attn.k_proj.bias", "self_attn.v_proj.weight", "self_attn.v_proj.bias", "self_attn.o_proj.weight",
		"mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight"} {
		want = append(want, "model.layers.0."+leaf)
	}
	if len(got) != len(want) {
		t.Errorf("%d tensors exported, Qwen2ForCausalLM (1 layer, untied) has %d", len(got), len(want))
	}
	for _, n := range want {
		if _, ok := got[n]; !ok {
			t.Errorf("%s is not in the checkpoint (tied in the ONNX graph: %v)", n, names.Tied)
		}
	}
	for name, to := range names.Tied {
		if a, b := got[name], got[to]; len(a) == 0 || len(a) != len(b) || a[0] != b[0] || a[len(a)-1] != b[len(b)-1] {
			t.Errorf("%s does not hold %s's values", name, to)
		}
	}
	back := t.TempDir()
	if _, err := Import(out, back, ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	logits := func(path string) []float32 {
		lmm, err := lm.Load(path, lm.LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer lmm.Close()
		l, _, err := lmm.Forward(context.Background(), [][]int64{{1, 5, 9, 14, 3}}, 0)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	a, b := logits(src), logits(back)
	var worst float64
	for i := range a {
		worst = math.Max(worst, math.Abs(float64(a[i]-b[i])))
	}
	if worst > 1e-5 {
		t.Errorf("the re-imported export's logits differ from the model's by %.3g", worst)
	}
}

// A LoRA run's adapters in PEFT's layout: merging them by PEFT's rule
// (W + α/r·B·A) gives the merged weights tagpr exports.
func TestExportAdapters(t *testing.T) {
	src := filepath.Join(fixtures, "qwen2")
	onnxDir := t.TempDir()
	if _, err := Import(src, onnxDir, ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	base, err := ir.Load(filepath.Join(onnxDir, "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	ref := readReference(t, src)
	tg, ads, err := train.BuildLMTraining(base, train.LMTraining{Batch: 2, SeqLen: 7, LoRA: &train.LoRA{Rank: 4, Alpha: 8, Targets: []string{"q_proj", "v_proj", "down_proj"}, Seed: 1}})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := train.NewTrainer(tg, train.TrainerOptions{Schedule: train.Schedule{Peak: 5e-2}})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	vals, err := train.NewLMBatch(ref.prompts(), 7, 0, nil).Values(tg)
	if err != nil {
		t.Fatal(err)
	}
	for range 4 {
		if _, err := tr.Step(vals); err != nil {
			t.Fatal(err)
		}
	}
	merged, err := train.ExportModel(base, tr.Weights(), ads)
	if err != nil {
		t.Fatal(err)
	}
	fullDir, adDir := t.TempDir(), t.TempDir()
	if _, err := Export(merged, fullDir, ExportOptions{From: onnxDir}); err != nil {
		t.Fatal(err)
	}
	if err := ExportAdapters(adDir, base, ads, tr.Weights(), AdapterOptions{Base: onnxDir, ModelType: "qwen2"}); err != nil {
		t.Fatal(err)
	}
	cfg := readJSON(t, filepath.Join(adDir, AdapterConfig))
	if cfg["r"] != 4.0 || cfg["lora_alpha"] != 8.0 || cfg["peft_type"] != "LORA" || cfg["task_type"] != "CAUSAL_LM" {
		t.Errorf("adapter_config %v", cfg)
	}
	if tm, _ := json.Marshal(cfg["target_modules"]); string(tm) != `["down_proj","q_proj","v_proj"]` {
		t.Errorf("target_modules %s", tm)
	}
	f, err := safetensors.Open(filepath.Join(adDir, AdapterWeights))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if len(f.Names()) != 2*3*2 {
		t.Errorf("adapter tensors %v", f.Names())
	}
	baseW, mergedW := readAll(t, src), readAll(t, fullDir)
	worst, moved := 0.0, 0.0
	for _, mod := range []string{"model.layers.0.self_attn.q_proj", "model.layers.1.mlp.down_proj"} {
		A, _ := f.Float32s("base_model.model." + mod + ".lora_A.weight") // [r, in]
		B, _ := f.Float32s("base_model.model." + mod + ".lora_B.weight") // [out, r]
		ea, _ := f.Entry("base_model.model." + mod + ".lora_A.weight")
		eb, _ := f.Entry("base_model.model." + mod + ".lora_B.weight")
		r, in, out := int(ea.Shape[0]), int(ea.Shape[1]), int(eb.Shape[0])
		w, mw := baseW[mod+".weight"], mergedW[mod+".weight"]
		for o := 0; o < out; o++ {
			for i := 0; i < in; i++ {
				s := 0.0
				for k := 0; k < r; k++ {
					s += float64(B[o*r+k]) * float64(A[k*in+i])
				}
				want := float64(w[o*in+i]) + 2*s
				worst = math.Max(worst, math.Abs(want-float64(mw[o*in+i])))
				moved = math.Max(moved, math.Abs(2*s))
			}
		}
	}
	if worst > 1e-6 || moved == 0 {
		t.Fatalf("PEFT merge of the adapters vs tagpr's merged export: max |Δ| %.3g (adapter delta up to %.3g)", worst, moved)
	}
	names, _ := lm.MapHFNames(base)
	t.Logf("adapters on %d of %d parameters; PEFT merge matches the export within %.2g", len(ads), len(names.Params), worst)
}

// WriteTrained writes the checkpoint beside model.onnx when it can, and
// says why not when the base model has no config.json.
func TestWriteTrained(t *testing.T) {
	src := filepath.Join(fixtures, "qwen3-tied")
	base := t.TempDir()
	if _, err := Import(src, base, ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	m, err := ir.Load(filepath.Join(base, "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "model.onnx")
	res, err := WriteTrained(out, m, nil, nil, base)
	if err != nil || res.Checkpoint == nil {
		t.Fatalf("%v %+v", err, res)
	}
	for _, f := range []string{"model.onnx", "model.safetensors", "config.json", "generation_config.json"} {
		if _, err := os.Stat(filepath.Join(filepath.Dir(out), f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	os.Remove(filepath.Join(base, "config.json"))
	out = filepath.Join(t.TempDir(), "model.onnx")
	res, err = WriteTrained(out, m, nil, nil, base)
	if err != nil || res.Checkpoint != nil || !strings.Contains(res.Skipped, "config.json") {
		t.Fatalf("without config.json: %v %+v", err, res)
	}
	if _, err := os.Stat(out); err != nil {
		t.Errorf("model.onnx not written: %v", err)
	}
}

// A checkpoint untied by copying the embedding into lm_head (config.json:
// tie_word_embeddings false) stays untied through import and export: the
// head is exported as its own tensor, not taken for a tied copy.
func TestExportKeepsAnUntiedCopyUntied(t *testing.T) {
	src := t.TempDir()
	for _, f := range []string{"config.json", "generation_config.json"} {
		b, err := os.ReadFile(filepath.Join(fixtures, "qwen3", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	all := readAll(t, filepath.Join(fixtures, "qwen3"))
	emb, head := all["model.embed_tokens.weight"], all["lm_head.weight"]
	if emb == nil || len(head) != len(emb) {
		t.Fatalf("fixture: embedding %d values, head %d", len(emb), len(head))
	}
	all["lm_head.weight"] = append([]float32(nil), emb...)
	ck, err := OpenCheckpoint(filepath.Join(fixtures, "qwen3"))
	if err != nil {
		t.Fatal(err)
	}
	var tensors []safetensors.Tensor
	for _, n := range sortedNames(all) {
		_, e, _ := ck.Lookup(n)
		raw := ir.Tensor("", nil, all[n]).RawData
		tensors = append(tensors, safetensors.Tensor{Name: n, DType: "F32", Shape: e.Shape, Data: raw})
	}
	ck.Close()
	if err := safetensors.Write(filepath.Join(src, "model.safetensors"), tensors, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	onnxDir, hfDir := t.TempDir(), t.TempDir()
	if _, err := Import(src, onnxDir, ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	m, err := ir.Load(filepath.Join(onnxDir, "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Export(m, hfDir, ExportOptions{From: onnxDir}); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, hfDir)
	if got["lm_head.weight"] == nil {
		t.Fatal("the exported checkpoint has no lm_head.weight: the untied head was taken for a tied copy")
	}
	if tie := readJSON(t, filepath.Join(hfDir, "config.json"))["tie_word_embeddings"]; tie != false {
		t.Fatalf("exported tie_word_embeddings %v, want false", tie)
	}
}

// A config.json whose attention sizes disagree with the weights (4 heads
// for 2 heads' q_proj) is refused naming the file and the sizes: exported,
// transformers refused the checkpoint (or, shapes agreeing, computed
// another function).
func TestExportRefusesConfigThatMisfitsWeights(t *testing.T) {
	onnxDir := t.TempDir()
	if _, err := Import(filepath.Join(fixtures, "qwen2"), onnxDir, ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	m, err := ir.Load(filepath.Join(onnxDir, "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := readJSON(t, filepath.Join(onnxDir, "config.json"))
	cfg["num_attention_heads"] = cfg["num_attention_heads"].(float64) * 2
	b, _ := json.Marshal(cfg)
	os.WriteFile(filepath.Join(onnxDir, "config.json"), b, 0o644)
	out := t.TempDir()
	if _, err := Export(m, out, ExportOptions{From: onnxDir}); err == nil || !strings.Contains(err.Error(), "_proj.weight") || !strings.Contains(err.Error(), "num_attention_heads 8") {
		t.Fatalf("want the misfit refused naming the projection and the heads: %v", err)
	}
	if _, err := os.Stat(filepath.Join(out, "model.safetensors")); err == nil {
		t.Fatal("a checkpoint was written")
	}
}
