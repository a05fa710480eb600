package train

import (
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/onnxpb"
)

// GradPrefix starts the name of the graph output holding a weight's gradient.
const GradPrefix = "grad."

// TrainingGraph is a specialized model extended with its backward pass.
// Trainable weights are graph inputs (named as the initializers were);
// outputs are the loss, any kept outputs, and one GradPrefix+name per weight.
type TrainingGraph struct {
	Model   *onnxpb.ModelProto
	Types   map[string]ValueType
	Loss    string
	Params  []string          // trainable weights, in input order
	Grads   map[string]string // weight → gradient output
	Outputs []string          // kept forward outputs besides the loss
	// Initial holds each weight's value as it was in the model (trainable
	// and frozen).
	Initial map[string]*onnxpb.TensorProto
	// ReleaseInitial has NewTrainer take the trainable weights' values out
	// of Initial once its Params hold copies of them, so the graph's are
	// freed (4 B a parameter: 1.8 GiB of a 0.5B model) unless another model
	// shares them; the graph then starts no second trainer. A stage that
	// builds a graph for one run sets it.
	ReleaseInitial bool
	// Frozen weights are graph inputs too (see FreezeToInputs) but get no
	// gradient.
	Frozen []string
	// Selected says what each --trainable or LoRA target pattern chose
	// (BuildLMTraining), for logs.
	Selected []PatternMatch
	// ChanceLoss is the loss of a uniform guess (ln V for the next-token
	// loss over V tokens); 0 if unknown. Trainer warns when the loss stays
	// there after warmup.
	ChanceLoss float64
}

// frozenMinElems is the size from which FreezeToInputs moves a weight.
const frozenMinElems = 256

// FreezeToInputs turns the remaining float initializers of at least 256
// elements (the frozen weights, e.g. under LoRA) into graph inputs fed from
// Go. The training graph then stays small (no 2 GiB protobuf limit) and the
// frozen weights can share storage with a generation engine.
func (tg *TrainingGraph) FreezeToInputs() error {
	g := tg.Model.Graph
	rest := g.Initializer[:0]
	var moved []*onnxpb.TensorProto
	for _, t := range g.Initializer {
		if isFloat(t.GetDataType()) && ir.NumElements(t.GetDims()) >= frozenMinElems {
			moved = append(moved, t)
			continue
		}
		rest = append(rest, t)
	}
	g.Initializer = rest
	for _, t := range moved {
		vi, err := ir.ValueInfo(t.GetName(), t.GetDataType(), ir.Dims(t.GetDims())...)
		if err != nil {
			return fmt.Errorf("freeze %q: %w", t.GetName(), err)
		}
		g.Input = append(g.Input, vi)
		tg.Initial[t.GetName()] = t
		tg.Frozen = append(tg.Frozen, t.GetName())
	}
	return nil
}

// minTrainOpset is the opset the training graph imports at least: 17 brings
// ScatterND/ScatterElements with reduction=add (embedding gradients) and
// keeps ReduceMean/ReduceMax with axes as an attribute; the changes from
// 13 to 17 keep the meaning of existing nodes.
const minTrainOpset = 17

// Differentiate appends the reverse-mode gradient of loss (a [1] output of
// sp) with respect to the named float initializers, which become graph inputs.
// keep names forward outputs to keep besides the loss (others are dropped).
// Gradient rules emit standard ONNX ops only; paths through shapes, masks and
// indices are cut. A node on the path from a weight to the loss whose op has
// no rule is an error naming the op and node.
func Differentiate(sp *Specialized, loss string, params []string, keep []string) (*TrainingGraph, error) {
	return differentiate(&Specialized{Model: proto.Clone(sp.Model).(*onnxpb.ModelProto), Types: sp.Types}, loss, params, keep)
}

