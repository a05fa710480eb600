package lm

import (
	"context"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/onnxpb"
)

// checkpointValue returns an HF parameter's values in the checkpoint's layout.
func checkpointValue(t *testing.T, m *onnxpb.ModelProto, p HFParam) []float32 {
	t.Helper()
	for _, init := range m.Graph.Initializer {
		if init.GetName() != p.Init {
			continue
		}
		v, err := ir.Float32s(init)
		if err != nil {
			t.Fatal(err)
		}
		if !p.Transposed {
			return v
		}
		rows, cols := p.Shape[1], p.Shape[0] // stored [in, out]
		out := make([]float32, len(v))
		for r := int64(0); r < rows; r++ {
			for c := int64(0); c < cols; c++ {
				out[c*rows+r] = v[r*cols+c]
			}
		}
		return out
	}
	t.Fatalf("no initializer %q", p.Init)
	return nil
}

// The Optimum exports' numbered initializers get their PyTorch parameter
// names from the graph alone: every parameter of the PyTorch model is
// found, with its exact values in its own layout, and GPT-2's lm head (a
// transposed copy of wte) is a tie, not a second parameter.
func TestHFNamesOfOptimumExports(t *testing.T) {
	for _, name := range []string{"gpt2", "llama"} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join("..", "testdata", "pytorch", name)
			m, err := ir.Load(filepath.Join(dir, "model.onnx"))
			if err != nil {
				t.Fatal(err)
			}
			names, err := MapHFNames(m)
			if err != nil {
				t.Fatal(err)
			}
			torch, shapes := readSafetensors(t, filepath.Join(dir, "params.safetensors"))
			var got []string
			for _, p := range names.Params {
				got = append(got, p.Name)
			}
			var want []string
			for k := range torch {
				want = append(want, k)
			}
			sort.Strings(got)
			sort.Strings(want)
			if strings.Join(got, " ") != strings.Join(want, " ") {
				t.Fatalf("parameters from the graph:\n%v\nPyTorch's:\n%v", got, want)
			}
			for _, p := range names.Params {
				if !slices.Equal(p.Shape, shapes[p.Name]) {
					t.Errorf("%s: shape %v, PyTorch %v", p.Name, p.Shape, shapes[p.Name])
				}
				v := checkpointValue(t, m, p)
				for i := range v {
					if v[i] != torch[p.Name][i] {
						t.Fatalf("%s (initializer %s, transposed %v): value %d is %v, PyTorch %v", p.Name, p.Init, p.Transposed, i, v[i], torch[p.Name][i])
					}
				}
			}
			if len(names.Unnamed) > 0 {
				t.Errorf("unnamed weights: %v", names.Unnamed)
			}
			wantTied := map[string]string{}
			if name == "gpt2" {
				wantTied["lm_head.weight"] = "transformer.wte.weight"
			}
			if len(names.Tied) != len(wantTied) || names.Tied["lm_head.weight"] != wantTied["lm_head.weight"] {
				t.Errorf("tied %v, want %v", names.Tied, wantTied)
			}
			t.Logf("%d parameters, tied %v, copies %v", len(names.Params), names.Tied, names.Copies)
		})
	}
}

// NameWeights renames the initializers to their parameters and folds the
// tied copy into one tensor; the model still computes PyTorch's logits.
func TestNameWeightsKeepsTheFunction(t *testing.T) {
	for _, name := range []string{"gpt2", "llama"} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join("..", "testdata", "pytorch", name)
			m, err := ir.Load(filepath.Join(dir, "model.onnx"))
			if err != nil {
				t.Fatal(err)
			}
			names, err := NameWeights(m)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range names.Params {
				if p.Init != p.Name {
					t.Errorf("initializer %q not renamed to %q", p.Init, p.Name)
				}
			}
			if len(names.Copies) != 0 {
				t.Errorf("copies left: %v", names.Copies)
			}
			if name == "gpt2" && names.Tied["lm_head.weight"] != "transformer.wte.weight" {
				t.Errorf("tie lost: %v", names.Tied)
			}
			for _, init := range m.Graph.Initializer {
				if strings.HasPrefix(init.GetName(), "onnx::MatMul") {
					t.Errorf("initializer %q kept its exporter name", init.GetName())
				}
			}
			b, err := ir.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			lm, err := LoadBytes(b, name+" named", LoadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer lm.Close()
			_, ref, prompts := loadFixture(t, name)
			worst := forwardDiff(t, lm, ref, prompts)
			if worst > 1e-5 {
				t.Errorf("renamed %s differs from PyTorch by %.3g", name, worst)
			}
			again, err := NameWeights(m)
			if err != nil || len(again.Params) != len(names.Params) {
				t.Errorf("a second NameWeights: %v (%d params, first %d)", err, len(again.Params), len(names.Params))
			}
		})
	}
}

