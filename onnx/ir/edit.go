package ir

import (
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/tagpr/tagpr/onnx/onnxpb"
)

// NodeByName returns the node of that name and its index, or nil and -1.
func (g *Graph) NodeByName(name string) (*onnxpb.NodeProto, int) {
	for i, n := range g.Proto.Node {
		if n.GetName() == name {
			return n, i
		}
	}
	return nil, -1
}

// Producer returns the node whose output is value, or nil (graph inputs and
// initializers have no producer).
func (g *Graph) Producer(value string) *onnxpb.NodeProto {
	for _, n := range g.Proto.Node {
		for _, o := range n.Output {
			if o == value {
				return n
			}
		}
	}
	return nil
}

// Consumers returns the nodes that read value, in graph order, including
// nodes whose subgraphs read it from the outer scope.
func (g *Graph) Consumers(value string) []*onnxpb.NodeProto {
	var out []*onnxpb.NodeProto
	for _, n := range g.Proto.Node {
		if readsValue(n, value) {
			out = append(out, n)
		}
	}
	return out
}

func readsValue(n *onnxpb.NodeProto, value string) bool {
	for _, in := range n.Input {
		if in == value {
			return true
		}
	}
	for _, a := range n.Attribute {
		for _, sg := range subgraphs(a) {
			if freeValues(sg)[value] {
				return true
			}
		}
	}
	return false
}

// ProducerMap maps every node output to its node, for passes that ask many
// times (Producer scans the graph on each call).
func (g *Graph) ProducerMap() map[string]*onnxpb.NodeProto {
	m := map[string]*onnxpb.NodeProto{}
	for _, n := range g.Proto.Node {
		for _, o := range n.Output {
			if o != "" {
				m[o] = n
			}
		}
	}
	return m
}

// ConsumerMap maps every value to the nodes that read it (directly or from
// their subgraphs), in graph order; a node reading a value twice is listed once.
func (g *Graph) ConsumerMap() map[string][]*onnxpb.NodeProto {
	m := map[string][]*onnxpb.NodeProto{}
	for _, n := range g.Proto.Node {
		seen := map[string]bool{}
		use := func(v string) {
			if v != "" && !seen[v] {
				seen[v] = true
				m[v] = append(m[v], n)
			}
		}
		for _, in := range n.Input {
			use(in)
		}
		for _, a := range n.Attribute {
			for _, sg := range subgraphs(a) {
				for v := range freeValues(sg) {
					use(v)
				}
			}
		}
	}
	return m
}

// InitializerByName returns the initializer of that name, or nil.
func (g *Graph) InitializerByName(name string) *onnxpb.TensorProto {
	for _, t := range g.Proto.Initializer {
		if t.GetName() == name {
			return t
		}
	}
	return nil
}

// ValueInfoOf returns the declared type of value (graph input, output or
// value_info entry), or nil.
func (g *Graph) ValueInfoOf(value string) *onnxpb.ValueInfoProto {
	for _, list := range [][]*onnxpb.ValueInfoProto{g.Proto.Input, g.Proto.Output, g.Proto.ValueInfo} {
		for _, vi := range list {
			if vi.GetName() == value && vi.GetType() != nil {
				return vi
			}
		}
	}
	return nil
}

// RemoveNode removes n from the graph; it reports whether n was there. Its
// outputs may then be produced by another node.
func (g *Graph) RemoveNode(n *onnxpb.NodeProto) bool {
	for i, x := range g.Proto.Node {
		if x == n {
			g.Proto.Node = append(g.Proto.Node[:i], g.Proto.Node[i+1:]...)
			for _, o := range n.Output {
				delete(g.defs, o)
			}
			delete(g.nodes, n.GetName())
			return true
		}
	}
	return false
}

// ReplaceNode puts nodes where old was (naming unnamed nodes and empty
// outputs as AddNode does). The replacements must produce whatever old's
// consumers read; Validate checks that.
func (g *Graph) ReplaceNode(old *onnxpb.NodeProto, nodes ...*onnxpb.NodeProto) error {
	idx := -1
	for i, x := range g.Proto.Node {
		if x == old {
			idx = i
			break
		}
	}
	if idx < 0 {
		return fmt.Errorf("replace %s: not in graph %q", nodeLabel(old, -1), g.Proto.GetName())
	}
	delete(g.nodes, old.GetName())
	for _, o := range old.Output {
		delete(g.defs, o)
	}
	tail := append([]*onnxpb.NodeProto{}, g.Proto.Node[idx+1:]...)
	g.Proto.Node = g.Proto.Node[:idx]
	for _, n := range nodes {
		g.AddNode(n)
	}
	g.Proto.Node = append(g.Proto.Node, tail...)
	return g.Err()
}

