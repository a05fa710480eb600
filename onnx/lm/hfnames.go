package lm

import (
	"bytes"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/onnxpb"
)

// HFParam is one Hugging Face parameter held by an ONNX initializer.
type HFParam struct {
	// Name is the parameter's name in a transformers checkpoint
	// (model.layers.0.self_attn.q_proj.weight).
	Name string
	// Init is the initializer holding it.
	Init string
	// Transposed: the initializer holds the checkpoint's 2-D tensor
	// transposed (a MatMul weight is [in, out]; nn.Linear stores [out, in]).
	Transposed bool
	// Shape is the checkpoint's shape (the initializer's, reversed when
	// Transposed).
	Shape []int64
}

// Module is the parameter's module: its name without the last part
// (model.layers.0.self_attn.q_proj).
func (p HFParam) Module() string { return ModuleOf(p.Name) }

// ModuleOf strips a parameter name's last dotted part (weight, bias…).
func ModuleOf(param string) string {
	if i := strings.LastIndexByte(param, '.'); i > 0 {
		return param[:i]
	}
	return param
}

// HFNames maps a causal LM's initializers to Hugging Face parameters.
type HFNames struct {
	// Params holds each parameter once, in graph order.
	Params []HFParam
	// Tied maps a parameter that shares its storage with another to that
	// one (lm_head.weight → model.embed_tokens.weight when the head reuses
	// the embedding). A tied parameter is not in Params.
	Tied map[string]string
	// Copies are initializers that hold a parameter already in Params
	// again (the same values, or their transpose): one parameter stored
	// twice. NameWeights folds them into one.
	Copies []HFCopy
	// Shared are the node inputs that read, as a parameter of their own
	// (in Tied), an initializer another parameter claimed first: Optimum
	// stores tensors with equal values once (a fresh model's zero biases,
	// unit norms), where transformers has two parameters. NameWeights
	// gives each its own copy. The lm head tied to the embedding is not
	// among them.
	Shared []HFSharedUse
	// Unnamed lists float initializers used as weights (a MatMul's second
	// input, a norm's gain…) by nodes whose names carry no module path, so
	// no checkpoint name can be given to them.
	Unnamed []string
}

// HFSharedUse is a node input that reads the initializer of the
// parameter Of as the parameter Name.
type HFSharedUse struct {
	Name, Of string
	Node     *onnxpb.NodeProto
	Input    int
}

// HFCopy is an initializer holding the parameter Of again.
type HFCopy struct {
	Init string
	Of   string // the parameter's HF name
	// Transposed: Init holds the transpose of Of's initializer.
	Transposed bool
}

// Param returns the parameter of that HF name (following ties).
func (n *HFNames) Param(name string) (HFParam, bool) {
	if to, ok := n.Tied[name]; ok {
		name = to
	}
	for _, p := range n.Params {
		if p.Name == name {
			return p, true
		}
	}
	return HFParam{}, false
}

// ByInit returns the parameter an initializer holds.
func (n *HFNames) ByInit(init string) (HFParam, bool) {
	for _, p := range n.Params {
		if p.Init == init {
			return p, true
		}
	}
	return HFParam{}, false
}

// claim is one use of an initializer in a parameter's role.
type claim struct {
	init, name string
	transposed bool
	order      int
	// the node input that reads the initializer: the claiming node's, or
	// that of the last Identity between them (nil through a Transpose)
	node  *onnxpb.NodeProto
	input int
}

// MapHFNames names every weight of a causal LM by its Hugging Face
// parameter, from the graph's structure: the module comes from the node
// that uses the initializer, named the way PyTorch's exporter (and Optimum)
// name nodes (/model/layers.0/self_attn/q_proj/MatMul is module
// model.layers.0.self_attn.q_proj), and the parameter and its layout from
// the op and the input slot (a MatMul's second input is the module's
// weight, stored transposed; an Add's is its bias; a norm's Mul or
// LayerNormalization holds weight and bias; an embedding Gather its weight).
// Initializer names are never read, so an exporter's numbered names
// (onnx::MatMul_745) get their module's name.
//
// An initializer reached through a Transpose counts with the opposite
// layout; one initializer used by two modules is one parameter with a tie
// (an lm head reading the embedding); two initializers of one parameter,
// or an lm head whose values equal the embedding's (as exporters store a
// tied head: a transposed copy), are copies of one parameter.
func MapHFNames(m *onnxpb.ModelProto) (*HFNames, error) { return mapHFNames(m, true) }

