package ir

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/tagpr/tagpr/onnx/onnxpb"
)

// Graph is a GraphProto being built or edited. It remembers every value and
// node name in use so that generated names never collide, and it collects the
// first builder mistake (bad dims, duplicate names) in Err, which NewModel
// and Validate report, so that hand-written model code need not check an
// error after every node.
//
// Edit Proto directly when no helper fits, then call Rescan so generated
// names keep avoiding the names you added.
type Graph struct {
	Proto *onnxpb.GraphProto

	values map[string]bool // value names in use: defined, declared, referenced or reserved
	defs   map[string]bool // values defined: graph inputs, initializers, node outputs
	nodes  map[string]bool // node names
	next   map[string]int  // next suffix per prefix
	err    error
	parent *Graph // for subgraphs: mistakes are reported to the parent too
}

// NewGraph starts an empty graph.
func NewGraph(name string) *Graph {
	return WrapGraph(&onnxpb.GraphProto{Name: name})
}

// WrapGraph wraps an existing GraphProto (e.g. a loaded model's m.Graph) for
// building and editing; changes go to gp itself.
func WrapGraph(gp *onnxpb.GraphProto) *Graph {
	g := &Graph{Proto: gp}
	g.Rescan()
	return g
}

// Rescan re-reads the names in use from Proto after direct edits.
func (g *Graph) Rescan() {
	g.values, g.nodes, g.defs = map[string]bool{}, map[string]bool{}, map[string]bool{}
	if g.next == nil {
		g.next = map[string]int{}
	}
	gp := g.Proto
	for _, v := range gp.Output {
		g.values[v.GetName()] = true
	}
	for _, v := range gp.ValueInfo {
		g.values[v.GetName()] = true
	}
	for _, v := range gp.Input {
		g.values[v.GetName()], g.defs[v.GetName()] = true, true
	}
	for _, t := range gp.Initializer {
		g.values[t.GetName()], g.defs[t.GetName()] = true, true
	}
	for _, n := range gp.Node {
		if n.GetName() != "" {
			g.nodes[n.GetName()] = true
		}
		for _, in := range n.Input {
			g.values[in] = true
		}
		for _, o := range n.Output {
			g.values[o], g.defs[o] = true, true
		}
	}
}

// Err is the first builder mistake, or nil.
func (g *Graph) Err() error { return g.err }

func (g *Graph) fail(err error) {
	if g.err == nil {
		g.err = fmt.Errorf("graph %q: %w", g.Proto.GetName(), err)
		if g.parent != nil {
			g.parent.fail(g.err)
		}
	}
}

// Subgraph starts a graph for a control-flow attribute (If branches,
// Loop/Scan bodies; attach it with AttrGraph(name, sub.Proto)). Value and
// node names it generates are unique across the parent too, it may read the
// parent's values by name, and its builder mistakes show in the parent's Err.
func (g *Graph) Subgraph(name string) *Graph {
	return &Graph{
		Proto:  &onnxpb.GraphProto{Name: name},
		values: g.values, nodes: g.nodes, next: g.next,
		defs:   map[string]bool{},
		parent: g,
	}
}

// Unique returns prefix itself when no value has that name yet, else
// prefix_N with the smallest unused N; the name is reserved.
func (g *Graph) Unique(prefix string) string {
	return unique(g.values, g.next, prefix, prefix)
}

func (g *Graph) uniqueNode(prefix string) string {
	return unique(g.nodes, g.next, prefix, "node:"+prefix)
}

func unique(used map[string]bool, next map[string]int, prefix, counter string) string {
	if prefix == "" {
		prefix = "v"
	}
	if !used[prefix] {
		used[prefix] = true
		return prefix
	}
	for {
		next[counter]++
		n := prefix + "_" + strconv.Itoa(next[counter])
		if !used[n] {
			used[n] = true
			return n
		}
	}
}

// Has reports whether a value of that name exists in the graph.
func (g *Graph) Has(name string) bool { return g.values[name] }

