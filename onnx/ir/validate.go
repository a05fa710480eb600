package ir

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/tagpr/tagpr/onnx/onnxpb"
)

// maxReported caps how many problems one Validate error lists.
const maxReported = 20

// requiredAttrs lists, for default-domain ops, attributes without which the op is malformed.
var requiredAttrs = map[string][]string{
	"Cast":   {"to"},
	"Concat": {"axis"},
	"If":     {"then_branch", "else_branch"},
	"Loop":   {"body"},
	"Scan":   {"body", "num_scan_inputs"},
	"Einsum": {"equation"},
}

// minOpset is the first ai.onnx opset of ops a builder is likely to reach
// for that are newer than the opsets many exports use.
var minOpset = map[string]int64{
	"RMSNormalization": 23, "RotaryEmbedding": 23, "Attention": 23,
	"Gelu": 20, "GroupNormalization": 18, "LayerNormalization": 17,
	"Trilu": 14, "SoftmaxCrossEntropyLoss": 12, "NegativeLogLikelihoodLoss": 12, "Einsum": 12,
}

// constantValueAttrs are Constant's alternative value attributes; exactly one must be set.
var constantValueAttrs = map[string]bool{
	"value": true, "value_float": true, "value_floats": true, "value_int": true, "value_ints": true,
	"value_string": true, "value_strings": true, "sparse_value": true,
}

// Validate checks m's structure: a graph and IR version; every node input is
// a graph input, an initializer, an outer-scope value or the output of an
// earlier node; every value is produced once; graph outputs exist; each
// node's domain is imported; attributes are well-formed and required ones
// present; initializer data matches its dims. Nodes must be in topological
// order; a cycle is reported with the nodes on it. Errors name the node
// (name and op type).
func Validate(m *onnxpb.ModelProto) error {
	if m.GetGraph() == nil {
		return errors.New("validate model: no graph")
	}
	v := &validator{opsets: map[string]int64{}, functions: map[string]bool{}}
	if m.GetIrVersion() <= 0 {
		v.add("model: ir_version is not set")
	}
	for _, o := range m.GetOpsetImport() {
		d := canonicalDomain(o.GetDomain())
		if _, dup := v.opsets[d]; dup {
			v.add(fmt.Sprintf("model: domain %q imported twice", o.GetDomain()))
		}
		if o.GetVersion() <= 0 {
			v.add(fmt.Sprintf("model: domain %q imported with version %d", o.GetDomain(), o.GetVersion()))
		}
		v.opsets[d] = o.GetVersion()
	}
	for _, f := range m.GetFunctions() {
		v.functions[f.GetDomain()+"\x00"+f.GetName()] = true
	}
	scope := "graph " + quote(m.GetGraph().GetName())
	for _, in := range m.GetGraph().GetInput() {
		if in.GetType() == nil {
			v.add(fmt.Sprintf("%s: graph input %q has no type", scope, in.GetName()))
		} else if tt := in.GetType().GetTensorType(); tt != nil && tt.GetElemType() == Undefined {
			v.add(fmt.Sprintf("%s: graph input %q has element type UNDEFINED", scope, in.GetName()))
		}
	}
	v.graph(m.GetGraph(), nil, scope)
	return v.err()
}

type validator struct {
	opsets    map[string]int64
	functions map[string]bool
	problems  []string
	dropped   int
}

func (v *validator) add(p string) {
	if len(v.problems) >= maxReported {
		v.dropped++
		return
	}
	v.problems = append(v.problems, p)
}

func (v *validator) err() error {
	if len(v.problems) == 0 {
		return nil
	}
	msg := "invalid model: " + strings.Join(v.problems, "; ")
	if v.dropped > 0 {
		msg += fmt.Sprintf("; and %d more", v.dropped)
	}
	return errors.New(msg)
}

func quote(s string) string { return fmt.Sprintf("%q", s) }