// MapHFNamesFor is MapHFNames for a model whose config.json is cfg (nil:
// none): a config saying tie_word_embeddings false keeps an lm head whose
// values equal the embedding's as a weight of its own (a checkpoint untied
// by copying the embedding, the usual way to untie one), where MapHFNames
// would take it for a tied head.
func MapHFNamesFor(m *onnxpb.ModelProto, cfg *HFConfig) (*HFNames, error) {
	return mapHFNames(m, tiesByValue(cfg))
}

// tiesByValue reports whether an lm head equal to the embedding is a tie.
func tiesByValue(cfg *HFConfig) bool {
	return cfg == nil || cfg.TieWordEmbeddings == nil || *cfg.TieWordEmbeddings
}

func mapHFNames(m *onnxpb.ModelProto, byValue bool) (*HFNames, error) {
	g := m.GetGraph()
	if g == nil {
		return nil, fmt.Errorf("hf names: model has no graph")
	}
	inits := map[string]*onnxpb.TensorProto{}
	for _, t := range g.Initializer {
		if isFloatType(t.GetDataType()) {
			inits[t.GetName()] = t
		}
	}
	producer := map[string]*onnxpb.NodeProto{}
	for _, n := range g.Node {
		for _, o := range n.Output {
			producer[o] = n
		}
	}
	// resolve follows Transposes (2-D swaps) and Identities back to an
	// initializer; last is the Identity or Transpose that reads it (nil:
	// v is the initializer).
	resolve := func(v string) (init string, flip bool, last *onnxpb.NodeProto, ok bool) {
		for range 8 {
			if _, ok := inits[v]; ok {
				return v, flip, last, true
			}
			p := producer[v]
			if p == nil || len(p.Input) == 0 {
				return "", false, nil, false
			}
			switch p.GetOpType() {
			case "Identity":
			case "Transpose":
				if perm := ir.AttrIntsOf(p, "perm"); perm != nil && !(len(perm) == 2 && perm[0] == 1 && perm[1] == 0) {
					return "", false, nil, false
				}
				flip = !flip
			default:
				return "", false, nil, false
			}
			v, last = p.Input[0], p
		}
		return "", false, nil, false
	}
	var claims []claim
	unnamed := map[string]bool{}
	for order, n := range g.Node {
		module := moduleOfNode(n.GetName())
		for i, in := range n.Input {
			init, flip, last, ok := resolve(in)
			if !ok {
				continue
			}
			leaf, transposed, ok := paramRole(n, i, inits[init], module)
			if !ok {
				continue
			}
			if module == "" {
				unnamed[init] = true
				continue
			}
			c := claim{init: init, name: module + "." + leaf, transposed: transposed != flip, order: order}
			switch {
			case flip: // a transposed use (a tied head) stays tied
			case last == nil:
				c.node, c.input = n, i
			default: // through Identities (Optimum's deduplication): the last one reads init
				c.node, c.input = last, 0
			}
			claims = append(claims, c)
		}
	}
	out := &HFNames{Tied: map[string]string{}}
	byInit := map[string]string{} // init → the first HF name it got
	byName := map[string]int{}    // HF name → index in Params
	for _, c := range claims {
		delete(unnamed, c.init)
		if first, ok := byInit[c.init]; ok {
			if first != c.name {
				out.Tied[c.name] = first
				if c.name != "lm_head.weight" && c.node != nil {
					out.Shared = append(out.Shared, HFSharedUse{Name: c.name, Of: first, Node: c.node, Input: c.input})
				}
			}
			continue
		}
		if i, ok := byName[c.name]; ok {
			p := out.Params[i]
			if !sameValues(inits[p.Init], inits[c.init], p.Transposed != c.transposed) {
				return nil, fmt.Errorf("hf names: initializers %q and %q are both used as %s but hold different values", p.Init, c.init, c.name)
			}
			out.Copies = append(out.Copies, HFCopy{Init: c.init, Of: c.name, Transposed: p.Transposed != c.transposed})
			byInit[c.init] = c.name
			continue
		}
		dims := append([]int64{}, inits[c.init].GetDims()...)
		if c.transposed {
			if len(dims) != 2 {
				return nil, fmt.Errorf("hf names: %s (initializer %q) is used transposed but has shape %v", c.name, c.init, dims)
			}
			dims[0], dims[1] = dims[1], dims[0]
		}
		byInit[c.init], byName[c.name] = c.name, len(out.Params)
		out.Params = append(out.Params, HFParam{Name: c.name, Init: c.init, Transposed: c.transposed, Shape: dims})
	}
	for n := range unnamed {
		out.Unnamed = append(out.Unnamed, n)
	}
	sort.Strings(out.Unnamed)
	if byValue {
		out.tieHead(inits, g)
	}
	return out, nil
}

