package train

import (
	"fmt"
	"sort"

	"google.golang.org/protobuf/proto"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/onnxpb"
	"github.com/tagpr/tagpr/onnx/ort"
)

// ValueType is a value's element type and fixed shape.
type ValueType struct {
	Elem  ir.DataType
	Shape []int64
}

// Specialized is a model fixed to one set of input shapes: every value has a
// known type and shape, and shape-only subgraphs are folded to initializers.
type Specialized struct {
	Model *onnxpb.ModelProto
	Types map[string]ValueType
}

// maxFold bounds the elements of a folded value, so a large static tensor
// (a big precomputed mask) stays a computation instead of bloating the model.
const maxFold = 1 << 22

// Specialize fixes the graph inputs to the given shapes (every non-initializer
// input needs one), runs the model once in ORT with every intermediate's shape
// and every static value exposed as outputs, and folds static values
// (computed only from shapes, constants and non-float initializers) into
// initializers. Inputs with zero elements (an empty KV cache) become empty
// initializers. Nothing computed from a float initializer is folded into a
// float constant, so every weight (scalars too) stays selectable for training.
func Specialize(m *onnxpb.ModelProto, shapes map[string][]int64) (*Specialized, error) {
	if m.GetGraph() == nil {
		return nil, fmt.Errorf("specialize: model has no graph")
	}
	return specialize(proto.Clone(m).(*onnxpb.ModelProto), shapes)
}

