package train

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/onnxpb"
	"github.com/tagpr/tagpr/onnx/ort"
)

const fixtureDir = "../testdata/pytorch"

type fixtureRef struct {
	KVHeads int64 `json:"kv_heads"`
	HeadDim int64 `json:"head_dim"`
	Batch   struct {
		InputIDs      [][]int64 `json:"input_ids"`
		AttentionMask [][]int64 `json:"attention_mask"`
		PositionIDs   [][]int64 `json:"position_ids"`
	} `json:"batch"`
	Loss struct {
		Torch float64 `json:"torch"`
	} `json:"loss"`
}

type fixtureParamMap struct {
	Entries []struct {
		OnnxName    string  `json:"onnx_name"`
		Shape       []int64 `json:"shape"`
		TorchParam  string  `json:"torch_param"`
		Transposed  bool    `json:"transposed"`
		IsParameter bool    `json:"is_parameter"`
	} `json:"entries"`
}

// fixture is one PyTorch-exported model with its batch, as feeds.
type fixture struct {
	name  string
	model *onnxpb.ModelProto
	ref   fixtureRef
	pmap  fixtureParamMap
}

func loadFixture(t *testing.T, name string) *fixture {
	t.Helper()
	dir := filepath.Join(fixtureDir, name)
	m, err := ir.Load(filepath.Join(dir, "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{name: name, model: m}
	for file, v := range map[string]any{"reference.json": &f.ref, "param_map.json": &f.pmap} {
		b, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("%s/%s: %v", dir, file, err)
		}
	}
	return f
}

// loadExportFixture is a user's export (model.onnx alone in its folder)
// with the batch in refDir/reference.json.
func loadExportFixture(t *testing.T, name, refDir string) *fixture {
	t.Helper()
	m, err := ir.Load(filepath.Join(fixtureDir, name, "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{name: name, model: m}
	b, err := os.ReadFile(filepath.Join(refDir, "reference.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &f.ref); err != nil {
		t.Fatalf("%s/reference.json: %v", refDir, err)
	}
	return f
}

func flat(rows [][]int64) []int64 {
	var out []int64
	for _, r := range rows {
		out = append(out, r...)
	}
	return out
}

// feeds returns the batch as inputs: ids, mask, positions, the loss mask
// (token t counts iff mask[t-1] and mask[t]) and empty pasts.
func (f *fixture) feeds(double bool) map[string]feed {
	b := f.ref.Batch
	B, T := int64(len(b.InputIDs)), int64(len(b.InputIDs[0]))
	out := map[string]feed{
		"input_ids":      {shape: []int64{B, T}, i64: flat(b.InputIDs)},
		"attention_mask": {shape: []int64{B, T}, i64: flat(b.AttentionMask)},
		"position_ids":   {shape: []int64{B, T}, i64: flat(b.PositionIDs)},
	}
	lm := make([]float64, B*T)
	for i := range B {
		for j := int64(1); j < T; j++ {
			if b.AttentionMask[i][j-1] == 1 && b.AttentionMask[i][j] == 1 {
				lm[i*T+j] = 1
			}
		}
	}
	out[LossMaskInput] = feed{shape: []int64{B, T}, f64: lm}
	for _, vi := range f.model.Graph.Input {
		if n := vi.GetName(); len(n) > 15 && n[:15] == "past_key_values" {
			out[n] = feed{shape: []int64{B, f.ref.KVHeads, 0, f.ref.HeadDim}, f64: []float64{}}
		}
	}
	return out
}

func (f *fixture) params() []string {
	var out []string
	for _, e := range f.pmap.Entries {
		if e.IsParameter {
			out = append(out, e.OnnxName)
		}
	}
	return out
}

func feedShapes(fs map[string]feed) map[string][]int64 {
	s := map[string][]int64{}
	for k, v := range fs {
		s[k] = v.shape
	}
	return s
}

// float32 feeds for a Trainer.
func toValues(t *testing.T, fs map[string]feed) map[string]ort.Value {
	out := map[string]ort.Value{}
	for k, f := range fs {
		if ir.NumElements(f.shape) == 0 {
			continue // folded into the graph by Specialize
		}
		var v ort.Value
		var err error
		if f.f64 != nil {
			d := make([]float32, len(f.f64))
			for i, x := range f.f64 {
				d[i] = float32(x)
			}
			v, err = ort.NewTensor(f.shape, d)
		} else {
			v, err = ort.NewTensor(f.shape, f.i64)
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { v.Destroy() })
		out[k] = v
	}
	return out
}

// TestFixtureGradientsMatchPyTorch: fp32 gradients of the masked next-token
// loss through the derived training graph equal torch autograd's.
func TestFixtureGradientsMatchPyTorch(t *testing.T) {
	for _, name := range []string{"gpt2", "llama"} {
		t.Run(name, func(t *testing.T) {
			f := loadFixture(t, name)
			loss, err := AddNextTokenLoss(f.model, NextTokenLoss{})
			if err != nil {
				t.Fatal(err)
			}
			fs := f.feeds(false)
			sp, err := Specialize(f.model, feedShapes(fs))
			if err != nil {
				t.Fatal(err)
			}
			tg, err := Differentiate(sp, loss, f.params(), nil)
			if err != nil {
				t.Fatal(err)
			}
			tr, err := NewTrainer(tg, TrainerOptions{Schedule: Schedule{Peak: 1e-3}})
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			l, _, err := tr.Compute(toValues(t, fs))
			if err != nil {
				t.Fatal(err)
			}
			if d := math.Abs(l - f.ref.Loss.Torch); d > 1e-5*f.ref.Loss.Torch {
				t.Errorf("loss %.7f, torch %.7f", l, f.ref.Loss.Torch)
			}
			want, _, err := ReadSafetensors(filepath.Join(fixtureDir, name, "grads.safetensors"))
			if err != nil {
				t.Fatal(err)
			}
			got := map[string][]float64{}
			for i, p := range tr.Params {
				var e = f.pmap.Entries[0]
				for _, x := range f.pmap.Entries {
					if x.OnnxName == p.Name {
						e = x
					}
				}
				g := tr.Grads()[i]
				acc := got[e.TorchParam]
				if acc == nil {
					acc = make([]float64, len(g))
				}
				for k := range g {
					src := k
					if e.Transposed { // ONNX [r,c] = torch [c,r]ᵀ
						r, c := e.Shape[0], e.Shape[1]
						i, j := int64(k)/r, int64(k)%r // torch index (i,j) in [c, r]
						src = int(j*c + i)
					}
					acc[k] += float64(g[src])
				}
				got[e.TorchParam] = acc
			}
			worst := 0.0
			for tp, w := range want {
				g := got[tp]
				if g == nil {
					t.Errorf("no gradient for torch parameter %s", tp)
					continue
				}
				maxAbs, maxDiff := 0.0, 0.0
				for k, x := range w.F32 {
					maxAbs = math.Max(maxAbs, math.Abs(float64(x)))
					maxDiff = math.Max(maxDiff, math.Abs(float64(x)-g[k]))
				}
				rel := maxDiff / math.Max(maxAbs, 1e-12)
				worst = math.Max(worst, rel)
				if rel > 1e-4 {
					t.Errorf("%s: max |Δ| %.3g vs max |grad| %.3g: rel %.3g", tp, maxDiff, maxAbs, rel)
				}
			}
			t.Logf("%d torch parameters, loss %.7f (torch %.7f), max rel err %.3g", len(want), l, f.ref.Loss.Torch, worst)
		})
	}
}

// TestFixtureFiniteDifferences: the whole exported models, cast to float64.
func TestFixtureFiniteDifferences(t *testing.T) {
	for _, name := range []string{"gpt2", "llama"} {
		t.Run(name, func(t *testing.T) {
			f := loadFixture(t, name)
			if err := CastFloat64(f.model); err != nil {
				t.Fatal(err)
			}
			loss, err := AddNextTokenLoss(f.model, NextTokenLoss{})
			if err != nil {
				t.Fatal(err)
			}
			worst := gradCheck(t, f.model, loss, f.params(), f.feeds(true), 3)
			t.Logf("max rel err %.3g", worst)
		})
	}
}

// TestFixtureLoRAExport: LoRA on an exported GPT-2 (Conv1D weights used by
// Gemm) and Llama (transposed MatMul weights); the merged export gives the
// training graph's logits.
func TestFixtureLoRAExport(t *testing.T) {
	for _, name := range []string{"gpt2", "llama"} {
		t.Run(name, func(t *testing.T) {
			f := loadFixture(t, name)
			tg, ads, err := BuildLMTraining(f.model, LMTraining{Batch: 2, SeqLen: 7, LoRA: &LoRA{Rank: 2, Alpha: 4, Seed: 3}, Keep: []string{"logits"}})
			if err != nil {
				t.Fatal(err)
			}
			gemm := 0
			for _, n := range f.model.Graph.Node {
				for _, a := range ads {
					if n.GetOpType() == "Gemm" && len(n.Input) > 1 && n.Input[1] == a.Weight {
						gemm++
					}
				}
			}
			tr, err := NewTrainer(tg, TrainerOptions{Schedule: Schedule{Peak: 2e-2}})
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			fs := f.feeds(false)
			in := toValues(t, fs)
			var first, last float64
			for s := 0; s < 15; s++ {
				r, err := tr.Step(in)
				if err != nil {
					t.Fatal(err)
				}
				if s == 0 {
					first = r.Loss
				}
				last = r.Loss
			}
			_, outs, err := tr.Compute(in)
			if err != nil {
				t.Fatal(err)
			}
			exp, err := ExportModel(f.model, tr.Weights(), ads)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := ir.Marshal(exp)
			s, err := ort.NewSession(b, "export", ort.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Destroy()
			feeds := toValues(t, fs)
			delete(feeds, LossMaskInput)
			for _, vi := range exp.Graph.Input {
				if n := vi.GetName(); len(n) > 15 && n[:15] == "past_key_values" {
					v, _ := ort.NewTensor(fs[n].shape, []float32{})
					defer v.Destroy()
					feeds[n] = v
				}
			}
			res, err := s.Run(feeds, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Destroy()
			got, _ := ort.Data[float32]("logits", res.Get("logits"))
			maxd := 0.0
			for i, w := range outs["logits"] {
				maxd = math.Max(maxd, math.Abs(float64(got[i]-w)))
			}
			t.Logf("%d adapters (%d on Gemm); loss %.3f → %.3f; export vs training logits max |Δ| %.3g", len(ads), gemm, first, last, maxd)
			if last >= first || maxd > 1e-4 {
				t.Fatalf("loss %.3f → %.3f, logits differ by %.3g", first, last, maxd)
			}
		})
	}
}
