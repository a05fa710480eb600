package train

import (
	"fmt"
	"math"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/onnxpb"
)

func init() {
	rules["Add"] = func(c *gctx, n *onnxpb.NodeProto, gy []string, need []bool) ([]string, error) {
		so := c.shape(n.Output[0])
		return []string{
			c.unbroadcast(gy[0], so, c.shape(n.Input[0])),
			c.unbroadcast(gy[0], so, c.shape(n.Input[1])),
		}, nil
	}
	rules["Sum"] = func(c *gctx, n *onnxpb.NodeProto, gy []string, need []bool) ([]string, error) {
		so := c.shape(n.Output[0])
		out := make([]string, len(n.Input))
		for i, in := range n.Input {
			if need[i] {
				out[i] = c.unbroadcast(gy[0], so, c.shape(in))
			}
		}
		return out, nil
	}
	rules["Mean"] = func(c *gctx, n *onnxpb.NodeProto, gy []string, need []bool) ([]string, error) {
		so := c.shape(n.Output[0])
		g := c.mul(gy[0], c.scalar(c.elem(n.Output[0]), 1/float64(len(n.Input))))
		out := make([]string, len(n.Input))
		for i, in := range n.Input {
			if need[i] {
				out[i] = c.unbroadcast(g, so, c.shape(in))
			}
		}
		return out, nil
	}
	rules["Sub"] = func(c *gctx, n *onnxpb.NodeProto, gy []string, need []bool) ([]string, error) {
		so := c.shape(n.Output[0])
		out := []string{"", ""}
		if need[0] {
			out[0] = c.unbroadcast(gy[0], so, c.shape(n.Input[0]))
		}
		if need[1] {
			out[1] = c.unbroadcast(c.neg(gy[0]), so, c.shape(n.Input[1]))
		}
		return out, nil
	}
	rules["Mul"] = func(c *gctx, n *onnxpb.NodeProto, gy []string, need []bool) ([]string, error) {
		so := c.shape(n.Output[0])
		a, b := n.Input[0], n.Input[1]
		out := []string{"", ""}
		if need[0] {
			out[0] = c.unbroadcast(c.mul(gy[0], b), so, c.shape(a))
		}
		if need[1] {
			out[1] = c.unbroadcast(c.mul(gy[0], a), so, c.shape(b))
		}
		return out, nil
	}
	rules["Div"] = func(c *gctx, n *onnxpb.NodeProto, gy []string, need []bool) ([]string, error) {
		so := c.shape(n.Output[0])
		a, b, y := n.Input[0], n.Input[1], n.Output[0]
		out := []string{"", ""}
		if need[0] {
			out[0] = c.unbroadcast(c.div(gy[0], b), so, c.shape(a))
		}
		if need[1] {
			out[1] = c.unbroadcast(c.neg(c.div(c.mul(gy[0], y), b)), so, c.shape(b))
		}
		return out, nil
	}
	rules["Neg"] = func(c *gctx, n *onnxpb.NodeProto, gy []string, need []bool) ([]string, error) {
		return []string{c.neg(gy[0])}, nil
	}
	identity := func(c *gctx, n *onnxpb.NodeProto, gy []string, need []bool) ([]string, error) {
		return []string{gy[0]}, nil
	}
	rules["Identity"] = identity
	// Dropout runs in eval mode in training graphs tagpr builds (its output 0
	// is its input); dropout masks are not supported.
	rules["Dropout"] = func(c *gctx, n *onnxpb.NodeProto, gy []string, need []bool) ([]string, error) {
		if tm := input(n, 2); tm != "" {
			t, ok := c.consts[tm]
			var v []bool
			var err error
			if ok {
				v, err = ir.Bools(t)
			}
			if !ok || err != nil || len(v) != 1 || v[0] {
				return nil, fmt.Errorf("Dropout in training mode is not supported (training_mode must be a constant false)")
			}
		}
		return []string{gy[0]}, nil
	}
	rules["Cast"] = func(c *gctx, n *onnxpb.NodeProto, gy []string, need []bool) ([]string, error) {
		return []string{c.castTo(gy[0], c.elem(n.Output[0]), c.elem(n.Input[0]))}, nil
	}
	rules["Pow"] = func(c *gctx, n *onnxpb.NodeProto, gy []string, need []bool) ([]string, error) {
		so := c.shape(n.Output[0])
		a, b, y := n.Input[0], n.Input[1], n.Output[0]
		dt := c.elem(a)
		out := []string{"", ""}
		if need[0] {
			var d string
			if p, ok := c.constScalar(b); ok && p == 2 {
				d = c.mul(a, c.scalar(dt, 2))
			} else if ok {
				d = c.mul(c.op("Pow", []string{a, c.scalar(dt, p-1)}), c.scalar(dt, p))
			} else {
				bf := c.castTo(b, c.elem(b), dt)
				d = c.mul(c.op("Pow", []string{a, c.sub(bf, c.scalar(dt, 1))}), bf)
			}
			out[0] = c.unbroadcast(c.mul(gy[0], d), so, c.shape(a))
		}
		if need[1] {
			g := c.mul(c.mul(gy[0], y), c.op("Log", []string{a}))
			out[1] = c.unbroadcast(c.castTo(g, dt, c.elem(b)), so, c.shape(b))
		}
		return out, nil
	}
	unary := func(f func(c *gctx, x, y, g string, dt ir.DataType) string) rule {
		return func(c *gctx, n *onnxpb.NodeProto, gy []string, need []bool) ([]string, error) {
			return []string{f(c, n.Input[0], n.Output[0], gy[0], c.elem(n.Input[0]))}, nil
		}
	}
	rules["Sqrt"] = unary(func(c *gctx, x, y, g string, dt ir.DataType) string {
		return c.mul(c.div(g, y), c.scalar(dt, 0.5))
	})
	rules["Reciprocal"] = unary(func(c *gctx, x, y, g string, dt ir.DataType) string {
		return c.neg(c.mul(g, c.mul(y, y)))
	})
	rules["Exp"] = unary(func(c *gctx, x, y, g string, dt ir.DataType) string { return c.mul(g, y) })
	rules["Log"] = unary(func(c *gctx, x, y, g string, dt ir.DataType) string { return c.div(g, x) })
	rules["Tanh"] = unary(func(c *gctx, x, y, g string, dt ir.DataType) string {
		return c.mul(g, c.sub(c.scalar(dt, 1), c.mul(y, y)))
	})
	rules["Sigmoid"] = unary(func(c *gctx, x, y, g string, dt ir.DataType) string {
		return c.mul(g, c.mul(y, c.sub(c.scalar(dt, 1), y)))
	})
	rules["Erf"] = unary(func(c *gctx, x, y, g string, dt ir.DataType) string {
		e := c.op("Exp", []string{c.neg(c.mul(x, x))})
		return c.mul(g, c.mul(e, c.scalar(dt, 2/math.Sqrt(math.Pi))))
	})
	rules["Relu"] = unary(func(c *gctx, x, y, g string, dt ir.DataType) string {
		return c.op("Where", []string{c.op("Greater", []string{x, c.scalar(dt, 0)}), g, c.scalar(dt, 0)})
	})
	rules["Abs"] = unary(func(c *gctx, x, y, g string, dt ir.DataType) string {
		return c.op("Where", []string{c.op("Less", []string{x, c.scalar(dt, 0)}), c.neg(g), g})
	})
	rules["Softplus"] = unary(func(c *gctx, x, y, g string, dt ir.DataType) string {
		return c.mul(g, c.op("Sigmoid", []string{x}))
	})
	rules["LeakyRelu"] = func(c *gctx, n *onnxpb.NodeProto, gy []string, need []bool) ([]string, error) {
		x, dt := n.Input[0], c.elem(n.Input[0])
		alpha := float64(ir.AttrFloatOf(n, "alpha", 0.01))
		pos := c.op("Greater", []string{x, c.scalar(dt, 0)})
		return []string{c.op("Where", []string{pos, gy[0], c.mul(gy[0], c.scalar(dt, alpha))})}, nil
	}
	// Gelu (opset 20): exact or tanh approximation.
	rules["Gelu"] = func(c *gctx, n *onnxpb.NodeProto, gy []string, need []bool) ([]string, error) {
		x, dt := n.Input[0], c.elem(n.Input[0])
		var d string
		switch ir.AttrStringOf(n, "approximate", "none") {
		case "none":
			// Φ(x) + x·φ(x)
			cdf := c.mul(c.add(c.scalar(dt, 1), c.op("Erf", []string{c.mul(x, c.scalar(dt, 1/math.Sqrt2))})), c.scalar(dt, 0.5))
			pdf := c.mul(c.op("Exp", []string{c.mul(c.mul(x, x), c.scalar(dt, -0.5))}), c.scalar(dt, 1/math.Sqrt(2*math.Pi)))
			d = c.add(cdf, c.mul(x, pdf))
		case "tanh":
			// y = 0.5x(1+tanh(u)), u = k(x + 0.044715x³)
			k := math.Sqrt(2 / math.Pi)
			x2 := c.mul(x, x)
			u := c.mul(c.add(x, c.mul(c.mul(x2, x), c.scalar(dt, 0.044715))), c.scalar(dt, k))
			t := c.op("Tanh", []string{u})
			du := c.mul(c.add(c.scalar(dt, 1), c.mul(x2, c.scalar(dt, 3*0.044715))), c.scalar(dt, k))
			sech2 := c.sub(c.scalar(dt, 1), c.mul(t, t))
			d = c.mul(c.add(c.add(c.scalar(dt, 1), t), c.mul(c.mul(x, sech2), du)), c.scalar(dt, 0.5))
		default:
			return nil, fmt.Errorf("Gelu approximate=%q is not supported", ir.AttrStringOf(n, "approximate", ""))
		}
		return []string{c.mul(gy[0], d)}, nil
	}
	rules["Where"] = func(c *gctx, n *onnxpb.NodeProto, gy []string, need []bool) ([]string, error) {
		so := c.shape(n.Output[0])
		cond, x, y := n.Input[0], n.Input[1], n.Input[2]
		dt := c.elem(n.Output[0])
		out := []string{"", "", ""}
		if need[1] {
			out[1] = c.unbroadcast(c.op("Where", []string{cond, gy[0], c.scalar(dt, 0)}), so, c.shape(x))
		}
		if need[2] {
			out[2] = c.unbroadcast(c.op("Where", []string{cond, c.scalar(dt, 0), gy[0]}), so, c.shape(y))
		}
		return out, nil
	}
	minmax := func(cmp string) rule {
		return func(c *gctx, n *onnxpb.NodeProto, gy []string, need []bool) ([]string, error) {
			if len(n.Input) == 1 {
				return []string{gy[0]}, nil
			}
			if len(n.Input) != 2 {
				return nil, fmt.Errorf("%s with %d inputs is not supported (2 at most)", n.GetOpType(), len(n.Input))
			}
			so := c.shape(n.Output[0])
			a, b := n.Input[0], n.Input[1]
			dt := c.elem(n.Output[0])
			pickA := c.op(cmp, []string{a, b}) // ties go to a
			out := []string{"", ""}
			if need[0] {
				out[0] = c.unbroadcast(c.op("Where", []string{pickA, gy[0], c.scalar(dt, 0)}), so, c.shape(a))
			}
			if need[1] {
				out[1] = c.unbroadcast(c.op("Where", []string{pickA, c.scalar(dt, 0), gy[0]}), so, c.shape(b))
			}
			return out, nil
		}
	}
	rules["Max"] = minmax("GreaterOrEqual")
	rules["Min"] = minmax("LessOrEqual")
	rules["Clip"] = func(c *gctx, n *onnxpb.NodeProto, gy []string, need []bool) ([]string, error) {
		// The gradient passes where the value was not clipped.
		x, y := n.Input[0], n.Output[0]
		pass := c.op("Equal", []string{x, y})
		return []string{c.op("Where", []string{pass, gy[0], c.scalar(c.elem(x), 0)})}, nil
	}
}

// constScalar reads a one-element float or int constant.
func (c *gctx) constScalar(v string) (float64, bool) {
	t, ok := c.consts[v]
	if !ok || ir.NumElements(t.GetDims()) != 1 {
		return 0, false
	}
	switch t.GetDataType() {
	case ir.Float:
		f, err := ir.Float32s(t)
		if err == nil {
			return float64(f[0]), true
		}
	case ir.Double:
		f, err := ir.Float64s(t)
		if err == nil {
			return f[0], true
		}
	case ir.Int64, ir.Int32:
		f, err := ir.Int64s(t)
		if err == nil {
			return float64(f[0]), true
		}
	}
	return 0, false
}

func init() {
	rules["Sin"] = func(c *gctx, n *onnxpb.NodeProto, gy []string, need []bool) ([]string, error) {
		return []string{c.mul(gy[0], c.op("Cos", []string{n.Input[0]}))}, nil
	}
	rules["Cos"] = func(c *gctx, n *onnxpb.NodeProto, gy []string, need []bool) ([]string, error) {
		return []string{c.neg(c.mul(gy[0], c.op("Sin", []string{n.Input[0]})))}, nil
	}
}
