package train

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/lm"
)

// guardLM builds the training graph of a tiny Llama (vocab 32).
func guardLM(t *testing.T, initStd float64) (*TrainingGraph, *LMDataset) {
	t.Helper()
	cfg := tinyConfig(lm.Llama, "float32")
	cfg.InitStd = initStd
	m, err := lm.Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tg, _, err := BuildLMTraining(m, LMTraining{Batch: 2, SeqLen: 9})
	if err != nil {
		t.Fatal(err)
	}
	return tg, &LMDataset{Rows: randomRows(4, 8, 5, 9, 32), SeqLen: 9, Graph: tg}
}

// TestTrainerRefusesBadSettings: every optimizer setting is range-checked
// before a session is opened, the range in the message (the issue's
// --clip NaN and --weight-decay inf among them).
func TestTrainerRefusesBadSettings(t *testing.T) {
	tg, _ := guardLM(t, 0.02)
	ok := Schedule{Peak: 1e-3, Warmup: 2, Total: 10}
	for _, c := range []struct {
		o    TrainerOptions
		want string
	}{
		{TrainerOptions{Schedule: ok, ClipNorm: math.NaN()}, "clipping norm NaN: want a finite value ≥ 0"},
		{TrainerOptions{Schedule: ok, ClipNorm: -1}, "clipping norm -1: want a finite value ≥ 0"},
		{TrainerOptions{Schedule: ok, WeightDecay: math.Inf(1)}, "weight decay +Inf: want a finite value ≥ 0"},
		{TrainerOptions{Schedule: ok, WeightDecay: math.NaN()}, "weight decay NaN"},
		{TrainerOptions{Schedule: ok, WeightDecay: -0.1}, "weight decay -0.1"},
		{TrainerOptions{Schedule: Schedule{Peak: 1, Total: 10}, WeightDecay: 2}, "want lr·weight_decay < 1"},
		{TrainerOptions{Schedule: Schedule{Peak: math.NaN(), Total: 10}}, "learning rate NaN"},
		{TrainerOptions{Schedule: Schedule{Peak: math.Inf(1), Total: 10}}, "learning rate +Inf"},
		{TrainerOptions{Schedule: Schedule{Peak: 1e-3, Warmup: -5, Total: 10}}, "negative warmup -5"},
		{TrainerOptions{Schedule: ok, MaxSkipped: -1}, "max skipped steps -1: want ≥ 1"},
	} {
		tr, err := NewTrainer(tg, c.o)
		if err == nil {
			tr.Close()
			t.Errorf("%+v: accepted", c.o)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v; want %q", c.o, err, c.want)
		}
	}
}

// TestLoRARefusesBadSettings: LoRA alpha NaN (the issue's --lora-alpha NaN
// exported 172,352 NaN weights), a rank above the weight's width and a
// target regex that does not compile are refused, the latter with the
// parser's error rather than "no weight matches".
func TestLoRARefusesBadSettings(t *testing.T) {
	m, err := lm.Build(tinyConfig(lm.Llama, "float32"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		l    LoRA
		want string
	}{
		{LoRA{Rank: 4, Alpha: math.NaN()}, "alpha NaN: want a finite value > 0"},
		{LoRA{Rank: 4, Alpha: math.Inf(1)}, "alpha +Inf"},
		{LoRA{Rank: 100000}, "rank 100000 exceeds weight"},
		{LoRA{Rank: 4, Targets: []string{"re:(["}}, "missing closing ]"},
	} {
		_, _, err := BuildLMTraining(m, LMTraining{Batch: 1, SeqLen: 4, LoRA: &c.l})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v; want %q", c.l, err, c.want)
		}
	}
	if _, _, err := BuildLMTraining(m, LMTraining{Batch: 1, SeqLen: 4, Trainable: []string{"re:(["}}); err == nil || !strings.Contains(err.Error(), "missing closing ]") {
		t.Errorf("trainable re:([: %v", err)
	}
}

