package ir_test

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/onnxpb"
	"github.com/tagpr/tagpr/onnx/ort"
)

func initORT(t testing.TB) {
	t.Helper()
	if err := ort.Init(""); err != nil {
		t.Fatalf("ONNX Runtime is required: %v", err)
	}
}

// mlp builds y = relu(x·W + b)·V for x [batch, 3] in the given element type.
func mlp(t testing.TB, elem ir.DataType) *onnxpb.ModelProto {
	t.Helper()
	g := ir.NewGraph("mlp")
	x := g.Input("x", elem, "batch", 3)
	w := []float64{1, 2, -1, 0.5, 0, 1, -2, 1, 3, 1, 1, 1}
	b := []float64{0.5, -1, 0, 2}
	v := []float64{1, -1, 2, 0.5}
	var W, B, V string
	if elem == ir.Double {
		W = g.Initializer("W", ir.Tensor("", []int64{3, 4}, w))
		B = g.Initializer("b", ir.Tensor("", []int64{4}, b))
		V = g.Initializer("V", ir.Tensor("", []int64{4, 1}, v))
	} else {
		W = g.Initializer("W", ir.Tensor("", []int64{3, 4}, f32(w)))
		B = g.Initializer("b", ir.Tensor("", []int64{4}, f32(b)))
		V = g.Initializer("V", ir.Tensor("", []int64{4, 1}, f32(v)))
	}
	h := g.Op("Relu", []string{g.Op("Add", []string{g.Op("MatMul", []string{x, W}), B})})
	g.Node("MatMul", []string{h, V}, []string{"y"})
	g.Output("y", elem, "batch", 1)
	m, err := ir.NewModel(g, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := ir.Validate(m); err != nil {
		t.Fatal(err)
	}
	return m
}

func f32(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

// mlpRef computes the same network in Go.
func mlpRef(x []float64) []float64 {
	w := []float64{1, 2, -1, 0.5, 0, 1, -2, 1, 3, 1, 1, 1}
	b := []float64{0.5, -1, 0, 2}
	v := []float64{1, -1, 2, 0.5}
	var out []float64
	for r := 0; r < len(x)/3; r++ {
		y := 0.0
		for j := 0; j < 4; j++ {
			h := b[j]
			for k := 0; k < 3; k++ {
				h += x[3*r+k] * w[4*k+j]
			}
			y += math.Max(h, 0) * v[j]
		}
		out = append(out, y)
	}
	return out
}

var mlpX = []float64{1, 2, 3, -1, 0.5, 2}

func runMLP[T float32 | float64](t *testing.T, sess *ort.Session) []T {
	t.Helper()
	x := make([]T, len(mlpX))
	for i, v := range mlpX {
		x[i] = T(v)
	}
	xt, err := ort.NewTensor([]int64{2, 3}, x)
	if err != nil {
		t.Fatal(err)
	}
	defer xt.Destroy()
	out, err := sess.Run(map[string]ort.Value{"x": xt}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Destroy()
	y, err := ort.Data[T]("y", out.Get("y"))
	if err != nil {
		t.Fatal(err)
	}
	return append([]T(nil), y...)
}

func TestBuilderModelsRunInORT(t *testing.T) {
	initORT(t)
	want := mlpRef(mlpX)
	t.Run("float32", func(t *testing.T) {
		b, err := ir.Marshal(mlp(t, ir.Float))
		if err != nil {
			t.Fatal(err)
		}
		sess, err := ort.NewSession(b, "mlp32", ort.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer sess.Destroy()
		got := runMLP[float32](t, sess)
		for i := range want {
			if math.Abs(float64(got[i])-want[i]) > 1e-5 {
				t.Fatalf("y[%d] = %v, want %v", i, got[i], want[i])
			}
		}
	})
	t.Run("float64", func(t *testing.T) {
		b, err := ir.Marshal(mlp(t, ir.Double))
		if err != nil {
			t.Fatal(err)
		}
		sess, err := ort.NewSession(b, "mlp64", ort.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer sess.Destroy()
		got := runMLP[float64](t, sess)
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("y[%d] = %v, want exactly %v", i, got[i], want[i])
			}
		}
	})
}

func TestExternalDataRoundTrip(t *testing.T) {
	initORT(t)
	m := mlp(t, ir.Float)
	dir := t.TempDir()
	path := filepath.Join(dir, "model.onnx")
	// One initializer keeps its values in the typed field (float_data), as
	// some exporters write them: Write must stream and restore it too.
	last := m.Graph.Initializer[len(m.Graph.Initializer)-1]
	vals, err := ir.Float32s(last)
	if err != nil {
		t.Fatal(err)
	}
	last.RawData, last.FloatData = nil, vals
	before, _ := ir.Marshal(m)
	// W is 48 bytes, V 16, b 16: W and the 16-byte ones go external at 16.
	if err := ir.Write(m, path, ir.WriteOptions{ExternalDataThreshold: 16}); err != nil {
		t.Fatal(err)
	}
	if after, _ := ir.Marshal(m); !bytes.Equal(before, after) {
		t.Fatal("Write changed the caller's model")
	}
	last.RawData, last.FloatData = ir.Tensor("", nil, vals).RawData, nil // as Load gives it back
	data, err := os.ReadFile(path + ".data")
	if err != nil {
		t.Fatalf("external data file: %v", err)
	}
	if len(data) < 48+16+16 {
		t.Fatalf("external data file has %d bytes", len(data))
	}
	raw, _ := os.ReadFile(path)
	onDisk, err := ir.Read(raw, path)
	if err != nil {
		t.Fatal(err)
	}
	for _, init := range onDisk.Graph.Initializer {
		if init.GetDataLocation() != onnxpb.TensorProto_EXTERNAL || init.RawData != nil {
			t.Fatalf("initializer %s not external in the written file", init.Name)
		}
	}

	sess, err := ort.NewSessionFromFile(path, ort.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Destroy()
	got := runMLP[float32](t, sess)
	for i, w := range mlpRef(mlpX) {
		if math.Abs(float64(got[i])-w) > 1e-5 {
			t.Fatalf("from file: y[%d] = %v, want %v", i, got[i], w)
		}
	}

	back, err := ir.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := ir.Marshal(m)
	have, _ := ir.Marshal(back)
	if !bytes.Equal(want, have) {
		t.Fatal("model loaded with its external data differs from the model written")
	}

	// A missing data file is an error naming the tensor and the file.
	os.Remove(path + ".data")
	if _, err := ir.Load(path); err == nil {
		t.Fatal("Load without the data file succeeded")
	} else if !bytes.Contains([]byte(err.Error()), []byte(`tensor "W"`)) || !bytes.Contains([]byte(err.Error()), []byte("model.onnx.data")) {
		t.Fatalf("error does not name tensor and file: %v", err)
	}
}
