package lm

import (
	"fmt"
	"math"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/onnxpb"
)

// Names of what WithTemperature adds to a graph.
const (
	untemperedLogits   = "temperature/untempered_logits"
	inverseTemperature = "temperature/inverse"
)

// WithTemperature returns m itself (τ = 1) or a copy whose logits output is
// the model's logits times 1/τ: the policy softmax(logits/τ) as a model of
// its own (sharing m's weight tensors: write neither's). Every session built
// from the copy — training, reference scoring, generation — then works on
// the tempered policy, so a trainer's
// log-probabilities and the sampler's agree without each applying τ. The
// weights are untouched, so a model exported from the trained weights is
// the plain one.
func WithTemperature(m *onnxpb.ModelProto, tau float64) (*onnxpb.ModelProto, error) {
	if !(tau > 0) || math.IsInf(tau, 0) {
		return nil, fmt.Errorf("temperature %v: want a finite value > 0", tau)
	}
	// The graph scales the logits by float32(1/τ): out of float32's range
	// (τ under ~3e-39: +Inf, so every logit Inf or NaN; τ over ~7e45: 0, so
	// a uniform policy) the run would fail at its first step blaming the
	// weights, or learn nothing.
	if inv := float32(1 / tau); math.IsInf(float64(inv), 0) || inv == 0 {
		return nil, fmt.Errorf("temperature %v: 1/τ is %v in float32, the logits' type; want τ between 1e-38 and 1e45", tau, inv)
	}
	if tau == 1 {
		return m, nil
	}
	m = ir.CloneSharingInitializers(m) // nodes change, the weights do not: no copy of them
	g := m.GetGraph()
	found := false
	for _, n := range g.GetNode() {
		for i, o := range n.Output {
			if o == Logits {
				n.Output[i], found = untemperedLogits, true
			}
		}
		for i, in := range n.Input {
			if in == Logits {
				n.Input[i] = untemperedLogits
			}
		}
	}
	if !found {
		return nil, fmt.Errorf("temperature %g: no node computes the %q output", tau, Logits)
	}
	scale := ir.Scalar(inverseTemperature, float32(1/tau))
	for _, o := range g.GetOutput() {
		if o.GetName() == Logits && o.GetType().GetTensorType().GetElemType() == ir.Double {
			scale = ir.Scalar(inverseTemperature, 1/tau)
		}
	}
	g.Initializer = append(g.Initializer, scale)
	g.Node = append(g.Node, &onnxpb.NodeProto{Name: "temperature/scale", OpType: "Mul",
		Input: []string{untemperedLogits, inverseTemperature}, Output: []string{Logits}})
	return m, nil
}
