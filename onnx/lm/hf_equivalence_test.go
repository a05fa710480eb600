package lm

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/onnxpb"
)

// readSafetensors reads a float32 safetensors file (the fixtures' params).
func readSafetensors(t *testing.T, path string) (map[string][]float32, map[string][]int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := binary.LittleEndian.Uint64(b[:8])
	var hdr map[string]json.RawMessage
	if err := json.Unmarshal(b[8:8+n], &hdr); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	data, shapes := map[string][]float32{}, map[string][]int64{}
	for k, raw := range hdr {
		if k == "__metadata__" {
			continue
		}
		var e struct {
			Dtype   string   `json:"dtype"`
			Shape   []int64  `json:"shape"`
			Offsets [2]int64 `json:"data_offsets"`
		}
		if err := json.Unmarshal(raw, &e); err != nil || e.Dtype != "F32" {
			t.Fatalf("%s: tensor %s: %v (dtype %s)", path, k, err, e.Dtype)
		}
		buf := b[8+n+uint64(e.Offsets[0]) : 8+n+uint64(e.Offsets[1])]
		v := make([]float32, len(buf)/4)
		for i := range v {
			v[i] = math.Float32frombits(binary.LittleEndian.Uint32(buf[4*i:]))
		}
		data[k], shapes[k] = v, e.Shape
	}
	return data, shapes
}

// transposed turns a torch nn.Linear weight [out, in] into the builder's [in, out].
func transposed(w []float32, shape []int64) []float64 {
	out, in := int(shape[0]), int(shape[1])
	r := make([]float64, len(w))
	for o := 0; o < out; o++ {
		for i := 0; i < in; i++ {
			r[i*out+o] = float64(w[o*in+i])
		}
	}
	return r
}

func f64(w []float32) []float64 {
	r := make([]float64, len(w))
	for i, v := range w {
		r[i] = float64(v)
	}
	return r
}

// givenWeights is a WeightSource of float32 tensors already in the builder's layout.
type givenWeights map[string][]float64

func (g givenWeights) Weight(name string, dims []int64, _ bool) (*onnxpb.TensorProto, error) {
	w, ok := g[name]
	if !ok {
		return nil, fmt.Errorf("no weight %q", name)
	}
	if int64(len(w)) != ir.NumElements(dims) {
		return nil, fmt.Errorf("weight %q: %d values for dims %v", name, len(w), dims)
	}
	f := make([]float32, len(w))
	for i, v := range w {
		f[i] = float32(v)
	}
	return ir.Tensor(name, dims, f), nil
}