// tieHead records an lm head stored as a copy of the input embedding (what
// exporters write for tie_word_embeddings): equal values are one parameter.
func (n *HFNames) tieHead(inits map[string]*onnxpb.TensorProto, g *onnxpb.GraphProto) {
	var head, emb = -1, -1
	for i, p := range n.Params {
		if p.Module() == "lm_head" && strings.HasSuffix(p.Name, ".weight") {
			head = i
		}
	}
	producer := map[string]*onnxpb.NodeProto{}
	for _, nd := range g.Node {
		for _, o := range nd.Output {
			producer[o] = nd
		}
	}
	// fromIDs: v is input_ids, perhaps reshaped or cast on the way.
	fromIDs := func(v string) bool {
		for range 8 {
			if v == InputIDs {
				return true
			}
			p := producer[v]
			if p == nil || len(p.Input) == 0 {
				return false
			}
			switch p.GetOpType() {
			case "Reshape", "Flatten", "Unsqueeze", "Squeeze", "Cast", "Identity":
				v = p.Input[0]
			default:
				return false
			}
		}
		return false
	}
	for _, nd := range g.Node {
		if nd.GetOpType() == "Gather" && len(nd.Input) == 2 && fromIDs(nd.Input[1]) {
			for i, p := range n.Params {
				if p.Init == nd.Input[0] {
					emb = i
				}
			}
		}
	}
	if head < 0 || emb < 0 || head == emb {
		return
	}
	h, e := n.Params[head], n.Params[emb]
	if !slices.Equal(h.Shape, e.Shape) || !sameValues(inits[e.Init], inits[h.Init], h.Transposed != e.Transposed) {
		return
	}
	n.Tied[h.Name] = e.Name
	n.Copies = append(n.Copies, HFCopy{Init: h.Init, Of: e.Name, Transposed: h.Transposed != e.Transposed})
	n.Params = append(n.Params[:head], n.Params[head+1:]...)
}

// paramRole says which parameter of its module input i of n is, and
// whether the initializer holds it transposed; ok is false where the input
// is not a parameter (shapes, scales, rotary tables).
func paramRole(n *onnxpb.NodeProto, i int, t *onnxpb.TensorProto, module string) (leaf string, transposed, ok bool) {
	rank, size := len(t.GetDims()), ir.NumElements(t.GetDims())
	if strings.Contains(module, "rotary") {
		return "", false, false
	}
	switch n.GetOpType() {
	case "Gather":
		return "weight", false, i == 0 && rank == 2
	case "MatMul":
		return "weight", true, i == 1 && rank == 2
	case "Gemm":
		switch i {
		case 1:
			// transB=1: nn.Linear's [out, in] as stored. transB=0: GPT-2's
			// Conv1D (c_attn, c_proj, c_fc) stores [in, out] itself.
			conv1D := strings.HasPrefix(module[strings.LastIndexByte(module, '.')+1:], "c_")
			return "weight", ir.AttrIntOf(n, "transB", 0) == 0 && !conv1D, rank == 2
		case 2:
			return "bias", false, rank == 1
		}
	case "Add":
		return "bias", false, rank == 1 && size > 1
	case "Mul":
		return "weight", false, rank == 1 && size > 1
	case "LayerNormalization", "SimplifiedLayerNormalization", "RMSNormalization":
		switch i {
		case 1:
			return "weight", false, rank == 1
		case 2:
			return "bias", false, rank == 1
		}
	}
	return "", false, false
}

