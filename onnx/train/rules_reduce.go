package train

import (
	"fmt"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/onnxpb"
)

// reduceAxes returns the normalized axes a Reduce* node reduces over, and
// whether it is a no-op (empty axes with noop_with_empty_axes).
func (c *gctx) reduceAxes(n *onnxpb.NodeProto, rank int) ([]int64, bool, error) {
	var axes []int64
	if a := input(n, 1); a != "" {
		v, err := c.constInts(a)
		if err != nil {
			return nil, false, err
		}
		axes = v
	} else {
		axes = ir.AttrIntsOf(n, "axes")
	}
	if len(axes) == 0 {
		if ir.AttrIntOf(n, "noop_with_empty_axes", 0) == 1 {
			return nil, true, nil
		}
		for i := 0; i < rank; i++ {
			axes = append(axes, int64(i))
		}
	}
	out := make([]int64, len(axes))
	for i, a := range axes {
		out[i] = normAxis(a, rank)
	}
	return out, false, nil
}

func keptShape(sx []int64, axes []int64) []int64 {
	k := append([]int64{}, sx...)
	for _, a := range axes {
		k[a] = 1
	}
	return k
}

func init() {
	reduce := func(kind string) rule {
		return func(c *gctx, n *onnxpb.NodeProto, gy []string, need []bool) ([]string, error) {
			x := n.Input[0]
			sx := c.shape(x)
			dt := c.elem(x)
			axes, noop, err := c.reduceAxes(n, len(sx))
			if err != nil {
				return nil, err
			}
			if noop {
				if kind == "sumsquare" {
					return []string{c.mul(gy[0], c.mul(x, c.scalar(dt, 2)))}, nil
				}
				return []string{gy[0]}, nil
			}
			ks := keptShape(sx, axes)
			g := c.reshape(gy[0], ks)
			count := int64(1)
			for _, a := range axes {
				count *= sx[a]
			}
			switch kind {
			case "sum":
				return []string{c.op("Expand", []string{g, c.e.ints(sx...)})}, nil
			case "mean":
				return []string{c.op("Expand", []string{c.mul(g, c.scalar(dt, 1/float64(count))), c.e.ints(sx...)})}, nil
			case "sumsquare":
				return []string{c.mul(c.op("Expand", []string{g, c.e.ints(sx...)}), c.mul(x, c.scalar(dt, 2)))}, nil
			case "l2":
				y := c.reshape(n.Output[0], ks)
				return []string{c.mul(g, c.div(x, y))}, nil
			case "logsumexp":
				y := c.reshape(n.Output[0], ks)
				return []string{c.mul(g, c.op("Exp", []string{c.sub(x, y)}))}, nil
			case "max":
				// Ties share the gradient equally.
				y := c.reshape(n.Output[0], ks)
				mask := c.op("Cast", []string{c.op("Equal", []string{x, y})}, ir.AttrInt("to", int64(dt)))
				cnt := c.reduceSum(mask, axes, true)
				return []string{c.mul(mask, c.div(g, cnt))}, nil
			}
			return nil, fmt.Errorf("unknown reduction %s", kind)
		}
	}
	rules["ReduceSum"] = reduce("sum")
	rules["ReduceMean"] = reduce("mean")
	rules["ReduceMax"] = reduce("max")
	rules["ReduceMin"] = reduce("max")
	rules["ReduceSumSquare"] = reduce("sumsquare")
	rules["ReduceL2"] = reduce("l2")
	rules["ReduceLogSumExp"] = reduce("logsumexp")

	rules["Softmax"] = func(c *gctx, n *onnxpb.NodeProto, gy []string, need []bool) ([]string, error) {
		y := n.Output[0]
		axis := normAxis(ir.AttrIntOf(n, "axis", -1), len(c.shape(y)))
		if guarded, clean := c.nanGuarded(y); clean != "" {
			// Rows the forward replaced by 0 are NaN in y; use the forward's
			// cleaned copy so the gradient (0 there anyway) stays finite.
			y = clean
		} else if guarded {
			y = c.op("Where", []string{c.op("IsNaN", []string{y}), c.scalar(c.elem(y), 0), y})
		}
		s := c.reduceSum(c.mul(gy[0], y), []int64{axis}, true)
		return []string{c.mul(y, c.sub(gy[0], s))}, nil
	}
	rules["LogSoftmax"] = func(c *gctx, n *onnxpb.NodeProto, gy []string, need []bool) ([]string, error) {
		y := n.Output[0]
		axis := normAxis(ir.AttrIntOf(n, "axis", -1), len(c.shape(y)))
		if sg, ok := c.sparse[gy[0]]; ok && sg.axis == axis {
			// The gradient is a scatter into zeros (the log-probs were only
			// gathered, as in a cross-entropy): scatter-add onto −softmax·Σg
			// directly instead of materializing the zeros and subtracting.
			s := c.reduceSum(sg.updates, []int64{axis}, true)
			base := c.mul(c.op("Exp", []string{y}), c.neg(s))
			return []string{c.op("ScatterElements", []string{base, sg.indices, sg.updates}, ir.AttrInt("axis", axis), ir.AttrString("reduction", "add"))}, nil
		}
		s := c.reduceSum(gy[0], []int64{axis}, true)
		return []string{c.sub(gy[0], c.mul(c.op("Exp", []string{y}), s))}, nil
	}
	rules["LayerNormalization"] = func(c *gctx, n *onnxpb.NodeProto, gy []string, need []bool) ([]string, error) {
		return normGrad(c, n, gy, need, true)
	}
	rules["RMSNormalization"] = func(c *gctx, n *onnxpb.NodeProto, gy []string, need []bool) ([]string, error) {
		return normGrad(c, n, gy, need, false)
	}
}