// differentiate is Differentiate changing sp.Model in place.
func differentiate(sp *Specialized, loss string, params []string, keep []string, opts ...diffOptions) (*TrainingGraph, error) {
	var opt diffOptions
	if len(opts) > 0 {
		opt = opts[0]
	}
	m := sp.Model
	g := m.Graph
	types := make(map[string]ValueType, len(sp.Types))
	for k, v := range sp.Types {
		types[k] = v
	}
	lt, ok := types[loss]
	if !ok {
		return nil, fmt.Errorf("differentiate: loss %q is not a value of the graph", loss)
	}
	if !isFloat(lt.Elem) || len(lt.Shape) != 1 || lt.Shape[0] != 1 {
		return nil, fmt.Errorf("differentiate: loss %q must be a float tensor of shape [1], is %s %v", loss, lt.Elem, lt.Shape)
	}
	if v := ir.OpsetOf(m, ""); v < minTrainOpset {
		ir.SetOpset(m, "", minTrainOpset)
	}

	// Weights: initializers → inputs.
	inits := map[string]*onnxpb.TensorProto{}
	for _, t := range g.Initializer {
		inits[t.GetName()] = t
	}
	isParam := map[string]bool{}
	for _, p := range params {
		t, ok := inits[p]
		if !ok {
			return nil, fmt.Errorf("differentiate: trainable weight %q is not an initializer of the model", p)
		}
		if !isFloat(t.GetDataType()) {
			return nil, fmt.Errorf("differentiate: trainable weight %q has element type %s, not float", p, t.GetDataType())
		}
		if isParam[p] {
			return nil, fmt.Errorf("differentiate: trainable weight %q listed twice", p)
		}
		isParam[p] = true
	}
	rest := g.Initializer[:0]
	for _, t := range g.Initializer {
		if !isParam[t.GetName()] {
			rest = append(rest, t)
		}
	}
	g.Initializer = rest
	// A rank-0 weight is fed as [1] (onnxruntime_go has no rank-0 tensors)
	// and reshaped to a scalar inside the graph.
	scalarOf := map[string]string{}
	for _, p := range params {
		t := inits[p]
		dims := t.GetDims()
		if len(dims) == 0 {
			dims = []int64{1}
			scalarOf[p] = p + "/scalar"
		}
		vi, err := ir.ValueInfo(p, t.GetDataType(), ir.Dims(dims)...)
		if err != nil {
			return nil, fmt.Errorf("differentiate: weight %q: %w", p, err)
		}
		g.Input = append(g.Input, vi)
	}
	if len(scalarOf) > 0 {
		for _, n := range g.Node {
			for i, in := range n.Input {
				if s, ok := scalarOf[in]; ok {
					n.Input[i] = s
				}
			}
		}
		for _, o := range g.Output {
			if _, ok := scalarOf[o.GetName()]; ok {
				return nil, fmt.Errorf("differentiate: weight %q is also a graph output", o.GetName())
			}
		}
		var front []*onnxpb.NodeProto
		empty := &onnxpb.TensorProto{Name: "grad/scalar_shape", DataType: ir.Int64, Dims: []int64{0}, RawData: []byte{}}
		g.Initializer = append(g.Initializer, empty)
		for _, p := range params {
			if s, ok := scalarOf[p]; ok {
				front = append(front, &onnxpb.NodeProto{Name: s, OpType: "Reshape", Input: []string{p, empty.GetName()}, Output: []string{s}})
				types[s] = ValueType{inits[p].GetDataType(), nil}
			}
		}
		g.Node = append(front, g.Node...)
	}
	consts := map[string]*onnxpb.TensorProto{}
	for _, t := range g.Initializer {
		consts[t.GetName()] = t
	}

	// Forward: which values depend on a weight through differentiable ops.
	needs := map[string]bool{}
	for _, p := range params {
		needs[p] = true
		if s, ok := scalarOf[p]; ok {
			needs[s] = true
		}
	}
	for _, n := range g.Node {
		if cutOps[n.GetOpType()] {
			continue
		}
		any := false
		for _, in := range n.Input {
			if needs[in] {
				any = true
			}
		}
		if !any {
			continue
		}
		for _, o := range n.Output {
			if o != "" && isFloat(types[o].Elem) {
				needs[o] = true
			}
		}
	}

	e := newEditor(g)
	e.prefix = "grad/"
	c := &gctx{e: e, types: types, consts: consts, scalars: map[scalarKey]string{}, consumers: map[string][]*onnxpb.NodeProto{}, sparse: map[string]sparseGrad{}}
	for _, n := range g.Node {
		for _, in := range n.Input {
			c.consumers[in] = append(c.consumers[in], n)
		}
	}
	contrib := map[string][]string{}
	contrib[loss] = []string{c.fill(lt.Elem, lt.Shape, 1)}
	fused, err := seedFusedHeads(g, loss, needs, contrib)
	if err != nil {
		return nil, fmt.Errorf("differentiate: %w", err)
	}
	fwd := append([]*onnxpb.NodeProto{}, g.Node...)
	owner := map[*onnxpb.NodeProto]*onnxpb.NodeProto{} // gradient node → the forward node whose rule made it
	gradOf := map[*onnxpb.NodeProto][]string{}         // forward node → its outputs' gradients
	for i := len(fwd) - 1; i >= 0; i-- {
		n := fwd[i]
		gy := make([]string, len(n.Output))
		anyOut := false
		for j, o := range n.Output {
			if len(contrib[o]) > 0 {
				gy[j] = c.sum(contrib[o])
				anyOut = true
			}
		}
		if !anyOut {
			continue
		}
		need := make([]bool, len(n.Input))
		anyIn := false
		for j, in := range n.Input {
			need[j] = in != "" && needs[in]
			anyIn = anyIn || need[j]
		}
		if !anyIn || cutOps[n.GetOpType()] || fused[n] != nil {
			continue
		}
		if d := n.GetDomain(); d != "" && d != "ai.onnx" {
			return nil, fmt.Errorf("differentiate: no gradient rule for op %s of domain %s (%s)", n.GetOpType(), d, nodeLabel(n, i))
		}
		rule, ok := rules[n.GetOpType()]
		if !ok {
			return nil, fmt.Errorf("differentiate: no gradient rule for op %s (%s)", n.GetOpType(), nodeLabel(n, i))
		}
		c.node = n
		emitted := len(g.Node)
		gx, err := rule(c, n, gy, need)
		if err != nil {
			return nil, fmt.Errorf("differentiate: %s: %w", nodeLabel(n, i), err)
		}
		for _, gn := range g.Node[emitted:] {
			owner[gn] = n
		}
		gradOf[n] = gy
		for j, in := range n.Input {
			if need[j] && j < len(gx) && gx[j] != "" {
				contrib[in] = append(contrib[in], gx[j])
			}
		}
	}

	tg := &TrainingGraph{Model: m, Types: types, Loss: loss, Params: params, Grads: map[string]string{}, Initial: map[string]*onnxpb.TensorProto{}}
	for _, p := range params {
		tg.Initial[p] = inits[p]
	}
	var outs []*onnxpb.ValueInfoProto
	addOut := func(name, value string) error {
		t := types[value]
		if value != name {
			types[name] = t
		}
		vi, err := ir.ValueInfo(name, t.Elem, ir.Dims(t.Shape)...)
		if err != nil {
			return err
		}
		outs = append(outs, vi)
		return nil
	}
	if err := addOut(loss, loss); err != nil {
		return nil, err
	}
	for _, k := range keep {
		if k == loss {
			continue
		}
		if _, ok := types[k]; !ok {
			return nil, fmt.Errorf("differentiate: kept output %q is not a value of the graph", k)
		}
		if err := addOut(k, k); err != nil {
			return nil, err
		}
		tg.Outputs = append(tg.Outputs, k)
	}
	for _, p := range params {
		t := types[p]
		var gp string
		if s, ok := scalarOf[p]; ok && len(contrib[s]) > 0 {
			t.Shape = []int64{1}
			gp = c.reshape(c.sum(contrib[s]), t.Shape)
		} else if len(contrib[p]) > 0 {
			gp = c.sum(contrib[p])
		} else {
			if len(t.Shape) == 0 {
				t.Shape = []int64{1}
			}
			gp = c.fill(t.Elem, t.Shape, 0) // the loss does not depend on p
		}
		name := e.fresh(GradPrefix + p)
		e.g.Node = append(e.g.Node, &onnxpb.NodeProto{Name: e.fresh("grad/out"), OpType: "Identity", Input: []string{gp}, Output: []string{name}})
		types[name] = t
		if err := addOut(name, name); err != nil {
			return nil, err
		}
		tg.Grads[p] = name
	}
	g.Output = outs
	if isDoubleModel(g) {
		if err := decomposeForDouble(g); err != nil {
			return nil, fmt.Errorf("differentiate: %w", err)
		}
	}
	prune(g, true)
	if opt.recompute {
		if err := recomputeSegments(g, fwd, owner, gradOf, needs, types, tg.Grads, opt.streams); err != nil {
			return nil, fmt.Errorf("differentiate: %w", err)
		}
		prune(g, true)
	}
	annotate(g, types)
	return tg, nil
}