// claim reserves an explicit value name; a name already in use is a mistake.
func (g *Graph) claim(name, what string) {
	if name == "" {
		g.fail(fmt.Errorf("%s with an empty name", what))
		return
	}
	// defs can be stale after direct edits of Proto: confirm before failing.
	if g.defs[name] && g.produced(name) {
		g.fail(fmt.Errorf("%s %q: a value of that name already exists", what, name))
		return
	}
	g.values[name], g.defs[name] = true, true
}

// produced reports whether a graph input, initializer or node defines name
// (names merely referenced, e.g. by consumers of a replaced node, are free).
func (g *Graph) produced(name string) bool {
	for _, v := range g.Proto.Input {
		if v.GetName() == name {
			return true
		}
	}
	for _, t := range g.Proto.Initializer {
		if t.GetName() == name {
			return true
		}
	}
	for _, n := range g.Proto.Node {
		for _, o := range n.Output {
			if o == name {
				return true
			}
		}
	}
	return false
}

// Input declares a graph input. dims are ints (fixed sizes) or strings
// (symbolic names such as "batch"); no dims is a scalar.
func (g *Graph) Input(name string, elem DataType, dims ...any) string {
	g.claim(name, "input")
	vi, err := ValueInfo(name, elem, dims...)
	if err != nil {
		g.fail(err)
	}
	g.Proto.Input = append(g.Proto.Input, vi)
	return name
}

// Output declares an existing value (a node output or an input) as a graph
// output of the given type.
func (g *Graph) Output(name string, elem DataType, dims ...any) string {
	vi, err := ValueInfo(name, elem, dims...)
	if err != nil {
		g.fail(err)
	}
	g.Proto.Output = append(g.Proto.Output, vi)
	return name
}

// Initializer adds a constant tensor under name (the tensor's Name is set)
// and returns the name.
func (g *Graph) Initializer(name string, t *onnxpb.TensorProto) string {
	g.claim(name, "initializer")
	if err := checkData(t); err != nil {
		g.fail(fmt.Errorf("initializer %q: %w", name, err))
	}
	t.Name = name
	g.Proto.Initializer = append(g.Proto.Initializer, t)
	return name
}

// ExternalInitializer adds a tensor whose data lives in an external file
// (data_location EXTERNAL with a location), for models written in pieces
// by a caller that streams the data file itself. The reference is not
// read or checked here.
func (g *Graph) ExternalInitializer(name string, t *onnxpb.TensorProto) string {
	g.claim(name, "initializer")
	if t.GetDataLocation() != onnxpb.TensorProto_EXTERNAL || externalKey(t, "location") == "" {
		g.fail(fmt.Errorf("initializer %q: not an external-data tensor with a location", name))
	}
	t.Name = name
	g.Proto.Initializer = append(g.Proto.Initializer, t)
	return name
}

// Node appends an op_type node from the default domain. Each empty entry in
// outputs gets a generated name; nil outputs means one generated output.
// It returns the output names.
func (g *Graph) Node(op string, inputs, outputs []string, attrs ...Attribute) []string {
	if outputs == nil {
		outputs = []string{""}
	}
	n := &onnxpb.NodeProto{OpType: op, Input: append([]string{}, inputs...), Output: append([]string{}, outputs...), Attribute: attrs}
	return g.AddNode(n).Output
}

// Op appends a single-output node and returns its generated output name.
func (g *Graph) Op(op string, inputs []string, attrs ...Attribute) string {
	return g.Node(op, inputs, nil, attrs...)[0]
}

