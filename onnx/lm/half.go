package lm

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/onnxpb"
	"github.com/tagpr/tagpr/onnx/ort"
	ortgo "github.com/yalue/onnxruntime_go"
)

// Half-precision generation (LoadOptions.Half): every MatMul whose right
// operand is a float32 weight runs in float16 — its activations cast to
// float16, the weight stored as float16 (half the bytes), the product cast
// back to float32 — while norms, softmax, residual sums, the cache and the
// logits stay float32. On a GPU that is where the time and memory go
// (cuBLAS runs float16 GEMMs on tensor cores); the float32 weights stay the
// master copy training updates. ORT 1.30 has float16 MatMul and Cast
// kernels on the CPU too, so the same graph runs (slower) in tests here.

// HalfStats says what HalfMatMuls changed.
type HalfStats struct {
	MatMuls     int   // MatMuls now computed in float16
	WeightBytes int64 // bytes of the weights they read, now float16 (was twice that)
}

// HalfMatMuls rewrites pm in place: each MatMul whose second input is a
// float32 initializer of rank 2 runs in float16 between two Casts. A weight
// read by other nodes too (a tied embedding) gets a float16 copy for its
// MatMuls and keeps its float32 self for the rest.
func HalfMatMuls(pm *onnxpb.ModelProto) (HalfStats, error) {
	st, _, err := halfMatMuls(pm, nil)
	return st, err
}

// halfMatMuls is HalfMatMuls that also rewrites the MatMuls reading the
// float32 rank-2 graph inputs named in inputs (weights a trainer owns): each
// gets a float16 graph input (NAME.float16) fed from the device
// (Model.RefreshHalf), and keeps its float32 input only if other nodes read
// it. It returns each rewritten input's float16 input.
func halfMatMuls(pm *onnxpb.ModelProto, inputs map[string]bool) (HalfStats, map[string]string, error) {
	var st HalfStats
	gp := pm.GetGraph()
	if gp == nil {
		return st, nil, fmt.Errorf("half matmuls: model has no graph")
	}
	g := ir.WrapGraph(gp)
	inits := map[string]*onnxpb.TensorProto{}
	for _, t := range gp.Initializer {
		inits[t.GetName()] = t
	}
	ins := map[string][]int64{} // listed float32 rank-2 inputs → dims
	for _, vi := range gp.Input {
		tt := vi.GetType().GetTensorType()
		if !inputs[vi.GetName()] || tt.GetElemType() != ir.Float || len(tt.GetShape().GetDim()) != 2 {
			continue
		}
		var dims []int64
		for _, d := range tt.GetShape().GetDim() {
			dims = append(dims, d.GetDimValue())
		}
		ins[vi.GetName()] = dims
	}
	isWeight := func(n *onnxpb.NodeProto) bool {
		if n.GetOpType() != "MatMul" || n.GetDomain() != "" || len(n.Input) != 2 {
			return false
		}
		t := inits[n.Input[1]]
		return ins[n.Input[1]] != nil || t != nil && t.GetDataType() == ir.Float && len(t.GetDims()) == 2
	}
	// Which weights are read by something other than a MatMul's right side.
	shared := map[string]bool{}
	for _, n := range gp.Node {
		for i, in := range n.Input {
			if (inits[in] != nil || ins[in] != nil) && !(i == 1 && isWeight(n)) {
				shared[in] = true
			}
		}
	}
	halves := map[string]string{} // float32 weight → its float16 initializer or input
	fed := map[string]string{}    // float32 input → its float16 input
	half := func(name string) (string, error) {
		if h, ok := halves[name]; ok {
			return h, nil
		}
		if dims := ins[name]; dims != nil {
			h := g.Unique(name + ".float16")
			vi, err := ir.ValueInfo(h, ir.Float16, ir.Dims(dims)...)
			if err != nil {
				return "", fmt.Errorf("half matmuls: input %q: %w", name, err)
			}
			gp.Input = append(gp.Input, vi)
			halves[name], fed[name] = h, h
			st.WeightBytes += 2 * dims[0] * dims[1]
			return h, nil
		}
		t := inits[name]
		data, err := ir.Float32s(t)
		if err != nil {
			return "", fmt.Errorf("half matmuls: weight %q: %w", name, err)
		}
		raw := make([]byte, 2*len(data))
		for i, f := range data {
			binary.LittleEndian.PutUint16(raw[2*i:], ir.Float32ToHalf(f))
		}
		h := name
		if shared[name] {
			h = g.Unique(name + ".float16")
			gp.Initializer = append(gp.Initializer, &onnxpb.TensorProto{Name: h, DataType: ir.Float16, Dims: append([]int64(nil), t.GetDims()...), RawData: raw})
		} else { // the float32 copy is needed by nothing else in this graph
			// A new tensor in its place, not t rewritten: t may be another
			// model's too (ir.CloneSharingInitializers).
			gp.Initializer[slices.Index(gp.Initializer, t)] = &onnxpb.TensorProto{Name: name, DataType: ir.Float16, Dims: append([]int64(nil), t.GetDims()...), RawData: raw}
		}
		halves[name] = h
		st.WeightBytes += int64(len(raw))
		return h, nil
	}
	var nodes []*onnxpb.NodeProto
	for _, n := range gp.Node {
		if !isWeight(n) {
			nodes = append(nodes, n)
			continue
		}
		w, err := half(n.Input[1])
		if err != nil {
			return st, nil, err
		}
		x16, y16 := g.Unique(n.Input[0]+".float16"), g.Unique(n.Output[0]+".float16")
		nodes = append(nodes,
			&onnxpb.NodeProto{Name: g.Unique(n.GetName() + ".cast_in"), OpType: "Cast", Input: []string{n.Input[0]}, Output: []string{x16},
				Attribute: []ir.Attribute{ir.AttrInt("to", int64(ir.Float16))}},
			&onnxpb.NodeProto{Name: n.GetName(), OpType: "MatMul", Input: []string{x16, w}, Output: []string{y16}},
			&onnxpb.NodeProto{Name: g.Unique(n.GetName() + ".cast_out"), OpType: "Cast", Input: []string{y16}, Output: []string{n.Output[0]},
				Attribute: []ir.Attribute{ir.AttrInt("to", int64(ir.Float))}})
		st.MatMuls++
	}
	gp.Node = nodes
	// A float32 input that only MatMuls read is fed as float16 alone.
	kept := gp.Input[:0]
	for _, vi := range gp.Input {
		if _, ok := fed[vi.GetName()]; !ok || shared[vi.GetName()] {
			kept = append(kept, vi)
		}
	}
	gp.Input = kept
	return st, fed, nil
}

