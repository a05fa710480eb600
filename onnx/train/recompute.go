package train

import (
	"maps"
	"slices"

	"github.com/tagpr/tagpr/onnx/onnxpb"
)

// Activation recomputation. The backward pass reads forward values, so all
// of them normally live from the forward pass to the backward one: for a
// transformer at long sequences, mostly attention scores and MLP states of
// every layer. With recomputation only segment boundaries are kept: the
// forward graph is cut wherever a single weight-dependent value carries
// everything later nodes need (the residual stream between a layer's
// attention and MLP blocks), and each segment's backward reads a second,
// recomputed copy of the segment's forward nodes instead of the originals,
// which then die during the forward pass. The copy computes the same values
// from the same inputs, so gradients are unchanged; the cost is one more
// forward pass.

// demandOrder reorders forward nodes so each runs when a later node first
// needs it: a depth-first walk back from the last nodes, each node's inputs
// last first. A shared-prefix graph lists the prompt pass of every layer
// before the completion pass; in that order every layer's prompt keys and
// values are live across the completion pass and the cut search found 5
// segments for the 24 layers of a Qwen graph. Walked by demand (the
// residual stream is a node's first input, so the last-first walk follows
// the completion stream down and pulls each prompt layer in when the
// completion layer above reads its keys and values), prompt and completion
// layers interleave and a boundary carries the two streams and the prompt
// layer's pending values (four: 116 segments on that graph).
func demandOrder(fwd []*onnxpb.NodeProto) []*onnxpb.NodeProto {
	producer := map[string]*onnxpb.NodeProto{}
	for _, n := range fwd {
		for _, o := range n.Output {
			if o != "" {
				producer[o] = n
			}
		}
	}
	seen := map[*onnxpb.NodeProto]bool{}
	out := make([]*onnxpb.NodeProto, 0, len(fwd))
	// Iterative, so a long graph cannot overflow the stack: each frame is a
	// node and the index of the next input to visit.
	type frame struct {
		n    *onnxpb.NodeProto
		ins  []string
		next int
	}
	for i := len(fwd) - 1; i >= 0; i-- {
		if seen[fwd[i]] {
			continue
		}
		seen[fwd[i]] = true
		stack := []frame{{n: fwd[i], ins: nodeInputs(fwd[i])}}
		for len(stack) > 0 {
			f := &stack[len(stack)-1]
			if f.next == len(f.ins) {
				out = append(out, f.n)
				stack = stack[:len(stack)-1]
				continue
			}
			p := producer[f.ins[len(f.ins)-1-f.next]] // last input first
			f.next++
			if p != nil && !seen[p] {
				seen[p] = true
				stack = append(stack, frame{n: p, ins: nodeInputs(p)})
			}
		}
	}
	return out
}

// diffOptions are differentiate's optional behaviours.
type diffOptions struct {
	recompute bool // recompute each segment's activations in the backward pass
	// streams is how many weight-dependent values may cross a segment
	// boundary (0: one, the residual stream). A shared-prefix graph carries
	// more between layers (demandOrder) and with one it had no boundary at
	// all: everything recomputed at once. Above one, the forward nodes are
	// put in demandOrder first.
	streams int
}

// recomputePrefix starts the names of recomputed nodes and values.
const recomputePrefix = "recompute/"