// normGrad differentiates LayerNormalization (centered) and RMSNormalization
// over the axes from `axis` on. Mean and 1/σ are recomputed in the input's
// precision rather than read from the optional outputs (whose type follows
// stash_type).
func normGrad(c *gctx, n *onnxpb.NodeProto, gy []string, need []bool, centered bool) ([]string, error) {
	if len(n.Output) > 1 {
		for _, o := range n.Output[1:] {
			if o != "" && len(gy) > 1 && gy[1] != "" {
				return nil, fmt.Errorf("gradients through the Mean/InvStdDev outputs are not supported")
			}
		}
	}
	x, scale, bias := n.Input[0], n.Input[1], input(n, 2)
	sx := c.shape(x)
	dt := c.elem(x)
	axis := normAxis(ir.AttrIntOf(n, "axis", -1), len(sx))
	eps := float64(ir.AttrFloatOf(n, "epsilon", 1e-5))
	var axes []int64
	count := int64(1)
	for a := axis; a < int64(len(sx)); a++ {
		axes = append(axes, a)
		count *= sx[a]
	}
	inv := c.scalar(dt, 1/float64(count))
	mean := func(v string) string { return c.mul(c.reduceSum(v, axes, true), inv) }
	xc := x
	if centered {
		xc = c.sub(x, mean(x))
	}
	rstd := c.op("Reciprocal", []string{c.op("Sqrt", []string{c.add(mean(c.mul(xc, xc)), c.scalar(dt, eps))})})
	xhat := c.mul(xc, rstd)
	g := gy[0]
	out := make([]string, len(n.Input))
	if need[1] {
		out[1] = c.unbroadcast(c.mul(g, xhat), sx, c.shape(scale))
	}
	if bias != "" && len(need) > 2 && need[2] {
		out[2] = c.unbroadcast(g, sx, c.shape(bias))
	}
	if need[0] {
		gxh := c.mul(g, scale)
		inner := c.sub(gxh, c.mul(xhat, mean(c.mul(gxh, xhat))))
		if centered {
			inner = c.sub(inner, mean(gxh))
		}
		out[0] = c.mul(rstd, inner)
	}
	return out, nil
}
