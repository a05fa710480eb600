package ir_test

import (
	"bytes"
	"crypto/sha256"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/onnxpb"
)

// MarshalTo writes Marshal's bytes, byte for byte, however finely it splits
// the messages: exported models (GPT-2, Llama, Qwen2), built-in ones, a
// graph with subgraphs holding initializers, tensors in typed fields, an
// explicitly empty raw_data and unknown fields.
func TestMarshalToIsMarshal(t *testing.T) {
	var models []*onnxpb.ModelProto
	for _, name := range []string{"gpt2", "llama", "qwen2-chat"} {
		m, err := ir.Load(filepath.Join("..", "testdata", "pytorch", name, "model.onnx"))
		if err != nil {
			t.Fatal(err)
		}
		models = append(models, m)
	}
	tie := true
	for _, c := range []lm.Config{
		{Arch: lm.Llama, Layers: 2, DModel: 32, Heads: 4, KVHeads: 2, Vocab: 300, AttentionBias: true},
		{Arch: lm.GPT2, Layers: 1, DModel: 32, Heads: 4, Vocab: 300, TieEmbeddings: &tie},
	} {
		m, err := lm.Build(c)
		if err != nil {
			t.Fatal(err)
		}
		models = append(models, m)
	}
	// Subgraphs with initializers, a float_data tensor, an empty raw_data
	// and unknown fields on the model, a graph and a tensor.
	m := mlp(t, ir.Float)
	g := ir.WrapGraph(m.Graph)
	then, other := g.Subgraph("then"), g.Subgraph("else")
	then.Proto.Initializer = append(then.Proto.Initializer, ir.Tensor("then_w", []int64{64}, make([]float32, 64)))
	then.Node("Identity", []string{"then_w"}, []string{"then_out"})
	then.Output("then_out", ir.Float, 64)
	other.Proto.Initializer = append(other.Proto.Initializer, &onnxpb.TensorProto{Name: "else_w", Dims: []int64{64}, DataType: ir.Float, FloatData: make([]float32, 64)})
	other.Node("Identity", []string{"else_w"}, []string{"else_out"})
	other.Output("else_out", ir.Float, 64)
	g.Input("cond", ir.Bool)
	g.Node("If", []string{"cond"}, []string{"branch"}, ir.AttrGraph("then_branch", then.Proto), ir.AttrGraph("else_branch", other.Proto))
	g.Output("branch", ir.Float, 64)
	empty := &onnxpb.TensorProto{Name: "empty", Dims: []int64{0}, DataType: ir.Float, RawData: []byte{}}
	m.Graph.Initializer = append(m.Graph.Initializer, empty)
	m.ProtoReflect().SetUnknown([]byte{0xf8, 0x03, 0x01}) // field 63, varint 1
	m.Graph.ProtoReflect().SetUnknown([]byte{0xf8, 0x03, 0x02})
	m.Graph.Initializer[0].ProtoReflect().SetUnknown([]byte{0xf8, 0x03, 0x03})
	if err := g.Err(); err != nil {
		t.Fatal(err)
	}
	models = append(models, m)

	for i, m := range models {
		want, err := ir.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		for _, part := range []int{1, 64, 4096, 1 << 20} {
			var buf bytes.Buffer
			if err := ir.MarshalToParts(&buf, m, part); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf.Bytes(), want) {
				t.Fatalf("model %d, parts of %d bytes: %d bytes written, Marshal gives %d (first difference at %d)", i, part, buf.Len(), len(want), firstDiff(buf.Bytes(), want))
			}
		}
		var buf bytes.Buffer
		if n, err := ir.MarshalTo(&buf, m); err != nil || n != int64(len(want)) || !bytes.Equal(buf.Bytes(), want) {
			t.Fatalf("model %d: MarshalTo wrote %d bytes (%v), Marshal %d", i, n, err, len(want))
		}
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// Write streams an inline model to its file: the file is Marshal's bytes
// and writing it allocates a small part of the model.
func TestWriteStreamsInline(t *testing.T) {
	m, err := lm.Build(lm.Config{Arch: lm.Llama, Layers: 2, DModel: 256, Heads: 4, KVHeads: 2, Vocab: 4096})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := ir.Marshal(m)
	path := filepath.Join(t.TempDir(), "model.onnx")
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if err := ir.Write(m, path, ir.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	got := after.TotalAlloc - before.TotalAlloc
	b, err := os.ReadFile(path)
	if err != nil || sha256.Sum256(b) != sha256.Sum256(want) {
		t.Fatalf("written file differs from Marshal's bytes (%v)", err)
	}
	t.Logf("model %d bytes: Write allocated %d", len(want), got)
	if got > uint64(len(want))/4 {
		t.Fatalf("Write allocated %d bytes for a %d-byte model: want under a quarter of it", got, len(want))
	}
}