// TestDivergedRunStops: at learning rate 1e30 (the issue's --lr 1e30: 19 of
// 20 steps skipped, exit 0) the loop stops after MaxSkipped skipped steps
// in a row with an error naming the learning rate; every skipped step is a
// JSON line of the log, and no checkpoint holds a non-finite value.
func TestDivergedRunStops(t *testing.T) {
	tg, data := guardLM(t, 0.02)
	tr, err := NewTrainer(tg, TrainerOptions{Schedule: Schedule{Peak: 1e30, Total: 20, Decay: "constant"}, ClipNorm: 1, MaxSkipped: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	dir := t.TempDir()
	loop := &Loop{Trainer: tr, Data: data, BatchSize: 2, Steps: 20, Dir: dir, CheckpointEvery: 1, Seed: 1}
	_, err = loop.Run(context.Background())
	var div *DivergedError
	if !errors.As(err, &div) || !strings.Contains(err.Error(), "learning rate 1e+30 is likely too high") || div.Skipped != 3 {
		t.Fatalf("run at lr 1e30: %v; want a DivergedError after 3 skipped steps naming the learning rate", err)
	}
	f, err := os.Open(filepath.Join(dir, LogFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines, skipped int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines++
		var l map[string]any
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("log line %d %q is not JSON: %v", lines, sc.Text(), err)
		}
		if l["skipped"] == true {
			skipped++
			if l["loss"] != nil && l["grad_norm"] != nil || !strings.Contains(l["reason"].(string), "not finite") && !strings.Contains(l["reason"].(string), "loss is") {
				t.Errorf("skipped line %q: want a null loss or gradient norm and the reason", sc.Text())
			}
		}
	}
	if skipped != 3 || lines != div.Applied+3 {
		t.Fatalf("log: %d lines, %d skipped; want %d applied + 3 skipped", lines, skipped, div.Applied)
	}
	steps, _ := filepath.Glob(filepath.Join(dir, "step-*"))
	for _, s := range steps {
		w, _, err := ReadSafetensors(filepath.Join(s, weightsFile))
		if err != nil {
			t.Fatal(err)
		}
		for name, x := range w {
			if i := NonFiniteValue(x.F32); i >= 0 {
				t.Fatalf("%s: %s[%d] = %v", s, name, i, x.F32[i])
			}
		}
	}
}

// TestNonFiniteUpdateIsAnError: an update that overflows float32 (learning
// rate 1e38) is an error naming the weight, not NaN weights going on.
func TestNonFiniteUpdateIsAnError(t *testing.T) {
	tg, data := guardLM(t, 0.02)
	tr, err := NewTrainer(tg, TrainerOptions{Schedule: Schedule{Peak: 1e38, Total: 5}})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	in, rel, err := data.Batch([]int{0, 1})
	if err != nil {
		t.Fatal(err)
	}
	defer rel()
	_, err = tr.Step(in)
	if err == nil || !strings.Contains(err.Error(), "non-finite") || !strings.Contains(err.Error(), "learning rate 1e+38") {
		t.Fatalf("step at lr 1e38: %v; want an error naming the non-finite update", err)
	}
	// What the trainer holds now can be neither saved nor exported.
	if err := SaveCheckpoint(t.TempDir(), tr.Params, tr.Opt, RunState{Step: 1}, 2); err == nil || !strings.Contains(err.Error(), "refusing to save non-finite values") {
		t.Fatalf("checkpoint of non-finite weights: %v", err)
	}
}

// TestNotLearningIsWarned: a loss that stays at ln V after warmup (the
// issue's --lr 1e6: loss stuck at ln(vocab), no warning) sets a warning
// once; a run that learns gets none.
func TestNotLearningIsWarned(t *testing.T) {
	tg, data := guardLM(t, 0.002)
	if want := math.Log(32); math.Abs(tg.ChanceLoss-want) > 1e-12 {
		t.Fatalf("ChanceLoss %v, want ln 32 = %v", tg.ChanceLoss, want)
	}
	in, rel, err := data.Batch([]int{0, 1})
	if err != nil {
		t.Fatal(err)
	}
	defer rel()
	for _, c := range []struct {
		lr   float64
		warn bool
	}{{1e-9, true}, {3e-2, false}} {
		tr, err := NewTrainer(tg, TrainerOptions{Schedule: Schedule{Peak: c.lr, Warmup: 3, Total: 40}, ClipNorm: 1})
		if err != nil {
			t.Fatal(err)
		}
		var warnings []string
		for s := 0; s < 40; s++ {
			r, err := tr.Step(in)
			if err != nil {
				t.Fatal(err)
			}
			if r.Warning != "" {
				warnings = append(warnings, r.Warning)
				if s != 3+chanceWindow-1 {
					t.Errorf("lr %g: warned at step %d, want step %d (the first full window after warmup)", c.lr, s, 3+chanceWindow-1)
				}
			}
		}
		tr.Close()
		if c.warn && (len(warnings) != 1 || !strings.Contains(warnings[0], "uniform-guess level 3.466")) {
			t.Errorf("lr %g: warnings %q; want one naming ln 32", c.lr, warnings)
		}
		if !c.warn && len(warnings) > 0 {
			t.Errorf("lr %g: warnings %q on a run that learns", c.lr, warnings)
		}
	}
}

// TestStepLogJSON: a skipped step's NaN loss is written as null, not as a
// blank line (json.Marshal refuses NaN).
func TestStepLogJSON(t *testing.T) {
	js, err := json.Marshal(StepLog{Step: 3, Loss: math.NaN(), GradNorm: math.Inf(1), LR: 0.1, Skipped: true, Reason: "loss is NaN"})
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatalf("%s: %v", js, err)
	}
	if back["loss"] != nil || back["grad_norm"] != nil || back["step"] != 3.0 || back["lr"] != 0.1 || back["reason"] != "loss is NaN" {
		t.Fatalf("skipped step as %s", js)
	}
	js, _ = json.Marshal(StepLog{Step: 1, Loss: 2.5, GradNorm: 0.5})
	if !strings.Contains(string(js), `"loss":2.5`) || !strings.Contains(string(js), `"grad_norm":0.5`) {
		t.Fatalf("finite step as %s", js)
	}
}

// TestWritersRefuseNonFinite: safetensors and ONNX export check every value
// at write time.
func TestWritersRefuseNonFinite(t *testing.T) {
	p := filepath.Join(t.TempDir(), "w.safetensors")
	if err := WriteSafetensors(p, map[string]STensor{"w": {Shape: []int64{3}, F32: []float32{1, float32(math.Inf(-1)), 2}}}, nil); err == nil ||
		!strings.Contains(err.Error(), `tensor "w" holds -Inf at index 1`) {
		t.Fatalf("safetensors with -Inf: %v", err)
	}
	if _, err := os.Stat(p); err == nil {
		t.Fatal("a file was written")
	}
	if err := WriteSafetensors(p, map[string]STensor{"d": {Shape: []int64{1}, F64: []float64{math.NaN()}}}, nil); err == nil {
		t.Fatal("safetensors with a float64 NaN accepted")
	}
	m, err := lm.Build(tinyConfig(lm.GPT2, "float32"))
	if err != nil {
		t.Fatal(err)
	}
	name := floatWeights(m)[0]
	w := make([]float32, 0)
	for _, init := range m.Graph.Initializer {
		if init.GetName() == name {
			n := int64(1)
			for _, d := range init.GetDims() {
				n *= d
			}
			w = make([]float32, n)
		}
	}
	w[len(w)-1] = float32(math.NaN())
	out := filepath.Join(t.TempDir(), "model.onnx")
	if err := Export(out, m, map[string][]float32{name: w}, nil); err == nil || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "non-finite") {
		t.Fatalf("export with a NaN weight: %v", err)
	}
	if _, err := os.Stat(out); err == nil {
		t.Fatal("a model was exported")
	}
	// A LoRA merge with a NaN scale (alpha NaN before it was refused) is caught too.
	ad := Adapter{Weight: name, A: "a", B: "b", Scale: math.NaN()}
	for _, init := range m.Graph.Initializer {
		if init.GetName() == name && len(init.GetDims()) == 2 {
			in, outDim := init.GetDims()[0], init.GetDims()[1]
			if _, err := ExportModel(m, map[string][]float32{"a": make([]float32, in), "b": make([]float32, outDim)}, []Adapter{ad}); err == nil {
				t.Fatal("export of a NaN-scaled adapter accepted")
			}
		}
	}
}

