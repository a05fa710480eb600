package hf

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/google/renameio/v2"

	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/onnxpb"
	"github.com/tagpr/tagpr/onnx/safetensors"
	"github.com/tagpr/tagpr/onnx/train"
)

// AdapterFiles are what PEFT's save_pretrained writes for a LoRA adapter.
const (
	AdapterWeights = "adapter_model.safetensors"
	AdapterConfig  = "adapter_config.json"
)

// AdapterOptions describe the base model the adapters belong to.
type AdapterOptions struct {
	// Base is the base model's name or folder (adapter_config.json's
	// base_model_name_or_path).
	Base string
	// ModelType is config.json's model_type (GPT-2's Conv1D layers need
	// PEFT's fan_in_fan_out).
	ModelType string
}

// AdapterBase is the base_model_name_or_path for an adapter trained on
// the ONNX model in the folder from, and whether transformers can load
// that base as is: the checkpoint folder `tagpr model import-hf` made the
// model from (ImportedFrom, absolute) while it still holds *.safetensors;
// else from itself (absolute), which loads when it holds a checkpoint
// (model.safetensors or its index: a `train lm` run's folder). When it
// does not load, the adapter must be applied to the original checkpoint:
// PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(CKPT), adapter).
func AdapterBase(from string) (string, bool) {
	if ck := ImportedFrom(from); ck != "" {
		if m, _ := filepath.Glob(filepath.Join(ck, "*.safetensors")); len(m) > 0 {
			return ck, true
		}
	}
	base := from
	if abs, err := filepath.Abs(from); err == nil {
		base = abs
	}
	for _, f := range []string{"model.safetensors", IndexFile} {
		if _, err := os.Stat(filepath.Join(from, f)); err == nil {
			return base, true
		}
	}
	return base, false
}

// ExportAdapters writes LoRA adapters as PEFT saves them, so that
// PeftModel.from_pretrained(base, out) applies them to the base model:
// adapter_model.safetensors with base_model.model.<module>.lora_A.weight
// [r, in] and lora_B.weight [out, r], and adapter_config.json with the rank,
// lora_alpha and target_modules. base is the inference model the adapters
// were injected into (before AddLoRA), for the modules' Hugging Face names;
// weights holds the adapters' A and B (train.Trainer.Weights).
func ExportAdapters(out string, base *onnxpb.ModelProto, adapters []train.Adapter, weights map[string][]float32, o AdapterOptions) error {
	if len(adapters) == 0 {
		return fmt.Errorf("export adapters: no adapters")
	}
	var hc *lm.HFConfig
	if o.Base != "" {
		hc, _ = lm.ReadHFConfig(filepath.Join(o.Base, "config.json")) // unreadable: name as MapHFNames does
	}
	names, err := lm.MapHFNamesFor(base, hc)
	if err != nil {
		return fmt.Errorf("export adapters: %w", err)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return fmt.Errorf("export adapters: %w", err)
	}
	var tensors []safetensors.Tensor
	adapted := map[string]bool{}
	rank, alpha := 0, 0.0
	for _, a := range adapters {
		p, ok := names.ByInit(a.Weight)
		if !ok {
			return fmt.Errorf("export adapters: adapted weight %q has no Hugging Face name", a.Weight)
		}
		mod := p.Module()
		av, bv := weights[a.A], weights[a.B]
		if len(p.Shape) != 2 || av == nil || bv == nil {
			return fmt.Errorf("export adapters: %s: adapter values missing", mod)
		}
		out, in := int(p.Shape[0]), int(p.Shape[1])
		if strings.HasPrefix(mod[strings.LastIndexByte(mod, '.')+1:], "c_") && !p.Transposed {
			out, in = in, out // GPT-2's Conv1D stores [in, out]
		}
		if len(av)%in != 0 || len(bv) != len(av)/in*out {
			return fmt.Errorf("export adapters: %s: A has %d values, B %d, for a [%d, %d] layer", mod, len(av), len(bv), out, in)
		}
		r := len(av) / in
		if rank == 0 {
			rank, alpha = r, a.Scale*float64(r)
		}
		if r != rank || math.Abs(a.Scale*float64(r)-alpha) > 1e-9*alpha {
			return fmt.Errorf("export adapters: %s has rank %d and scale %g; PEFT's config holds one rank and alpha for all", mod, r, a.Scale)
		}
		prefix := "base_model.model." + mod
		tensors = append(tensors,
			safetensors.Tensor{Name: prefix + ".lora_A.weight", DType: "F32", Shape: []int64{int64(r), int64(in)}, Data: safetensors.LEBytes(transposeF32(av, in, r))},
			safetensors.Tensor{Name: prefix + ".lora_B.weight", DType: "F32", Shape: []int64{int64(out), int64(r)}, Data: safetensors.LEBytes(transposeF32(bv, r, out))})
		adapted[mod] = true
	}
	sort.Slice(tensors, func(i, j int) bool { return tensors[i].Name < tensors[j].Name })
	if err := safetensors.Write(filepath.Join(out, AdapterWeights), tensors, map[string]string{"format": "pt"}); err != nil {
		return fmt.Errorf("export adapters: %w", err)
	}
	cfg := map[string]any{
		"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": rank, "lora_alpha": alpha, "lora_dropout": 0.0,
		"target_modules": targetModules(adapted, names), "bias": "none", "fan_in_fan_out": o.ModelType == "gpt2",
		"base_model_name_or_path": o.Base, "inference_mode": true, "init_lora_weights": true, "use_rslora": false,
		"use_dora": false, "modules_to_save": nil, "layers_to_transform": nil, "layers_pattern": nil,
		"rank_pattern": map[string]any{}, "alpha_pattern": map[string]any{}, "revision": nil,
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return fmt.Errorf("export adapters: %w", err)
	}
	if err := renameio.WriteFile(filepath.Join(out, AdapterConfig), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("export adapters: %w", err)
	}
	return nil
}

// targetModules is PEFT's target_modules for the adapted modules: their
// last names (q_proj, v_proj) when those select exactly them among the
// model's modules (PEFT matches a target against the end of each module
// name), else the full module names.
func targetModules(adapted map[string]bool, names *lm.HFNames) []string {
	short := map[string]bool{}
	for mod := range adapted {
		short[mod[strings.LastIndexByte(mod, '.')+1:]] = true
	}
	exact := true
	for _, p := range names.Params {
		mod := p.Module()
		if short[mod[strings.LastIndexByte(mod, '.')+1:]] && !adapted[mod] {
			exact = false
		}
	}
	set := short
	if !exact {
		set = adapted
	}
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// transposeF32 turns a row-major [rows, cols] matrix into [cols, rows].
func transposeF32(v []float32, rows, cols int) []float32 {
	out := make([]float32, len(v))
	for r := 0; r < rows; r++ {
		for c := 0; c < cols; c++ {
			out[c*rows+r] = v[r*cols+c]
		}
	}
	return out
}