// RenameValue renames a value everywhere in the graph: graph inputs,
// outputs, value_info, initializers, node inputs and outputs, and
// outer-scope references inside subgraphs.
func (g *Graph) RenameValue(old, new string) error {
	if old == new {
		return nil
	}
	if new == "" {
		return fmt.Errorf("rename %q: empty new name", old)
	}
	if g.values[new] {
		return fmt.Errorf("rename %q to %q: graph %q already has a value %q", old, new, g.Proto.GetName(), new)
	}
	if !g.values[old] && len(g.Consumers(old)) == 0 {
		return fmt.Errorf("rename %q: graph %q has no such value", old, g.Proto.GetName())
	}
	renameIn(g.Proto, old, new, true)
	delete(g.values, old)
	g.values[new] = true
	if g.defs[old] {
		delete(g.defs, old)
		g.defs[new] = true
	}
	return nil
}

// renameIn renames old in g; defining occurrences only at the top level,
// outer-scope uses in subgraphs that do not define old themselves.
func renameIn(g *onnxpb.GraphProto, old, new string, top bool) {
	if !top {
		for _, vi := range g.Input {
			if vi.GetName() == old {
				return // shadowed
			}
		}
		for _, t := range g.Initializer {
			if t.GetName() == old {
				return
			}
		}
		for _, n := range g.Node {
			for _, o := range n.Output {
				if o == old {
					return
				}
			}
		}
	}
	for _, list := range [][]*onnxpb.ValueInfoProto{g.Input, g.Output, g.ValueInfo} {
		for _, vi := range list {
			if vi.GetName() == old {
				vi.Name = new
			}
		}
	}
	for _, t := range g.Initializer {
		if t.GetName() == old {
			t.Name = new
		}
	}
	for _, n := range g.Node {
		for i, in := range n.Input {
			if in == old {
				n.Input[i] = new
			}
		}
		for i, o := range n.Output {
			if o == old {
				n.Output[i] = new
			}
		}
		for _, a := range n.Attribute {
			for _, sg := range subgraphs(a) {
				renameIn(sg, old, new, false)
			}
		}
	}
}

// AddOutput exposes an existing value (e.g. an intermediate) as a graph
// output. Its type comes from the graph's declarations when known;
// otherwise elem is used with unknown dims. With Undefined the output has
// no type and ONNX Runtime infers it (it does, for tensors).
func (g *Graph) AddOutput(value string, elem DataType) error {
	if !g.values[value] {
		return fmt.Errorf("add output %q: graph %q has no such value", value, g.Proto.GetName())
	}
	for _, o := range g.Proto.Output {
		if o.GetName() == value {
			return nil
		}
	}
	vi := &onnxpb.ValueInfoProto{Name: value}
	if known := g.ValueInfoOf(value); known != nil {
		vi.Type = cloneType(known.GetType())
	} else if t := g.InitializerByName(value); t != nil {
		vi.Type, _ = TensorType(t.GetDataType(), Dims(t.GetDims())...)
	} else if elem != Undefined {
		vi.Type = &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{ElemType: elem}}}
	}
	g.Proto.Output = append(g.Proto.Output, vi)
	return nil
}

// InitializerToInput turns initializer name into a graph input of the same
// type and shape, so its value is fed at run time (weights owned by Go). It
// returns the removed tensor.
func (g *Graph) InitializerToInput(name string) (*onnxpb.TensorProto, error) {
	for i, t := range g.Proto.Initializer {
		if t.GetName() != name {
			continue
		}
		g.Proto.Initializer = append(g.Proto.Initializer[:i], g.Proto.Initializer[i+1:]...)
		for _, in := range g.Proto.Input {
			if in.GetName() == name {
				return t, nil // already declared as an input (IR < 4 style): now it must be fed
			}
		}
		tp, err := TensorType(t.GetDataType(), Dims(t.GetDims())...)
		if err != nil {
			return nil, err
		}
		g.Proto.Input = append(g.Proto.Input, &onnxpb.ValueInfoProto{Name: name, Type: tp})
		return t, nil
	}
	return nil, fmt.Errorf("initializer %q: not in graph %q", name, g.Proto.GetName())
}