// AddNode appends n as is (any domain), naming it op_N when it has no name
// and generating names for its empty outputs; it returns n.
func (g *Graph) AddNode(n *onnxpb.NodeProto) *onnxpb.NodeProto {
	if n.OpType == "" {
		g.fail(errors.New("node with an empty op_type"))
	}
	if n.Name == "" {
		n.Name = g.uniqueNode(n.OpType)
	} else if g.nodes[n.Name] {
		g.fail(fmt.Errorf("node %q (%s): the node name is already used", n.Name, n.OpType))
	} else {
		g.nodes[n.Name] = true
	}
	for i, o := range n.Output {
		if o == "" {
			n.Output[i] = g.Unique(n.Name + suffix(i, len(n.Output)))
		} else {
			g.claim(o, fmt.Sprintf("node %q (%s) output", n.Name, n.OpType))
		}
	}
	g.Proto.Node = append(g.Proto.Node, n)
	return n
}

func suffix(i, n int) string {
	if n == 1 {
		return ""
	}
	return "_" + strconv.Itoa(i)
}

// Const adds a Constant node producing t and returns its output name
// (prefix-based, unique). Use it for shapes, axes and scalars; use
// Initializer for weights.
func (g *Graph) Const(prefix string, t *onnxpb.TensorProto) string {
	out := g.Unique(prefix)
	t.Name = ""
	g.defs[out] = true
	n := &onnxpb.NodeProto{OpType: "Constant", Name: g.uniqueNode(prefix), Output: []string{out}, Attribute: []Attribute{AttrTensor("value", t)}}
	g.Proto.Node = append(g.Proto.Node, n)
	return out
}

// ConstInt64s adds a Constant node with a rank-1 INT64 tensor (shapes, axes).
func (g *Graph) ConstInt64s(prefix string, v ...int64) string {
	return g.Const(prefix, Vector("", v...))
}

// ValueInfo makes a tensor ValueInfoProto; see TensorType for dims.
func ValueInfo(name string, elem DataType, dims ...any) (*onnxpb.ValueInfoProto, error) {
	tp, err := TensorType(elem, dims...)
	if err != nil {
		return &onnxpb.ValueInfoProto{Name: name}, fmt.Errorf("value %q: %w", name, err)
	}
	return &onnxpb.ValueInfoProto{Name: name, Type: tp}, nil
}

// TensorType makes a tensor TypeProto. Each dim is an int kind (a fixed
// size) or a string (a symbolic size, "" for an unnamed unknown size).
func TensorType(elem DataType, dims ...any) (*onnxpb.TypeProto, error) {
	shape := &onnxpb.TensorShapeProto{}
	for i, d := range dims {
		dim := &onnxpb.TensorShapeProto_Dimension{}
		switch v := d.(type) {
		case int:
			dim.Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: int64(v)}
		case int64:
			dim.Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: v}
		case int32:
			dim.Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: int64(v)}
		case string:
			if v != "" {
				dim.Value = &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: v}
			}
		default:
			return nil, fmt.Errorf("dim %d is %T (%v); want an int or a symbolic string", i, d, d)
		}
		shape.Dim = append(shape.Dim, dim)
	}
	return &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{ElemType: elem, Shape: shape}}}, nil
}

// Dims converts []int64 to the ...any form Input and Output take.
func Dims(d []int64) []any {
	out := make([]any, len(d))
	for i, v := range d {
		out[i] = v
	}
	return out
}

// ShapeOf returns a tensor value's element type and dims: fixed sizes as
// int64 values >= 0, symbolic or unknown sizes as -1 with their names in
// params (empty string for unnamed). ok is false when vi is not a tensor or
// has no shape.
func ShapeOf(vi *onnxpb.ValueInfoProto) (elem DataType, dims []int64, params []string, ok bool) {
	tt := vi.GetType().GetTensorType()
	if tt == nil {
		return Undefined, nil, nil, false
	}
	if tt.GetShape() == nil {
		return tt.GetElemType(), nil, nil, false
	}
	for _, d := range tt.GetShape().GetDim() {
		if v, isVal := d.GetValue().(*onnxpb.TensorShapeProto_Dimension_DimValue); isVal {
			dims, params = append(dims, v.DimValue), append(params, "")
		} else {
			dims, params = append(dims, -1), append(params, d.GetDimParam())
		}
	}
	return tt.GetElemType(), dims, params, true
}