// graph checks g with outer-scope values visible; scope names g in messages.
func (v *validator) graph(g *onnxpb.GraphProto, outer map[string]bool, scope string) {
	defined := map[string]string{} // value → what defines it, for messages
	for _, in := range g.Input {
		if in.GetName() == "" {
			v.add(scope + ": graph input without a name")
			continue
		}
		if _, dup := defined[in.GetName()]; dup {
			v.add(fmt.Sprintf("%s: graph input %q declared twice", scope, in.GetName()))
		}
		defined[in.GetName()] = "graph input"
	}
	for _, t := range g.Initializer {
		if t.GetName() == "" {
			v.add(scope + ": initializer without a name")
			continue
		}
		if what, dup := defined[t.GetName()]; dup && what != "graph input" {
			v.add(fmt.Sprintf("%s: initializer %q declared twice", scope, t.GetName()))
		}
		if _, isInput := defined[t.GetName()]; !isInput {
			defined[t.GetName()] = "initializer"
		}
		if t.GetDataLocation() != onnxpb.TensorProto_EXTERNAL {
			if err := checkData(t); err != nil {
				v.add(fmt.Sprintf("%s: initializer %v", scope, err))
			}
		}
	}
	for _, s := range g.SparseInitializer {
		if name := s.GetValues().GetName(); name != "" {
			defined[name] = "sparse initializer"
		}
	}

	// Who produces what, over the whole graph: duplicates and ordering.
	producer := map[string]int{}
	for i, n := range g.Node {
		for _, o := range n.Output {
			if o == "" {
				continue
			}
			if what, ok := defined[o]; ok {
				v.add(fmt.Sprintf("%s: %s output %q is already a %s", scope, nodeLabel(n, i), o, what))
			} else if j, ok := producer[o]; ok {
				v.add(fmt.Sprintf("%s: %s output %q is already produced by %s", scope, nodeLabel(n, i), o, nodeLabel(g.Node[j], j)))
			} else {
				producer[o] = i
			}
		}
	}
	cyc := findCycle(g)
	if cyc != "" {
		v.add(fmt.Sprintf("%s: cycle: %s", scope, cyc))
	}

	names := map[string]bool{}
	visible := func(name string) bool { _, ok := defined[name]; return ok || outer[name] }
	for i, n := range g.Node {
		label := nodeLabel(n, i)
		if n.GetOpType() == "" {
			v.add(fmt.Sprintf("%s: %s has no op_type", scope, label))
		}
		if n.GetName() != "" {
			if names[n.GetName()] {
				v.add(fmt.Sprintf("%s: %s: node name used twice", scope, label))
			}
			names[n.GetName()] = true
		}
		domain := canonicalDomain(n.GetDomain())
		if _, ok := v.opsets[domain]; !ok && !v.functions[n.GetDomain()+"\x00"+n.GetOpType()] {
			d := n.GetDomain()
			if d == "" {
				d = "ai.onnx"
			}
			v.add(fmt.Sprintf("%s: %s uses domain %q, which the model does not import (opset_import)", scope, label, d))
		}
		for _, in := range n.Input {
			if in == "" || visible(in) {
				continue
			}
			if j, ok := producer[in]; ok {
				if j >= i && cyc == "" {
					v.add(fmt.Sprintf("%s: %s input %q is produced by later %s: nodes are not in topological order (Graph.TopoSort)", scope, label, in, nodeLabel(g.Node[j], j)))
				}
				continue
			}
			v.add(fmt.Sprintf("%s: %s input %q is not produced by any node, graph input or initializer", scope, label, in))
		}
		v.attrs(n, label, scope)
		// Subgraphs see everything defined so far, plus this graph's outer scope.
		for _, a := range n.Attribute {
			for k, sg := range subgraphs(a) {
				inner := map[string]bool{}
				for name := range outer {
					inner[name] = true
				}
				for name := range defined {
					inner[name] = true
				}
				v.graph(sg, inner, fmt.Sprintf("%s / %s attribute %q[%d] graph %q", scope, label, a.GetName(), k, sg.GetName()))
			}
		}
		for _, o := range n.Output {
			if o != "" {
				if _, ok := defined[o]; !ok {
					defined[o] = "node output"
				}
			}
		}
	}
	outs := map[string]bool{}
	for _, o := range g.Output {
		name := o.GetName()
		if name == "" {
			v.add(scope + ": graph output without a name")
			continue
		}
		if outs[name] {
			v.add(fmt.Sprintf("%s: graph output %q declared twice", scope, name))
		}
		outs[name] = true
		if !visible(name) {
			v.add(fmt.Sprintf("%s: graph output %q is not produced by any node, graph input or initializer", scope, name))
		}
	}
}

