package train

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/onnxpb"
)

// ExportModel returns a copy of the inference model m (as loaded: before
// LoRA, loss blocks and specialization, so its shapes stay dynamic) with
// every weight in weights replaced, and every adapter merged into its weight
// (A and B taken from weights). Adapter initializers are not added. A weight
// holding a NaN or ±Inf (after merging) is refused.
func ExportModel(m *onnxpb.ModelProto, weights map[string][]float32, adapters []Adapter) (*onnxpb.ModelProto, error) {
	out := proto.Clone(m).(*onnxpb.ModelProto)
	inits := map[string]*onnxpb.TensorProto{}
	for _, t := range out.GetGraph().GetInitializer() {
		inits[t.GetName()] = t
	}
	adapterOf := map[string]bool{}
	for _, a := range adapters {
		adapterOf[a.A], adapterOf[a.B] = true, true
	}
	replaced := map[string][]float32{}
	for name, w := range weights {
		if adapterOf[name] {
			continue
		}
		t, ok := inits[name]
		if !ok {
			return nil, fmt.Errorf("export: weight %q is not an initializer of the model", name)
		}
		if t.GetDataType() != ir.Float || ir.NumElements(t.GetDims()) != int64(len(w)) {
			return nil, fmt.Errorf("export: weight %q: %d float32 values for a %s tensor of shape %v", name, len(w), t.GetDataType(), t.GetDims())
		}
		replaced[name] = w
	}
	for _, a := range adapters {
		t, ok := inits[a.Weight]
		if !ok {
			return nil, fmt.Errorf("export: adapted weight %q is not an initializer of the model", a.Weight)
		}
		base, ok := replaced[a.Weight]
		if !ok {
			var err error
			if base, err = ir.Float32s(t); err != nil {
				return nil, fmt.Errorf("export: %w", err)
			}
		}
		av, bv := weights[a.A], weights[a.B]
		if av == nil || bv == nil {
			return nil, fmt.Errorf("export: adapter of %q: values of %s and %s are missing", a.Weight, a.A, a.B)
		}
		merged, err := a.Merge(base, t.GetDims(), av, bv)
		if err != nil {
			return nil, fmt.Errorf("export: %w", err)
		}
		replaced[a.Weight] = merged
	}
	for _, t := range out.GetGraph().GetInitializer() { // in model order: the first bad weight is named
		if w := replaced[t.GetName()]; NonFiniteValue(w) >= 0 {
			i := NonFiniteValue(w)
			return nil, fmt.Errorf("export: weight %q holds %v at index %d: refusing to export non-finite values", t.GetName(), w[i], i)
		}
	}
	for name, w := range replaced {
		t := inits[name]
		nt := ir.Tensor(name, t.GetDims(), w)
		proto.Reset(t)
		proto.Merge(t, nt)
	}
	return out, nil
}

// Export writes ExportModel's result to path atomically (weights over 1 GiB
// in total go to an external data file beside it).
func Export(path string, m *onnxpb.ModelProto, weights map[string][]float32, adapters []Adapter) error {
	out, err := ExportModel(m, weights, adapters)
	if err != nil {
		return err
	}
	return WriteModel(path, out)
}

// WriteModel writes an exported model to path atomically; weights over
// 1 GiB in total go to an external data file beside it.
func WriteModel(path string, out *onnxpb.ModelProto) error {
	// Past protobuf's 2 GiB limit the weights go to model.onnx.data beside it.
	var opts ir.WriteOptions
	size := 0
	for _, t := range out.GetGraph().GetInitializer() {
		size += len(t.GetRawData())
	}
	if size > 1<<30 {
		opts.ExternalDataThreshold = 1024
	}
	if err := ir.Write(out, path, opts); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return nil
}

// Weights returns the trainer's current weights by name (the live slices).
func (t *Trainer) Weights() map[string][]float32 {
	out := make(map[string][]float32, len(t.Params))
	for _, p := range t.Params {
		out[p.Name] = p.Data
	}
	return out
}
