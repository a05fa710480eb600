package train

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/onnxpb"
)

// nodeLabel names a node in errors: its name if it has one, else its index.
func nodeLabel(n *onnxpb.NodeProto, i int) string {
	if n.GetName() != "" {
		return fmt.Sprintf("node %q (%s)", n.GetName(), n.GetOpType())
	}
	return fmt.Sprintf("node #%d (%s)", i, n.GetOpType())
}

// topoSort orders g's nodes so every value is produced before it is used.
// Values available up front are graph inputs, initializers and "".
func topoSort(g *onnxpb.GraphProto) error {
	avail := map[string]bool{"": true}
	for _, v := range g.Input {
		avail[v.GetName()] = true
	}
	for _, t := range g.Initializer {
		avail[t.GetName()] = true
	}
	producer := map[string]int{}
	for i, n := range g.Node {
		for _, o := range n.Output {
			if o != "" {
				producer[o] = i
			}
		}
	}
	done := make([]bool, len(g.Node))
	visiting := make([]bool, len(g.Node))
	out := make([]*onnxpb.NodeProto, 0, len(g.Node))
	var visit func(i int) error
	visit = func(i int) error {
		if done[i] {
			return nil
		}
		if visiting[i] {
			return fmt.Errorf("graph has a cycle through %s", nodeLabel(g.Node[i], i))
		}
		visiting[i] = true
		for _, in := range nodeInputs(g.Node[i]) {
			if avail[in] {
				continue
			}
			p, ok := producer[in]
			if !ok {
				return fmt.Errorf("%s reads %q, which nothing produces", nodeLabel(g.Node[i], i), in)
			}
			if err := visit(p); err != nil {
				return err
			}
		}
		visiting[i] = false
		done[i] = true
		out = append(out, g.Node[i])
		return nil
	}
	for i := range g.Node {
		if err := visit(i); err != nil {
			return err
		}
	}
	g.Node = out
	return nil
}

// nodeInputs lists the values a node reads, including the outer-scope values
// its subgraphs (If/Loop/Scan bodies) read.
func nodeInputs(n *onnxpb.NodeProto) []string {
	ins := append([]string{}, n.Input...)
	for _, a := range n.Attribute {
		for _, sg := range append([]*onnxpb.GraphProto{a.G}, a.Graphs...) {
			if sg != nil {
				ins = append(ins, outerReads(sg)...)
			}
		}
	}
	return ins
}

// outerReads lists the names a subgraph reads that it does not define.
func outerReads(g *onnxpb.GraphProto) []string {
	def := map[string]bool{"": true}
	for _, v := range g.Input {
		def[v.GetName()] = true
	}
	for _, t := range g.Initializer {
		def[t.GetName()] = true
	}
	var out []string
	for _, n := range g.Node {
		for _, in := range nodeInputs(n) {
			if !def[in] {
				out = append(out, in)
			}
		}
		for _, o := range n.Output {
			def[o] = true
		}
	}
	for _, v := range g.Output {
		if !def[v.GetName()] {
			out = append(out, v.GetName())
		}
	}
	return out
}

// prune removes nodes and initializers no graph output depends on, and graph
// inputs nothing reads unless keepInputs.
func prune(g *onnxpb.GraphProto, keepInputs bool) {
	need := map[string]bool{}
	for _, o := range g.Output {
		need[o.GetName()] = true
	}
	keep := make([]bool, len(g.Node))
	for i := len(g.Node) - 1; i >= 0; i-- {
		n := g.Node[i]
		for _, o := range n.Output {
			if need[o] {
				keep[i] = true
			}
		}
		if keep[i] {
			for _, in := range nodeInputs(n) {
				need[in] = true
			}
		}
	}
	nodes := g.Node[:0]
	for i, n := range g.Node {
		if keep[i] {
			nodes = append(nodes, n)
		}
	}
	g.Node = nodes
	inits := g.Initializer[:0]
	for _, t := range g.Initializer {
		if need[t.GetName()] {
			inits = append(inits, t)
		}
	}
	g.Initializer = inits
	if !keepInputs {
		ins := g.Input[:0]
		for _, v := range g.Input {
			if need[v.GetName()] {
				ins = append(ins, v)
			}
		}
		g.Input = ins
	}
}

// isFloat reports the element types gradients flow through.
func isFloat(dt ir.DataType) bool {
	return dt == ir.Float || dt == ir.Double || dt == ir.Float16 || dt == ir.BFloat16
}

// setDims replaces a value info's type with a fixed-shape tensor type.
func setDims(vi *onnxpb.ValueInfoProto, dt ir.DataType, dims []int64) error {
	tp, err := ir.TensorType(dt, ir.Dims(dims)...)
	if err != nil {
		return err
	}
	vi.Type = tp
	return nil
}

// editor appends nodes and initializers to a graph under fresh names. (Kept
// here rather than using ir.Graph so generated names follow one scheme.)
type editor struct {
	g *onnxpb.GraphProto
	// prefix starts every generated name (e.g. "grad/").
	prefix string
	used   map[string]bool
	next   map[string]int
}

func newEditor(g *onnxpb.GraphProto) *editor {
	e := &editor{g: g, used: map[string]bool{"": true}, next: map[string]int{}}
	for _, v := range g.Input {
		e.used[v.GetName()] = true
	}
	for _, v := range g.Output {
		e.used[v.GetName()] = true
	}
	for _, t := range g.Initializer {
		e.used[t.GetName()] = true
	}
	for _, n := range g.Node {
		e.used[n.GetName()] = true
		for _, o := range n.Output {
			e.used[o] = true
		}
	}
	return e
}

// fresh returns an unused name starting with prefix and reserves it.
func (e *editor) fresh(prefix string) string {
	if !e.used[prefix] {
		e.used[prefix] = true
		return prefix
	}
	for {
		e.next[prefix]++
		n := fmt.Sprintf("%s_%d", prefix, e.next[prefix])
		if !e.used[n] {
			e.used[n] = true
			return n
		}
	}
}

// op appends a single-output node and returns its output name.
func (e *editor) op(op string, inputs []string, attrs ...*onnxpb.AttributeProto) string {
	return e.opN(op, inputs, 1, attrs...)[0]
}

// opN appends a node with n outputs and returns their names.
func (e *editor) opN(op string, inputs []string, n int, attrs ...*onnxpb.AttributeProto) []string {
	name := e.fresh(e.prefix + op)
	outs := make([]string, n)
	for i := range outs {
		outs[i] = e.fresh(fmt.Sprintf("%s:%d", name, i))
	}
	e.g.Node = append(e.g.Node, &onnxpb.NodeProto{Name: name, OpType: op, Input: append([]string{}, inputs...), Output: outs, Attribute: attrs})
	return outs
}

// init adds an initializer under a fresh name and returns the name.
func (e *editor) init(prefix string, t *onnxpb.TensorProto) string {
	t.Name = e.fresh(prefix)
	e.g.Initializer = append(e.g.Initializer, t)
	return t.Name
}

// ints adds a rank-1 int64 initializer (shapes, axes).
func (e *editor) ints(v ...int64) string {
	return e.init(e.prefix+"const", ir.Vector("", v...))
}

func cloneModel(m *onnxpb.ModelProto) *onnxpb.ModelProto {
	return proto.Clone(m).(*onnxpb.ModelProto)
}

// shapeOrOne gives a rank-0 shape as [1]: onnxruntime_go cannot carry rank 0.
func shapeOrOne(d []int64) []int64 {
	if len(d) == 0 {
		return []int64{1}
	}
	return d
}