// cutOps never pass gradients: their outputs are shapes, masks, indices or
// piecewise-constant functions.
var cutOps = map[string]bool{
	"Shape": true, "Size": true, "Equal": true, "Less": true, "Greater": true, "LessOrEqual": true,
	"GreaterOrEqual": true, "Not": true, "And": true, "Or": true, "Xor": true, "ArgMax": true, "ArgMin": true,
	"Range": true, "ConstantOfShape": true, "NonZero": true, "Sign": true, "Floor": true, "Ceil": true,
	"Round": true, "IsNaN": true, "IsInf": true, "OneHot": true, "Constant": true, "RandomNormal": true,
	"RandomUniform": true, "RandomNormalLike": true, "RandomUniformLike": true, "Multinomial": true,
	"Bernoulli": true, "EyeLike": true, "BitShift": true, "Mod": true,
}

// gctx is what gradient rules build with.
type gctx struct {
	e       *editor
	types   map[string]ValueType
	consts  map[string]*onnxpb.TensorProto
	node    *onnxpb.NodeProto
	scalars map[scalarKey]string
	// consumers of each forward value (rules look for IsNaN guards).
	consumers map[string][]*onnxpb.NodeProto
	// sparse marks gradients that are a scatter of updates into zeros.
	sparse map[string]sparseGrad
}