// An Optimum export stores tensors with equal values once (the Qwen2 chat
// fixture's zero k/v biases and unit norms): NameWeights gives each
// parameter its own initializer, as transformers has them, so training
// moves them apart as PyTorch would (before, they trained as one tensor,
// with the sum of both gradients). The logits stay bit for bit.
func TestNameWeightsUntiesSharedInitializers(t *testing.T) {
	path := filepath.Join("..", "testdata", "pytorch", "qwen2-chat", "model.onnx")
	m, err := ir.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	before, err := MapHFNames(m)
	if err != nil {
		t.Fatal(err)
	}
	if len(before.Shared) == 0 {
		t.Fatal("the fixture shares no initializer between parameters: the test needs one that does")
	}
	logits := func(m *onnxpb.ModelProto) []float32 {
		b, err := ir.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		lmm, err := LoadBytes(b, path, LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer lmm.Close()
		l, _, err := lmm.Forward(context.Background(), [][]int64{{1, 5, 9, 14, 3, 7}}, 0)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	want := logits(m)
	names, err := NameWeights(m)
	if err != nil {
		t.Fatal(err)
	}
	if len(names.Tied) != 0 || len(names.Shared) != 0 {
		t.Errorf("after NameWeights: tied %v, shared %v; want every parameter its own", names.Tied, names.Shared)
	}
	for _, u := range before.Shared {
		p, ok := names.Param(u.Name)
		if !ok || p.Init != u.Name {
			t.Errorf("%s (shared with %s): %+v, %v; want its own initializer of that name", u.Name, u.Of, p, ok)
		}
	}
	if got := logits(m); !slices.Equal(got, want) {
		t.Error("the untied model's logits differ")
	}
}

// The built-in graphs name their nodes the way exporters do, so their
// weights map to the same Hugging Face names (their initializers already
// carry them) and the tied head is a tie.
func TestHFNamesOfBuiltins(t *testing.T) {
	tie := true
	for _, c := range []Config{
		{Arch: Llama, Layers: 2, DModel: 32, Heads: 4, KVHeads: 2, Vocab: 64, AttentionBias: true, QKNorm: true},
		{Arch: Llama, Layers: 1, DModel: 32, Heads: 4, Vocab: 64, TieEmbeddings: &tie, OutputBias: true, MLPBias: true},
		{Arch: GPT2, Layers: 1, DModel: 32, Heads: 4, Vocab: 64},
	} {
		m, err := Build(c)
		if err != nil {
			t.Fatal(err)
		}
		names, err := MapHFNames(m)
		if err != nil {
			t.Fatal(err)
		}
		var weights []string
		for _, init := range m.Graph.Initializer {
			if !strings.HasPrefix(init.GetName(), "model.rotary.") {
				weights = append(weights, init.GetName())
			}
		}
		if len(names.Params) != len(weights) || len(names.Unnamed) > 0 {
			t.Errorf("%+v: %d parameters named (unnamed %v) for %d weights", c, len(names.Params), names.Unnamed, len(weights))
		}
		var count int64
		for _, p := range names.Params {
			if p.Init != p.Name {
				t.Errorf("built-in initializer %q named %q", p.Init, p.Name)
			}
			wantT := strings.HasSuffix(p.Name, "proj.weight") || strings.HasSuffix(p.Name, "fc_in.weight") || strings.HasSuffix(p.Name, "fc_out.weight") || p.Name == "lm_head.weight"
			if p.Transposed != wantT {
				t.Errorf("%s: transposed %v", p.Name, p.Transposed)
			}
			count += ir.NumElements(p.Shape)
		}
		if count != c.Params() {
			t.Errorf("%+v: named parameters hold %d values, the config %d", c, count, c.Params())
		}
		if c.TieEmbeddings != nil && *c.TieEmbeddings && names.Tied["lm_head.weight"] != "model.embed_tokens.weight" {
			t.Errorf("tied built-in: tied %v", names.Tied)
		}
	}
}

// TestUntiedCopyOfTheEmbedding: an untied model whose lm head holds the
// embedding's values (a checkpoint untied by copying the embedding) is a
// tie for MapHFNames, as exporters store tied heads, but not when its
// config.json says tie_word_embeddings false: then the head stays a weight
// of its own, in NameWeightsFor as in MapHFNamesFor.
func TestUntiedCopyOfTheEmbedding(t *testing.T) {
	untie := false
	m, err := Build(Config{Arch: Llama, Layers: 1, DModel: 32, Heads: 4, Vocab: 64, TieEmbeddings: &untie})
	if err != nil {
		t.Fatal(err)
	}
	var emb, head *onnxpb.TensorProto
	for _, init := range m.Graph.Initializer {
		switch init.GetName() {
		case "model.embed_tokens.weight":
			emb = init
		case "lm_head.weight":
			head = init
		}
	}
	if emb == nil || head == nil {
		t.Fatal("no embedding or lm head initializer")
	}
	// The built-in head is [d_model, vocab] (used by MatMul as is): the
	// embedding [vocab, d_model] transposed.
	ev, err := ir.Float32s(emb)
	if err != nil {
		t.Fatal(err)
	}
	hv := make([]float32, len(ev))
	V, D := int(emb.GetDims()[0]), int(emb.GetDims()[1])
	for v := 0; v < V; v++ {
		for d := 0; d < D; d++ {
			hv[d*V+v] = ev[v*D+d]
		}
	}
	*head = *ir.Tensor(head.GetName(), head.GetDims(), hv)
	byValue, err := MapHFNames(m)
	if err != nil {
		t.Fatal(err)
	}
	if len(byValue.Copies) != 1 {
		t.Fatalf("a head equal to the embedding, no config: copies %v, want the head", byValue.Copies)
	}
	cfg := &HFConfig{TieWordEmbeddings: &untie}
	names, err := MapHFNamesFor(m, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(names.Copies) != 0 || len(names.Tied) != 0 {
		t.Fatalf("tie_word_embeddings false: copies %v, tied %v, want none", names.Copies, names.Tied)
	}
	if _, ok := names.Param("lm_head.weight"); !ok {
		t.Fatal("tie_word_embeddings false: no lm_head.weight parameter")
	}
	named, err := NameWeightsFor(m, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := named.Param("lm_head.weight"); !ok || len(named.Tied) != 0 {
		t.Fatalf("NameWeightsFor with tie_word_embeddings false tied the head: %v", named.Tied)
	}
}
