package ir_test

import (
	"bytes"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/onnxpb"
	"github.com/tagpr/tagpr/onnx/ort"
)

func TestMarshalStable(t *testing.T) {
	m := mlp(t, ir.Float)
	a, err := ir.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ir.Read(a, "mlp")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := ir.Marshal(back)
	if !bytes.Equal(a, b) {
		t.Fatal("read → marshal changed the bytes")
	}
	path := filepath.Join(t.TempDir(), "m.onnx")
	if err := ir.Write(back, path, ir.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if c := readFile(t, path); !bytes.Equal(a, c) {
		t.Fatal("Write wrote other bytes than Marshal")
	}
}

// PyTorch/Optimum exports (committed by scripts/fixtures/export_fixtures.py)
// must re-marshal to the same bytes and pass Validate.
func TestPyTorchExportsStable(t *testing.T) {
	paths, _ := filepath.Glob("../testdata/pytorch/*/model.onnx")
	if len(paths) == 0 {
		t.Fatal("no PyTorch-exported fixtures under onnx/testdata/pytorch")
	}
	for _, p := range paths {
		raw := readFile(t, p)
		m, err := ir.Read(raw, p)
		if err != nil {
			t.Fatal(err)
		}
		b, err := ir.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(raw, b) {
			t.Errorf("%s: re-marshalled bytes differ", p)
		}
		if err := ir.Validate(m); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}

func TestReadMalformed(t *testing.T) {
	good, _ := ir.Marshal(mlp(t, ir.Float))
	for name, data := range map[string][]byte{
		"empty":     nil,
		"garbage":   []byte("this is not a protobuf \xff\xfe"),
		"truncated": good[:len(good)/2],
		"no graph":  {0x08, 0x0a}, // ir_version 10 and nothing else
		"bad wire":  {0x3a, 0xff, 0xff, 0xff, 0xff, 0x0f},
	} {
		if _, err := ir.Read(data, name); err == nil {
			t.Errorf("%s: Read succeeded", name)
		} else if !strings.Contains(err.Error(), name) {
			t.Errorf("%s: error does not name the input: %v", name, err)
		}
	}
	if _, err := ir.Load(filepath.Join(t.TempDir(), "missing.onnx")); err == nil || !strings.Contains(err.Error(), "missing.onnx") {
		t.Errorf("Load of a missing file: %v", err)
	}
}

func TestValidateNamesTheNode(t *testing.T) {
	build := func(edit func(g *ir.Graph)) *onnxpb.ModelProto {
		g := ir.NewGraph("v")
		x := g.Input("x", ir.Float, 2)
		a := g.Node("Relu", []string{x}, []string{"a"})[0]
		g.Node("Neg", []string{a}, []string{"y"})
		g.Output("y", ir.Float, 2)
		edit(g)
		return ir.MustModel(g, 0)
	}
	cases := []struct {
		name string
		edit func(g *ir.Graph)
		want []string
	}{
		{"missing input", func(g *ir.Graph) {
			g.Proto.Node[1].Input[0] = "nowhere"
		}, []string{`node "Neg" (Neg)`, `input "nowhere" is not produced`}},
		{"duplicate output", func(g *ir.Graph) {
			g.Proto.Node = append(g.Proto.Node, &onnxpb.NodeProto{Name: "again", OpType: "Abs", Input: []string{"x"}, Output: []string{"a"}})
		}, []string{`node "again" (Abs) output "a" is already produced by node "Relu" (Relu)`}},
		{"output is an input", func(g *ir.Graph) {
			g.Proto.Node[0].Output[0] = "x"
		}, []string{`node "Relu" (Relu) output "x" is already a graph input`}},
		{"cycle", func(g *ir.Graph) {
			g.Proto.Node[0].Input[0] = "y"
		}, []string{`cycle: node "Relu" (Relu) -> node "Neg" (Neg) -> node "Relu" (Relu)`}},
		{"unknown domain", func(g *ir.Graph) {
			g.Proto.Node[1].Domain = "com.example"
		}, []string{`node "Neg" (com.example.Neg) uses domain "com.example"`}},
		{"cast without to", func(g *ir.Graph) {
			g.Proto.Node[1].OpType = "Cast"
		}, []string{`node "Neg" (Cast) lacks required attribute "to"`}},
		{"attribute type mismatch", func(g *ir.Graph) {
			g.Proto.Node[0].Attribute = []*onnxpb.AttributeProto{{Name: "alpha", Type: onnxpb.AttributeProto_FLOAT}}
		}, []string{`node "Relu" (Relu): attribute "alpha" is of type FLOAT but holds no such value`}},
		{"missing graph output", func(g *ir.Graph) {
			g.Output("z", ir.Float, 2)
		}, []string{`graph output "z" is not produced`}},
		{"initializer size", func(g *ir.Graph) {
			g.Proto.Initializer = append(g.Proto.Initializer, ir.Tensor("w", []int64{2, 2}, []float32{1, 2, 3}))
		}, []string{`tensor "w": raw_data has 12 bytes, dims [2 2] of FLOAT need 16`}},
		{"untyped input", func(g *ir.Graph) {
			g.Proto.Input[0].Type = nil
		}, []string{`graph input "x" has no type`}},
		{"out of order", func(g *ir.Graph) {
			g.Proto.Node[0], g.Proto.Node[1] = g.Proto.Node[1], g.Proto.Node[0]
		}, []string{`node "Neg" (Neg) input "a" is produced by later node "Relu" (Relu)`, "topological order"}},
	}
	if err := ir.Validate(build(func(*ir.Graph) {})); err != nil {
		t.Fatalf("valid model: %v", err)
	}
	for _, c := range cases {
		err := ir.Validate(build(c.edit))
		if err == nil {
			t.Errorf("%s: Validate accepted it", c.name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error lacks %q:\n%v", c.name, w, err)
			}
		}
	}
}

func TestTopoSort(t *testing.T) {
	m := mlp(t, ir.Float)
	g := ir.WrapGraph(m.Graph)
	want := append([]*onnxpb.NodeProto{}, g.Proto.Node...)
	for l, r := 0, len(g.Proto.Node)-1; l < r; l, r = l+1, r-1 {
		g.Proto.Node[l], g.Proto.Node[r] = g.Proto.Node[r], g.Proto.Node[l]
	}
	if err := ir.Validate(m); err == nil {
		t.Fatal("reversed graph validated")
	}
	if err := g.TopoSort(); err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if g.Proto.Node[i] != want[i] {
			t.Fatalf("node %d is %s, want %s", i, g.Proto.Node[i].Name, want[i].Name)
		}
	}
	if err := ir.Validate(m); err != nil {
		t.Fatal(err)
	}
	g.Proto.Node[0].Input[0] = g.Proto.Node[len(g.Proto.Node)-1].Output[0]
	if err := g.TopoSort(); err == nil || !strings.Contains(err.Error(), "cycle") || !strings.Contains(err.Error(), "(MatMul)") {
		t.Fatalf("TopoSort of a cycle: %v", err)
	}
}

func TestBuilderNames(t *testing.T) {
	g := ir.NewGraph("names")
	x := g.Input("x", ir.Float, "batch", 3)
	a := g.Op("Relu", []string{x})
	b := g.Op("Relu", []string{a})
	outs := g.Node("Split", []string{b}, []string{"", ""}, ir.AttrInt("axis", 1), ir.AttrInt("num_outputs", 2))
	c := g.ConstInt64s("shape", 1, -1)
	c2 := g.ConstInt64s("shape", 2)
	if a == b || outs[0] == outs[1] || c == c2 || a != g.Proto.Node[0].Name {
		t.Fatalf("names: %s %s %v %s %s", a, b, outs, c, c2)
	}
	seen := map[string]bool{}
	for _, n := range g.Proto.Node {
		if seen[n.Name] {
			t.Fatalf("node name %q used twice", n.Name)
		}
		seen[n.Name] = true
	}
	g.Input("x", ir.Float, 1) // a second input "x" is a mistake
	if g.Err() == nil || !strings.Contains(g.Err().Error(), `input "x"`) {
		t.Fatalf("Err after duplicate input: %v", g.Err())
	}
	if _, err := ir.NewModel(g, 0); err == nil {
		t.Fatal("NewModel ignored the builder mistake")
	}
	g2 := ir.NewGraph("dims")
	g2.Input("x", ir.Float, 2.5)
	if g2.Err() == nil || !strings.Contains(g2.Err().Error(), "dim 0 is float64") {
		t.Fatalf("bad dim: %v", g2.Err())
	}
}

func TestTensorHelpers(t *testing.T) {
	f := ir.Tensor("f", []int64{2}, []float32{1.5, -2})
	if v, err := ir.Float32s(f); err != nil || v[0] != 1.5 || v[1] != -2 {
		t.Fatal(v, err)
	}
	d := ir.Tensor("d", []int64{2}, []float64{math.Pi, -1e300})
	if v, err := ir.Float64s(d); err != nil || v[0] != math.Pi || v[1] != -1e300 {
		t.Fatal(v, err)
	}
	i := ir.Vector("i", int64(-5), 1<<40)
	if v, err := ir.Int64s(i); err != nil || v[0] != -5 || v[1] != 1<<40 {
		t.Fatal(v, err)
	}
	i32 := ir.Vector("i32", int32(-7), 3)
	if v, err := ir.Int32s(i32); err != nil || v[0] != -7 || v[1] != 3 {
		t.Fatal(v, err)
	}
	if v, err := ir.Int64s(i32); err != nil || v[0] != -7 {
		t.Fatal(v, err)
	}
	bl := ir.Vector("b", true, false, true)
	if v, err := ir.Bools(bl); err != nil || !v[0] || v[1] || !v[2] {
		t.Fatal(v, err)
	}
	// Typed fields read the same as raw_data.
	typed := &onnxpb.TensorProto{Name: "t", DataType: ir.Float, Dims: []int64{2}, FloatData: []float32{3, 4}}
	if v, err := ir.Float32s(typed); err != nil || v[1] != 4 {
		t.Fatal(v, err)
	}
	if raw, err := ir.RawBytes(typed); err != nil || !bytes.Equal(raw, ir.Vector("", float32(3), 4).RawData) {
		t.Fatal(raw, err)
	}
	if _, err := ir.Float64s(f); err == nil || !strings.Contains(err.Error(), `tensor "f"`) {
		t.Fatalf("wrong type: %v", err)
	}
	short := ir.Tensor("s", []int64{3}, []float32{1})
	if _, err := ir.Float32s(short); err == nil {
		t.Fatal("short data read")
	}
	// float16 and bfloat16.
	for _, c := range []struct {
		h uint16
		f float32
	}{{0x3c00, 1}, {0xc000, -2}, {0x3555, 0.33325195}, {0x7bff, 65504}, {0x0001, 5.9604645e-08}, {0x0000, 0}, {0x8000, float32(math.Copysign(0, -1))}} {
		if got := ir.HalfToFloat32(c.h); got != c.f {
			t.Errorf("HalfToFloat32(%#x) = %v, want %v", c.h, got, c.f)
		}
		if got := ir.Float32ToHalf(c.f); got != c.h {
			t.Errorf("Float32ToHalf(%v) = %#x, want %#x", c.f, got, c.h)
		}
	}
	if !math.IsInf(float64(ir.HalfToFloat32(0x7c00)), 1) || !math.IsNaN(float64(ir.HalfToFloat32(0x7e00))) {
		t.Error("half inf/nan")
	}
	for h := 0; h < 1<<16; h++ { // every finite half survives the round trip
		if f := ir.HalfToFloat32(uint16(h)); !math.IsNaN(float64(f)) && ir.Float32ToHalf(f) != uint16(h) {
			t.Fatalf("half %#x → %v → %#x", h, f, ir.Float32ToHalf(f))
		}
	}
	half := &onnxpb.TensorProto{Name: "h", DataType: ir.Float16, Dims: []int64{2}, Int32Data: []int32{0x3c00, 0xc000}}
	if v, err := ir.Float32s(half); err != nil || v[0] != 1 || v[1] != -2 {
		t.Fatal(v, err)
	}
	if ir.BFloat16ToFloat32(0x3f80) != 1 {
		t.Error("bfloat16 1.0")
	}
}

// Weights as inputs, renamed inputs and exposed intermediates, run in ORT.
func TestEditsRunInORT(t *testing.T) {
	initORT(t)
	m := mlp(t, ir.Float)
	g := ir.WrapGraph(m.Graph)
	w, err := g.InitializerToInput("W")
	if err != nil {
		t.Fatal(err)
	}
	if err := g.RenameValue("x", "input_x"); err != nil {
		t.Fatal(err)
	}
	relu := g.Proto.Node[2]
	if relu.OpType != "Relu" {
		t.Fatalf("node 2 is %s", relu.OpType)
	}
	if err := g.AddOutput(relu.Output[0], ir.Float); err != nil {
		t.Fatal(err)
	}
	if p := g.Producer(relu.Output[0]); p != relu {
		t.Fatal("Producer")
	}
	if cs := g.Consumers(relu.Output[0]); len(cs) != 1 || cs[0].OpType != "MatMul" {
		t.Fatalf("Consumers: %v", cs)
	}
	if err := g.RenameValue("input_x", "b"); err == nil {
		t.Fatal("renaming onto an existing value succeeded")
	}
	if err := ir.Validate(m); err != nil {
		t.Fatal(err)
	}
	b, _ := ir.Marshal(m)
	sess, err := ort.NewSession(b, "edited mlp", ort.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Destroy()
	wv, _ := ir.Float32s(w)
	wt, err := ort.NewTensor([]int64{3, 4}, wv)
	if err != nil {
		t.Fatal(err)
	}
	defer wt.Destroy()
	xt, err := ort.NewTensor([]int64{2, 3}, f32(mlpX))
	if err != nil {
		t.Fatal(err)
	}
	defer xt.Destroy()
	out, err := sess.Run(map[string]ort.Value{"input_x": xt, "W": wt}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Destroy()
	y, err := ort.Data[float32]("y", out.Get("y"))
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range mlpRef(mlpX) {
		if math.Abs(float64(y[i])-want) > 1e-5 {
			t.Fatalf("y[%d] = %v, want %v", i, y[i], want)
		}
	}
	h, err := ort.Data[float32](relu.Output[0], out.Get(relu.Output[0]))
	if err != nil || len(h) != 8 {
		t.Fatalf("exposed intermediate: %v %v", h, err)
	}
	// Changing W from Go changes the result without rebuilding the session.
	for i := range wv {
		wv[i] = 0
	}
	out2, err := sess.Run(map[string]ort.Value{"input_x": xt, "W": wt}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer out2.Destroy()
	y2, _ := ort.Data[float32]("y", out2.Get("y"))
	// relu(b)·V with b = [0.5 -1 0 2], V = [1 -1 2 0.5] → 0.5 + 1 = 1.5
	if y2[0] != 1.5 || y2[1] != 1.5 {
		t.Fatalf("with W = 0: y = %v, want [1.5 1.5]", y2)
	}
}

func TestCastFloat64Exact(t *testing.T) {
	initORT(t)
	m := mlp(t, ir.Float)
	g := ir.WrapGraph(m.Graph)
	// A Cast to float and a Constant with value_float must follow the cast.
	y := g.Proto.Node[len(g.Proto.Node)-1].Output[0]
	g.Proto.Node[len(g.Proto.Node)-1].Output[0] = "y_pre"
	one := g.Unique("one")
	g.AddNode(&onnxpb.NodeProto{OpType: "Constant", Output: []string{one}, Attribute: []*onnxpb.AttributeProto{ir.AttrFloat("value_float", 1)}})
	c := g.Op("Cast", []string{"y_pre"}, ir.AttrInt("to", int64(ir.Float)))
	g.Node("Add", []string{c, one}, []string{y})
	if err := ir.Validate(m); err != nil {
		t.Fatal(err)
	}
	if err := ir.CastFloat64(m); err != nil {
		t.Fatal(err)
	}
	for _, init := range m.Graph.Initializer {
		if init.DataType != ir.Double {
			t.Fatalf("initializer %s is %s", init.Name, init.DataType)
		}
	}
	b, _ := ir.Marshal(m)
	sess, err := ort.NewSession(b, "mlp cast to float64", ort.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Destroy()
	got := runMLP[float64](t, sess)
	for i, want := range mlpRef(mlpX) {
		if got[i] != want+1 {
			t.Fatalf("y[%d] = %v, want exactly %v", i, got[i], want+1)
		}
	}
}

func TestPruneAndOpsetCheck(t *testing.T) {
	g := ir.NewGraph("prune")
	x := g.Input("x", ir.Float, 4)
	w := g.Initializer("w", ir.Vector("", float32(1), 2, 3, 4))
	g.Initializer("unused", ir.Vector("", float32(9)))
	dead := g.Op("Neg", []string{x})
	g.Op("Abs", []string{dead})
	y := g.Node("Mul", []string{x, w}, []string{"y"})[0]
	g.Output(y, ir.Float, 4)
	m := ir.MustModel(g, 0)
	orig := ir.Clone(m)
	if nodes, inits := g.Prune(); nodes != 2 || inits != 1 {
		t.Fatalf("Prune removed %d nodes, %d initializers; want 2, 1", nodes, inits)
	}
	if len(m.Graph.Node) != 1 || m.Graph.Node[0].OpType != "Mul" || len(orig.Graph.Node) != 3 {
		t.Fatalf("after Prune: %d nodes (clone has %d)", len(m.Graph.Node), len(orig.Graph.Node))
	}
	if err := ir.Validate(m); err != nil {
		t.Fatal(err)
	}
	if in := g.InputNames(); len(in) != 1 || in[0] != "x" {
		t.Fatal(in)
	}

	g2 := ir.NewGraph("rms")
	x2 := g2.Input("x", ir.Float, 2, 4)
	s := g2.Initializer("scale", ir.Vector("", float32(1), 1, 1, 1))
	g2.Node("RMSNormalization", []string{x2, s}, []string{"y"}, ir.AttrInt("axis", -1))
	g2.Output("y", ir.Float, 2, 4)
	if err := ir.Validate(ir.MustModel(g2, 21)); err == nil || !strings.Contains(err.Error(), `node "RMSNormalization" (RMSNormalization) needs ai.onnx opset >= 23, the model imports 21`) {
		t.Fatalf("opset 21: %v", err)
	}
	if err := ir.Validate(ir.MustModel(g2, 23)); err != nil {
		t.Fatal(err)
	}
}

func TestProducerConsumerMaps(t *testing.T) {
	m, err := ir.Load("testdata/python_model.onnx")
	if err != nil {
		t.Fatal(err)
	}
	g := ir.WrapGraph(m.Graph)
	prod, cons := g.ProducerMap(), g.ConsumerMap()
	for _, n := range m.Graph.Node {
		for _, o := range n.Output {
			if prod[o] != n || g.Producer(o) != n {
				t.Fatalf("producer of %s", o)
			}
			want := g.Consumers(o)
			if len(cons[o]) != len(want) {
				t.Fatalf("consumers of %s: map %d, scan %d", o, len(cons[o]), len(want))
			}
			for i := range want {
				if cons[o][i] != want[i] {
					t.Fatalf("consumers of %s differ", o)
				}
			}
		}
	}
	// r² in Einsum reads r twice but is one consumer.
	if n := len(cons["r"]); n != 3 {
		t.Fatalf("r has %d consumers, want 3", n)
	}
}

// A big chain builds, validates, sorts and round-trips quickly (no quadratic passes).
func TestLargeGraph(t *testing.T) {
	g := ir.NewGraph("chain")
	v := g.Input("x", ir.Float, "n")
	for i := 0; i < 20000; i++ {
		v = g.Op("Neg", []string{v})
	}
	g.Output(v, ir.Float, "n")
	m := ir.MustModel(g, 0)
	if err := ir.Validate(m); err != nil {
		t.Fatal(err)
	}
	if err := g.TopoSort(); err != nil {
		t.Fatal(err)
	}
	b, err := ir.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ir.Read(b, "chain"); err != nil {
		t.Fatal(err)
	}
	if len(g.ConsumerMap()) != 20000 {
		t.Fatal("consumer map size")
	}
}

// An If built with Subgraph reads the outer x in both branches and runs in ORT.
func TestSubgraphIf(t *testing.T) {
	initORT(t)
	g := ir.NewGraph("if")
	x := g.Input("x", ir.Float, 2)
	cond := g.Input("cond", ir.Bool, 1)
	then := g.Subgraph("then")
	a := then.Op("Neg", []string{x})
	then.Output(a, ir.Float, 2)
	els := g.Subgraph("else")
	b := els.Op("Neg", []string{els.Op("Neg", []string{x})})
	els.Output(b, ir.Float, 2)
	if a == b {
		t.Fatalf("branch outputs share the name %q", a)
	}
	g.Node("If", []string{cond}, []string{"y"}, ir.AttrGraph("then_branch", then.Proto), ir.AttrGraph("else_branch", els.Proto))
	g.Output("y", ir.Float, 2)
	m := ir.MustModel(g, 0)
	if err := ir.Validate(m); err != nil {
		t.Fatal(err)
	}
	data, _ := ir.Marshal(m)
	sess, err := ort.NewSession(data, "if", ort.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Destroy()
	xt, _ := ort.NewTensor([]int64{2}, []float32{1, -2})
	defer xt.Destroy()
	for _, c := range []bool{true, false} {
		ct, _ := ort.NewTensor([]int64{1}, []bool{c})
		out, err := sess.Run(map[string]ort.Value{"x": xt, "cond": ct}, nil)
		if err != nil {
			t.Fatal(err)
		}
		y, _ := ort.Data[float32]("y", out.Get("y"))
		want := []float32{1, -2}
		if c {
			want = []float32{-1, 2}
		}
		if y[0] != want[0] || y[1] != want[1] {
			t.Fatalf("cond %v: y = %v, want %v", c, y, want)
		}
		out.Destroy()
		ct.Destroy()
	}
	// A mistake inside a branch reaches the parent.
	bad := g.Subgraph("bad")
	bad.Input("oops", ir.Float, "n", 1.5)
	if g.Err() == nil || !strings.Contains(g.Err().Error(), `graph "bad"`) {
		t.Fatalf("parent Err: %v", g.Err())
	}
}

func TestCloneSharingInitializers(t *testing.T) {
	m := mlp(t, ir.Float)
	m.DocString = "kept"
	m.Graph.DocString = "kept too"
	before, err := ir.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	c := ir.CloneSharingInitializers(m)
	got, err := ir.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, before) {
		t.Fatal("the clone does not serialize as the model")
	}
	if len(c.Graph.Initializer) == 0 || len(c.Graph.Initializer) != len(m.Graph.Initializer) {
		t.Fatalf("%d initializers cloned of %d", len(c.Graph.Initializer), len(m.Graph.Initializer))
	}
	for i, init := range c.Graph.Initializer {
		if init != m.Graph.Initializer[i] {
			t.Fatalf("initializer %q was copied, not shared", init.GetName())
		}
	}
	// Editing the clone's graph (nodes, inputs, the initializer list) leaves m as it was.
	c.Graph.Node[0].Input[0] = "renamed"
	c.Graph.Node = c.Graph.Node[1:]
	c.Graph.Input[0].Name = "renamed"
	c.Graph.Initializer = append(c.Graph.Initializer[:0], ir.Tensor("extra", []int64{1}, []float32{1}))
	after, err := ir.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(after, before) {
		t.Fatal("editing the clone changed the model")
	}
	if err := ir.Validate(m); err != nil {
		t.Fatal(err)
	}
}
