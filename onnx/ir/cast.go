package ir

import (
	"fmt"

	"github.com/tagpr/tagpr/onnx/onnxpb"
)

// CastFloat64 turns a float32 model into a float64 one in place, for
// gradient checks in double precision: FLOAT initializers, constants and
// tensor attributes become DOUBLE, declared FLOAT values (inputs, outputs,
// value_info, type attributes) become DOUBLE, and Cast's `to` and any
// `dtype` attribute of FLOAT become DOUBLE. Subgraphs and functions are
// included. Ops without a double kernel in ONNX Runtime (Erf, Gelu, ...)
// stay as they are and fail when the session is created.
func CastFloat64(m *onnxpb.ModelProto) error {
	if m.GetGraph() == nil {
		return fmt.Errorf("cast model to float64: no graph")
	}
	if err := castGraph(m.Graph); err != nil {
		return fmt.Errorf("cast model to float64: %w", err)
	}
	for _, f := range m.GetFunctions() {
		if err := castNodes(f.Node, "function "+f.GetName()); err != nil {
			return fmt.Errorf("cast model to float64: %w", err)
		}
		for _, vi := range f.ValueInfo {
			castType(vi.Type)
		}
	}
	return nil
}

func castGraph(g *onnxpb.GraphProto) error {
	for _, list := range [][]*onnxpb.ValueInfoProto{g.Input, g.Output, g.ValueInfo} {
		for _, vi := range list {
			castType(vi.Type)
		}
	}
	for _, t := range g.Initializer {
		if err := castTensor(t); err != nil {
			return fmt.Errorf("graph %q initializer: %w", g.GetName(), err)
		}
	}
	for _, s := range g.SparseInitializer {
		if err := castTensor(s.GetValues()); err != nil {
			return fmt.Errorf("graph %q sparse initializer: %w", g.GetName(), err)
		}
	}
	return castNodes(g.Node, fmt.Sprintf("graph %q", g.GetName()))
}

func castNodes(nodes []*onnxpb.NodeProto, scope string) error {
	for i, n := range nodes {
		label := nodeLabel(n, i)
		isConstant := n.GetOpType() == "Constant" && canonicalDomain(n.GetDomain()) == ""
		for k, a := range n.Attribute {
			switch {
			case isConstant && a.GetName() == "value_float" && a.GetType() == onnxpb.AttributeProto_FLOAT:
				n.Attribute[k] = AttrTensor("value", Scalar("", float64(a.GetF())))
				continue
			case isConstant && a.GetName() == "value_floats" && a.GetType() == onnxpb.AttributeProto_FLOATS:
				v := make([]float64, len(a.GetFloats()))
				for j, f := range a.GetFloats() {
					v[j] = float64(f)
				}
				n.Attribute[k] = AttrTensor("value", Vector("", v...))
				continue
			case (a.GetName() == "to" || a.GetName() == "dtype") && a.GetType() == onnxpb.AttributeProto_INT && a.GetI() == int64(Float):
				v := int64(Double)
				a.I = &v
			}
			for _, t := range append([]*onnxpb.TensorProto{a.T}, a.Tensors...) {
				if err := castTensor(t); err != nil {
					return fmt.Errorf("%s: %s attribute %q: %w", scope, label, a.GetName(), err)
				}
			}
			for _, s := range append([]*onnxpb.SparseTensorProto{a.SparseTensor}, a.SparseTensors...) {
				if err := castTensor(s.GetValues()); err != nil {
					return fmt.Errorf("%s: %s attribute %q: %w", scope, label, a.GetName(), err)
				}
			}
			for _, tp := range append([]*onnxpb.TypeProto{a.Tp}, a.TypeProtos...) {
				castType(tp)
			}
			for _, sg := range subgraphs(a) {
				if err := castGraph(sg); err != nil {
					return fmt.Errorf("%s: %s attribute %q: %w", scope, label, a.GetName(), err)
				}
			}
		}
	}
	return nil
}

// castTensor rewrites a FLOAT tensor as DOUBLE (raw_data); others are left alone.
func castTensor(t *onnxpb.TensorProto) error {
	if t == nil || t.GetDataType() != Float {
		return nil
	}
	v, err := Float32s(t)
	if err != nil {
		return err
	}
	d := make([]float64, len(v))
	for i, x := range v {
		d[i] = float64(x)
	}
	c := Tensor(t.GetName(), t.GetDims(), d)
	t.DataType, t.RawData = Double, c.RawData
	t.FloatData, t.DoubleData = nil, nil
	return nil
}

func castType(tp *onnxpb.TypeProto) {
	if tp == nil {
		return
	}
	switch v := tp.GetValue().(type) {
	case *onnxpb.TypeProto_TensorType:
		if v.TensorType.GetElemType() == Float {
			v.TensorType.ElemType = Double
		}
	case *onnxpb.TypeProto_SparseTensorType:
		if v.SparseTensorType.GetElemType() == Float {
			v.SparseTensorType.ElemType = Double
		}
	case *onnxpb.TypeProto_SequenceType:
		castType(v.SequenceType.GetElemType())
	case *onnxpb.TypeProto_OptionalType:
		castType(v.OptionalType.GetElemType())
	case *onnxpb.TypeProto_MapType:
		castType(v.MapType.GetValueType())
	}
}
