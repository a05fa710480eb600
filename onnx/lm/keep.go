package lm

import (
	"math"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/onnxpb"
)

// LogitsToKeep is the input tagpr adds to a model's graph when it loads
// it: logits_to_keep [1] int64 = k makes the output projection run on the
// last k positions only, so logits is [B, k, V]. Generation keeps 1: a
// prompt's prefill then skips the vocabulary projection of every position
// but the last, which with a 150k-token vocabulary is most of the prefill's
// work. Forward keeps them all. (Hugging Face's models take an argument of
// that name and meaning.)
const LogitsToKeep = "logits_to_keep"

// maxEditBytes bounds the models Load edits in memory (a protobuf message
// cannot exceed 2 GiB); bigger ones load unedited and compute every
// position's logits.
const maxEditBytes = 1 << 30

// addLogitsToKeep rewires the node producing logits — a MatMul of the
// hidden states [B,T,d] by the output weight — to read only the last
// logits_to_keep positions of the hidden states. It reports whether the
// graph had that shape (and no such input yet) and was changed.
func addLogitsToKeep(pm *onnxpb.ModelProto) bool {
	gp := pm.GetGraph()
	if gp == nil || hasInput(gp, LogitsToKeep) {
		return false
	}
	var head *onnxpb.NodeProto
	for _, n := range gp.Node {
		for _, o := range n.Output {
			if o == Logits {
				head = n
			}
		}
	}
	if head == nil || head.GetOpType() != "MatMul" || head.GetDomain() != "" || len(head.Input) != 2 {
		return false
	}
	out, _, ok := logitsOutput(gp)
	if !ok {
		return false
	}
	g := ir.WrapGraph(gp)
	g.Input(LogitsToKeep, ir.Int64, 1)
	before := len(gp.Node)
	constant := func(v int64) string {
		return g.AddNode(&onnxpb.NodeProto{OpType: "Constant", Output: []string{""},
			Attribute: []ir.Attribute{ir.AttrTensor("value", ir.Vector("", v))}}).Output[0]
	}
	start := g.Op("Neg", []string{LogitsToKeep})
	kept := g.Op("Slice", []string{head.Input[0], start, constant(math.MaxInt64), constant(1)})
	head.Input[0] = kept
	// The new nodes were appended; put them just before the head so the
	// graph stays in topological order.
	insertBefore(gp, head, len(gp.Node)-before)
	if d := out.GetType().GetTensorType().GetShape().GetDim(); len(d) == 3 {
		d[1].Value = &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: LogitsToKeep}
	}
	return g.Err() == nil
}

// hasInput reports whether gp has an input of that name.
func hasInput(gp *onnxpb.GraphProto, name string) bool {
	for _, in := range gp.Input {
		if in.GetName() == name {
			return true
		}
	}
	return false
}

// logitsOutput returns gp's logits output and its element type when it is
// rank 3.
func logitsOutput(gp *onnxpb.GraphProto) (*onnxpb.ValueInfoProto, ir.DataType, bool) {
	for _, o := range gp.Output {
		if o.GetName() == Logits {
			elem, dims, _, ok := ir.ShapeOf(o)
			return o, elem, ok && len(dims) == 3
		}
	}
	return nil, 0, false
}

// insertBefore moves the last n nodes of gp to just before node at.
func insertBefore(gp *onnxpb.GraphProto, at *onnxpb.NodeProto, n int) {
	added := append([]*onnxpb.NodeProto(nil), gp.Node[len(gp.Node)-n:]...)
	rest := gp.Node[:len(gp.Node)-n]
	out := make([]*onnxpb.NodeProto, 0, len(gp.Node))
	for _, x := range rest {
		if x == at {
			out = append(out, added...)
		}
		out = append(out, x)
	}
	gp.Node = out
}