// A weight that is not finite before any step is refused when the trainer
// opens, naming it (every step would be skipped and nothing saved), and a
// checkpoint whose save fails leaves no step folder behind.
func TestNonFiniteModelRefusedAtStart(t *testing.T) {
	m, err := lm.Build(tinyConfig(lm.Llama, "float32"))
	if err != nil {
		t.Fatal(err)
	}
	var bad string
	for _, init := range m.Graph.Initializer {
		if strings.HasSuffix(init.GetName(), "up_proj.weight") {
			v, _ := ir.Float32s(init)
			v[5] = float32(math.NaN())
			*init = *ir.Tensor(init.GetName(), init.GetDims(), v)
			bad = init.GetName()
			break
		}
	}
	for _, lora := range []*LoRA{nil, {Rank: 2, Alpha: 4, Seed: 1}} {
		tg, _, err := BuildLMTraining(m, LMTraining{Batch: 2, SeqLen: 8, LoRA: lora, FrozenAsInputs: lora != nil})
		if err != nil {
			t.Fatal(err)
		}
		_, err = NewTrainer(tg, TrainerOptions{Schedule: Schedule{Peak: 1e-3}})
		if err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "damaged") {
			t.Errorf("LoRA %v: NewTrainer on a model holding NaN: %v", lora != nil, err)
		}
	}

	dir := t.TempDir()
	p := &Param{Name: "w", Shape: []int64{2}, Data: []float32{1, float32(math.Inf(1))}}
	if err := SaveCheckpoint(dir, []*Param{p}, nil, RunState{Step: 3}, 2); err == nil {
		t.Fatal("a checkpoint of an infinite weight was saved")
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Fatalf("a failed save left %d entries (%s …) in the checkpoint folder", len(left), left[0].Name())
	}
}

// TestBuildLMTrainingRefusesNoShape: a zero LMTraining (or no model) is an
// error naming the knobs, not ORT's shape-inference failure on a Reshape of
// the loss ("Invalid position of 0") or a nil-pointer panic.
func TestBuildLMTrainingRefusesNoShape(t *testing.T) {
	m, err := lm.Build(tinyConfig(lm.Llama, "float32"))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []LMTraining{{}, {Batch: 2}, {Batch: 2, SeqLen: 1}, {Batch: -1, SeqLen: 8}} {
		if _, _, err := BuildLMTraining(m, o); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("batch %d, seq_len %d: want batch ≥ 1 and seq_len ≥ 2", o.Batch, o.SeqLen)) {
			t.Errorf("%+v: %v", o, err)
		}
	}
	if _, _, err := BuildLMTraining(nil, LMTraining{Batch: 1, SeqLen: 4}); err == nil || !strings.Contains(err.Error(), "no graph") {
		t.Errorf("nil model: %v", err)
	}
}
