package rewardmodel

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/internal/benchchild"
	"github.com/tagpr/tagpr/onnx/hf"
	"github.com/tagpr/tagpr/onnx/ort"
	"github.com/tagpr/tagpr/onnx/safetensors"
)

// encoderLoRAChildEnv makes the test binary run one encoder LoRA step of
// the JSON encoderLoRASpec it holds and report its peak memory (benchchild).
const encoderLoRAChildEnv = "TAGPR_PRMU_ENCODER_LORA_CHILD"

func init() { benchchild.Serve(encoderLoRAChildEnv, encoderLoRAChild) }

type encoderLoRASpec struct {
	Encoder      string
	PairsPerStep int
}

type encoderLoRAResult struct {
	PeakRSS  int64 `json:"peak_rss"`
	Estimate int64 `json:"estimate"`
}

// encoderLoRAChild trains a PRMU on the encoder: one head step, then one
// LoRA step, on the synthetic benchmark's training pairs.
func encoderLoRAChild(js string) (any, error) {
	var s encoderLoRASpec
	var r encoderLoRAResult
	if err := json.Unmarshal([]byte(js), &s); err != nil {
		return r, err
	}
	if err := ort.Init(""); err != nil {
		return r, err
	}
	c := datasets.DefaultSynthConfig()
	c.Users, c.Seed = 40, 1
	d, err := datasets.Synth(c)
	if err != nil {
		return r, err
	}
	pairs, err := SynthPRMUPairs(d, "train", 8, 1)
	if err != nil {
		return r, err
	}
	enc, err := LoadTextEncoder(s.Encoder, EncoderOptions{})
	if err != nil {
		return r, err
	}
	cfg := PRMUConfig{Seed: 1, Encoder: &PRMUEncoder{Dir: s.Encoder, Tuning: TuneLoRA, LoRARank: 4, LoRASteps: 1}}
	p, res, err := TrainEncoderPRMU(context.Background(), cfg, enc, nil, pairs, PRMUTrainOptions{Steps: 1, PairsPerStep: s.PairsPerStep, Seed: 1, MaxMemoryGB: -1})
	if err != nil {
		return r, err
	}
	p.Close()
	r.PeakRSS, r.Estimate = benchchild.Status("VmHWM"), res.LoRAMemory.Total()
	return r, nil
}

// writeRandomMPNet writes an all-mpnet-base-v2-sized MPNet checkpoint (12
// layers, hidden 768, 12 heads, FFN 3072, 514 positions) with random
// weights and the MPNet fixture's 300-token vocabulary and files.
func writeRandomMPNet(dir string) error {
	const V, d, L, H, f, P = 300, 768, 12, 12, 3072, 514
	rng := rand.New(rand.NewPCG(1, 2))
	var ts []safetensors.Tensor
	add := func(name string, fill float32, shape ...int64) {
		n := int64(1)
		for _, s := range shape {
			n *= s
		}
		v := make([]float32, n)
		for i := range v {
			v[i] = fill
			if fill == 0 {
				v[i] = float32(rng.NormFloat64() * 0.02)
			}
		}
		ts = append(ts, safetensors.Tensor{Name: name, DType: "F32", Shape: shape, Data: safetensors.LEBytes(v)})
	}
	add("embeddings.word_embeddings.weight", 0, V, d)
	add("embeddings.position_embeddings.weight", 0, P, d)
	add("embeddings.LayerNorm.weight", 1, d)
	add("embeddings.LayerNorm.bias", 0, d)
	add("encoder.relative_attention_bias.weight", 0, 32, H)
	for l := range L {
		p := fmt.Sprintf("encoder.layer.%d.", l)
		for _, w := range []string{"q", "k", "v", "o"} {
			add(p+"attention.attn."+w+".weight", 0, d, d)
			add(p+"attention.attn."+w+".bias", 0, d)
		}
		add(p+"attention.LayerNorm.weight", 1, d)
		add(p+"attention.LayerNorm.bias", 0, d)
		add(p+"intermediate.dense.weight", 0, f, d)
		add(p+"intermediate.dense.bias", 0, f)
		add(p+"output.dense.weight", 0, d, f)
		add(p+"output.dense.bias", 0, d)
		add(p+"output.LayerNorm.weight", 1, d)
		add(p+"output.LayerNorm.bias", 0, d)
	}
	if err := os.CopyFS(dir, os.DirFS(mpnetCheckpoint)); err != nil {
		return err
	}
	os.Remove(filepath.Join(dir, "reference.json"))
	config := fmt.Sprintf(`{"model_type": "mpnet", "vocab_size": %d, "hidden_size": %d, "num_hidden_layers": %d, "num_attention_heads": %d,
 "intermediate_size": %d, "max_position_embeddings": %d, "hidden_act": "gelu", "layer_norm_eps": 1e-05, "pad_token_id": 1,
 "bos_token_id": 0, "eos_token_id": 2, "relative_attention_num_buckets": 32}`, V, d, L, H, f, P)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(config), 0o644); err != nil {
		return err
	}
	return safetensors.Write(filepath.Join(dir, "model.safetensors"), ts, map[string]string{"format": "pt"})
}

// BenchmarkEncoderLoRAMemory: the encoder LoRA phase's peak-memory estimate
// (loraMemory) against the peak resident memory of a child process that
// runs it, on an all-mpnet-base-v2-sized encoder (86M weights with the
// fixture's small vocabulary) at 16 and 32 pairs a step of the synthetic
// benchmark's texts. rss_over_estimate near 1 is the goal (the estimate
// was fitted to 0.95–1.06 of three runs on one machine).
func BenchmarkEncoderLoRAMemory(b *testing.B) {
	root := b.TempDir()
	ckpt, enc := filepath.Join(root, "ckpt"), filepath.Join(root, "enc")
	if err := writeRandomMPNet(ckpt); err != nil {
		b.Fatal(err)
	}
	if _, err := hf.ImportEncoder(ckpt, enc); err != nil {
		b.Fatal(err)
	}
	os.RemoveAll(ckpt)
	for _, pp := range []int{16, 32} {
		var r encoderLoRAResult
		for i := 0; i < b.N; i++ {
			if _, err := benchchild.Run(encoderLoRAChildEnv, encoderLoRASpec{Encoder: enc, PairsPerStep: pp}, &r); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(r.PeakRSS)/(1<<30), fmt.Sprintf("pairs%d_peak_rss_GiB", pp))
		b.ReportMetric(float64(r.Estimate)/(1<<30), fmt.Sprintf("pairs%d_estimate_GiB", pp))
		b.ReportMetric(float64(r.PeakRSS)/float64(r.Estimate), fmt.Sprintf("pairs%d_rss_over_estimate", pp))
	}
}