// TopoSort reorders the graph's nodes topologically, keeping the existing
// order where dependencies allow; a cycle is an error naming its nodes.
func (g *Graph) TopoSort() error {
	order, cyc := topoOrder(g.Proto)
	if cyc != nil {
		return fmt.Errorf("graph %q: cycle: %s", g.Proto.GetName(), findCycle(g.Proto))
	}
	nodes := make([]*onnxpb.NodeProto, len(order))
	for k, i := range order {
		nodes[k] = g.Proto.Node[i]
	}
	g.Proto.Node = nodes
	return nil
}

// Prune removes nodes whose outputs nobody reads (not a graph output, not
// an input of a kept node or of a kept node's subgraphs), then initializers
// nobody reads. It returns how many nodes and initializers it removed.
func (g *Graph) Prune() (nodes, initializers int) {
	live := map[string]bool{}
	for _, o := range g.Proto.Output {
		live[o.GetName()] = true
	}
	keep := make([]bool, len(g.Proto.Node))
	for i := len(g.Proto.Node) - 1; i >= 0; i-- {
		n := g.Proto.Node[i]
		for _, o := range n.Output {
			if live[o] {
				keep[i] = true
				break
			}
		}
		if !keep[i] {
			continue
		}
		for _, in := range n.Input {
			live[in] = true
		}
		for _, a := range n.Attribute {
			for _, sg := range subgraphs(a) {
				for name := range freeValues(sg) {
					live[name] = true
				}
			}
		}
	}
	kept := g.Proto.Node[:0]
	for i, n := range g.Proto.Node {
		if keep[i] {
			kept = append(kept, n)
		} else {
			nodes++
		}
	}
	for i := len(kept); i < len(g.Proto.Node); i++ {
		g.Proto.Node[i] = nil
	}
	g.Proto.Node = kept
	inits := g.Proto.Initializer[:0]
	for _, t := range g.Proto.Initializer {
		if live[t.GetName()] {
			inits = append(inits, t)
		} else {
			initializers++
		}
	}
	g.Proto.Initializer = inits
	return nodes, initializers
}

// InputNames lists the graph's inputs in order.
func (g *Graph) InputNames() []string { return valueNames(g.Proto.Input) }

// OutputNames lists the graph's outputs in order.
func (g *Graph) OutputNames() []string { return valueNames(g.Proto.Output) }

func valueNames(vs []*onnxpb.ValueInfoProto) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.GetName()
	}
	return out
}

// Clone returns a deep copy of m.
func Clone(m *onnxpb.ModelProto) *onnxpb.ModelProto {
	return proto.Clone(m).(*onnxpb.ModelProto)
}

// CloneTensor returns a deep copy of t.
func CloneTensor(t *onnxpb.TensorProto) *onnxpb.TensorProto {
	return proto.Clone(t).(*onnxpb.TensorProto)
}

func cloneType(t *onnxpb.TypeProto) *onnxpb.TypeProto {
	if t == nil {
		return nil
	}
	return proto.Clone(t).(*onnxpb.TypeProto)
}

// CloneSharingInitializers returns a copy of m to edit that holds m's own
// initializer tensors (the same pointers) instead of copies of them: nodes,
// inputs, outputs and the initializer list are the copy's own, so adding,
// removing or rewiring them leaves m as it was, but neither model's
// initializers may be written (values, names or dims) while the other is in
// use. A derived graph (a training or scoring graph of a 0.5B model) then
// costs no second copy of the weights. m itself is only read.
func CloneSharingInitializers(m *onnxpb.ModelProto) *onnxpb.ModelProto {
	g := m.GetGraph()
	if g == nil {
		return Clone(m)
	}
	shell := &onnxpb.ModelProto{}
	copyFieldsExcept(shell.ProtoReflect(), m.ProtoReflect(), "graph")
	graph := &onnxpb.GraphProto{}
	copyFieldsExcept(graph.ProtoReflect(), g.ProtoReflect(), "initializer")
	shell.Graph = graph
	out := Clone(shell) // the deep copy, with the initializers left out
	out.Graph.Initializer = append([]*onnxpb.TensorProto(nil), g.Initializer...)
	return out
}

// copyFieldsExcept sets dst's populated fields to src's values (aliasing
// them: dst is a shell for a deep copy, never edited) but the one named.
func copyFieldsExcept(dst, src protoreflect.Message, skip protoreflect.Name) {
	src.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Name() != skip {
			dst.Set(fd, v)
		}
		return true
	})
	dst.SetUnknown(src.GetUnknown())
}