// specialize is Specialize changing m in place (callers that own a copy
// save one copy of the weights).
func specialize(m *onnxpb.ModelProto, shapes map[string][]int64) (*Specialized, error) {
	g := m.GetGraph()
	if g == nil {
		return nil, fmt.Errorf("specialize: model has no graph")
	}
	if v := ir.OpsetOf(m, ""); v < 13 {
		return nil, fmt.Errorf("specialize: model imports ai.onnx opset %d; training graphs need opset >= 13", v)
	}
	types := map[string]ValueType{}
	inits := map[string]*onnxpb.TensorProto{}
	for _, t := range g.Initializer {
		inits[t.GetName()] = t
		types[t.GetName()] = ValueType{t.GetDataType(), append([]int64{}, t.GetDims()...)}
	}
	// Fix the inputs; empty ones become initializers.
	var ins []*onnxpb.ValueInfoProto
	for _, vi := range g.Input {
		name := vi.GetName()
		if _, isInit := inits[name]; isInit {
			continue
		}
		elem, dims, _, ok := ir.ShapeOf(vi)
		if elem == ir.Undefined {
			return nil, fmt.Errorf("specialize: input %q is not a tensor", name)
		}
		want, given := shapes[name]
		if !given {
			return nil, fmt.Errorf("specialize: no shape given for input %q (declared %v)", name, dims)
		}
		if ok && len(dims) != len(want) {
			return nil, fmt.Errorf("specialize: input %q given shape %v, but it is declared with rank %d (%v)", name, want, len(dims), dims)
		}
		for i, d := range dims {
			if ok && d >= 0 && d != want[i] {
				return nil, fmt.Errorf("specialize: input %q given shape %v, but dim %d is fixed to %d", name, want, i, d)
			}
		}
		types[name] = ValueType{elem, append([]int64{}, want...)}
		if ir.NumElements(want) == 0 {
			t := &onnxpb.TensorProto{Name: name, DataType: elem, Dims: append([]int64{}, want...), RawData: []byte{}}
			g.Initializer = append(g.Initializer, t)
			inits[name] = t
			continue
		}
		if err := setDims(vi, elem, want); err != nil {
			return nil, fmt.Errorf("specialize: input %q: %w", name, err)
		}
		ins = append(ins, vi)
	}
	for name := range shapes {
		if _, ok := types[name]; !ok {
			return nil, fmt.Errorf("specialize: shape given for %q, which is not a graph input", name)
		}
	}
	g.Input = ins
	g.ValueInfo = nil
	if err := topoSort(g); err != nil {
		return nil, fmt.Errorf("specialize: %w", err)
	}

	static := map[string]bool{}
	for name, t := range inits {
		if !isFloat(t.GetDataType()) || ir.NumElements(t.GetDims()) <= 1 {
			static[name] = true
		}
	}
	// pure: static and computed without any float initializer, so folding
	// it cannot bake in a weight (a trainable scalar stays an initializer).
	pure := map[string]bool{}
	for name, t := range inits {
		pure[name] = !isFloat(t.GetDataType())
	}
	for _, n := range g.Node {
		if isStatic(n, static) {
			p := true
			switch n.GetOpType() {
			case "Shape", "Size", "Constant":
			default:
				for _, in := range n.Input {
					p = p && (in == "" || pure[in])
				}
			}
			for _, o := range n.Output {
				static[o] = true
				pure[o] = p
			}
		}
	}

	// The probe: the original outputs plus, per node output, its shape and
	// either its whole value (static) or one element (to learn its type).
	// It shares m's nodes and small tensors (read only). The weights become
	// inputs fed zeros: nothing static is computed from them, so the probe
	// learns the same, without ORT holding a copy of every weight.
	probe := &onnxpb.ModelProto{IrVersion: m.IrVersion, OpsetImport: m.OpsetImport, Functions: m.Functions,
		Graph: &onnxpb.GraphProto{Name: g.GetName(), Node: append([]*onnxpb.NodeProto{}, g.Node...),
			SparseInitializer: g.SparseInitializer, Input: append([]*onnxpb.ValueInfoProto{}, g.Input...)}}
	for _, t := range g.Initializer {
		if isFloat(t.GetDataType()) && len(t.GetDims()) > 0 && ir.NumElements(t.GetDims()) >= probeZeroMin {
			vi, err := ir.ValueInfo(t.GetName(), t.GetDataType(), ir.Dims(t.GetDims())...)
			if err != nil {
				return nil, fmt.Errorf("specialize: weight %q: %w", t.GetName(), err)
			}
			probe.Graph.Input = append(probe.Graph.Input, vi)
			continue
		}
		probe.Graph.Initializer = append(probe.Graph.Initializer, t)
	}
	// The probe leaves out the chunked heads' weight gradient (its type is
	// the weight's): computing it would cost the probe [D,V] buffers.
	probeNodes, skip, err := probeWithoutHeadGrads(probe.Graph, g.Node)
	if err != nil {
		return nil, fmt.Errorf("specialize: %w", err)
	}
	pe := newEditor(probe.Graph)
	pe.prefix = "spec/"
	probe.Graph.Output = nil
	flat, zero, one := pe.ints(-1), pe.ints(0), pe.ints(1)
	type probed struct{ shape, value, first string }
	probes := map[string]probed{}
	var order []string
	// ORT's default order is a depth-first walk back from the graph's
	// outputs, the last-listed output first. Listing each value's probes in
	// reverse order of the values makes it run every probe right after the
	// value's producer, so no intermediate outlives its consumers (probes
	// listed in order would run last, holding every activation at once).
	probe.Graph.Node = nil
	var groups [][]*onnxpb.NodeProto
	for _, n := range g.Node {
		for _, o := range n.Output {
			if _, skipped := skip[o]; o == "" || skipped {
				continue
			}
			from := len(probe.Graph.Node)
			p := probed{shape: pe.op("Shape", []string{o})}
			vi, _ := ir.ValueInfo(p.shape, ir.Int64, "")
			probe.Graph.Output = append(probe.Graph.Output, vi)
			r := pe.op("Reshape", []string{o, flat})
			if static[o] {
				p.value = r
				probe.Graph.Output = append(probe.Graph.Output, &onnxpb.ValueInfoProto{Name: r})
			} else {
				p.first = pe.op("Slice", []string{r, zero, one})
				probe.Graph.Output = append(probe.Graph.Output, &onnxpb.ValueInfoProto{Name: p.first})
			}
			probes[o] = p
			order = append(order, o)
			groups = append(groups, probe.Graph.Node[from:])
		}
	}
	if probeSlim {
		if probeNodes, err = slimFusedHeads(pe, probeNodes, zero, one); err != nil {
			return nil, fmt.Errorf("specialize: %w", err)
		}
		probeNodes = slimWeightMatMuls(pe, probeNodes, probe.Graph.Input, zero, one, flat)
	}
	probe.Graph.Node = probeNodes
	for i := len(groups) - 1; i >= 0; i-- {
		probe.Graph.Node = append(probe.Graph.Node, groups[i]...)
	}
	if isDoubleModel(probe.Graph) {
		if err := decomposeForDouble(probe.Graph); err != nil {
			return nil, fmt.Errorf("specialize: %w", err)
		}
	}
	if len(probe.Graph.Input) == 0 {
		// onnxruntime_go cannot run a model without inputs: add an unused one.
		vi, _ := ir.ValueInfo(pe.fresh("spec/unused"), ir.Float, 1)
		probe.Graph.Input = append(probe.Graph.Input, vi)
		types[vi.GetName()] = ValueType{ir.Float, []int64{1}}
		defer delete(types, vi.GetName())
	}
	bytes, err := ir.Marshal(probe)
	if err != nil {
		return nil, fmt.Errorf("specialize: %w", err)
	}
	// A shape probe, not a stage: it runs wherever the process's runtime is,
	// once, so without ORT's graph optimizations (they took 13 s of a 0.5B
	// model's RL graph's 23 s and change no shape).
	o := ort.Declared().Options()
	o.OptLevel = "disable"
	sess, err := ort.NewSession(bytes, "specialization probe", o)
	if err != nil {
		return nil, fmt.Errorf("specialize: %w", err)
	}
	defer sess.Destroy()
	feeds := map[string]ort.Value{}
	zeros := newZeroPool(types, probe.Graph.Input)
	for _, vi := range probe.Graph.Input {
		t := types[vi.GetName()]
		v, err := zeros.tensor(t.Elem, t.Shape)
		if err != nil {
			return nil, fmt.Errorf("specialize: input %q: %w", vi.GetName(), err)
		}
		defer v.Destroy()
		feeds[vi.GetName()] = v
	}
	res, err := sess.Run(feeds, nil)
	if err != nil {
		return nil, fmt.Errorf("specialize: probe run: %w", err)
	}
	defer res.Destroy()

	for v, w := range skip {
		types[v] = types[w]
	}
	folded := map[string]*onnxpb.TensorProto{}
	for _, o := range order {
		p := probes[o]
		shape, err := ort.Data[int64](p.shape, res.Get(p.shape))
		if err != nil {
			return nil, fmt.Errorf("specialize: shape of %q: %w", o, err)
		}
		shape = append([]int64{}, shape...)
		if p.value != "" {
			t, err := valueToTensor(res.Get(p.value), shape)
			if err != nil {
				return nil, fmt.Errorf("specialize: value of %q: %w", o, err)
			}
			types[o] = ValueType{t.GetDataType(), shape}
			if ir.NumElements(shape) <= maxFold && (!isFloat(t.GetDataType()) || pure[o]) {
				t.Name = o
				folded[o] = t
			}
		} else {
			elem, err := elemOf(res.Get(p.first))
			if err != nil {
				return nil, fmt.Errorf("specialize: type of %q: %w", o, err)
			}
			types[o] = ValueType{elem, shape}
		}
	}

	// Replace folded producers by initializers, then drop what is unused.
	nodes := g.Node[:0]
	for _, n := range g.Node {
		all := true
		for _, o := range n.Output {
			if o != "" && folded[o] == nil {
				all = false
			}
		}
		if all && len(n.Output) > 0 {
			for _, o := range n.Output {
				if o != "" {
					g.Initializer = append(g.Initializer, folded[o])
				}
			}
			continue
		}
		nodes = append(nodes, n)
	}
	g.Node = nodes
	for _, vi := range g.Output {
		t, ok := types[vi.GetName()]
		if !ok {
			return nil, fmt.Errorf("specialize: output %q is produced by nothing", vi.GetName())
		}
		if err := setDims(vi, t.Elem, t.Shape); err != nil {
			return nil, fmt.Errorf("specialize: output %q: %w", vi.GetName(), err)
		}
	}
	prune(g, true)
	annotate(g, types)
	return &Specialized{Model: m, Types: types}, nil
}

