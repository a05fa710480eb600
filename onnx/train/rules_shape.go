package train

import (
	"fmt"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/onnxpb"
)

func init() {
	reshapeBack := func(c *gctx, n *onnxpb.NodeProto, gy []string, need []bool) ([]string, error) {
		return []string{c.reshape(gy[0], c.shape(n.Input[0]))}, nil
	}
	for _, op := range []string{"Reshape", "Flatten", "Squeeze", "Unsqueeze"} {
		rules[op] = reshapeBack
	}
	rules["Transpose"] = func(c *gctx, n *onnxpb.NodeProto, gy []string, need []bool) ([]string, error) {
		rank := len(c.shape(n.Input[0]))
		perm := ir.AttrIntsOf(n, "perm")
		if perm == nil {
			for i := rank - 1; i >= 0; i-- {
				perm = append(perm, int64(i))
			}
		}
		inv := make([]int64, rank)
		for i, p := range perm {
			inv[p] = int64(i)
		}
		return []string{c.transpose(gy[0], inv)}, nil
	}
	rules["Expand"] = func(c *gctx, n *onnxpb.NodeProto, gy []string, need []bool) ([]string, error) {
		return []string{c.unbroadcast(gy[0], c.shape(n.Output[0]), c.shape(n.Input[0]))}, nil
	}
	rules["Concat"] = func(c *gctx, n *onnxpb.NodeProto, gy []string, need []bool) ([]string, error) {
		so := c.shape(n.Output[0])
		axis := normAxis(ir.AttrIntOf(n, "axis", 0), len(so))
		sizes := make([]int64, len(n.Input))
		for i, in := range n.Input {
			sizes[i] = c.shape(in)[axis]
		}
		parts := c.e.opN("Split", []string{gy[0], c.e.ints(sizes...)}, len(sizes), ir.AttrInt("axis", axis))
		out := make([]string, len(n.Input))
		for i := range out {
			if need[i] {
				out[i] = parts[i]
			}
		}
		return out, nil
	}
	rules["Split"] = func(c *gctx, n *onnxpb.NodeProto, gy []string, need []bool) ([]string, error) {
		sx := c.shape(n.Input[0])
		axis := normAxis(ir.AttrIntOf(n, "axis", 0), len(sx))
		parts := make([]string, len(n.Output))
		for i, o := range n.Output {
			parts[i] = gy[i]
			if parts[i] == "" {
				parts[i] = c.fill(c.elem(o), c.shape(o), 0)
			}
		}
		return []string{c.op("Concat", parts, ir.AttrInt("axis", axis))}, nil
	}
	rules["Slice"] = sliceGrad
	rules["Tile"] = func(c *gctx, n *onnxpb.NodeProto, gy []string, need []bool) ([]string, error) {
		sx := c.shape(n.Input[0])
		reps, err := c.constInts(n.Input[1])
		if err != nil {
			return nil, err
		}
		// [r0·s0, r1·s1, …] → [r0, s0, r1, s1, …], summed over the r axes.
		var inter, axes []int64
		for i, s := range sx {
			inter = append(inter, reps[i], s)
			axes = append(axes, int64(2*i))
		}
		return []string{c.reshape(c.reduceSum(c.reshape(gy[0], inter), axes, false), sx)}, nil
	}
	rules["Gather"] = func(c *gctx, n *onnxpb.NodeProto, gy []string, need []bool) ([]string, error) {
		data, idx := n.Input[0], n.Input[1]
		sd, si := c.shape(data), c.shape(idx)
		a := normAxis(ir.AttrIntOf(n, "axis", 0), len(sd))
		ri := int64(len(si))
		g := gy[0]
		// Move the index dims to the front: gy → [si…, sd[:a]…, sd[a+1:]…].
		if a > 0 {
			var perm []int64
			for k := int64(0); k < ri; k++ {
				perm = append(perm, a+k)
			}
			for k := int64(0); k < a; k++ {
				perm = append(perm, k)
			}
			for k := a + ri; k < int64(len(sd))-1+ri; k++ {
				perm = append(perm, k)
			}
			g = c.transpose(g, perm)
		}
		target := append([]int64{sd[a]}, sd[:a]...)
		target = append(target, sd[a+1:]...)
		// Scatter-add the rows [N, R] (N looked-up indices, R elements each)
		// into zeros [sd[a], R] with ScatterElements: ORT's multithreaded
		// ScatterND with reduction=add races on repeated indices (every
		// embedding gradient has them) and loses updates; ScatterElements
		// runs sequentially and is exact.
		nIdx, rest := int64(1), int64(1)
		for _, d := range si {
			nIdx *= d
		}
		for _, d := range target[1:] {
			rest *= d
		}
		ind := c.reshape(c.normIndices(idx, sd[a]), []int64{nIdx, 1})
		ind = c.op("Expand", []string{ind, c.e.ints(nIdx, rest)})
		zeros := c.fill(c.elem(data), []int64{sd[a], rest}, 0)
		sc := c.op("ScatterElements", []string{zeros, ind, c.reshape(g, []int64{nIdx, rest})}, ir.AttrInt("axis", 0), ir.AttrString("reduction", "add"))
		sc = c.reshape(sc, target)
		if a > 0 {
			var perm []int64
			for k := int64(1); k <= a; k++ {
				perm = append(perm, k)
			}
			perm = append(perm, 0)
			for k := a + 1; k < int64(len(sd)); k++ {
				perm = append(perm, k)
			}
			sc = c.transpose(sc, perm)
		}
		return []string{sc, ""}, nil
	}
	rules["GatherElements"] = func(c *gctx, n *onnxpb.NodeProto, gy []string, need []bool) ([]string, error) {
		data, idx := n.Input[0], n.Input[1]
		sd := c.shape(data)
		a := normAxis(ir.AttrIntOf(n, "axis", 0), len(sd))
		ind := c.normIndices(idx, sd[a])
		zeros := c.fill(c.elem(data), sd, 0)
		g := c.op("ScatterElements", []string{zeros, ind, gy[0]}, ir.AttrInt("axis", a), ir.AttrString("reduction", "add"))
		c.sparse[g] = sparseGrad{indices: ind, updates: gy[0], axis: a}
		return []string{g, ""}, nil
	}
	rules["GatherND"] = func(c *gctx, n *onnxpb.NodeProto, gy []string, need []bool) ([]string, error) {
		if bd := ir.AttrIntOf(n, "batch_dims", 0); bd != 0 {
			return nil, fmt.Errorf("GatherND with batch_dims=%d is not supported (0 only)", bd)
		}
		// As for Gather: linearize the K indexed dims and scatter-add rows
		// with ScatterElements (ScatterND's add races across threads).
		data, idx := n.Input[0], n.Input[1]
		sd, si := c.shape(data), c.shape(idx)
		k := si[len(si)-1]
		rows, rest, nIdx := int64(1), int64(1), int64(1)
		strides := make([]int64, k)
		for d := k - 1; d >= 0; d-- {
			strides[d] = rows
			rows *= sd[d]
		}
		for _, d := range sd[k:] {
			rest *= d
		}
		for _, d := range si[:len(si)-1] {
			nIdx *= d
		}
		dt := c.elem(idx)
		var str string
		if dt == ir.Int32 {
			s32 := make([]int32, k)
			for i, v := range strides {
				s32[i] = int32(v)
			}
			str = c.e.init("grad/strides", ir.Tensor("", []int64{k}, s32))
		} else {
			str = c.e.ints(strides...)
		}
		// Negative indices count from the end of their own dim.
		dims := make([]int64, k)
		copy(dims, sd[:k])
		var dimT string
		if dt == ir.Int32 {
			d32 := make([]int32, k)
			for i, v := range dims {
				d32[i] = int32(v)
			}
			dimT = c.e.init("grad/dims", ir.Tensor("", []int64{k}, d32))
		} else {
			dimT = c.e.ints(dims...)
		}
		pos := c.op("Where", []string{c.op("Less", []string{idx, c.scalarInt(dt, 0)}), c.add(idx, dimT), idx})
		lin := c.op("ReduceSum", []string{c.mul(pos, str), c.e.ints(-1)}, ir.AttrInt("keepdims", 0))
		ind := c.op("Expand", []string{c.reshape(lin, []int64{nIdx, 1}), c.e.ints(nIdx, rest)})
		zeros := c.fill(c.elem(data), []int64{rows, rest}, 0)
		sc := c.op("ScatterElements", []string{zeros, ind, c.reshape(gy[0], []int64{nIdx, rest})}, ir.AttrInt("axis", 0), ir.AttrString("reduction", "add"))
		return []string{c.reshape(sc, sd), ""}, nil
	}
	rules["Trilu"] = func(c *gctx, n *onnxpb.NodeProto, gy []string, need []bool) ([]string, error) {
		ins := []string{gy[0]}
		if k := input(n, 1); k != "" {
			ins = append(ins, k)
		}
		return []string{c.op("Trilu", ins, ir.AttrInt("upper", ir.AttrIntOf(n, "upper", 1)))}, nil
	}
	rules["CumSum"] = func(c *gctx, n *onnxpb.NodeProto, gy []string, need []bool) ([]string, error) {
		return []string{c.op("CumSum", []string{gy[0], n.Input[1]},
			ir.AttrInt("exclusive", ir.AttrIntOf(n, "exclusive", 0)),
			ir.AttrInt("reverse", 1-ir.AttrIntOf(n, "reverse", 0)))}, nil
	}
	rules["Pad"] = func(c *gctx, n *onnxpb.NodeProto, gy []string, need []bool) ([]string, error) {
		if mode := ir.AttrStringOf(n, "mode", "constant"); mode != "constant" {
			return nil, fmt.Errorf("Pad mode %q is not supported (constant only)", mode)
		}
		sx := c.shape(n.Input[0])
		pads, err := c.constInts(n.Input[1])
		if err != nil {
			return nil, err
		}
		axes := make([]int64, len(sx))
		for i := range axes {
			axes[i] = int64(i)
		}
		if a := input(n, 3); a != "" {
			if axes, err = c.constInts(a); err != nil {
				return nil, err
			}
		}
		var starts, ends, sl []int64
		for i, ax := range axes {
			ax = normAxis(ax, len(sx))
			starts = append(starts, pads[i])
			ends = append(ends, pads[i]+sx[ax])
			sl = append(sl, ax)
		}
		return []string{c.op("Slice", []string{gy[0], c.e.ints(starts...), c.e.ints(ends...), c.e.ints(sl...)})}, nil
	}
}

