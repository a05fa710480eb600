package ir_test

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/onnxpb"
	"github.com/tagpr/tagpr/onnx/ort"
)

// pythonRef is testdata/python_model.json, written by scripts/onnx_ir_fixture.py.
type pythonRef struct {
	X      []float32 `json:"x"`
	XDims  []int64   `json:"x_dims"`
	YTrue  []float64 `json:"y_true"`
	YFalse []float64 `json:"y_false"`
	Sm     []float64 `json:"sm"`
	E      []float64 `json:"e"`
	W      []float32 `json:"W"`
	B      []float32 `json:"b"`
	H16    []float32 `json:"h16"`
	Shape  []int64   `json:"shape"`
}

func loadPythonRef(t *testing.T) pythonRef {
	t.Helper()
	b, err := os.ReadFile("testdata/python_model.json")
	if err != nil {
		t.Fatal(err)
	}
	var r pythonRef
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("testdata/python_model.json: %v", err)
	}
	return r
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestReadPythonModel(t *testing.T) {
	ref := loadPythonRef(t)
	raw := readFile(t, "testdata/python_model.onnx")
	m, err := ir.Read(raw, "python_model.onnx")
	if err != nil {
		t.Fatal(err)
	}
	if err := ir.Validate(m); err != nil {
		t.Fatal(err)
	}
	again, err := ir.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(raw, again) {
		t.Fatalf("Python-made model re-marshalled differs: %d bytes vs %d", len(again), len(raw))
	}

	if m.IrVersion != 10 || ir.OpsetOf(m, "") != 21 || m.ProducerName != "onnx_ir_fixture.py" {
		t.Fatalf("header: ir %d opset %d producer %q", m.IrVersion, ir.OpsetOf(m, ""), m.ProducerName)
	}
	if len(m.MetadataProps) != 1 || m.MetadataProps[0].Key != "purpose" {
		t.Fatalf("metadata: %v", m.MetadataProps)
	}
	g := ir.WrapGraph(m.Graph)
	checkF32 := func(name string, want []float32) {
		t.Helper()
		got, err := ir.Float32s(g.InitializerByName(name))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %d values, want %d", name, len(got), len(want))
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%s[%d] = %v, want %v", name, i, got[i], want[i])
			}
		}
	}
	checkF32("W", ref.W)     // raw_data
	checkF32("b", ref.B)     // float_data
	checkF32("h16", ref.H16) // float16 raw_data
	shape, err := ir.Int64s(g.InitializerByName("shape"))
	if err != nil || len(shape) != 2 || shape[0] != ref.Shape[0] || shape[1] != ref.Shape[1] {
		t.Fatalf("shape = %v, %v; want %v", shape, err, ref.Shape)
	}

	node := func(name string) *onnxpb.NodeProto {
		n, _ := g.NodeByName(name)
		if n == nil {
			t.Fatalf("no node %q", name)
		}
		return n
	}
	if a := ir.AttrFloatOf(node("lrelu"), "alpha", 0); a != float32(0.1) {
		t.Fatalf("alpha = %v", a)
	}
	if p := ir.AttrIntsOf(node("tr"), "perm"); len(p) != 2 || p[0] != 0 || p[1] != 1 {
		t.Fatalf("perm = %v", p)
	}
	if eq := ir.AttrStringOf(node("dot"), "equation", ""); eq != "bi,bi->b" {
		t.Fatalf("equation = %q", eq)
	}
	if ax := ir.AttrIntOf(node("softmax"), "axis", 0); ax != -1 {
		t.Fatalf("axis = %d", ax)
	}
	if to := ir.AttrIntOf(node("cast_h"), "to", 0); to != int64(ir.Float) {
		t.Fatalf("to = %d", to)
	}
	elem, dims, params, ok := ir.ShapeOf(g.ValueInfoOf("x"))
	if !ok || elem != ir.Float || len(dims) != 2 || dims[0] != -1 || params[0] != "batch" || dims[1] != 4 {
		t.Fatalf("x: %v %v %v %v", elem, dims, params, ok)
	}
	if p := g.Producer("r"); p == nil || p.Name != "reshape" {
		t.Fatalf("producer of r: %v", p)
	}
	// r is read by If through its branches, by Softmax and by Einsum.
	var users []string
	for _, n := range g.Consumers("r") {
		users = append(users, n.Name)
	}
	if len(users) != 3 || users[0] != "branch" || users[1] != "softmax" || users[2] != "dot" {
		t.Fatalf("consumers of r: %v", users)
	}
}

