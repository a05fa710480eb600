package ort

import (
	"fmt"
	"os"
	"syscall"

	ortgo "github.com/yalue/onnxruntime_go"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/tagpr/tagpr/onnx/onnxpb"
)

// ONNX field numbers the signature scan needs (onnx.proto).
const (
	modelGraphField        = 7  // ModelProto.graph
	graphInitializerField  = 5  // GraphProto.initializer
	graphInputField        = 11 // GraphProto.input
	graphOutputField       = 12 // GraphProto.output
	graphSparseInitField   = 15 // GraphProto.sparse_initializer
	tensorNameField        = 8  // TensorProto.name
	sparseTensorValueField = 1  // SparseTensorProto.values
)

// modelIO reads a model's declared inputs and outputs from its serialized
// ModelProto. onnxruntime_go would build a second, throw-away ORT session
// (fully optimized, with its own thread pool) just to list them, which made
// session creation about 10× slower on small models; decoding the whole
// proto would copy every weight. This scan decodes only the graph's input
// and output entries and the initializers' names, and skips weight bytes
// without copying them.
func modelIO(data []byte, label string) (ins, outs []IOInfo, err error) {
	bad := func(what string) ([]IOInfo, []IOInfo, error) {
		return nil, nil, fmt.Errorf("load model %s: not an ONNX model: %s", label, what)
	}
	var graph []byte
	err = eachField(data, func(num protowire.Number, v []byte) error {
		if num == modelGraphField {
			graph = v
		}
		return nil
	})
	if err != nil {
		return bad(err.Error())
	}
	if graph == nil {
		return nil, nil, fmt.Errorf("load model %s: the model has no graph", label)
	}
	inits := map[string]bool{}
	var inVI, outVI []*onnxpb.ValueInfoProto
	err = eachField(graph, func(num protowire.Number, v []byte) error {
		switch num {
		case graphInitializerField:
			inits[tensorName(v)] = true
		case graphSparseInitField:
			_ = eachField(v, func(n protowire.Number, t []byte) error {
				if n == sparseTensorValueField {
					inits[tensorName(t)] = true
				}
				return nil
			})
		case graphInputField, graphOutputField:
			vi := &onnxpb.ValueInfoProto{}
			if err := proto.Unmarshal(v, vi); err != nil {
				return fmt.Errorf("graph input/output: %w", err)
			}
			if num == graphInputField {
				inVI = append(inVI, vi)
			} else {
				outVI = append(outVI, vi)
			}
		}
		return nil
	})
	if err != nil {
		return bad(err.Error())
	}
	for _, vi := range inVI {
		if inits[vi.GetName()] { // an initializer listed as input (IR < 4) is not fed
			continue
		}
		ins = append(ins, ioInfo(vi))
	}
	for _, vi := range outVI {
		outs = append(outs, ioInfo(vi))
	}
	return ins, outs, nil
}

// eachField calls fn with every length-delimited field of a message (the
// value aliases b); other wire types are skipped.
func eachField(b []byte, fn func(num protowire.Number, v []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return protowire.ParseError(m)
			}
			if err := fn(num, v); err != nil {
				return err
			}
			b = b[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return protowire.ParseError(m)
		}
		b = b[m:]
	}
	return nil
}

// tensorName reads TensorProto.name without touching the tensor's data.
func tensorName(t []byte) string {
	name := ""
	_ = eachField(t, func(num protowire.Number, v []byte) error {
		if num == tensorNameField {
			name = string(v)
		}
		return nil
	})
	return name
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

// modelFileIO is modelIO over a model file, mapped rather than read, so a
// multi-GB model costs no copy before ORT loads it.
func modelFileIO(path, label string) ([]IOInfo, []IOInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("load model %s: %w", label, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("load model %s: %w", label, err)
	}
	if st.Size() == 0 {
		return nil, nil, fmt.Errorf("load model %s: empty file", label)
	}
	data, err := syscall.Mmap(int(f.Fd()), 0, int(st.Size()), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, fmt.Errorf("load model %s: map file: %w", label, err)
	}
	defer syscall.Munmap(data)
	return modelIO(data, label)
}