func (v *validator) attrs(n *onnxpb.NodeProto, label, scope string) {
	seen := map[string]bool{}
	for _, a := range n.Attribute {
		if err := checkAttr(a); err != nil {
			v.add(fmt.Sprintf("%s: %s: %v", scope, label, err))
		}
		if seen[a.GetName()] {
			v.add(fmt.Sprintf("%s: %s: attribute %q given twice", scope, label, a.GetName()))
		}
		seen[a.GetName()] = true
		if a.GetRefAttrName() != "" {
			v.add(fmt.Sprintf("%s: %s: attribute %q refers to %q, which only a function body may do", scope, label, a.GetName(), a.GetRefAttrName()))
		}
	}
	if canonicalDomain(n.GetDomain()) != "" {
		return
	}
	if need, have := minOpset[n.GetOpType()], v.opsets[""]; need > 0 && have > 0 && have < need {
		v.add(fmt.Sprintf("%s: %s needs ai.onnx opset >= %d, the model imports %d", scope, label, need, have))
	}
	for _, req := range requiredAttrs[n.GetOpType()] {
		if !seen[req] {
			v.add(fmt.Sprintf("%s: %s lacks required attribute %q", scope, label, req))
		}
	}
	switch n.GetOpType() {
	case "Constant":
		k := 0
		for name := range seen {
			if constantValueAttrs[name] {
				k++
			}
		}
		if k != 1 {
			v.add(fmt.Sprintf("%s: %s needs exactly one value attribute, has %d", scope, label, k))
		}
		if a := FindAttr(n, "value"); a != nil && a.T != nil && a.T.GetDataLocation() != onnxpb.TensorProto_EXTERNAL {
			if err := checkData(a.T); err != nil {
				v.add(fmt.Sprintf("%s: %s value: %v", scope, label, err))
			}
		}
	case "Cast":
		if a := FindAttr(n, "to"); a != nil {
			if _, known := onnxpb.TensorProto_DataType_name[int32(a.GetI())]; !known || a.GetI() == 0 {
				v.add(fmt.Sprintf("%s: %s: attribute \"to\" is %d, not an element type", scope, label, a.GetI()))
			}
		}
	}
}

// deps returns, for each node of g, the indices of the nodes of g whose
// outputs it reads (directly or through its subgraphs).
func deps(g *onnxpb.GraphProto) [][]int {
	producer := map[string]int{}
	for i, n := range g.Node {
		for _, o := range n.Output {
			if o != "" {
				if _, dup := producer[o]; !dup {
					producer[o] = i
				}
			}
		}
	}
	out := make([][]int, len(g.Node))
	for i, n := range g.Node {
		seen := map[int]bool{}
		use := func(name string) {
			if j, ok := producer[name]; ok && !seen[j] {
				seen[j] = true
				out[i] = append(out[i], j)
			}
		}
		for _, in := range n.Input {
			use(in)
		}
		for _, a := range n.Attribute {
			for _, sg := range subgraphs(a) {
				for name := range freeValues(sg) {
					use(name)
				}
			}
		}
		sort.Ints(out[i])
	}
	return out
}

