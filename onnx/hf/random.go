package hf

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/google/renameio/v2"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/safetensors"
)

// RandomCheckpoint describes a Qwen2-shaped transformers checkpoint with
// random weights, for benchmarks and memory tests that need a real-sized
// model without downloading one: Write streams it to disk without holding
// the weights in memory, and Import turns it into an ONNX model the same way.
type RandomCheckpoint struct {
	Layers, Hidden, Heads, KVHeads, Intermediate, Vocab, MaxPositions int
	Tied                                                              bool
	DType                                                             string  // safetensors dtype: BF16 (default), F16 or F32
	Std                                                               float64 // weights ~ uniform with this std (default 0.02); norms 1
	Seed                                                              uint64
}

// Qwen05B is Qwen2.5-0.5B's shape: 24 layers, width 896, 14 heads (2 KV),
// MLP 4864, vocab 151936, tied embeddings; 494M parameters.
func Qwen05B() RandomCheckpoint {
	return RandomCheckpoint{Layers: 24, Hidden: 896, Heads: 14, KVHeads: 2, Intermediate: 4864, Vocab: 151936,
		MaxPositions: 32768, Tied: true, DType: "BF16", Seed: 1}
}

// tensors lists the checkpoint's tensors as transformers' Qwen2 names them.
func (r RandomCheckpoint) tensors() []safetensors.Tensor {
	d, hd := int64(r.Hidden), int64(r.Hidden/r.Heads)
	q, kv, f := int64(r.Heads)*hd, int64(r.KVHeads)*hd, int64(r.Intermediate)
	t := func(name string, shape ...int64) safetensors.Tensor {
		return safetensors.Tensor{Name: name, DType: r.DType, Shape: shape}
	}
	out := []safetensors.Tensor{t("model.embed_tokens.weight", int64(r.Vocab), d)}
	for i := 0; i < r.Layers; i++ {
		p := fmt.Sprintf("model.layers.%d.", i)
		out = append(out, t(p+"input_layernorm.weight", d),
			t(p+"self_attn.q_proj.weight", q, d), t(p+"self_attn.q_proj.bias", q),
			t(p+"self_attn.k_proj.weight", kv, d), t(p+"self_attn.k_proj.bias", kv),
			t(p+"self_attn.v_proj.weight", kv, d), t(p+"self_attn.v_proj.bias", kv),
			t(p+"self_attn.o_proj.weight", d, q), t(p+"post_attention_layernorm.weight", d),
			t(p+"mlp.gate_proj.weight", f, d), t(p+"mlp.up_proj.weight", f, d), t(p+"mlp.down_proj.weight", d, f))
	}
	out = append(out, t("model.norm.weight", d))
	if !r.Tied {
		out = append(out, t("lm_head.weight", int64(r.Vocab), d))
	}
	return out
}

// Params counts the weights.
func (r RandomCheckpoint) Params() int64 {
	var n int64
	for _, t := range r.tensors() {
		n += safetensors.NumElements(t.Shape)
	}
	return n
}

// Write writes config.json, generation_config.json and model.safetensors
// into dir, generating each tensor as it is written.
func (r RandomCheckpoint) Write(dir string) error {
	if r.DType == "" {
		r.DType = "BF16"
	}
	if r.Std == 0 {
		r.Std = 0.02
	}
	if safetensors.ElemSize(r.DType) == 0 || r.DType == "F64" || r.Hidden%r.Heads != 0 || r.Heads%r.KVHeads != 0 {
		return fmt.Errorf("random checkpoint: dtype %s, hidden %d, heads %d, kv heads %d do not make a model", r.DType, r.Hidden, r.Heads, r.KVHeads)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(r.Seed, 0x5eed))
	ts := r.tensors()
	for i := range ts {
		norm := len(ts[i].Shape) == 1 && !isBias(ts[i].Name)
		n := safetensors.NumElements(ts[i].Shape)
		ts[i].Fill = func(w io.Writer) error { return r.fill(w, rng, n, norm) }
	}
	if err := safetensors.Write(filepath.Join(dir, "model.safetensors"), ts, map[string]string{"format": "pt"}); err != nil {
		return err
	}
	dtype := map[string]string{"BF16": "bfloat16", "F16": "float16", "F32": "float32"}[r.DType]
	cfg := map[string]any{
		"architectures": []string{"Qwen2ForCausalLM"}, "model_type": "qwen2", "hidden_act": "silu",
		"hidden_size": r.Hidden, "intermediate_size": r.Intermediate, "num_hidden_layers": r.Layers,
		"num_attention_heads": r.Heads, "num_key_value_heads": r.KVHeads, "vocab_size": r.Vocab,
		"max_position_embeddings": r.MaxPositions, "max_window_layers": r.Layers, "rms_norm_eps": 1e-6,
		"rope_theta": 1000000.0, "rope_scaling": nil, "sliding_window": nil, "use_sliding_window": false,
		"tie_word_embeddings": r.Tied, "torch_dtype": dtype, "bos_token_id": 0, "eos_token_id": 1,
		"use_cache": true, "attention_dropout": 0.0, "initializer_range": r.Std,
	}
	for name, v := range map[string]any{"config.json": cfg, "generation_config.json": map[string]any{"bos_token_id": 0, "eos_token_id": 1}} {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		if err := renameio.WriteFile(filepath.Join(dir, name), append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func isBias(name string) bool { return len(name) > 5 && name[len(name)-5:] == ".bias" }

// fill writes n values: ones for norm gains, else uniform(-a, a) with std r.Std.
func (r RandomCheckpoint) fill(w io.Writer, rng *rand.Rand, n int64, norm bool) error {
	es := safetensors.ElemSize(r.DType)
	buf := make([]byte, 0, 1<<20)
	a := r.Std * math.Sqrt(3)
	for i := int64(0); i < n; i++ {
		v := float32(1)
		if !norm {
			v = float32((2*rng.Float64() - 1) * a)
		}
		switch es {
		case 4:
			buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
		default:
			var h uint16
			if r.DType == "BF16" {
				h = uint16(math.Float32bits(v) >> 16)
			} else {
				h = ir.Float32ToHalf(v)
			}
			buf = binary.LittleEndian.AppendUint16(buf, h)
		}
		if len(buf) >= 1<<20-8 {
			if _, err := w.Write(buf); err != nil {
				return err
			}
			buf = buf[:0]
		}
	}
	_, err := w.Write(buf)
	return err
}

// WriteAndImport writes the checkpoint under dir/ckpt, imports it into
// dir/onnx (as import-hf does) and removes the checkpoint: a model of this
// shape for benchmarks.
func (r RandomCheckpoint) WriteAndImport(dir string) (*Imported, error) {
	src := filepath.Join(dir, "ckpt")
	if err := r.Write(src); err != nil {
		return nil, err
	}
	imp, err := Import(src, filepath.Join(dir, "onnx"), ImportOptions{})
	if err != nil {
		return nil, err
	}
	return imp, os.RemoveAll(src)
}
