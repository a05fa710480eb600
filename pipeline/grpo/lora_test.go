package grpo

import (
	"bytes"
	"math"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/onnxpb"
	"github.com/tagpr/tagpr/onnx/train"
)

// loraConfig adapts the lm head too: the tiny model's logits are ≈ uniform
// and its final norm bounds what the layers below can add to them, so the
// target token's share moves little unless the head is adapted.
func loraConfig(dir string) Config {
	cfg := tinyConfig(dir)
	cfg.LoRA = &train.LoRA{Rank: 4, Alpha: 8, Seed: 7, Targets: []string{"*_proj", "lm_head"}}
	cfg.LearningRate = 3e-2
	return cfg
}

// TestLoRARaisesReward: a LoRA run trains its adapters only, rollouts sample
// the adapted policy (with one update per batch the generation log-probs
// equal the training graph's at every step, so nothing is ever clipped: a
// generation session that missed the adapters' updates would drift from
// it), the KL is to the base, and the merged export is the adapted policy.
func TestLoRARaisesReward(t *testing.T) {
	cfg := loraConfig(t.TempDir())
	res := run(t, cfg, tinyPrompts(16), tinyOptions())
	logs := res.Logs
	first, last := meanReward(logs[:5]), meanReward(logs[len(logs)-5:])
	if last < 0.5 || last < first+0.3 {
		t.Fatalf("LoRA: mean reward went %.3f → %.3f; want ≥ 0.5 and up by ≥ 0.3", first, last)
	}
	for _, l := range logs {
		if l.ClipRegion != 0 || l.ClipLow != 0 || l.ClipHigh != 0 {
			t.Fatalf("step %d clip ratios %v %v %v: the rollouts' log-probs are not the trained policy's", l.Step, l.ClipLow, l.ClipHigh, l.ClipRegion)
		}
	}
	if logs[0].KL == nil || math.Abs(*logs[0].KL) > 1e-6 || *logs[len(logs)-1].KL <= 1e-4 {
		t.Errorf("KL to the base: step 1 %v (want ≈ 0), last %v (want > 0)", logs[0].KL, logs[len(logs)-1].KL)
	}
	if len(res.Adapters) == 0 || len(res.Weights) != 2*len(res.Adapters) {
		t.Fatalf("%d adapters, %d trained weights: want the adapters' A and B only", len(res.Adapters), len(res.Weights))
	}
	for name := range res.Weights {
		if !strings.Contains(name, ".lora_") {
			t.Errorf("trained weight %q is not an adapter's", name)
		}
	}

	// The merged model gives the adapted policy's logits.
	base := tinyModel(t)
	merged, err := train.ExportModel(base, res.Weights, res.Adapters)
	if err != nil {
		t.Fatal(err)
	}
	adapted := tinyModel(t)
	ads, err := train.AddLoRA(adapted, *cfg.LoRA)
	if err != nil {
		t.Fatal(err)
	}
	if err := train.ExportInto(adapted, res.Weights, nil); err != nil { // the adapters' trained A and B, unmerged
		t.Fatal(err)
	}
	if len(ads) != len(res.Adapters) {
		t.Fatalf("%d adapters injected again, %d trained", len(ads), len(res.Adapters))
	}
	ids := tinyPrompts(1)[0].IDs
	want, got := forward(t, adapted, ids), forward(t, merged, ids)
	changed := false
	baseLogits := forward(t, base, ids)
	for i := range want {
		if math.Abs(float64(want[i]-got[i])) > 1e-4 {
			t.Fatalf("logit %d: merged %v, adapted %v", i, got[i], want[i])
		}
		changed = changed || math.Abs(float64(want[i]-baseLogits[i])) > 1e-3
	}
	if !changed {
		t.Error("the trained adapters leave the base's logits unchanged")
	}
}