// annotate writes every node output's static type into the graph's value_info.
func annotate(g *onnxpb.GraphProto, types map[string]ValueType) {
	isIO := map[string]bool{}
	for _, v := range g.Input {
		isIO[v.GetName()] = true
	}
	for _, v := range g.Output {
		isIO[v.GetName()] = true
	}
	var names []string
	for _, n := range g.Node {
		for _, o := range n.Output {
			if t, ok := types[o]; ok && o != "" && !isIO[o] && t.Elem != ir.Undefined {
				names = append(names, o)
			}
		}
	}
	sort.Strings(names)
	g.ValueInfo = nil
	for _, name := range names {
		t := types[name]
		vi, err := ir.ValueInfo(name, t.Elem, ir.Dims(t.Shape)...)
		if err == nil {
			g.ValueInfo = append(g.ValueInfo, vi)
		}
	}
}

// isStatic says whether a node's outputs are fixed once the input shapes are.
func isStatic(n *onnxpb.NodeProto, static map[string]bool) bool {
	if n.GetDomain() != "" && n.GetDomain() != "ai.onnx" {
		return false
	}
	switch n.GetOpType() {
	case "Shape", "Size":
		return true
	case "Constant":
		return true
	case "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli",
		"If", "Loop", "Scan", "Dropout":
		return false
	}
	for _, in := range n.Input {
		if in != "" && !static[in] {
			return false
		}
	}
	return len(n.Input) > 0
}