// moduleOfNode reads the module path from a node name in the exporter's
// form /model/layers.0/self_attn/q_proj/MatMul; "" when the name has none.
func moduleOfNode(name string) string {
	if !strings.HasPrefix(name, "/") {
		return ""
	}
	parts := strings.Split(name[1:], "/")
	if len(parts) < 2 {
		return ""
	}
	for _, p := range parts[:len(parts)-1] {
		if p == "" {
			return ""
		}
	}
	return strings.Join(parts[:len(parts)-1], ".")
}

// sameValues reports whether two initializers hold bit-identical values,
// b transposed relative to a when transposed.
func sameValues(a, b *onnxpb.TensorProto, transposed bool) bool {
	if a == nil || b == nil || a.GetDataType() != b.GetDataType() {
		return false
	}
	ad, bd := a.GetDims(), b.GetDims()
	if transposed {
		if len(ad) != 2 || len(bd) != 2 || ad[0] != bd[1] || ad[1] != bd[0] {
			return false
		}
	} else if !slices.Equal(ad, bd) {
		return false
	}
	ar, err1 := ir.RawBytes(a)
	br, err2 := ir.RawBytes(b)
	if err1 != nil || err2 != nil || len(ar) != len(br) {
		return false
	}
	if !transposed {
		return bytes.Equal(ar, br)
	}
	es := int64(ir.ElemSize(a.GetDataType()))
	rows, cols := ad[0], ad[1]
	for r := int64(0); r < rows; r++ {
		for c := int64(0); c < cols; c++ {
			x := ar[(r*cols+c)*es : (r*cols+c+1)*es]
			y := br[(c*rows+r)*es : (c*rows+r+1)*es]
			if !bytes.Equal(x, y) {
				return false
			}
		}
	}
	return true
}

func isFloatType(dt ir.DataType) bool {
	return dt == ir.Float || dt == ir.Double || dt == ir.Float16 || dt == ir.BFloat16
}

// NameWeights gives every weight of m its Hugging Face name, in place:
// each parameter's initializer is renamed to the parameter (so LoRA
// targets, --trainable patterns, checkpoints and logs all read
// model.layers.0.self_attn.q_proj.weight), and every copy of a parameter
// is replaced by the parameter itself (through a Transpose where the copy
// was transposed), so a tied lm head and its embedding train as one
// tensor. Layouts stay as they are (see HFParam.Transposed). Weights used
// by unnamed nodes keep their names. It returns the names of the result;
// on an error m is left as it was.
func NameWeights(m *onnxpb.ModelProto) (*HFNames, error) { return nameWeights(m, true) }

// NameWeightsFor is NameWeights for a model whose config.json is cfg (see
// MapHFNamesFor).
func NameWeightsFor(m *onnxpb.ModelProto, cfg *HFConfig) (*HFNames, error) {
	return nameWeights(m, tiesByValue(cfg))
}

func nameWeights(m *onnxpb.ModelProto, byValue bool) (*HFNames, error) {
	names, err := mapHFNames(m, byValue)
	if err != nil {
		return nil, err
	}
	g := m.Graph
	if len(names.Shared) > 0 {
		undo := untie(g, names)
		if names, err = mapHFNames(m, byValue); err != nil {
			undo()
			return nil, err
		}
		named, err := renameWeights(m, names, byValue)
		if err != nil {
			undo()
		}
		return named, err
	}
	return renameWeights(m, names, byValue)
}

