package grpo

import (
	"encoding/json"
	"math"
	"testing"

	"github.com/tagpr/tagpr/onnx/ort"
)

// An RL run on the device-resident path (the CPU device here, through the
// IO bindings a GPU uses: rollouts read the weights the DeviceTrainer
// updates in place, one copy on the device) ends with the host run's
// weights and logs, bit for bit, checkpoints and two iterations per batch
// included; and a step moves no weights between host and device.
func TestDeviceResidentRunMatchesHost(t *testing.T) {
	cfg := tinyConfig("")
	cfg.Steps, cfg.SaveSteps, cfg.NumIterations = 4, 2, 2
	prompts := tinyPrompts(6)
	cfg.OutputDir = t.TempDir()
	want := run(t, cfg, prompts, tinyOptions())

	cfg.OutputDir = t.TempDir()
	o := tinyOptions()
	o.Load.DeviceResident = true
	tr, err := New(tinyModel(t), []Reward{targetShare}, prompts, cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if tr.dev == nil {
		t.Fatal("Load.DeviceResident did not put the run on the device")
	}
	var weightBytes int64
	for _, p := range tr.tr.Params {
		weightBytes += int64(4 * len(p.Data))
	}
	before := ort.TransferCounts()
	got, err := tr.Train(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	moved := ort.TransferCounts().Sub(before)
	// Checkpoints at steps 2 and 4 download weights and both moments (3×
	// the weights each). Besides them a step moves its batch, token ids,
	// masks and logits: on this tiny model about its weights' size per
	// step, where a host path on a GPU would copy the weights at each of a
	// step's session runs (9 generation runs and 2 training runs here).
	ckpt := int64(2 * 3 * weightBytes)
	t.Logf("4 steps, 2 checkpoints: %v (the weights are %d B)", moved, weightBytes)
	if moved.DeviceToHost-ckpt > 4*weightBytes || moved.HostToDevice > 4*weightBytes {
		t.Errorf("the run moved %v with weights of %d B: they do not stay on the device", moved, weightBytes)
	}
	for name, w := range want.Weights {
		g := got.Weights[name]
		for i := range w {
			if math.Float32bits(w[i]) != math.Float32bits(g[i]) {
				t.Fatalf("weight %s[%d]: device %v, host %v", name, i, g[i], w[i])
			}
		}
	}
	for i := range want.Logs {
		a, b := want.Logs[i], got.Logs[i]
		a.Seconds, b.Seconds = Times{}, Times{}
		// The device sums the gradient norm in another order (last bits).
		if math.Abs(a.GradNorm-b.GradNorm) > 1e-12*a.GradNorm {
			t.Fatalf("log step %d: gradient norm %v on the host, %v on the device", i+1, a.GradNorm, b.GradNorm)
		}
		a.GradNorm, b.GradNorm = 0, 0
		ja, _ := json.Marshal(a)
		jb, _ := json.Marshal(b)
		if string(ja) != string(jb) {
			t.Fatalf("log step %d differs:\nhost   %s\ndevice %s", i+1, ja, jb)
		}
	}
}

// With float16 generation (Load.Half) the rollouts read float16 copies of
// the float32 weights the DeviceTrainer updates, cast on the device before
// each step: the run trains, and its first step's rollouts (before any
// update) sample nearly what float32 ones do.
func TestDeviceResidentHalfRun(t *testing.T) {
	cfg := tinyConfig("")
	cfg.Steps, cfg.SaveSteps = 3, 3
	prompts := tinyPrompts(6)
	cfg.OutputDir = t.TempDir()
	want := run(t, cfg, prompts, tinyOptions())
	cfg.OutputDir = t.TempDir()
	o := tinyOptions()
	o.Load.DeviceResident, o.Load.Half = true, true
	tr, err := New(tinyModel(t), []Reward{targetShare}, prompts, cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if !tr.gen.HalfWeights() {
		t.Fatal("the rollouts do not read float16 weights")
	}
	got, err := tr.Train(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	moved := 0.0
	for name, w := range want.Weights {
		for i := range w {
			moved = math.Max(moved, math.Abs(float64(got.Weights[name][i]-w[i])))
		}
	}
	for i, l := range got.Logs {
		t.Logf("step %d: float32 rollouts reward %.3f, float16 %.3f; loss %.4f vs %.4f", i+1, want.Logs[i].Reward.Mean, l.Reward.Mean, want.Logs[i].Loss, l.Loss)
		if math.IsNaN(l.Loss) || l.Skipped > 0 {
			t.Fatalf("step %d: %+v", i+1, l)
		}
	}
	t.Logf("final weights differ from the float32 run's by up to %.3g", moved)
	if moved == 0 {
		t.Fatal("float16 rollouts gave the float32 run's weights exactly: the float16 path did not run")
	}
}