// probeZeroMin is the size from which the probe feeds a weight as zeros.
const probeZeroMin = 1024

// zeroPool hands out zero tensors; float ones are views of one buffer per
// element type, as large as the largest asked for (pages that are only
// read stay shared with the kernel's zero page).
type zeroPool struct {
	f32 []float32
	f64 []float64
}

func newZeroPool(types map[string]ValueType, inputs []*onnxpb.ValueInfoProto) *zeroPool {
	var n32, n64 int64
	for _, vi := range inputs {
		t := types[vi.GetName()]
		switch t.Elem {
		case ir.Float:
			n32 = max(n32, ir.NumElements(t.Shape))
		case ir.Double:
			n64 = max(n64, ir.NumElements(t.Shape))
		}
	}
	return &zeroPool{f32: make([]float32, n32), f64: make([]float64, n64)}
}

func (z *zeroPool) tensor(elem ir.DataType, shape []int64) (ort.Value, error) {
	n := ir.NumElements(shape)
	switch elem {
	case ir.Float:
		return ort.NewTensor(shape, z.f32[:n:n])
	case ir.Double:
		return ort.NewTensor(shape, z.f64[:n:n])
	}
	return zeroTensor(elem, shape)
}

func zeroTensor(elem ir.DataType, shape []int64) (ort.Value, error) {
	n := ir.NumElements(shape)
	switch elem {
	case ir.Float:
		return ort.NewTensor(shape, make([]float32, n))
	case ir.Double:
		return ort.NewTensor(shape, make([]float64, n))
	case ir.Int64:
		return ort.NewTensor(shape, make([]int64, n))
	case ir.Int32:
		return ort.NewTensor(shape, make([]int32, n))
	case ir.Bool:
		return ort.NewTensor(shape, make([]bool, n))
	case ir.Uint8:
		return ort.NewTensor(shape, make([]uint8, n))
	case ir.Int8:
		return ort.NewTensor(shape, make([]int8, n))
	}
	return nil, fmt.Errorf("element type %s cannot be fed from Go", elem)
}

// valueToTensor copies an ORT output into a TensorProto of the given shape.
func valueToTensor(v ort.Value, shape []int64) (*onnxpb.TensorProto, error) {
	switch t := v.(type) {
	case *ort.Tensor[float32]:
		return ir.Tensor("", shape, t.GetData()), nil
	case *ort.Tensor[float64]:
		return ir.Tensor("", shape, t.GetData()), nil
	case *ort.Tensor[int64]:
		return ir.Tensor("", shape, t.GetData()), nil
	case *ort.Tensor[int32]:
		return ir.Tensor("", shape, t.GetData()), nil
	case *ort.Tensor[bool]:
		return ir.Tensor("", shape, t.GetData()), nil
	case *ort.Tensor[uint8]:
		return ir.Tensor("", shape, t.GetData()), nil
	case *ort.Tensor[int8]:
		return ir.Tensor("", shape, t.GetData()), nil
	case nil:
		return nil, fmt.Errorf("missing from the probe run")
	}
	return nil, fmt.Errorf("unsupported element type %T", v)
}

// elemOf is the element type of an ORT-allocated output.
func elemOf(v ort.Value) (ir.DataType, error) {
	switch v.(type) {
	case *ort.Tensor[float32]:
		return ir.Float, nil
	case *ort.Tensor[float64]:
		return ir.Double, nil
	case *ort.Tensor[int64]:
		return ir.Int64, nil
	case *ort.Tensor[int32]:
		return ir.Int32, nil
	case *ort.Tensor[bool]:
		return ir.Bool, nil
	case *ort.Tensor[uint8]:
		return ir.Uint8, nil
	case *ort.Tensor[int8]:
		return ir.Int8, nil
	case nil:
		return ir.Undefined, fmt.Errorf("missing from the probe run")
	}
	return ir.Undefined, fmt.Errorf("unsupported element type %T", v)
}