// recomputeSegments clones each forward segment's internal nodes and points
// the gradient nodes of the segment (owner: the forward node whose rule
// emitted them) at the clones. ONNX Runtime orders nodes by data alone (and
// merges identical nodes) and would run the clones in the forward pass,
// holding their values just the same; so each segment's clones read its
// boundary through Where(IsNaN(g), g, boundary) with g an element of the
// gradient arriving at the segment: the same values, computed once the
// backward pass reaches the segment.
//
// The gates also read an element of each weight gradient (paramGrads:
// weight → gradient output) of the segment after theirs. ORT's default order
// is a depth-first walk back from the graph's last nodes; a weight's gradient
// is one of them, so without the gate it ran at the very end of the step,
// and its inputs (a recomputed activation, an upstream gradient: [B,T,F] for
// an MLP weight) stayed alive for the whole backward pass, every layer's at
// once. Read by the next segment's gates, each weight gradient runs before
// the backward pass moves on.
func recomputeSegments(g *onnxpb.GraphProto, fwd []*onnxpb.NodeProto, owner map[*onnxpb.NodeProto]*onnxpb.NodeProto,
	gradOf map[*onnxpb.NodeProto][]string, needs map[string]bool, types map[string]ValueType, paramGrads map[string]string, streams int) error {
	streams = max(streams, 1)
	// The forward nodes still in the (pruned) graph, in order.
	in := map[*onnxpb.NodeProto]bool{}
	for _, n := range g.Node {
		in[n] = true
	}
	var kept []*onnxpb.NodeProto
	for _, n := range fwd {
		if in[n] {
			kept = append(kept, n)
		}
	}
	fwd = kept
	if streams > 1 {
		fwd = demandOrder(fwd)
	}
	index := map[*onnxpb.NodeProto]int{}
	producer := map[string]int{}
	for i, n := range fwd {
		index[n] = i
		for _, o := range n.Output {
			if o != "" {
				producer[o] = i
			}
		}
	}
	// lastUse: the last forward node reading each value.
	lastUse := map[string]int{}
	for i, n := range fwd {
		for _, in := range nodeInputs(n) {
			if _, ok := producer[in]; ok {
				lastUse[in] = i
			}
		}
	}
	graphOut := map[string]bool{}
	for _, o := range g.Output {
		graphOut[o.GetName()] = true
	}
	// Cuts: after node i, at most streams weight-dependent values produced
	// so far are still read by later forward nodes.
	delta := make([]int, len(fwd)+1)
	for v, p := range producer {
		if l, ok := lastUse[v]; ok && needs[v] && l > p {
			delta[p]++
			delta[l]--
		}
	}
	seg := make([]int, len(fwd))
	live, s := 0, 0
	for i := range fwd {
		seg[i] = s
		live += delta[i]
		if live <= streams {
			s++
		}
	}
	// A node is cloned when its values are read in the forward pass only
	// inside its segment (so the originals can die there) and it is not a
	// chunked head (whose Scan already computed its gradients).
	// Each segment's trigger: the first gradient the backward pass computes
	// in it (at its last node that has one).
	// (A gradient some rule named but the graph no longer produces — pruned
	// as unread — cannot trigger anything.)
	produced := map[string]bool{}
	for _, n := range g.Node {
		for _, o := range n.Output {
			produced[o] = true
		}
	}
	trigger := map[int]string{}
	for i := len(fwd) - 1; i >= 0; i-- {
		if _, ok := trigger[seg[i]]; ok {
			continue
		}
		for _, gy := range gradOf[fwd[i]] {
			if gy != "" && produced[gy] {
				trigger[seg[i]] = gy
				break
			}
		}
	}
	// Each segment's gates also wait for the weight gradients of the first
	// later segment reading a weight (a weight read in several segments
	// counts in its first, whose backward completes its gradient).
	weightSeg := map[string]int{}
	for i, n := range fwd {
		for _, in := range nodeInputs(n) {
			if _, ok := paramGrads[in]; ok {
				if s, seen := weightSeg[in]; !seen || seg[i] < s {
					weightSeg[in] = seg[i]
				}
			}
		}
	}
	waitFor := map[int][]string{} // segment → weight gradients its gates read
	for _, p := range slices.Sorted(maps.Keys(weightSeg)) {
		for s := weightSeg[p] - 1; s >= 0; s-- {
			if trigger[s] != "" {
				waitFor[s] = append(waitFor[s], paramGrads[p])
				break
			}
		}
	}
	e := newEditor(g)
	e.prefix = recomputePrefix + "gate/"
	var glue []*onnxpb.NodeProto    // the gated boundaries, made in the backward pass
	gated := map[[2]string]string{} // (value, trigger) → gated value
	gate := func(v string, s int) string {
		trig := trigger[s]
		if r, ok := gated[[2]string{v, trig}]; ok {
			return r
		}
		before := len(g.Node)
		first := func(x string) string {
			return e.op("Slice", []string{e.op("Reshape", []string{x, e.ints(-1)}), e.ints(0), e.ints(1)})
		}
		one := first(trig)
		if len(waitFor[s]) > 0 {
			// NaN if any of them is (or infinities of both signs meet):
			// the step is lost then anyway.
			sum := []string{one}
			for _, w := range waitFor[s] {
				sum = append(sum, first(w))
			}
			one = e.op("Sum", sum)
		}
		// Where(IsNaN(g), g, v) is v unless the gradient is already NaN (and
		// the step lost): a runtime condition ORT cannot fold away.
		r := e.op("Where", []string{e.op("IsNaN", []string{one}), one, v})
		glue = append(glue, g.Node[before:]...)
		g.Node = g.Node[:before]
		types[r] = types[v]
		gated[[2]string{v, trig}] = r
		return r
	}
	heads, _ := fusedHeads(g)
	clone := map[string]string{} // original value → recomputed value
	var clones []*onnxpb.NodeProto
	for i, n := range fwd {
		if heads[n] != nil || len(n.Output) == 0 {
			continue
		}
		local := true
		for _, o := range n.Output {
			if l, ok := lastUse[o]; (ok && seg[l] != seg[i]) || graphOut[o] {
				local = false
			}
		}
		if !local {
			continue
		}
		c := cloneNode(n)
		c.Name = recomputePrefix + n.GetName()
		for k, in := range c.Input {
			if r, ok := clone[in]; ok {
				c.Input[k] = r
			} else if p, ok := producer[in]; ok && needs[in] && seg[p] != seg[i] && trigger[seg[i]] != "" && isFloat(types[in].Elem) {
				c.Input[k] = gate(in, seg[i])
			}
		}
		for k, o := range c.Output {
			if o == "" {
				continue
			}
			c.Output[k] = recomputePrefix + o
			clone[o] = c.Output[k]
			types[c.Output[k]] = types[o]
		}
		clones = append(clones, c)
	}
	for gn, n := range owner {
		i, ok := index[n]
		if !ok || !in[gn] {
			continue
		}
		s := seg[i]
		for k, in := range gn.Input {
			if r, ok := clone[in]; ok && seg[producer[in]] == s {
				gn.Input[k] = r
			}
		}
	}
	// Between the forward and the backward nodes: the graph stays in
	// topological order (prune relies on it).
	// The gates read gradients: they go after the backward nodes, and the
	// clones after them; topoSort restores the order.
	g.Node = append(append(g.Node, glue...), clones...)
	return topoSort(g)
}
