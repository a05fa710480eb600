package train

import (
	"fmt"
	"sort"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/onnxpb"
)

// Packing puts several short examples into one row of SeqLen tokens, as
// TRL's SFT packing does: rows are filled best-fit decreasing (the longest
// example first, each into the row with the least room that still holds
// it), positions restart at 0 for each example, and the training graph
// keeps each token's attention inside its own example (isolateExamples).
// The first token of an example is never a target, so no example learns
// from the one before it.

// PackRows groups examples (by their token counts) into rows of at most
// seqLen tokens, best-fit decreasing; an example longer than seqLen gets a
// row of its own (and is cut to seqLen). Rows come out in a fixed order
// for fixed input: the order of their first (longest) example.
func PackRows(lens []int, seqLen int) [][]int {
	order := make([]int, len(lens))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return lens[order[a]] > lens[order[b]] })
	var rows [][]int
	var room []int
	for _, i := range order {
		n := min(lens[i], seqLen)
		best := -1
		for r, left := range room {
			if left >= n && (best < 0 || left < room[best]) {
				best = r
			}
		}
		if best < 0 {
			rows, room = append(rows, nil), append(room, seqLen)
			best = len(rows) - 1
		}
		rows[best] = append(rows[best], i)
		room[best] -= n
	}
	return rows
}

// NewPackedLMBatch lays out each row's examples one after another (each cut
// to T tokens), right-padded with pad: positions restart at 0 for each
// example, and token t is a target when it is not its example's first token
// nor one of its first promptLen tokens (promptLen nil: no prompts).
func NewPackedLMBatch(examples [][]int64, promptLen []int, rows [][]int, T int, pad int64) *LMBatch {
	b := &LMBatch{B: int64(len(rows)), T: int64(T)}
	n := len(rows) * T
	b.IDs, b.Mask, b.LossMask, b.Pos = make([]int64, n), make([]int64, n), make([]float32, n), make([]int64, n)
	for r, row := range rows {
		t := 0
		for _, e := range row {
			ex := examples[e]
			p := 0
			if promptLen != nil {
				p = promptLen[e]
			}
			for j := 0; j < len(ex) && t < T; j, t = j+1, t+1 {
				k := r*T + t
				b.IDs[k], b.Mask[k], b.Pos[k] = ex[j], 1, int64(j)
				if j >= 1 && j >= p {
					b.LossMask[k] = 1
				}
			}
		}
		for ; t < T; t++ {
			b.IDs[r*T+t], b.Pos[r*T+t] = pad, 1 // HF's position for padding
		}
	}
	return b
}

// PaddingFraction is the share of a batch's token slots that hold padding.
func (b *LMBatch) PaddingFraction() float64 {
	pad := 0
	for _, m := range b.Mask {
		if m == 0 {
			pad++
		}
	}
	return float64(pad) / float64(max(len(b.Mask), 1))
}

// isolateExamples keeps a specialized causal LM's attention inside each
// packed example: every attention Softmax (over the last axis of a
// [B, …, T, T] input) gets the segment bias added to its input. Examples
// are told apart by position_ids restarting at 0. It returns how many
// Softmax nodes it changed; none is an error.
func isolateExamples(sp *Specialized) (int, error) {
	g := sp.Model.Graph
	ids, ok := sp.Types["input_ids"]
	if !ok || len(ids.Shape) != 2 {
		return 0, fmt.Errorf("packing: the graph has no input_ids [B,T]")
	}
	if _, ok := sp.Types["position_ids"]; !ok {
		return 0, fmt.Errorf("packing needs a model that takes position_ids (positions restart with each packed example); this one computes them itself")
	}
	B, T := ids.Shape[0], ids.Shape[1]
	var targets []*onnxpb.NodeProto
	for _, n := range g.Node {
		if n.GetOpType() != "Softmax" || (n.GetDomain() != "" && n.GetDomain() != "ai.onnx") {
			continue
		}
		s := sp.Types[n.Input[0]].Shape
		r := int64(len(s))
		if axis := ir.AttrIntOf(n, "axis", -1); r >= 3 && (axis == -1 || axis == r-1) && s[0] == B && s[r-1] == T && s[r-2] == T {
			targets = append(targets, n)
		}
	}
	if len(targets) == 0 {
		return 0, fmt.Errorf("packing: found no attention softmax over [B, …, %d, %d] to keep inside each example", T, T)
	}
	e := newEditor(g)
	e.prefix = "packing/"
	elem := sp.Types[targets[0].Input[0]].Elem
	typed := func(v string, t ValueType) string { sp.Types[v] = t; return v }
	i64 := func(shape ...int64) ValueType { return ValueType{ir.Int64, shape} }
	starts := typed(e.op("Cast", []string{typed(e.op("Equal", []string{"position_ids", e.init("packing/zero", ir.Scalar("", int64(0)))}), ValueType{ir.Bool, []int64{B, T}})},
		ir.AttrInt("to", int64(ir.Int64))), i64(B, T))
	seg := typed(e.op("CumSum", []string{starts, e.init("packing/axis", ir.Scalar("", int64(1)))}), i64(B, T))
	q := typed(e.op("Unsqueeze", []string{seg, e.ints(2)}), i64(B, T, 1))
	k := typed(e.op("Unsqueeze", []string{seg, e.ints(1)}), i64(B, 1, T))
	same := typed(e.op("Equal", []string{q, k}), ValueType{ir.Bool, []int64{B, T, T}})
	var zero, off *onnxpb.TensorProto
	if elem == ir.Double {
		zero, off = ir.Scalar("", 0.0), ir.Scalar("", -1e9)
	} else {
		zero, off = ir.Scalar("", float32(0)), ir.Scalar("", float32(-1e9))
	}
	bias3 := typed(e.op("Where", []string{same, e.init("packing/c", zero), e.init("packing/c", off)}), ValueType{elem, []int64{B, T, T}})
	biasFor := map[int]string{} // by rank
	for _, n := range targets {
		s := sp.Types[n.Input[0]].Shape
		bias, ok := biasFor[len(s)]
		if !ok {
			shape := append([]int64{B}, make([]int64, len(s)-3)...)
			for i := 1; i < len(shape); i++ {
				shape[i] = 1
			}
			shape = append(shape, T, T)
			bias = typed(e.op("Reshape", []string{bias3, e.ints(shape...)}), ValueType{elem, shape})
			biasFor[len(s)] = bias
		}
		in := n.Input[0]
		n.Input[0] = typed(e.op("Add", []string{in, bias}), sp.Types[in])
	}
	if err := topoSort(g); err != nil {
		return 0, fmt.Errorf("packing: %w", err)
	}
	annotate(g, sp.Types)
	return len(targets), nil
}