// freeValues are the names g's nodes read that g does not define (outer-scope references).
func freeValues(g *onnxpb.GraphProto) map[string]bool {
	def := map[string]bool{}
	for _, in := range g.Input {
		def[in.GetName()] = true
	}
	for _, t := range g.Initializer {
		def[t.GetName()] = true
	}
	for _, n := range g.Node {
		for _, o := range n.Output {
			def[o] = true
		}
	}
	free := map[string]bool{}
	for _, n := range g.Node {
		for _, in := range n.Input {
			if in != "" && !def[in] {
				free[in] = true
			}
		}
		for _, a := range n.Attribute {
			for _, sg := range subgraphs(a) {
				for name := range freeValues(sg) {
					if !def[name] {
						free[name] = true
					}
				}
			}
		}
	}
	for _, o := range g.Output {
		if !def[o.GetName()] {
			free[o.GetName()] = true
		}
	}
	return free
}

// topoOrder returns a topological order of g's nodes that keeps the
// existing order where it can, or the nodes of one cycle.
func topoOrder(g *onnxpb.GraphProto) (order []int, cycle []int) {
	d := deps(g)
	users := make([][]int, len(g.Node))
	indeg := make([]int, len(g.Node))
	for i, ds := range d {
		for _, j := range ds {
			if j == i {
				return nil, []int{i}
			}
			users[j] = append(users[j], i)
			indeg[i]++
		}
	}
	ready := &intHeap{}
	for i := range g.Node {
		if indeg[i] == 0 {
			ready.push(i)
		}
	}
	for ready.len() > 0 {
		i := ready.pop()
		order = append(order, i)
		for _, u := range users[i] {
			if indeg[u]--; indeg[u] == 0 {
				ready.push(u)
			}
		}
	}
	if len(order) == len(g.Node) {
		return order, nil
	}
	// Every node left waits on another node left: walk back until one repeats.
	at := -1
	for i := range g.Node {
		if indeg[i] > 0 {
			at = i
			break
		}
	}
	pos := map[int]int{}
	var path []int
	for {
		if p, ok := pos[at]; ok {
			cycle = path[p:]
			break
		}
		pos[at] = len(path)
		path = append(path, at)
		for _, j := range d[at] {
			if indeg[j] > 0 {
				at = j
				break
			}
		}
	}
	// path walks consumer → producer; report it in data-flow order.
	for l, r := 0, len(cycle)-1; l < r; l, r = l+1, r-1 {
		cycle[l], cycle[r] = cycle[r], cycle[l]
	}
	// Start at the earliest node so the message does not depend on the walk.
	low := 0
	for k := range cycle {
		if cycle[k] < cycle[low] {
			low = k
		}
	}
	return nil, append(cycle[low:], cycle[:low]...)
}

// findCycle describes a cycle among g's nodes ("" when there is none).
func findCycle(g *onnxpb.GraphProto) string {
	_, cyc := topoOrder(g)
	if cyc == nil {
		return ""
	}
	parts := make([]string, 0, len(cyc)+1)
	for _, i := range cyc {
		parts = append(parts, nodeLabel(g.Node[i], i))
	}
	parts = append(parts, nodeLabel(g.Node[cyc[0]], cyc[0]))
	return strings.Join(parts, " -> ")
}

// intHeap is a min-heap of node indices: ready nodes leave in original order.
type intHeap struct{ a []int }

func (h *intHeap) len() int { return len(h.a) }

func (h *intHeap) push(x int) {
	h.a = append(h.a, x)
	for i := len(h.a) - 1; i > 0; {
		p := (i - 1) / 2
		if h.a[p] <= h.a[i] {
			break
		}
		h.a[p], h.a[i] = h.a[i], h.a[p]
		i = p
	}
}

func (h *intHeap) pop() int {
	top := h.a[0]
	last := len(h.a) - 1
	h.a[0] = h.a[last]
	h.a = h.a[:last]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < last && h.a[l] < h.a[m] {
			m = l
		}
		if r < last && h.a[r] < h.a[m] {
			m = r
		}
		if m == i {
			break
		}
		h.a[i], h.a[m] = h.a[m], h.a[i]
		i = m
	}
	return top
}
