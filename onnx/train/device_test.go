package train

import (
	"context"
	"math"
	"testing"

	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/onnxpb"
	"github.com/tagpr/tagpr/onnx/ort"
)

// deviceTrainingCase builds a tiny LM training graph and two batches.
func deviceTrainingCase(t *testing.T) (*TrainingGraph, []map[string]ort.Value) {
	t.Helper()
	_, tg := tinyLlamaTraining(t)
	data := &LMDataset{Rows: randomRows(7, 4, 6, 8, 32), SeqLen: 8, Graph: tg}
	var batches []map[string]ort.Value
	for _, idx := range [][]int{{0, 1}, {2, 3}} {
		in, rel, err := data.Batch(idx)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(rel)
		batches = append(batches, in)
	}
	return tg, batches
}

// hostAndDevice opens two trainers of tg, the second run by a
// DeviceTrainer.
func hostAndDevice(t *testing.T, tg *TrainingGraph, opts TrainerOptions) (host, base *Trainer, dev *DeviceTrainer) {
	t.Helper()
	var err error
	if host, err = NewTrainer(tg, opts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(host.Close)
	if base, err = NewTrainer(tg, opts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(base.Close)
	if dev, err = NewDeviceTrainer(base, ort.Options{}, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dev.Close) // runs before base.Close
	return host, base, dev
}

func sameBits(a, b []float32) int {
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return i
		}
	}
	return -1
}

// Steps on the device path (the CPU device here, through the IO bindings a
// GPU uses) leave weights and AdamW moments bit-identical to the host
// Trainer's: single batches, accumulated micro-batches, weight decay,
// warmup; and only the batch, the loss, the kept outputs and a few
// scalars per weight cross per step.
func TestDeviceTrainerMatchesHost(t *testing.T) {
	tg, batches := deviceTrainingCase(t)
	opts := TrainerOptions{Schedule: Schedule{Peak: 5e-3, Warmup: 2, Total: 10}, WeightDecay: 0.1, ClipNorm: 1e6}
	host, base, dev := hostAndDevice(t, tg, opts)

	P := int64(len(tg.Params))
	var keptBytes int64
	for _, o := range tg.Outputs {
		for _, info := range base.sess.Outputs() {
			if info.Name == o {
				n := int64(4)
				for _, d := range info.Dimensions {
					n *= d
				}
				keptBytes += n
			}
		}
	}
	batchBytes := func(b map[string]ort.Value) int64 {
		var n int64
		for _, v := range b {
			k := int64(1)
			for _, d := range v.GetShape() {
				k *= d
			}
			if _, ok := v.(*ort.Tensor[int64]); ok {
				n += 8 * k
			} else {
				n += 4 * k
			}
		}
		return n
	}
	steps := [][]map[string]ort.Value{{batches[0]}, {batches[1]}, {batches[0], batches[1]}, {batches[1]}, {batches[1], batches[0]}, {batches[0], batches[1]}}
	// The last step weighs its micro-batches (Loop's loss-token shares).
	weightsOf := [][]float64{nil, nil, nil, nil, nil, {0.3, 0.7}}
	for s, micro := range steps {
		hr, err := host.StepWeighted(weightsOf[s], micro...)
		if err != nil {
			t.Fatal(err)
		}
		before := ort.TransferCounts()
		dr, err := dev.StepWeighted(weightsOf[s], micro...)
		if err != nil {
			t.Fatal(err)
		}
		moved := ort.TransferCounts().Sub(before)
		if hr.Loss != dr.Loss || hr.Skipped || dr.Skipped || hr.LR != dr.LR {
			t.Fatalf("step %d: host %+v, device %+v", s, hr, dr)
		}
		if rel := math.Abs(hr.GradNorm-dr.GradNorm) / hr.GradNorm; rel > 1e-12 {
			t.Fatalf("step %d: gradient norm %v on the host, %v on the device", s, hr.GradNorm, dr.GradNorm)
		}
		if i := sameBits(hr.Outputs["logits"], dr.Outputs["logits"]); i >= 0 {
			t.Fatalf("step %d: kept logits differ at %d", s, i)
		}
		var wantIn int64
		for _, b := range micro {
			wantIn += batchBytes(b)
		}
		wantIn += int64(4*len(adamScalars)) + 4 // the update's scalars, grad_inv again for the norm
		wantOut := int64(len(micro))*(4+keptBytes) + 8*P + 4*P
		var wantD2D int64
		if len(micro) > 1 {
			wantIn += 4 * int64(len(micro)-1) // each sum's weight
			if weightsOf[s] == nil {
				for _, p := range base.Params {
					wantD2D += int64(4 * len(p.Data)) // the first micro-batch's gradients copied into the sums
				}
			} else {
				wantIn += 4 // the first micro-batch's scale
			}
		}
		t.Logf("step %d (%d micro-batches): %v", s, len(micro), moved)
		if moved.HostToDevice != wantIn || moved.DeviceToHost != wantOut || moved.DeviceToDevice != wantD2D {
			t.Fatalf("step %d moved %v; want host->device %d B (batch + scalars), device->host %d B (loss, kept outputs, per-weight sums and checks), device->device %d B",
				s, moved, wantIn, wantOut, wantD2D)
		}
	}
	if err := dev.Sync(); err != nil {
		t.Fatal(err)
	}
	for i, p := range host.Params {
		for k, pair := range [][2][]float32{{p.Data, base.Params[i].Data}, {host.Opt.M[i], base.Opt.M[i]}, {host.Opt.V[i], base.Opt.V[i]}} {
			if j := sameBits(pair[0], pair[1]); j >= 0 {
				t.Fatalf("%s (%s) element %d: host %v, device %v", p.Name, []string{"weight", "first moment", "second moment"}[k], j, pair[0][j], pair[1][j])
			}
		}
	}
	if host.Opt.Step != base.Opt.Step || host.Steps != base.Steps {
		t.Fatalf("host %d updates, device %d", host.Opt.Step, base.Opt.Step)
	}
}

