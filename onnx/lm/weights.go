package lm

import (
	"fmt"
	"strings"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/onnxpb"
	"github.com/tagpr/tagpr/onnx/ort"
)

// Weight is a float32 weight owned by Go and fed to the model as an input.
// Data is the tensor's storage: write it in place (an optimizer step) and
// the next run sees the new values.
type Weight struct {
	Name   string
	Shape  []int64
	Data   []float32
	Tensor *ort.Tensor[float32]
}

// TrainableNames lists m's float32 initializers of rank >= 1 in graph order,
// leaving out the built-in rotary tables (fixed functions of position).
func TrainableNames(m *onnxpb.ModelProto) []string {
	var out []string
	for _, t := range m.GetGraph().GetInitializer() {
		if t.GetDataType() == ir.Float && len(t.GetDims()) > 0 && !strings.HasPrefix(t.GetName(), "model.rotary.") {
			out = append(out, t.GetName())
		}
	}
	return out
}

// WeightsAsInputs turns the named float32 initializers of m into graph
// inputs of the same name, type and shape, removes them from the
// initializers, and returns their values: views of the initializers' bytes
// where they can be (ir.Float32View), so a model's weights are not held
// twice. m is changed in place.
func WeightsAsInputs(m *onnxpb.ModelProto, names []string) ([]Weight, error) {
	g := m.GetGraph()
	if g == nil {
		return nil, fmt.Errorf("weights as inputs: model has no graph")
	}
	idx := map[string]int{}
	for i, t := range g.Initializer {
		idx[t.GetName()] = i
	}
	for _, in := range g.Input {
		if _, ok := idx[in.GetName()]; ok {
			// Old IR versions list initializers among the inputs too.
			return nil, fmt.Errorf("weights as inputs: initializer %q is also declared as a graph input (IR < 4 style); re-export the model", in.GetName())
		}
	}
	out := make([]Weight, 0, len(names))
	drop := map[int]bool{}
	for _, n := range names {
		i, ok := idx[n]
		if !ok {
			return nil, fmt.Errorf("weights as inputs: no initializer named %q", n)
		}
		if drop[i] {
			return nil, fmt.Errorf("weights as inputs: %q named twice", n)
		}
		t := g.Initializer[i]
		if t.GetDataType() != ir.Float {
			return nil, fmt.Errorf("weights as inputs: initializer %q has element type %s, want FLOAT", n, t.GetDataType())
		}
		if len(t.GetDims()) == 0 {
			return nil, fmt.Errorf("weights as inputs: initializer %q is a scalar; onnxruntime_go cannot feed rank-0 tensors", n)
		}
		data, err := ir.Float32View(t) // m's bytes: the initializer leaves m, its values stay once
		if err != nil {
			return nil, fmt.Errorf("weights as inputs: %w", err)
		}
		vi, err := ir.ValueInfo(n, ir.Float, ir.Dims(t.GetDims())...)
		if err != nil {
			return nil, fmt.Errorf("weights as inputs: %w", err)
		}
		g.Input = append(g.Input, vi)
		drop[i] = true
		out = append(out, Weight{Name: n, Shape: append([]int64(nil), t.GetDims()...), Data: data})
	}
	kept := g.Initializer[:0]
	for i, t := range g.Initializer {
		if !drop[i] {
			kept = append(kept, t)
		}
	}
	g.Initializer = kept
	return out, nil
}

// LoadWithWeightInputs opens a model whose chosen weights (nil: every
// trainable one, see TrainableNames) are graph inputs fed from Go memory.
// The returned weights are bound to the model; their Data slices are what
// every later Generate and Forward reads.
func LoadWithWeightInputs(path string, names []string, opts LoadOptions) (*Model, []Weight, error) {
	file, err := ResolveModelPath(path)
	if err != nil {
		return nil, nil, err
	}
	pm, err := ir.Load(file)
	if err != nil {
		return nil, nil, err
	}
	hc, gc, err := findConfigs(file)
	if err != nil {
		return nil, nil, err
	}
	if opts.Config == nil {
		opts.Config = hc
	}
	if opts.Generation == nil {
		opts.Generation = gc
	}
	return OpenWithWeightInputs(pm, file, names, opts)
}

// OpenWithWeightInputs is LoadWithWeightInputs for a model in memory; pm is
// changed (its weights become inputs).
func OpenWithWeightInputs(pm *onnxpb.ModelProto, label string, names []string, opts LoadOptions) (*Model, []Weight, error) {
	if names == nil {
		names = TrainableNames(pm)
	}
	ws, err := WeightsAsInputs(pm, names)
	if err != nil {
		return nil, nil, fmt.Errorf("model %s: %w", label, err)
	}
	fed, err := halfInputs(pm, label, names, &opts)
	if err != nil {
		return nil, nil, err
	}
	b, err := ir.Marshal(pm)
	if err != nil {
		return nil, nil, fmt.Errorf("model %s: %w", label, err)
	}
	m, err := LoadBytes(b, label, opts)
	if err != nil {
		return nil, nil, err
	}
	m.devs.halfIn = fed
	fail := func(err error) (*Model, []Weight, error) {
		for _, w := range ws {
			if w.Tensor != nil {
				w.Tensor.Destroy()
			}
		}
		m.Close()
		return nil, nil, err
	}
	for i := range ws {
		if _, ok := m.inputs[ws[i].Name]; !ok {
			continue // fed as float16 from the device alone (Tensor stays nil)
		}
		t, err := ort.NewTensor(ws[i].Shape, ws[i].Data)
		if err != nil {
			return fail(fmt.Errorf("model %s: weight %q: %w", label, ws[i].Name, err))
		}
		ws[i].Tensor = t
		if err := m.Bind(ws[i].Name, t); err != nil {
			return fail(err)
		}
	}
	return m, ws, nil
}
