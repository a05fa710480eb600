package train

import (
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/onnxpb"
)

// After lm.NameWeights the trainable weights carry PyTorch's names, so
// each gradient compares with torch's gradient of the same name directly
// (no by-value map), and GPT-2's tied wte — stored twice by the exporter —
// is one weight whose gradient is torch's (the sum over both uses).
func TestNamedFixtureGradientsMatchPyTorch(t *testing.T) {
	for _, name := range []string{"gpt2", "llama", "qwen2-chat"} {
		t.Run(name, func(t *testing.T) {
			var f *fixture
			gradsDir := filepath.Join(fixtureDir, name)
			if name == "qwen2-chat" {
				// An Optimum export whose equal tensors (the three RMSNorm
				// gains, k_proj's and v_proj's biases) are stored once:
				// untied by name, each gets its own gradient, as in PyTorch
				// (scripts/fixtures/qwen2_chat_grads.py).
				gradsDir += "-grads"
				f = loadExportFixture(t, name, gradsDir)
			} else {
				f = loadFixture(t, name)
			}
			names, err := lm.NameWeights(f.model)
			if err != nil {
				t.Fatal(err)
			}
			loss, err := AddNextTokenLoss(f.model, NextTokenLoss{})
			if err != nil {
				t.Fatal(err)
			}
			fs := f.feeds(false)
			sp, err := Specialize(f.model, feedShapes(fs))
			if err != nil {
				t.Fatal(err)
			}
			tg, err := Differentiate(sp, loss, SelectParams(sp, nil), nil)
			if err != nil {
				t.Fatal(err)
			}
			tr, err := NewTrainer(tg, TrainerOptions{Schedule: Schedule{Peak: 1e-3}})
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			if _, _, err := tr.Compute(toValues(t, fs)); err != nil {
				t.Fatal(err)
			}
			want, _, err := ReadSafetensors(filepath.Join(gradsDir, "grads.safetensors"))
			if err != nil {
				t.Fatal(err)
			}
			if len(tr.Params) != len(want) {
				t.Errorf("%d trainable weights, PyTorch has %d parameters", len(tr.Params), len(want))
			}
			worst := 0.0
			for i, p := range tr.Params {
				hp, ok := names.ByInit(p.Name)
				w, ok2 := want[p.Name]
				if !ok || !ok2 || hp.Name != p.Name {
					t.Fatalf("trainable weight %q is not a PyTorch parameter name", p.Name)
				}
				g := tr.Grads()[i]
				maxAbs, maxDiff := 0.0, 0.0
				for k := range g {
					src := k
					if hp.Transposed { // stored [in,out]; torch [out,in]
						out, in := hp.Shape[0], hp.Shape[1]
						o, j := int64(k)/in, int64(k)%in
						src = int(j*out + o)
					}
					maxAbs = math.Max(maxAbs, math.Abs(float64(w.F32[k])))
					maxDiff = math.Max(maxDiff, math.Abs(float64(w.F32[k]-g[src])))
				}
				rel := maxDiff / math.Max(maxAbs, 1e-12)
				worst = math.Max(worst, rel)
				if rel > 1e-4 {
					t.Errorf("%s: gradient off by %.3g relative", p.Name, rel)
				}
			}
			t.Logf("%d weights by PyTorch name, max rel err %.3g", len(tr.Params), worst)
		})
	}
}

// A tied lm head trains as one tensor: after training GPT-2 (whose
// exporter stored wte twice) the exported model's head is still exactly
// wte, and wte did change.
func TestTiedWeightsTrainAsOne(t *testing.T) {
	f := loadFixture(t, "gpt2")
	before, err := ir.Load(filepath.Join(fixtureDir, "gpt2", "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lm.NameWeights(f.model); err != nil {
		t.Fatal(err)
	}
	tg, _, err := BuildLMTraining(f.model, LMTraining{Batch: 2, SeqLen: 7})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range tg.Params {
		if strings.HasPrefix(p, "onnx::") {
			t.Fatalf("trainable weight %q: the head's copy was not folded", p)
		}
	}
	tr, err := NewTrainer(tg, TrainerOptions{Schedule: Schedule{Peak: 1e-2}})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	b := f.ref.Batch
	batch := NewLMBatch(b.InputIDs, len(b.InputIDs[0]), 0, nil)
	vals, err := batch.Values(tg)
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, err := tr.Step(vals); err != nil {
			t.Fatal(err)
		}
	}
	exp, err := ExportModel(f.model, tr.Weights(), nil)
	if err != nil {
		t.Fatal(err)
	}
	names, err := lm.MapHFNames(exp)
	if err != nil {
		t.Fatal(err)
	}
	if names.Tied["lm_head.weight"] != "transformer.wte.weight" || len(names.Copies) != 0 {
		t.Fatalf("after training: tied %v, copies %v", names.Tied, names.Copies)
	}
	wteBefore, wteAfter := initValues(t, before, "transformer.wte.weight"), initValues(t, exp, "transformer.wte.weight")
	moved := 0.0
	for i := range wteBefore {
		moved = math.Max(moved, math.Abs(float64(wteAfter[i]-wteBefore[i])))
	}
	if moved == 0 {
		t.Fatal("wte did not train")
	}
	t.Logf("wte moved by up to %.3g; the head reads it through a Transpose (one tensor)", moved)
}

func initValues(t *testing.T, m *onnxpb.ModelProto, name string) []float32 {
	t.Helper()
	for _, init := range m.GetGraph().GetInitializer() {
		if init.GetName() == name {
			v, err := ir.Float32s(init)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	t.Fatalf("no initializer %q", name)
	return nil
}