// forward runs m on ids and returns its logits.
func forward(t *testing.T, m *onnxpb.ModelProto, ids []int64) []float32 {
	t.Helper()
	model, err := lm.LoadBytes(mustMarshal(t, m), "test", lm.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer model.Close()
	logits, _, err := model.Forward(t.Context(), [][]int64{ids}, pad)
	if err != nil {
		t.Fatal(err)
	}
	return logits
}

// TestLoRAResumeIsBitIdentical: a LoRA run stopped and resumed ends with the
// adapters of an uninterrupted one, bit for bit.
func TestLoRAResumeIsBitIdentical(t *testing.T) {
	cfg := loraConfig("")
	cfg.Steps, cfg.SaveSteps = 5, 2
	prompts := tinyPrompts(6)
	cfg.OutputDir = t.TempDir()
	want := run(t, cfg, prompts, tinyOptions())

	cfg.OutputDir = t.TempDir()
	interruptAfter(t, 3, cfg, prompts, tinyOptions(), targetShare)
	got := run(t, cfg, prompts, tinyOptions())
	if len(got.Weights) != len(want.Weights) {
		t.Fatalf("%d weights resumed, %d uninterrupted", len(got.Weights), len(want.Weights))
	}
	sameWeights(t, want, got)

	// Another rank does not resume silently.
	cfg.LoRA.Rank = 2
	tr, err := New(tinyModel(t), []Reward{targetShare}, prompts, cfg, tinyOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if _, err := tr.Train(t.Context()); err == nil || !strings.Contains(err.Error(), "lora") {
		t.Fatalf("resume with another rank: %v", err)
	}
}

// TestLoRAMemory: a LoRA run's estimate has no full-weight gradients or
// moments, and its rollouts on the device path (float16 copies included)
// read the frozen base and the adapters the trainer updates.
func TestLoRAMemory(t *testing.T) {
	prompts := tinyPrompts(4)
	full, err := New(tinyModel(t), []Reward{targetShare}, prompts, tinyConfig(t.TempDir()), tinyOptions())
	if err != nil {
		t.Fatal(err)
	}
	fm := full.Memory()
	full.Close()
	cfg := loraConfig(t.TempDir())
	cfg.Steps = 3
	o := tinyOptions()
	o.Load.DeviceResident, o.Load.Half = true, true
	tr, err := New(tinyModel(t), []Reward{targetShare}, prompts, cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	lr := tr.Memory()
	t.Logf("full: %s; LoRA: %s", fm, lr)
	if lr.Optimizer*4 > fm.Optimizer || lr.Gradients*4 > fm.Gradients {
		t.Errorf("LoRA optimizer %d B, gradients %d B; full fine-tuning %d B, %d B: want far less", lr.Optimizer, lr.Gradients, fm.Optimizer, fm.Gradients)
	}
	res, err := tr.Train(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range res.Logs {
		if l.ClipRegion > 0.05 {
			t.Errorf("step %d: %v of the tokens clipped: float16 rollouts are not the adapted policy", l.Step, l.ClipRegion)
		}
	}
}

// TestGradientCheckpointing: recomputing activations in the backward pass
// leaves the run as it was (the same rollouts, log-probs and updates, up to
// float32 rounding) with a smaller activations estimate.
func TestGradientCheckpointing(t *testing.T) {
	prompts := tinyPrompts(8)
	cfg := loraConfig(t.TempDir())
	cfg.Steps = 4
	want := run(t, cfg, prompts, tinyOptions())
	cfg.OutputDir, cfg.GradientCheckpointing = t.TempDir(), true
	tr, err := New(tinyModel(t), []Reward{targetShare}, prompts, cfg, tinyOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	got, err := tr.Train(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for name, w := range want.Weights {
		for i := range w {
			if d := math.Abs(float64(got.Weights[name][i] - w[i])); d > 1e-4*math.Max(1, math.Abs(float64(w[i]))) {
				t.Fatalf("%s[%d]: %v with gradient checkpointing, %v without", name, i, got.Weights[name][i], w[i])
			}
		}
	}
	for i := range want.Logs {
		if got.Logs[i].Reward.Mean != want.Logs[i].Reward.Mean {
			t.Fatalf("step %d: mean reward %v with gradient checkpointing, %v without: other rollouts", i+1, got.Logs[i].Reward.Mean, want.Logs[i].Reward.Mean)
		}
	}
	cfg.GradientCheckpointing = false
	plain, err := New(tinyModel(t), []Reward{targetShare}, prompts, cfg, tinyOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if a, b := tr.Memory().Activations, plain.Memory().Activations; a >= b {
		t.Errorf("activations estimated at %d B with gradient checkpointing, %d B without", a, b)
	}
}

// TestRunSharesTheCallersWeights: the graphs a run derives (tempered policy,
// adapters, training, generation and reference graphs) hold the caller's
// weight tensors instead of copies — a LoRA run's estimate counts them once
// — and training, float16 rollouts included, leaves the caller's model as
// it was.
func TestRunSharesTheCallersWeights(t *testing.T) {
	for _, c := range []struct {
		name string
		lora bool
		half bool
	}{{"full", false, false}, {"lora", true, false}, {"lora-half", true, true}} {
		t.Run(c.name, func(t *testing.T) {
			cfg := tinyConfig(t.TempDir())
			if c.lora {
				cfg = loraConfig(t.TempDir())
			}
			cfg.Steps, cfg.Temperature = 2, 0.7
			o := tinyOptions()
			o.Load.DeviceResident, o.Load.Half = c.half, c.half
			m := tinyModel(t)
			before := mustMarshal(t, m)
			tr, err := New(m, []Reward{targetShare}, tinyPrompts(4), cfg, o)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			weights := train.ModelBytes(m)
			// Twice the model would be the frozen base counted twice (the
			// adapters and their trainer copies are ~0.4 of this tiny model).
			if c.lora && tr.Memory().Weights >= 2*weights {
				t.Errorf("LoRA estimate's weights %d B for a %d B model: the frozen base is counted twice", tr.Memory().Weights, weights)
			}
			if _, err := tr.Train(t.Context()); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(mustMarshal(t, m), before) {
				t.Fatal("the run changed the caller's model")
			}
		})
	}
}
