package train

import (
	"testing"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/ort"
)

func init() { ort.MustInit() }

// A graph that reshapes with a shape computed at run time, the way exporters do.
func TestSpecializeFoldsShapeSubgraphs(t *testing.T) {
	g := ir.NewGraph("t")
	x := g.Input("x", ir.Float, "batch", "seq", 4)
	past := g.Input("past", ir.Float, "batch", "p", 4)
	w := g.Initializer("w", ir.Tensor("", []int64{4, 4}, make([]float32, 16)))
	cat := g.Op("Concat", []string{past, x}, ir.AttrInt("axis", 1))
	s := g.Op("Shape", []string{cat})
	b := g.Op("Gather", []string{s, g.Initializer("i0", ir.Scalar("", int64(0)))}, ir.AttrInt("axis", 0))
	bu := g.Op("Unsqueeze", []string{b, g.Initializer("ax", ir.Vector("", int64(0)))})
	shp := g.Op("Concat", []string{bu, g.Initializer("m1", ir.Vector("", int64(-1)))}, ir.AttrInt("axis", 0))
	y := g.Op("MatMul", []string{cat, w})
	r := g.Op("Reshape", []string{y, shp})
	g.Output(r, ir.Float, "batch", "n")
	m := ir.MustModel(g, 18)
	sp, err := Specialize(m, map[string][]int64{"x": {2, 3, 4}, "past": {2, 0, 4}})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range sp.Model.Graph.Node {
		switch n.OpType {
		case "Shape", "Gather", "Unsqueeze":
			t.Errorf("shape node %s survived specialization", n.OpType)
		}
	}
	if got := sp.Types[r].Shape; len(got) != 2 || got[0] != 2 || got[1] != 12 {
		t.Fatalf("shape of %s = %v, want [2 12]", r, got)
	}
	if sp.Types[y].Elem != ir.Float {
		t.Fatalf("type of %s = %v", y, sp.Types[y].Elem)
	}
	if len(sp.Model.Graph.Input) != 1 {
		t.Fatalf("inputs %v: the empty past should have become an initializer", sp.Model.Graph.Input)
	}
	if _, err := Specialize(m, map[string][]int64{"x": {2, 3, 4}}); err == nil {
		t.Fatal("missing input shape accepted")
	}
	if _, err := Specialize(m, map[string][]int64{"x": {2, 3, 5}, "past": {2, 0, 4}}); err == nil {
		t.Fatal("shape conflicting with a fixed dim accepted")
	}
}