func TestPythonModelRunsInORT(t *testing.T) {
	initORT(t)
	ref := loadPythonRef(t)
	sess, err := ort.NewSession(readFile(t, "testdata/python_model.onnx"), "python_model.onnx", ort.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Destroy()
	for _, cond := range []bool{true, false} {
		got := runPython[float32](t, sess, ref, cond)
		want := ref.YFalse
		if cond {
			want = ref.YTrue
		}
		near(t, "y", got["y"], want, 1e-5)
		near(t, "sm", got["sm"], ref.Sm, 1e-5)
		near(t, "e", got["e"], ref.E, 1e-4)
	}
}

func runPython[T float32 | float64](t *testing.T, sess *ort.Session, ref pythonRef, cond bool) map[string][]float64 {
	t.Helper()
	x := make([]T, len(ref.X))
	for i, v := range ref.X {
		x[i] = T(v)
	}
	xt, err := ort.NewTensor(ref.XDims, x)
	if err != nil {
		t.Fatal(err)
	}
	defer xt.Destroy()
	ct, err := ort.NewTensor([]int64{1}, []bool{cond})
	if err != nil {
		t.Fatal(err)
	}
	defer ct.Destroy()
	out, err := sess.Run(map[string]ort.Value{"x": xt, "cond": ct}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Destroy()
	res := map[string][]float64{}
	for _, name := range []string{"y", "sm", "e"} {
		d, err := ort.Data[T](name, out.Get(name))
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range d {
			res[name] = append(res[name], float64(v))
		}
	}
	return res
}

func near(t *testing.T, name string, got, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", name, len(got), len(want))
	}
	for i := range want {
		if math.Abs(got[i]-want[i]) > tol*math.Max(1, math.Abs(want[i])) {
			t.Fatalf("%s[%d] = %v, want %v (tolerance %g)", name, i, got[i], want[i], tol)
		}
	}
}

func TestLoadPythonExternalData(t *testing.T) {
	raw := readFile(t, "testdata/python_ext.onnx")
	m, err := ir.Read(raw, "python_ext.onnx")
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := ir.Marshal(m); !bytes.Equal(b, raw) {
		t.Fatal("Python-made external-data model re-marshalled differs")
	}
	if _, err := ir.Float32s(ir.WrapGraph(m.Graph).InitializerByName("W")); err == nil {
		t.Fatal("reading an unloaded external tensor succeeded")
	}
	if err := ir.Write(m, filepath.Join(t.TempDir(), "m.onnx"), ir.WriteOptions{}); err == nil {
		t.Fatal("writing a model with unresolved external data elsewhere succeeded")
	}

	loaded, err := ir.Load("testdata/python_ext.onnx")
	if err != nil {
		t.Fatal(err)
	}
	// With its data inline it is the plain Python model, byte for byte.
	b, _ := ir.Marshal(loaded)
	if !bytes.Equal(b, readFile(t, "testdata/python_model.onnx")) {
		t.Fatal("Load of the external-data model differs from the inline model")
	}
}

// TestPythonModelFloat64 swaps LeakyRelu (no double kernel in ORT) for
// Where/Greater/Mul with ReplaceNode, casts the whole model to float64 and
// runs it: Cast's `to`, Constant value_float and tensors inside If branches
// must all follow.
func TestPythonModelFloat64(t *testing.T) {
	initORT(t)
	ref := loadPythonRef(t)
	m, err := ir.Load("testdata/python_model.onnx")
	if err != nil {
		t.Fatal(err)
	}
	g := ir.WrapGraph(m.Graph)
	lr, _ := g.NodeByName("lrelu")
	alpha := ir.AttrFloatOf(lr, "alpha", 0.01)
	alphaC := g.Const("alpha", ir.Scalar("", alpha))
	zero := g.Const("zero", ir.Scalar("", float32(0)))
	// Constants were appended at the end: put them before their users.
	scaled := &onnxpb.NodeProto{OpType: "Mul", Input: []string{"s", alphaC}, Output: []string{""}}
	pos := &onnxpb.NodeProto{OpType: "Greater", Input: []string{"s", zero}, Output: []string{""}}
	if err := g.ReplaceNode(lr, scaled, pos); err != nil {
		t.Fatal(err)
	}
	where := &onnxpb.NodeProto{OpType: "Where", Input: []string{pos.Output[0], "s", scaled.Output[0]}, Output: []string{"lr"}}
	if err := g.ReplaceNode(pos, pos, where); err != nil {
		t.Fatal(err)
	}
	if err := ir.Validate(m); err == nil {
		t.Fatal("Validate accepted constants placed after their users")
	}
	if err := g.TopoSort(); err != nil {
		t.Fatal(err)
	}
	if err := ir.Validate(m); err != nil {
		t.Fatal(err)
	}
	if err := ir.CastFloat64(m); err != nil {
		t.Fatal(err)
	}
	if err := ir.Validate(m); err != nil {
		t.Fatal(err)
	}
	b, err := ir.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	sess, err := ort.NewSession(b, "python_model float64", ort.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Destroy()
	for _, cond := range []bool{true, false} {
		got := runPython[float64](t, sess, ref, cond)
		want := ref.YFalse
		if cond {
			want = ref.YTrue
		}
		near(t, "y", got["y"], want, 1e-5)
		near(t, "sm", got["sm"], ref.Sm, 1e-5)
		near(t, "e", got["e"], ref.E, 1e-4)
	}
}