// With clipping active the device's float64 norm is summed in another
// order: the weights may differ in their last bits, no more.
func TestDeviceTrainerClipping(t *testing.T) {
	tg, batches := deviceTrainingCase(t)
	opts := TrainerOptions{Schedule: Schedule{Peak: 1e-2}, ClipNorm: 0.05}
	host, base, dev := hostAndDevice(t, tg, opts)
	for s := 0; s < 3; s++ {
		hr, err := host.Step(batches[s%2])
		if err != nil {
			t.Fatal(err)
		}
		dr, err := dev.Step(batches[s%2])
		if err != nil {
			t.Fatal(err)
		}
		if hr.GradNorm < opts.ClipNorm {
			t.Fatalf("step %d: norm %v does not clip", s, hr.GradNorm)
		}
		if math.Abs(hr.Loss-dr.Loss) > 1e-6*math.Abs(hr.Loss) {
			t.Fatalf("step %d: loss %v vs %v", s, hr.Loss, dr.Loss)
		}
	}
	if err := dev.Sync(); err != nil {
		t.Fatal(err)
	}
	worst, same := 0.0, true
	for i, p := range host.Params {
		for j, x := range p.Data {
			d := math.Abs(float64(x - base.Params[i].Data[j]))
			worst = math.Max(worst, d)
			same = same && d == 0
		}
	}
	t.Logf("clipped steps: max |host - device weight| = %.3g (bit-identical: %v)", worst, same)
	if worst > 1e-6 {
		t.Fatalf("clipped device steps differ from the host's by %.3g", worst)
	}
}

// Generation and training share one copy of the weights on the device:
// the model's uploaded weights are the trainer's, updated in place, and a
// generation after the steps computes the training graph's logits.
func TestDeviceTrainerSharesWeightsWithGeneration(t *testing.T) {
	gen, ws, tg, rows := sharedWeightsCase(t, true)
	dw, err := gen.UploadWeights(ws)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, d := range dw {
			d.Release()
		}
	}()
	tr, err := NewTrainer(tg, TrainerOptions{Schedule: Schedule{Peak: 1e-2}})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	dev, err := NewDeviceTrainer(tr, ort.Options{}, dw)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	for name, w := range dev.Weights() {
		if dw[name] != nil && dw[name] != w {
			t.Fatalf("weight %s is a copy, not the generation model's device tensor", name)
		}
	}
	checkGenerationFollows(t, gen, tg, rows, dev.Step, dev.Compute)
}

