package ort

import (
	"fmt"

	ortgo "github.com/yalue/onnxruntime_go"
	"google.golang.org/protobuf/proto"

	"github.com/tagpr/tagpr/onnx/onnxpb"
)

// modelIO reads a model's declared inputs and outputs from its ModelProto.
// onnxruntime_go would build a second, throw-away ORT session (fully
// optimized, with its own thread pool) just to list them, which made session
// creation about 10× slower than the session itself on small models.
func modelIO(data []byte, label string) (ins, outs []IOInfo, err error) {
	// Only the graph's signature is needed; weights are decoded too, but that
	// is a copy, not an optimization pass.
	var m onnxpb.ModelProto
	if err := proto.Unmarshal(data, &m); err != nil {
		return nil, nil, fmt.Errorf("load model %s: not an ONNX model: %w", label, err)
	}
	g := m.GetGraph()
	if g == nil {
		return nil, nil, fmt.Errorf("load model %s: the model has no graph", label)
	}
	inits := make(map[string]bool, len(g.GetInitializer()))
	for _, t := range g.GetInitializer() {
		inits[t.GetName()] = true
	}
	for _, vi := range g.GetInput() {
		if inits[vi.GetName()] { // an initializer listed as input (IR < 4) is not fed
			continue
		}
		ins = append(ins, ioInfo(vi))
	}
	for _, vi := range g.GetOutput() {
		outs = append(outs, ioInfo(vi))
	}
	return ins, outs, nil
}

func ioInfo(vi *onnxpb.ValueInfoProto) IOInfo {
	info := IOInfo{Name: vi.GetName()}
	t := vi.GetType()
	switch {
	case t.GetTensorType() != nil:
		info.OrtValueType = ortgo.ONNXTypeTensor
		info.DataType = ortgo.TensorElementDataType(t.GetTensorType().GetElemType())
		for _, d := range t.GetTensorType().GetShape().GetDim() {
			v := int64(-1) // symbolic or unknown
			if _, ok := d.GetValue().(*onnxpb.TensorShapeProto_Dimension_DimValue); ok {
				v = d.GetDimValue()
			}
			info.Dimensions = append(info.Dimensions, v)
		}
	case t.GetSequenceType() != nil:
		info.OrtValueType = ortgo.ONNXTypeSequence
	case t.GetMapType() != nil:
		info.OrtValueType = ortgo.ONNXTypeMap
	case t.GetOptionalType() != nil:
		info.OrtValueType = ortgo.ONNXTypeOptional
	case t.GetSparseTensorType() != nil:
		info.OrtValueType = ortgo.ONNXTypeSparseTensor
	default:
		info.OrtValueType = ortgo.ONNXTypeUnknown
	}
	return info
}
