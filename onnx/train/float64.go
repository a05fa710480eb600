package train

import (
	"fmt"
	"math"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/onnxpb"
)

// CastFloat64 turns a float32 model into float64 for gradient checks
// (ir.CastFloat64), then replaces the ops ONNX Runtime has no double kernel
// for — Erf, Gelu, Softplus, LeakyRelu, Mean — by equivalent subgraphs of double-capable ops.
// Casting those through float32 instead would ruin a finite-difference check.
func CastFloat64(m *onnxpb.ModelProto) error {
	if err := ir.CastFloat64(m); err != nil {
		return err
	}
	return decomposeForDouble(m.Graph)
}

func decomposeForDouble(g *onnxpb.GraphProto) error {
	e := newEditor(g)
	e.prefix = "f64/"
	old := g.Node
	g.Node = nil
	dscalar := func(v float64) string { return e.init("f64/c", ir.Scalar("", v)) }
	for _, n := range old {
		if d := n.GetDomain(); d != "" && d != "ai.onnx" {
			g.Node = append(g.Node, n)
			continue
		}
		switch n.GetOpType() {
		case "Erf":
			erfDouble(e, n.Input[0], n.Output[0], dscalar)
		case "Gelu":
			x := n.Input[0]
			half := dscalar(0.5)
			var inner string
			switch ir.AttrStringOf(n, "approximate", "none") {
			case "none":
				t := e.op("Mul", []string{x, dscalar(1 / math.Sqrt2)})
				erfOut := e.fresh("f64/erf")
				erfDouble(e, t, erfOut, dscalar)
				inner = erfOut
			case "tanh":
				x3 := e.op("Mul", []string{e.op("Mul", []string{x, x}), x})
				u := e.op("Mul", []string{e.op("Add", []string{x, e.op("Mul", []string{x3, dscalar(0.044715)})}), dscalar(math.Sqrt(2 / math.Pi))})
				inner = e.op("Tanh", []string{u})
			default:
				return fmt.Errorf("cast to float64: Gelu approximate=%q", ir.AttrStringOf(n, "approximate", ""))
			}
			onePlus := e.op("Add", []string{inner, dscalar(1)})
			g.Node = append(g.Node, &onnxpb.NodeProto{Name: e.fresh("f64/gelu"), OpType: "Mul",
				Input: []string{e.op("Mul", []string{x, half}), onePlus}, Output: []string{n.Output[0]}})
		case "Mean":
			sum := e.op("Sum", n.Input)
			g.Node = append(g.Node, &onnxpb.NodeProto{Name: e.fresh("f64/mean"), OpType: "Mul",
				Input: []string{sum, dscalar(1 / float64(len(n.Input)))}, Output: []string{n.Output[0]}})
		case "LeakyRelu":
			x := n.Input[0]
			alpha := float64(ir.AttrFloatOf(n, "alpha", 0.01))
			pos := e.op("Greater", []string{x, dscalar(0)})
			g.Node = append(g.Node, &onnxpb.NodeProto{Name: e.fresh("f64/leakyrelu"), OpType: "Where",
				Input: []string{pos, x, e.op("Mul", []string{x, dscalar(alpha)})}, Output: []string{n.Output[0]}})
		case "Softplus":
			ex := e.op("Exp", []string{n.Input[0]})
			g.Node = append(g.Node, &onnxpb.NodeProto{Name: e.fresh("f64/softplus"), OpType: "Log",
				Input: []string{e.op("Add", []string{ex, dscalar(1)})}, Output: []string{n.Output[0]}})
		default:
			g.Node = append(g.Node, n)
		}
	}
	return nil
}

// erfDouble emits out = erf(x) in double from the everywhere-convergent
// series of positive terms
//
//	erf(x) = 2/√π · x · e^(−x²) · Σₙ (2x²)ⁿ / (1·3·5···(2n+1)),
//
// evaluated by Horner's rule on x clamped to [−6, 6] (|1 − erf(6)| < 3e-17).
// With no cancellation it is accurate to a few ulps.
func erfDouble(e *editor, x, out string, dscalar func(float64) string) {
	const lim = 6.0
	xc := e.op("Where", []string{e.op("Greater", []string{x, dscalar(lim)}), dscalar(lim), x})
	xc = e.op("Where", []string{e.op("Less", []string{xc, dscalar(-lim)}), dscalar(-lim), xc})
	x2 := e.op("Mul", []string{xc, xc})
	z := e.op("Mul", []string{x2, dscalar(2)})
	// Enough terms that the last one is < 1e-18 of the sum at |x| = lim.
	var coef []float64
	c := 1.0
	zmax := 2 * lim * lim
	sum, term := 0.0, 1.0
	for n := 0; ; n++ {
		coef = append(coef, c)
		sum += term
		if n > int(zmax) && term < 1e-18*sum {
			break
		}
		c /= float64(2*n + 3)
		term *= zmax / float64(2*n+3)
	}
	p := dscalar(coef[len(coef)-1])
	for i := len(coef) - 2; i >= 0; i-- {
		p = e.op("Add", []string{e.op("Mul", []string{p, z}), dscalar(coef[i])})
	}
	ex := e.op("Exp", []string{e.op("Neg", []string{x2})})
	pre := e.op("Mul", []string{e.op("Mul", []string{xc, ex}), dscalar(2 / math.Sqrt(math.Pi))})
	e.g.Node = append(e.g.Node, &onnxpb.NodeProto{Name: e.fresh("f64/erf"), OpType: "Mul", Input: []string{pre, p}, Output: []string{out}})
}

// isDoubleModel reports a model whose float tensors are all float64 (the
// gradient-check setting), where ops without a double kernel are decomposed.
func isDoubleModel(g *onnxpb.GraphProto) bool {
	double := false
	check := func(dt ir.DataType) bool {
		switch dt {
		case ir.Double:
			double = true
		case ir.Float, ir.Float16, ir.BFloat16:
			return false
		}
		return true
	}
	for _, t := range g.Initializer {
		if !check(t.GetDataType()) {
			return false
		}
	}
	for _, v := range append(append([]*onnxpb.ValueInfoProto{}, g.Input...), g.Output...) {
		if tt := v.GetType().GetTensorType(); tt != nil && !check(tt.GetElemType()) {
			return false
		}
	}
	return double
}
