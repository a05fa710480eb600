package train

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/onnxpb"
)

// TestSlimProbeSpecializesAlike: the probe's slimmed products and chunked
// heads (probeSlim) give the training graphs the full probe gives, byte for
// byte, with their types: LM training (the head untied and tied, LoRA on
// the head, recomputation) and the shared-prefix policy graph. The models
// are wide enough (d_model 48) for their weights to be fed as zeros.
func TestSlimProbeSpecializesAlike(t *testing.T) {
	tie := true
	config := func(arch lm.Arch, tied bool) lm.Config {
		c := lm.Config{Arch: arch, Layers: 2, DModel: 48, Heads: 4, Vocab: 96, MaxPositions: 32, DType: "float32", Seed: 5, InitStd: 0.2}
		if arch == lm.Llama {
			c.KVHeads = 2
		}
		if tied {
			c.TieEmbeddings = &tie
		}
		return c
	}
	lora := &LoRA{Rank: 4, Alpha: 8, Targets: []string{"*"}, Seed: 1}
	cases := []struct {
		name  string
		cfg   lm.Config
		build func(m *onnxpb.ModelProto) (*TrainingGraph, error)
	}{
		{"lm/llama", config(lm.Llama, false), func(m *onnxpb.ModelProto) (*TrainingGraph, error) {
			tg, _, err := BuildLMTraining(m, LMTraining{Batch: 2, SeqLen: 12})
			return tg, err
		}},
		{"lm/tied", config(lm.Llama, true), func(m *onnxpb.ModelProto) (*TrainingGraph, error) {
			tg, _, err := BuildLMTraining(m, LMTraining{Batch: 2, SeqLen: 12, Recompute: true})
			return tg, err
		}},
		{"lm/gpt2-lora", config(lm.GPT2, false), func(m *onnxpb.ModelProto) (*TrainingGraph, error) {
			tg, _, err := BuildLMTraining(m, LMTraining{Batch: 2, SeqLen: 12, LoRA: lora, FrozenAsInputs: true})
			return tg, err
		}},
		{"policy/llama-lora", config(lm.Llama, false), func(m *onnxpb.ModelProto) (*TrainingGraph, error) {
			adapters, err := AddLoRA(m, *lora)
			if err != nil {
				return nil, err
			}
			return BuildSharedPrefixPolicy(m, PolicyTraining{Shared: SharedPrefix{Prompts: 2, Generations: 3, PromptLen: 5, CompletionLen: 4},
				Params: AdapterParams(adapters), Keep: []string{ClipRegionOutput}, Recompute: true, Loss: PolicyLoss{LossType: "grpo", Beta: 0.04}})
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			build := func(slim bool) ([]byte, map[string]ValueType) {
				defer func(was bool) { probeSlim = was }(probeSlim)
				probeSlim = slim
				m, err := lm.Build(c.cfg)
				if err != nil {
					t.Fatal(err)
				}
				tg, err := c.build(m)
				if err != nil {
					t.Fatal(err)
				}
				b, err := ir.Marshal(tg.Model)
				if err != nil {
					t.Fatal(err)
				}
				return b, tg.Types
			}
			slimModel, slimTypes := build(true)
			fullModel, fullTypes := build(false)
			if !bytes.Equal(slimModel, fullModel) {
				t.Error("the slim probe's training graph differs from the full probe's")
			}
			if !reflect.DeepEqual(slimTypes, fullTypes) {
				for name, ty := range fullTypes {
					if !reflect.DeepEqual(slimTypes[name], ty) {
						t.Errorf("%s: slim probe %v, full probe %v", name, slimTypes[name], ty)
						break
					}
				}
				t.Errorf("types differ (%d slim, %d full)", len(slimTypes), len(fullTypes))
			}
		})
	}
}