// hfWeights maps a Hugging Face checkpoint onto the builder's names.
func hfWeights(t *testing.T, arch Arch, p map[string][]float32, sh map[string][]int64, c Config) map[string][]float64 {
	w := map[string][]float64{}
	used := map[string]bool{}
	get := func(k string) []float32 {
		v, ok := p[k]
		if !ok {
			t.Fatalf("checkpoint lacks %s", k)
		}
		used[k] = true
		return v
	}
	if arch == Llama {
		for k := range p {
			switch {
			case strings.HasSuffix(k, "_proj.weight") || k == "lm_head.weight":
				w[k] = transposed(get(k), sh[k])
			default: // embeddings and norm weights keep their layout and names
				w[k] = f64(get(k))
			}
		}
		return w
	}
	w["model.embed_tokens.weight"] = f64(get("transformer.wte.weight"))
	w["model.embed_positions.weight"] = f64(get("transformer.wpe.weight"))
	w["model.norm.weight"], w["model.norm.bias"] = f64(get("transformer.ln_f.weight")), f64(get("transformer.ln_f.bias"))
	d := c.DModel
	for i := 0; i < c.Layers; i++ {
		h, l := fmt.Sprintf("transformer.h.%d.", i), fmt.Sprintf("model.layers.%d.", i)
		w[l+"input_layernorm.weight"], w[l+"input_layernorm.bias"] = f64(get(h+"ln_1.weight")), f64(get(h+"ln_1.bias"))
		w[l+"post_attention_layernorm.weight"], w[l+"post_attention_layernorm.bias"] = f64(get(h+"ln_2.weight")), f64(get(h+"ln_2.bias"))
		// Conv1D c_attn is [in, 3·d] = q | k | v along the output axis.
		qkv, qkvb := get(h+"attn.c_attn.weight"), get(h+"attn.c_attn.bias")
		for j, n := range []string{"q_proj", "k_proj", "v_proj"} {
			m := make([]float64, d*d)
			for in := 0; in < d; in++ {
				for o := 0; o < d; o++ {
					m[in*d+o] = float64(qkv[in*3*d+j*d+o])
				}
			}
			w[l+"self_attn."+n+".weight"] = m
			w[l+"self_attn."+n+".bias"] = f64(qkvb[j*d : (j+1)*d])
		}
		w[l+"self_attn.o_proj.weight"], w[l+"self_attn.o_proj.bias"] = f64(get(h+"attn.c_proj.weight")), f64(get(h+"attn.c_proj.bias"))
		w[l+"mlp.fc_in.weight"], w[l+"mlp.fc_in.bias"] = f64(get(h+"mlp.c_fc.weight")), f64(get(h+"mlp.c_fc.bias"))
		w[l+"mlp.fc_out.weight"], w[l+"mlp.fc_out.bias"] = f64(get(h+"mlp.c_proj.weight")), f64(get(h+"mlp.c_proj.bias"))
	}
	for k := range p {
		if !used[k] {
			t.Fatalf("checkpoint tensor %s not mapped", k)
		}
	}
	return w
}

// The built-in graphs compute the same functions as Hugging Face's GPT-2
// and Llama: loaded with the PyTorch fixtures' weights they reproduce the
// recorded PyTorch logits and greedy continuations.
func TestBuiltinMatchesHuggingFace(t *testing.T) {
	cfgs := map[string]Config{
		"gpt2":  {Arch: GPT2, Layers: 2, DModel: 32, Heads: 4, FFN: 128, Vocab: 96, MaxPositions: 64, NormEps: 1e-5, BOS: 1, EOS: 2},
		"llama": {Arch: Llama, Layers: 2, DModel: 32, Heads: 4, KVHeads: 2, HeadDim: 8, FFN: 64, Vocab: 96, MaxPositions: 64, NormEps: 1e-6, RopeTheta: 10000, BOS: 1, EOS: 2},
	}
	for name, c := range cfgs {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join("..", "testdata", "pytorch", name)
			p, sh := readSafetensors(t, filepath.Join(dir, "params.safetensors"))
			pm, err := BuildFrom(c, givenWeights(hfWeights(t, c.Arch, p, sh, c.Defaults())))
			if err != nil {
				t.Fatal(err)
			}
			b, err := ir.Marshal(pm)
			if err != nil {
				t.Fatal(err)
			}
			m, err := LoadBytes(b, "built-in "+name+" with PyTorch weights", LoadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			_, ref, prompts := loadFixture(t, name)
			worst := forwardDiff(t, m, ref, prompts)
			t.Logf("max |built-in - PyTorch| logits = %.2e", worst)
			if worst > 1e-4 {
				t.Errorf("built-in %s with the PyTorch weights differs from PyTorch by %.3e", name, worst)
			}
			comps, _, err := m.Generate(context.Background(), prompts, GenerateOptions{MaxNewTokens: ref.Greedy.MaxNewTokens, EOS: []int64{2}})
			if err != nil {
				t.Fatal(err)
			}
			for r, cp := range comps {
				if !equalIDs(cp.Tokens, ref.Greedy.TorchNewIDs[r]) {
					t.Errorf("row %d: greedy %v, PyTorch %v", r, cp.Tokens, ref.Greedy.TorchNewIDs[r])
				}
			}
		})
	}
}
