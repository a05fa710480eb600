package ir_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/tagpr/tagpr/onnx/ir"
)

// FuzzReadModel: any bytes give a model or an error, never a panic; what
// reads also validates, edits and re-marshals without panicking, and
// re-marshals to stable bytes.
func FuzzReadModel(f *testing.F) {
	for _, p := range []string{"testdata/python_model.onnx", "testdata/python_ext.onnx"} {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	g := ir.NewGraph("seed")
	x := g.Input("x", ir.Float, "n", 2)
	w := g.Initializer("w", ir.Tensor("", []int64{2, 2}, []float32{1, 2, 3, 4}))
	g.Node("MatMul", []string{x, w}, []string{"y"})
	g.Output("y", ir.Float, "n", 2)
	seed, _ := ir.Marshal(ir.MustModel(g, 0))
	f.Add(seed)
	f.Add([]byte{})
	f.Add([]byte{0x3a, 0x02, 0x0a, 0x00})
	f.Add([]byte("\x08\x0a\x3a\x00"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ir.Read(data, "fuzz")
		if err != nil {
			return
		}
		_ = ir.Validate(m)
		a, err := ir.Marshal(m)
		if err != nil {
			return
		}
		back, err := ir.Read(a, "fuzz again")
		if err != nil {
			t.Fatalf("re-read of marshalled model: %v", err)
		}
		b, _ := ir.Marshal(back)
		if !bytes.Equal(a, b) {
			t.Fatal("marshal not stable")
		}
		gr := ir.WrapGraph(back.Graph)
		_ = gr.TopoSort()
		for _, init := range back.Graph.Initializer {
			_, _ = ir.Float32s(init)
			_, _ = ir.Int64s(init)
		}
		_ = ir.CastFloat64(back)
		_ = ir.LoadExternalData(back, dir) // locations are confined to dir
		_ = ir.Write(back, filepath.Join(dir, "m.onnx"), ir.WriteOptions{ExternalDataThreshold: 8})
	})
}