// untie gives each of names.Shared's parameters its own initializer, a
// copy of the one it shared (PyTorch trains the two apart), and returns
// what puts the graph back. Through Optimum's deduplication the parameter
// was an Identity of the other's initializer: the copy takes the
// Identity's output name and the Identity goes. A parameter that read the
// shared initializer directly gets a copy named after it and its node
// input reads that.
func untie(g *onnxpb.GraphProto, names *HFNames) (undo func()) {
	defined := map[string]bool{}
	for _, v := range g.Input {
		defined[v.GetName()] = true
	}
	inits := map[string]*onnxpb.TensorProto{}
	for _, t := range g.Initializer {
		inits[t.GetName()] = t
		defined[t.GetName()] = true
	}
	for _, n := range g.Node {
		for _, o := range n.Output {
			defined[o] = true
		}
	}
	n0, nodes := len(g.Initializer), slices.Clone(g.Node)
	var rewired []HFSharedUse
	dropped := map[*onnxpb.NodeProto]bool{}
	for _, u := range names.Shared {
		p, _ := names.Param(u.Of)
		src := inits[p.Init]
		if src == nil || dropped[u.Node] {
			continue
		}
		cp := ir.CloneTensor(src)
		if u.Node.GetOpType() == "Identity" {
			cp.Name = u.Node.Output[0]
			dropped[u.Node] = true
		} else {
			if defined[u.Name] {
				continue // the name is taken: the two stay one weight
			}
			cp.Name = u.Name
			defined[u.Name] = true
			rewired = append(rewired, HFSharedUse{Name: p.Init, Node: u.Node, Input: u.Input})
			u.Node.Input[u.Input] = u.Name
		}
		g.Initializer = append(g.Initializer, cp)
	}
	if len(dropped) > 0 {
		g.Node = slices.DeleteFunc(slices.Clone(g.Node), func(n *onnxpb.NodeProto) bool { return dropped[n] })
	}
	return func() {
		g.Initializer, g.Node = g.Initializer[:n0], nodes
		for _, r := range rewired {
			r.Node.Input[r.Input] = r.Name
		}
	}
}

// renameWeights is NameWeights' renaming, on names mapped from m.
func renameWeights(m *onnxpb.ModelProto, names *HFNames, byValue bool) (*HFNames, error) {
	g := m.Graph
	rename := map[string]string{}
	var prepend []*onnxpb.NodeProto
	for _, c := range names.Copies {
		p, _ := names.Param(c.Of)
		if !c.Transposed {
			rename[c.Init] = p.Init
			continue
		}
		prepend = append(prepend, &onnxpb.NodeProto{Name: "/" + strings.ReplaceAll(ModuleOf(p.Name), ".", "/") + "/Transpose_tied",
			OpType: "Transpose", Input: []string{p.Init}, Output: []string{c.Init}, Attribute: []*onnxpb.AttributeProto{ir.AttrInts("perm", 1, 0)}})
	}
	drop := map[string]bool{}
	for _, c := range names.Copies {
		drop[c.Init] = true
	}
	used := map[string]bool{}
	for _, v := range g.Input {
		used[v.GetName()] = true
	}
	for _, n := range g.Node {
		for _, o := range n.Output {
			used[o] = true
		}
	}
	for _, t := range g.Initializer {
		used[t.GetName()] = true
	}
	for _, p := range names.Params {
		if p.Init == p.Name {
			continue
		}
		if used[p.Name] {
			return nil, fmt.Errorf("hf names: cannot rename initializer %q to %q: the graph already has a value of that name", p.Init, p.Name)
		}
		rename[p.Init] = p.Name
		used[p.Name] = true
	}
	// Rename a copy's old name through its parameter's new name.
	for from, to := range rename {
		if next, ok := rename[to]; ok {
			rename[from] = next
		}
	}
	for _, n := range prepend {
		if to, ok := rename[n.Input[0]]; ok {
			n.Input[0] = to
		}
	}
	kept := g.Initializer[:0]
	for _, t := range g.Initializer {
		if drop[t.GetName()] {
			continue
		}
		if to, ok := rename[t.GetName()]; ok {
			t.Name = to
		}
		kept = append(kept, t)
	}
	g.Initializer = kept
	for _, n := range g.Node {
		for i, in := range n.Input {
			if to, ok := rename[in]; ok {
				n.Input[i] = to
			}
		}
	}
	for _, o := range g.Output {
		if to, ok := rename[o.GetName()]; ok {
			o.Name = to
		}
	}
	g.Node = append(prepend, g.Node...)
	return mapHFNames(m, byValue)
}
