package train

import (
	"math"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/ort"
)

// A step whose gradient is not finite is skipped and reported; weights and
// moments stay as they were, and the next good step applies.
func TestNonFiniteStepIsSkipped(t *testing.T) {
	g := ir.NewGraph("nf")
	x := g.Input("x", ir.Float, "n", 3)
	w := g.Initializer("W", ir.Tensor("", []int64{3, 2}, []float32{0.1, -0.2, 0.3, 0.4, -0.5, 0.6}))
	pred := g.Node("Sqrt", []string{g.Op("Abs", []string{g.Op("MatMul", []string{x, w})})}, []string{"pred"})[0]
	g.Output(pred, ir.Float, "n", 2)
	m := ir.MustModel(g, 18)
	loss, err := AddMSELoss(m, pred)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := Specialize(m, map[string][]int64{"x": {2, 3}, TargetInput: {2, 2}})
	if err != nil {
		t.Fatal(err)
	}
	tg, err := Differentiate(sp, loss, []string{"W"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := NewTrainer(tg, TrainerOptions{Schedule: Schedule{Peak: 0.1}})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	before := append([]float32{}, tr.Params[0].Data...)
	tgt, _ := ort.NewTensor([]int64{2, 2}, []float32{1, 1, 1, 1})
	zero, _ := ort.NewTensor([]int64{2, 3}, make([]float32, 6)) // √|0| has an infinite slope
	good, _ := ort.NewTensor([]int64{2, 3}, []float32{1, 2, 3, -1, 0.5, 2})
	defer tgt.Destroy()
	defer zero.Destroy()
	defer good.Destroy()
	r, err := tr.Step(map[string]ort.Value{"x": zero, TargetInput: tgt})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Skipped || !strings.Contains(r.Reason, "W") || math.IsNaN(r.Loss) {
		t.Fatalf("step with NaN gradient: %+v, want skipped naming W with a finite loss", r)
	}
	for i, v := range tr.Params[0].Data {
		if v != before[i] || tr.Opt.M[0][i] != 0 {
			t.Fatalf("skipped step changed weights or moments: %v", tr.Params[0].Data)
		}
	}
	if tr.Opt.Step != 0 {
		t.Fatalf("skipped step counted as an update: %d", tr.Opt.Step)
	}
	r, err = tr.Step(map[string]ort.Value{"x": good, TargetInput: tgt})
	if err != nil || r.Skipped {
		t.Fatalf("good step: %+v %v", r, err)
	}
	for _, v := range tr.Params[0].Data {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			t.Fatalf("weights not finite: %v", tr.Params[0].Data)
		}
	}
	if tr.Params[0].Data[0] == before[0] {
		t.Fatal("good step did not update")
	}
}