// sparseGrad describes ScatterElements(zeros, indices, updates, axis).
type sparseGrad struct {
	indices, updates string
	axis             int64
}

// nanGuarded reports whether the forward graph tests v with IsNaN: exporters
// write Where(IsNaN(softmax), 0, softmax) for fully masked attention rows.
// clean is that Where's output when it has exactly this form ("" otherwise).
func (c *gctx) nanGuarded(v string) (guarded bool, clean string) {
	for _, n := range c.consumers[v] {
		if n.GetOpType() != "IsNaN" {
			continue
		}
		guarded = true
		for _, w := range c.consumers[n.Output[0]] {
			if w.GetOpType() == "Where" && len(w.Input) == 3 && w.Input[0] == n.Output[0] && w.Input[2] == v {
				if z, ok := c.constScalar(w.Input[1]); ok && z == 0 && slices.Equal(c.shape(w.Output[0]), c.shape(v)) {
					clean = w.Output[0]
				}
			}
		}
	}
	return guarded, clean
}

type scalarKey struct {
	elem ir.DataType
	v    float64
}

type rule func(c *gctx, n *onnxpb.NodeProto, gy []string, need []bool) ([]string, error)

var rules = map[string]rule{}

func (c *gctx) shape(v string) []int64 { return c.types[v].Shape }
func (c *gctx) elem(v string) ir.DataType {
	return c.types[v].Elem
}

