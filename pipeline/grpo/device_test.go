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