// probeSlim: the probe computes the products with weights and the chunked
// heads' vocabulary-wide work on slices that give the same shapes (a
// switch for the test that compares it with the full probe).
var probeSlim = true

// slimFusedHeads gives each chunked head's Scan, in the probe, the
// vocabulary's first entry only (its weight sliced to [D,1] or [1,D], its
// targets all 0): the Scan's outputs (log-probs [K,C], hidden gradients
// [K,C,D]) keep their shapes and types while each chunk's [C,V] logits,
// softmax and logit gradient become [C,1]. Their values are computed from
// the weights, so the probe reads only their shapes and types.
func slimFusedHeads(pe *editor, nodes []*onnxpb.NodeProto, zero, one string) ([]*onnxpb.NodeProto, error) {
	heads, err := fusedHeads(&onnxpb.GraphProto{Node: nodes})
	if err != nil || len(heads) == 0 {
		return nodes, err
	}
	out := make([]*onnxpb.NodeProto, 0, len(nodes)+3*len(heads))
	for _, n := range nodes {
		f, ok := heads[n]
		if !ok {
			out = append(out, n)
			continue
		}
		n = proto.Clone(n).(*onnxpb.NodeProto) // the model's node, or probeWithoutHeadGrads' copy: either way not edited
		body := ir.FindAttr(n, "body").GetG()
		vocabAxis := one // W [D,V]
		if f.Transposed {
			vocabAxis = zero // E [V,D]
		}
		w := pe.fresh(pe.prefix + "slim_head_weight")
		out = append(out, &onnxpb.NodeProto{Name: w, OpType: "Slice", Input: []string{f.Weight, zero, one, vocabAxis}, Output: []string{w}})
		for _, bn := range body.GetNode() {
			for i, in := range bn.Input {
				if in == f.Weight {
					bn.Input[i] = w
				}
			}
		}
		// Scan's inputs are its body's, in order (states first).
		for i, in := range body.GetInput() {
			if in.GetType().GetTensorType().GetElemType() == ir.Int64 && i < len(n.Input) {
				t := pe.fresh(pe.prefix + "slim_head_targets")
				out = append(out, &onnxpb.NodeProto{Name: t, OpType: "Sub", Input: []string{n.Input[i], n.Input[i]}, Output: []string{t}})
				n.Input[i] = t
			}
		}
		out = append(out, n)
	}
	return out, nil
}

// slimWeightMatMuls rewrites, for the probe, each MatMul by a weight fed
// as zeros (a rank-2 graph input of the probe) as the MatMul of the input's
// first column by the weight's first row: the same shape and type, and the
// same values (x·0 = 0, unless x holds a NaN or Inf) at 1/K of the
// arithmetic. The probe of a 0.5B model's training graph spends most of
// its run in these products, whose values it never reads (a product with a
// weight is never static). nodes are the model's own and stay unchanged.
func slimWeightMatMuls(pe *editor, nodes []*onnxpb.NodeProto, inputs []*onnxpb.ValueInfoProto, zero, one, last string) []*onnxpb.NodeProto {
	weights := map[string]bool{}
	for _, vi := range inputs {
		if _, dims, _, ok := ir.ShapeOf(vi); ok && len(dims) == 2 && dims[0] > 1 {
			weights[vi.GetName()] = true
		}
	}
	out := make([]*onnxpb.NodeProto, 0, len(nodes))
	for _, n := range nodes {
		if n.GetOpType() != "MatMul" || n.GetDomain() != "" || len(n.Input) != 2 || len(n.Output) != 1 || !weights[n.Input[1]] {
			out = append(out, n)
			continue
		}
		slice := func(x, axis string) string {
			name := pe.fresh(pe.prefix + "slim")
			out = append(out, &onnxpb.NodeProto{Name: name, OpType: "Slice", Input: []string{x, zero, one, axis}, Output: []string{name + ":0"}})
			return name + ":0"
		}
		x, w := slice(n.Input[0], last), slice(n.Input[1], zero)
		out = append(out, &onnxpb.NodeProto{Name: pe.fresh(pe.prefix + "slim"), OpType: "MatMul", Input: []string{x, w}, Output: []string{n.Output[0]}})
	}
	return out
}