// loadHalf is Load with Half. A model that fits in one protobuf message
// (under maxEditBytes with its external data) is edited and loaded in
// memory; a bigger one (a 0.5B model's float32 weights are 2 GB, past
// protobuf's 2 GiB limit once inlined) is edited the same way, then written
// with its weights as external data to a temporary folder that the session
// is created from (loadHalfLarge).
func loadHalf(file string, opts LoadOptions) (*Model, error) {
	pm, size, err := readModelFile(file)
	if err != nil {
		return nil, err
	}
	large := size+externalBytes(pm) >= halfInMemoryBytes
	if hasExternalData(pm) {
		if err := ir.LoadExternalData(pm, filepath.Dir(file)); err != nil {
			return nil, fmt.Errorf("load model %s: %w", file, err)
		}
	}
	if large {
		return loadHalfLarge(pm, file, opts)
	}
	b, err := ir.Marshal(pm)
	if err != nil {
		return nil, fmt.Errorf("load model %s: %w", file, err)
	}
	return LoadBytes(b, file, opts)
}

// halfInMemoryBytes is the size from which loadHalf goes through a
// temporary file (maxEditBytes; tests lower it to run that path on a small
// model).
var halfInMemoryBytes int64 = maxEditBytes

// loadHalfLarge applies HalfMatMuls and the generation edits to pm (its
// weights in memory), writes it to a temporary folder with every weight in
// an external data file, and opens the session from there; the folder is
// removed once the session holds the weights.
func loadHalfLarge(pm *onnxpb.ModelProto, file string, opts LoadOptions) (*Model, error) {
	st, err := HalfMatMuls(pm)
	if err != nil {
		return nil, fmt.Errorf("load model %s: %w", file, err)
	}
	if st.MatMuls == 0 {
		return nil, fmt.Errorf("load model %s half: no MatMul reads a float32 weight initializer (weights fed as inputs stay float32)", file)
	}
	editForGeneration(pm)
	tmp, err := os.MkdirTemp("", "tagpr-half-")
	if err != nil {
		return nil, fmt.Errorf("load model %s half: %w", file, err)
	}
	defer os.RemoveAll(tmp)
	path := filepath.Join(tmp, "model.onnx")
	if err := ir.Write(pm, path, ir.WriteOptions{ExternalDataThreshold: 1024}); err != nil {
		return nil, fmt.Errorf("load model %s half: %w (the float16 copy is written to %s: set TMPDIR to a folder with room for it)", file, err, os.TempDir())
	}
	pm = nil
	ins, outs, err := ortgo.GetInputOutputInfo(path)
	if err != nil {
		return nil, fmt.Errorf("load model %s half: %w", file, err)
	}
	opts.Half = false
	return open(file, ins, outs, opts, func(o ort.Options) (*ort.Session, error) {
		return ort.NewSessionFromFile(path, o)
	})
}

// halfModel applies HalfMatMuls to a serialized model.
func halfModel(model []byte, label string) ([]byte, error) {
	pm, err := ir.Read(model, label)
	if err != nil {
		return nil, err
	}
	st, err := HalfMatMuls(pm)
	if err != nil {
		return nil, fmt.Errorf("load model %s: %w", label, err)
	}
	if st.MatMuls == 0 {
		return nil, fmt.Errorf("load model %s half: no MatMul reads a float32 weight initializer (weights fed as inputs stay float32)", label)
	}
	return ir.Marshal(pm)
}

// halfInputs applies Half to a model whose weights were just made inputs:
// MatMuls over initializers and over the weight inputs run in float16, the
// latter fed float16 copies on the device (UploadWeights, RefreshHalf: the
// float32 weights stay the trainer's master copy). opts.Half is then done.
func halfInputs(pm *onnxpb.ModelProto, label string, names []string, opts *LoadOptions) (map[string]string, error) {
	if !opts.Half {
		return nil, nil
	}
	if !newDeviceState(*opts).on {
		return nil, fmt.Errorf("model %s half: float16 copies of weights fed as inputs live on the device: load it device-resident (cuda, or DeviceResident)", label)
	}
	set := map[string]bool{}
	for _, n := range names {
		set[n] = true
	}
	st, fed, err := halfMatMuls(pm, set)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", label, err)
	}
	if st.MatMuls == 0 {
		return nil, fmt.Errorf("model %s half: no MatMul reads a float32 weight", label)
	}
	opts.Half = false
	return fed, nil
}
