package train

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"

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
	if err := ExportInto(out, weights, adapters); err != nil {
		return nil, err
	}
	return out, nil
}

// ExportInto is ExportModel on m itself: the weights are written into m's
// initializers, adapted weights merged one at a time, so exporting costs
// no copy of the model (a 0.5B model's export held four). On an error m
// may be partly changed: the caller owns m and discards it.
func ExportInto(m *onnxpb.ModelProto, weights map[string][]float32, adapters []Adapter) error {
	inits := map[string]*onnxpb.TensorProto{}
	for _, t := range m.GetGraph().GetInitializer() {
		inits[t.GetName()] = t
	}
	adapterOf := map[string]bool{}
	for _, a := range adapters {
		adapterOf[a.A], adapterOf[a.B] = true, true
	}
	for name, w := range weights {
		if adapterOf[name] {
			continue
		}
		t, ok := inits[name]
		if !ok {
			return fmt.Errorf("export: weight %q is not an initializer of the model", name)
		}
		if t.GetDataType() != ir.Float || ir.NumElements(t.GetDims()) != int64(len(w)) {
			return fmt.Errorf("export: weight %q: %d float32 values for a %s tensor of shape %v", name, len(w), t.GetDataType(), t.GetDims())
		}
	}
	for _, a := range adapters {
		if _, ok := inits[a.Weight]; !ok {
			return fmt.Errorf("export: adapted weight %q is not an initializer of the model", a.Weight)
		}
		if weights[a.A] == nil || weights[a.B] == nil {
			return fmt.Errorf("export: adapter of %q: values of %s and %s are missing", a.Weight, a.A, a.B)
		}
	}
	nonFinite := func(name string, w []float32) error {
		if i := NonFiniteValue(w); i >= 0 {
			return fmt.Errorf("export: weight %q holds %v at index %d: refusing to export non-finite values", name, w[i], i)
		}
		return nil
	}
	// The trained weights first, in model order (the first bad one is
	// named), before any initializer changes.
	for _, t := range m.GetGraph().GetInitializer() {
		if w, ok := weights[t.GetName()]; ok && !adapterOf[t.GetName()] {
			if err := nonFinite(t.GetName(), w); err != nil {
				return err
			}
		}
	}
	merged := map[string]bool{}
	// One adapted weight at a time in one buffer: no garbage for the
	// collector to let pile up.
	var largest int64
	for _, a := range adapters {
		largest = max(largest, ir.NumElements(inits[a.Weight].GetDims()))
	}
	scratch := make([]float32, 0, largest)
	for _, a := range adapters {
		t := inits[a.Weight]
		if base, ok := weights[a.Weight]; ok {
			scratch = append(scratch[:0], base...)
		} else if raw := t.GetRawData(); t.GetDataType() == ir.Float && len(raw) > 0 && int64(len(raw)) == 4*ir.NumElements(t.GetDims()) {
			scratch = slices.Grow(scratch[:0], len(raw)/4)[:len(raw)/4]
			for i := range scratch {
				scratch[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
			}
		} else {
			base, err := ir.Float32s(t)
			if err != nil {
				return fmt.Errorf("export: %w", err)
			}
			scratch = append(scratch[:0], base...)
		}
		if err := a.MergeInPlace(scratch, t.GetDims(), weights[a.A], weights[a.B]); err != nil {
			return fmt.Errorf("export: %w", err)
		}
		if err := nonFinite(a.Weight, scratch); err != nil {
			return err
		}
		setFloats(t, scratch)
		merged[a.Weight] = true
	}
	for name, w := range weights {
		if !adapterOf[name] && !merged[name] {
			setFloats(inits[name], w)
		}
	}
	return nil
}

// setFloats replaces t's values with w (raw data, float32), over t's own
// raw bytes when they hold exactly w's values: exporting then allocates
// nothing per weight, where fresh buffers had the Go heap grow to twice
// the model before a collection.
func setFloats(t *onnxpb.TensorProto, w []float32) {
	raw := t.GetRawData()
	if len(raw) != 4*len(w) {
		raw = make([]byte, 4*len(w))
	}
	for i, v := range w {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	name, dims := t.GetName(), t.GetDims()
	proto.Reset(t) // no typed, external or segment fields left behind
	t.Name, t.DataType, t.Dims, t.RawData = name, ir.Float, dims, raw
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
