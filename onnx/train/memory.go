package train

import (
	"fmt"
	"strings"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/onnxpb"
)

// MemoryEstimate is a training step's expected peak resident memory, by
// part, in bytes; EstimateMemory makes it from a training graph before any
// session exists.
type MemoryEstimate struct {
	// Weights: the trainable and frozen weights Go feeds (the trainer's
	// copies and the graph's initial values), and the graph's own
	// initializers (inside the ORT session).
	Weights int64
	// Gradients: one buffer per trainable weight.
	Gradients int64
	// Optimizer: AdamW's two moments per trainable weight.
	Optimizer int64
	// Activations: the forward values the backward pass reads, all live
	// when the backward pass starts.
	Activations int64
	// Transient: the largest working set on top of the activations — the
	// chunked head's per-chunk logits and its accumulated weight gradient,
	// or the biggest backward values.
	Transient int64
	// Runtime: ONNX Runtime and the Go runtime themselves.
	Runtime int64
}

// runtimeBaseline is ORT's and Go's own resident memory with a session open.
const runtimeBaseline = 200 << 20

// Total is the estimated peak.
func (e MemoryEstimate) Total() int64 {
	return e.Weights + e.Gradients + e.Optimizer + e.Activations + e.Transient + e.Runtime
}

// String lists the parts and the total, e.g. for a log line before a run.
func (e MemoryEstimate) String() string {
	return fmt.Sprintf("weights %s, gradients %s, optimizer %s, activations %s, transient %s, runtime %s: total %s",
		FormatBytes(e.Weights), FormatBytes(e.Gradients), FormatBytes(e.Optimizer), FormatBytes(e.Activations),
		FormatBytes(e.Transient), FormatBytes(e.Runtime), FormatBytes(e.Total()))
}

// FormatBytes writes a byte count in binary units (e.g. "1.4 GiB").
func FormatBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.0f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// EstimateMemory estimates the peak memory of training steps on tg with a
// Trainer (AdamW): the weights, their gradients and moments, the forward
// activations the backward pass keeps, and the largest temporaries.
func EstimateMemory(tg *TrainingGraph) MemoryEstimate {
	var e MemoryEstimate
	size := func(t ValueType) int64 { return ir.NumElements(t.Shape) * int64(max(ir.ElemSize(t.Elem), 0)) }
	for _, p := range tg.Params {
		n := size(tg.Types[p])
		if n == 0 && tg.Initial[p] != nil {
			n = initBytes(tg.Initial[p])
		}
		// The trainer's slice and the graph's initial value.
		e.Weights += 2 * n
		e.Gradients += n
		e.Optimizer += 2 * n
	}
	for _, f := range tg.Frozen {
		e.Weights += 2 * initBytes(tg.Initial[f])
	}
	g := tg.Model.Graph
	for _, t := range g.Initializer {
		e.Weights += initBytes(t)
	}
	// Forward values read by the backward pass: live together at its start.
	fwd := map[string]bool{}
	for _, n := range g.Node {
		if !isGradNode(n) {
			for _, o := range n.Output {
				fwd[o] = true
			}
		}
	}
	kept := map[string]bool{}
	var biggest int64
	for _, n := range g.Node {
		if !isGradNode(n) {
			continue
		}
		for _, in := range n.Input {
			if fwd[in] && !kept[in] {
				kept[in] = true
				e.Activations += size(tg.Types[in])
			}
		}
		for _, o := range n.Output {
			biggest = max(biggest, size(tg.Types[o]))
		}
	}
	// Outside the backward pass: the forward's own largest values (an
	// operator's input and output both live).
	for v := range fwd {
		if !kept[v] {
			biggest = max(biggest, size(tg.Types[v]))
		}
	}
	e.Transient = 3*biggest + chunkedHeadBytes(g, tg.Types)
	e.Runtime = runtimeBaseline
	return e
}

// isGradNode reports the backward pass's nodes (named by Differentiate).
func isGradNode(n *onnxpb.NodeProto) bool { return strings.HasPrefix(n.GetName(), "grad/") }

func initBytes(t *onnxpb.TensorProto) int64 {
	if t == nil {
		return 0
	}
	return ir.NumElements(t.GetDims()) * int64(max(ir.ElemSize(t.GetDataType()), 0))
}

// chunkedHeadBytes is the working set of the chunked heads' Scans: per
// chunk its logits, their exponentials and gradient ([C,V] each), and the
// weight gradient accumulated over chunks (two buffers, ping-pong).
func chunkedHeadBytes(g *onnxpb.GraphProto, types map[string]ValueType) int64 {
	heads, err := fusedHeads(g)
	if err != nil {
		return 0
	}
	var total int64
	for n, f := range heads {
		if len(n.Input) < 2 {
			continue
		}
		states := len(n.Input) - int(ir.AttrIntOf(n, "num_scan_inputs", 0))
		h := types[n.Input[states]].Shape // [K, C, D]
		w := types[f.Weight]
		if len(h) != 3 || len(w.Shape) != 2 {
			continue
		}
		es := int64(max(ir.ElemSize(w.Elem), 0))
		vocab := w.Shape[1]
		if w.Shape[0] != h[2] { // E [V,D], read transposed
			vocab = w.Shape[0]
		}
		total += 3 * h[1] * vocab * es
		if f.GradWeight != "" {
			total += 2 * ir.NumElements(w.Shape) * es
		}
	}
	return total
}
