package ir

import (
	"fmt"

	"github.com/tagpr/tagpr/onnx/onnxpb"
)

// Attribute is a node attribute; build them with the Attr* helpers.
type Attribute = *onnxpb.AttributeProto

// AttrInt makes an INT attribute.
func AttrInt(name string, v int64) Attribute {
	return &onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_INT, I: &v}
}

// AttrInts makes an INTS attribute.
func AttrInts(name string, v ...int64) Attribute {
	return &onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_INTS, Ints: append([]int64{}, v...)}
}

// AttrFloat makes a FLOAT attribute.
func AttrFloat(name string, v float32) Attribute {
	return &onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_FLOAT, F: &v}
}

// AttrFloats makes a FLOATS attribute.
func AttrFloats(name string, v ...float32) Attribute {
	return &onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_FLOATS, Floats: append([]float32{}, v...)}
}

// AttrString makes a STRING attribute.
func AttrString(name, v string) Attribute {
	return &onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_STRING, S: []byte(v)}
}

// AttrStrings makes a STRINGS attribute.
func AttrStrings(name string, v ...string) Attribute {
	a := &onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_STRINGS}
	for _, s := range v {
		a.Strings = append(a.Strings, []byte(s))
	}
	return a
}

// AttrTensor makes a TENSOR attribute (e.g. Constant's value, ConstantOfShape's value).
func AttrTensor(name string, t *onnxpb.TensorProto) Attribute {
	return &onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_TENSOR, T: t}
}

// AttrTensors makes a TENSORS attribute.
func AttrTensors(name string, t ...*onnxpb.TensorProto) Attribute {
	return &onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_TENSORS, Tensors: t}
}

// AttrGraph makes a GRAPH attribute (If branches, Loop/Scan bodies).
func AttrGraph(name string, g *onnxpb.GraphProto) Attribute {
	return &onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_GRAPH, G: g}
}

// AttrGraphs makes a GRAPHS attribute.
func AttrGraphs(name string, g ...*onnxpb.GraphProto) Attribute {
	return &onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_GRAPHS, Graphs: g}
}

// AttrType makes a TYPE_PROTO attribute.
func AttrType(name string, t *onnxpb.TypeProto) Attribute {
	return &onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_TYPE_PROTO, Tp: t}
}

// FindAttr returns n's attribute of that name, or nil.
func FindAttr(n *onnxpb.NodeProto, name string) Attribute {
	for _, a := range n.GetAttribute() {
		if a.GetName() == name {
			return a
		}
	}
	return nil
}

// AttrIntOf returns n's INT attribute, or def when it is absent.
func AttrIntOf(n *onnxpb.NodeProto, name string, def int64) int64 {
	if a := FindAttr(n, name); a != nil && a.GetType() == onnxpb.AttributeProto_INT {
		return a.GetI()
	}
	return def
}

// AttrIntsOf returns n's INTS attribute, or nil when it is absent.
func AttrIntsOf(n *onnxpb.NodeProto, name string) []int64 {
	if a := FindAttr(n, name); a != nil && a.GetType() == onnxpb.AttributeProto_INTS {
		return a.GetInts()
	}
	return nil
}

// AttrFloatOf returns n's FLOAT attribute, or def when it is absent.
func AttrFloatOf(n *onnxpb.NodeProto, name string, def float32) float32 {
	if a := FindAttr(n, name); a != nil && a.GetType() == onnxpb.AttributeProto_FLOAT {
		return a.GetF()
	}
	return def
}

// AttrStringOf returns n's STRING attribute, or def when it is absent.
func AttrStringOf(n *onnxpb.NodeProto, name, def string) string {
	if a := FindAttr(n, name); a != nil && a.GetType() == onnxpb.AttributeProto_STRING {
		return string(a.GetS())
	}
	return def
}

// SetAttr replaces n's attribute of the same name, or appends a.
func SetAttr(n *onnxpb.NodeProto, a Attribute) {
	for i, old := range n.Attribute {
		if old.GetName() == a.GetName() {
			n.Attribute[i] = a
			return
		}
	}
	n.Attribute = append(n.Attribute, a)
}

// checkAttr reports an attribute whose declared type does not match the value it holds.
func checkAttr(a *onnxpb.AttributeProto) error {
	if a.GetName() == "" {
		return fmt.Errorf("attribute without a name")
	}
	if a.GetRefAttrName() != "" {
		return nil
	}
	ok := true
	switch a.GetType() {
	case onnxpb.AttributeProto_UNDEFINED:
		return fmt.Errorf("attribute %q has no type", a.GetName())
	case onnxpb.AttributeProto_FLOAT:
		ok = a.F != nil
	case onnxpb.AttributeProto_INT:
		ok = a.I != nil
	case onnxpb.AttributeProto_STRING:
		ok = a.S != nil
	case onnxpb.AttributeProto_TENSOR:
		ok = a.T != nil
	case onnxpb.AttributeProto_GRAPH:
		ok = a.G != nil
	case onnxpb.AttributeProto_SPARSE_TENSOR:
		ok = a.SparseTensor != nil
	case onnxpb.AttributeProto_TYPE_PROTO:
		ok = a.Tp != nil
	case onnxpb.AttributeProto_FLOATS, onnxpb.AttributeProto_INTS, onnxpb.AttributeProto_STRINGS,
		onnxpb.AttributeProto_TENSORS, onnxpb.AttributeProto_GRAPHS, onnxpb.AttributeProto_SPARSE_TENSORS,
		onnxpb.AttributeProto_TYPE_PROTOS:
		// an empty list is a valid value
	default:
		return fmt.Errorf("attribute %q has unknown type %d", a.GetName(), a.GetType())
	}
	if !ok {
		return fmt.Errorf("attribute %q is of type %s but holds no such value", a.GetName(), a.GetType())
	}
	return nil
}