// sharedWeightsCase is a tiny Llama opened for generation with its weights
// as inputs (device-resident or not), its training graph keeping the
// logits, and two rows to train on.
func sharedWeightsCase(t *testing.T, device bool) (*lm.Model, []lm.Weight, *TrainingGraph, [][]int64) {
	t.Helper()
	m, tg := tinyLlamaTraining(t)
	gen, ws, err := lm.OpenWithWeightInputs(cloneModel(m), "generation", nil, lm.LoadOptions{DeviceResident: device})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gen.Close() })
	return gen, ws, tg, randomRows(6, 2, 8, 8, 32)
}

// tinyLlamaTraining is a tiny Llama and its training graph for 2×8 rows,
// keeping the logits.
func tinyLlamaTraining(t *testing.T) (*onnxpb.ModelProto, *TrainingGraph) {
	t.Helper()
	cfg := tinyConfig(lm.Llama, "float32")
	cfg.InitStd = 0.05
	m, err := lm.Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tg, _, err := BuildLMTraining(m, LMTraining{Batch: 2, SeqLen: 8, Keep: []string{"logits"}})
	if err != nil {
		t.Fatal(err)
	}
	return m, tg
}

// checkGenerationFollows trains five steps on rows (step) and checks that
// gen's logits moved and equal the training graph's (compute) after them.
func checkGenerationFollows(t *testing.T, gen *lm.Model, tg *TrainingGraph, rows [][]int64,
	step func(...map[string]ort.Value) (StepResult, error), compute func(map[string]ort.Value) (float64, map[string][]float32, error)) {
	t.Helper()
	before, _, err := gen.Forward(context.Background(), rows, 0)
	if err != nil {
		t.Fatal(err)
	}
	in, rel, err := (&LMDataset{Rows: rows, SeqLen: 8, Graph: tg}).Batch([]int{0, 1})
	if err != nil {
		t.Fatal(err)
	}
	defer rel()
	for range 5 {
		if _, err := step(in); err != nil {
			t.Fatal(err)
		}
	}
	after, _, err := gen.Forward(context.Background(), rows, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, outs, err := compute(in)
	if err != nil {
		t.Fatal(err)
	}
	moved, diff := 0.0, 0.0
	for i := range after {
		moved = math.Max(moved, math.Abs(float64(after[i]-before[i])))
		diff = math.Max(diff, math.Abs(float64(after[i]-outs["logits"][i])))
	}
	t.Logf("logits moved by up to %.3g; generation vs training graph %.3g", moved, diff)
	if moved < 1e-3 {
		t.Fatalf("generation logits did not change after training (max |Δ| %.3g)", moved)
	}
	if diff > 1e-4 {
		t.Fatalf("generation and training graph disagree after the update: max |Δ| %.3g", diff)
	}
}

// A Loop on the device path checkpoints (downloading weights and moments)
// and resumes (uploading them) to the host Loop's weights, bit for bit.
func TestDeviceLoopResumesToTheHostRun(t *testing.T) {
	tg, _ := deviceTrainingCase(t)
	opts := TrainerOptions{Schedule: Schedule{Peak: 5e-3, Warmup: 2, Total: 6}, WeightDecay: 0.1, ClipNorm: 0.5}
	data := &LMDataset{Rows: randomRows(4, 7, 5, 8, 32), SeqLen: 8, Graph: tg}
	run := func(dir string, steps int, device bool) *Trainer {
		tr, err := NewTrainer(tg, opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(tr.Close)
		loop := &Loop{Trainer: tr, Data: data, Examples: 7, BatchSize: 2, Accum: 2, Steps: steps, Dir: dir, CheckpointEvery: 2, Seed: 42}
		if device {
			d, err := NewDeviceTrainer(tr, ort.Options{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(d.Close)
			loop.Device = d
		}
		if _, err := loop.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		return tr
	}
	host := run(t.TempDir(), 6, false)
	dir := t.TempDir()
	run(dir, 3, true)
	dev := run(dir, 6, true) // resumes after step 3
	for i, p := range host.Params {
		if j := sameBits(p.Data, dev.Params[i].Data); j >= 0 {
			t.Fatalf("%s element %d: host %v, resumed device run %v", p.Name, j, p.Data[j], dev.Params[i].Data[j])
		}
		if j := sameBits(host.Opt.V[i], dev.Opt.V[i]); j >= 0 {
			t.Fatalf("%s second moment element %d differs", p.Name, j)
		}
	}
}