func (c *gctx) op(op string, ins []string, attrs ...*onnxpb.AttributeProto) string {
	return c.e.op(op, ins, attrs...)
}

// scalar is a rank-0 constant of the given element type (shared).
func (c *gctx) scalar(elem ir.DataType, v float64) string {
	k := scalarKey{elem, v}
	if n, ok := c.scalars[k]; ok {
		return n
	}
	var t *onnxpb.TensorProto
	switch elem {
	case ir.Double:
		t = ir.Scalar("", v)
	case ir.Int64:
		t = ir.Scalar("", int64(v))
	default:
		t = ir.Scalar("", float32(v))
		if elem != ir.Float {
			n := c.op("Cast", []string{c.e.init("grad/c", t)}, ir.AttrInt("to", int64(elem)))
			c.scalars[k] = n
			return n
		}
	}
	n := c.e.init("grad/c", t)
	c.scalars[k] = n
	return n
}

// fill is a tensor of the given shape filled with v.
func (c *gctx) fill(elem ir.DataType, shape []int64, v float64) string {
	return c.op("Expand", []string{c.scalar(elem, v), c.e.ints(shapeOrScalar(shape)...)})
}

func shapeOrScalar(s []int64) []int64 {
	if len(s) == 0 {
		return []int64{}
	}
	return s
}

func (c *gctx) sum(vs []string) string {
	out := vs[0]
	for _, v := range vs[1:] {
		out = c.op("Add", []string{out, v})
	}
	return out
}

func (c *gctx) mul(a, b string) string { return c.op("Mul", []string{a, b}) }
func (c *gctx) add(a, b string) string { return c.op("Add", []string{a, b}) }
func (c *gctx) sub(a, b string) string { return c.op("Sub", []string{a, b}) }
func (c *gctx) div(a, b string) string { return c.op("Div", []string{a, b}) }
func (c *gctx) neg(a string) string    { return c.op("Neg", []string{a}) }
func (c *gctx) reshape(v string, shape []int64) string {
	return c.op("Reshape", []string{v, c.e.ints(shapeOrScalar(shape)...)})
}
func (c *gctx) transpose(v string, perm []int64) string {
	return c.op("Transpose", []string{v}, ir.AttrInts("perm", perm...))
}
func (c *gctx) reduceSum(v string, axes []int64, keep bool) string {
	k := int64(0)
	if keep {
		k = 1
	}
	return c.op("ReduceSum", []string{v, c.e.ints(axes...)}, ir.AttrInt("keepdims", k))
}

// unbroadcast sums g (of shape from) down to shape to, undoing numpy
// broadcasting.
func (c *gctx) unbroadcast(g string, from, to []int64) string {
	if slices.Equal(from, to) {
		return g
	}
	k := len(from) - len(to)
	var axes []int64
	for i := range from {
		if i < k || (to[i-k] == 1 && from[i] != 1) {
			axes = append(axes, int64(i))
		}
	}
	if len(axes) > 0 {
		g = c.reduceSum(g, axes, true)
	}
	return c.reshape(g, to)
}

// constInts reads a constant int tensor input (axes, shapes, pads).
func (c *gctx) constInts(v string) ([]int64, error) {
	t, ok := c.consts[v]
	if !ok {
		return nil, fmt.Errorf("input %q must be a constant after specialization", v)
	}
	return ir.Int64s(t)
}

// input returns n's input i, or "" when absent.
func input(n *onnxpb.NodeProto, i int) string {
	if i < len(n.Input) {
		return n.Input[i]
	}
	return ""
}

func normAxis(a int64, rank int) int64 {
	if a < 0 {
		a += int64(rank)
	}
	return a
}

// cast converts v to elem when it differs.
func (c *gctx) castTo(v string, from, to ir.DataType) string {
	if from == to {
		return v
	}
	return c.op("Cast", []string{v}, ir.AttrInt("to", int64(to)))
}