// normIndices maps negative gather indices into [0, dim).
func (c *gctx) normIndices(idx string, dim int64) string {
	dt := c.elem(idx)
	z := c.scalarInt(dt, 0)
	return c.op("Where", []string{c.op("Less", []string{idx, z}), c.add(idx, c.scalarInt(dt, dim)), idx})
}

func (c *gctx) scalarInt(dt ir.DataType, v int64) string {
	if dt == ir.Int32 {
		return c.e.init("grad/c", ir.Scalar("", int32(v)))
	}
	return c.scalar(ir.Int64, float64(v))
}

// sliceGrad scatters the output gradient back into zeros of the input shape:
// step-1 axes with Concat of zero blocks, other steps with ScatterElements.
func sliceGrad(c *gctx, n *onnxpb.NodeProto, gy []string, need []bool) ([]string, error) {
	sx := c.shape(n.Input[0])
	starts, err := c.constInts(n.Input[1])
	if err != nil {
		return nil, err
	}
	ends, err := c.constInts(n.Input[2])
	if err != nil {
		return nil, err
	}
	axes := make([]int64, len(starts))
	for i := range axes {
		axes[i] = int64(i)
	}
	if a := input(n, 3); a != "" {
		if axes, err = c.constInts(a); err != nil {
			return nil, err
		}
	}
	steps := make([]int64, len(starts))
	for i := range steps {
		steps[i] = 1
	}
	if s := input(n, 4); s != "" {
		if steps, err = c.constInts(s); err != nil {
			return nil, err
		}
	}
	dt := c.elem(n.Input[0])
	g := gy[0]
	cur := append([]int64{}, c.shape(n.Output[0])...)
	for i, ax := range axes {
		ax = normAxis(ax, len(sx))
		dim := sx[ax]
		idx := sliceIndices(starts[i], ends[i], steps[i], dim)
		if int64(len(idx)) != cur[ax] {
			return nil, fmt.Errorf("slice of axis %d selects %d elements, output has %d", ax, len(idx), cur[ax])
		}
		full := append([]int64{}, cur...)
		full[ax] = dim
		if int64(len(idx)) == dim && (len(idx) == 0 || idx[0] == 0) && steps[i] == 1 {
			continue
		}
		if steps[i] == 1 && len(idx) > 0 {
			before, after := idx[0], dim-idx[len(idx)-1]-1
			parts := []string{}
			if before > 0 {
				s := append([]int64{}, cur...)
				s[ax] = before
				parts = append(parts, c.fill(dt, s, 0))
			}
			parts = append(parts, g)
			if after > 0 {
				s := append([]int64{}, cur...)
				s[ax] = after
				parts = append(parts, c.fill(dt, s, 0))
			}
			g = c.op("Concat", parts, ir.AttrInt("axis", ax))
		} else if len(idx) == 0 {
			g = c.fill(dt, full, 0)
		} else {
			bs := make([]int64, len(cur))
			for k := range bs {
				bs[k] = 1
			}
			bs[ax] = int64(len(idx))
			ind := c.op("Expand", []string{c.e.init("grad/idx", ir.Tensor("", bs, idx)), c.e.ints(cur...)})
			g = c.op("ScatterElements", []string{c.fill(dt, full, 0), ind, g}, ir.AttrInt("axis", ax))
		}
		cur = full
	}
	return []string{g}, nil
}

// sliceIndices lists the positions ONNX Slice selects along one axis.
func sliceIndices(start, end, step, dim int64) []int64 {
	clamp := func(v, lo, hi int64) int64 {
		if v < lo {
			return lo
		}
		if v > hi {
			return hi
		}
		return v
	}
	if start < 0 {
		start += dim
	}
	if end < 0 {
		end += dim
	}
	var out []int64
	if step > 0 {
		start, end = clamp(start, 0, dim), clamp(end, 0, dim)
		for i := start; i < end; i += step {
			out = append(out, i)
		}
	} else if step < 0 {
		start, end = clamp(start, 0, dim-1), clamp(end, -1, dim-1)
		for i := start; i > end; i += step {
			out = append(out, i)
		}
	}
	return out
}
