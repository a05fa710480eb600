package hf

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/onnxpb"
	"github.com/tagpr/tagpr/onnx/safetensors"
	"github.com/tagpr/tagpr/onnx/train"
)

// importFixture imports a fixture checkpoint and loads the model.
func importFixture(t *testing.T, name string) (string, *onnxpb.ModelProto) {
	t.Helper()
	dir := t.TempDir()
	if _, err := Import(filepath.Join(fixtures, name), dir, ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	m, err := ir.Load(filepath.Join(dir, "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	return dir, m
}

func initializer(t *testing.T, m *onnxpb.ModelProto, name string) *onnxpb.TensorProto {
	t.Helper()
	for _, in := range m.GetGraph().GetInitializer() {
		if in.GetName() == name {
			return in
		}
	}
	t.Fatalf("no initializer %q", name)
	return nil
}

// Every float type's NaN and infinities are found, at their index.
func TestFirstNonFinite(t *testing.T) {
	cases := []struct {
		dtype string
		bits  uint64
		want  string
	}{
		{"F32", uint64(math.Float32bits(float32(math.NaN()))), "NaN"},
		{"F32", uint64(math.Float32bits(float32(math.Inf(-1)))), "-Inf"},
		{"F64", math.Float64bits(math.Inf(1)), "+Inf"},
		{"F64", math.Float64bits(math.NaN()), "NaN"},
		{"F16", 0x7c00, "+Inf"},
		{"F16", 0xfc00, "-Inf"},
		{"F16", 0x7e00, "NaN"},
		{"BF16", 0x7f80, "+Inf"},
		{"BF16", 0x7fc0, "NaN"},
		{"BF16", 0xff81, "NaN"},
	}
	for _, c := range cases {
		es := int(safetensors.ElemSize(c.dtype))
		raw := make([]byte, 7*es)
		// finite neighbours with big exponents: the largest finite values
		for i := 0; i < 7; i++ {
			switch es {
			case 2:
				binary.LittleEndian.PutUint16(raw[2*i:], map[string]uint16{"F16": 0x7bff, "BF16": 0x7f7f}[c.dtype])
			case 4:
				binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(math.MaxFloat32))
			case 8:
				binary.LittleEndian.PutUint64(raw[8*i:], math.Float64bits(-math.MaxFloat64))
			}
		}
		if i, _ := firstNonFinite(c.dtype, raw); i != -1 {
			t.Errorf("%s: finite values reported non-finite at %d", c.dtype, i)
		}
		switch es {
		case 2:
			binary.LittleEndian.PutUint16(raw[2*5:], uint16(c.bits))
		case 4:
			binary.LittleEndian.PutUint32(raw[4*5:], uint32(c.bits))
		case 8:
			binary.LittleEndian.PutUint64(raw[8*5:], c.bits)
		}
		if i, kind := firstNonFinite(c.dtype, raw); i != 5 || kind != c.want {
			t.Errorf("%s %#x: got %d %s, want 5 %s", c.dtype, c.bits, i, kind, c.want)
		}
	}
	if got := elementAt([]int64{3, 4}, 9); got != "[2, 1]" {
		t.Errorf("elementAt [3 4] 9 = %s", got)
	}
}

// A model holding a NaN or Inf is not exported: the error names the
// Hugging Face tensor and the element in the checkpoint's layout, and the
// output folder is not created.
func TestExportRefusesNonFinite(t *testing.T) {
	onnxDir, m := importFixture(t, "qwen2")
	q := initializer(t, m, "model.layers.1.self_attn.q_proj.weight") // [in, out] in the graph
	in, outDim := q.GetDims()[0], q.GetDims()[1]
	r, c := int64(3), int64(5)
	binary.LittleEndian.PutUint32(q.RawData[4*(r*outDim+c):], math.Float32bits(float32(math.NaN())))
	out := filepath.Join(t.TempDir(), "hf")
	_, err := Export(m, out, ExportOptions{From: onnxDir})
	if err == nil {
		t.Fatal("a NaN weight was exported")
	}
	want := "model.layers.1.self_attn.q_proj.weight holds NaN at [5, 3] (element " // [out, in] in the checkpoint
	for _, w := range []string{want, "tagpr writes no NaN or Inf", "export an earlier"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
	if !strings.Contains(err.Error(), "(element "+itoa(c*in+r)+")") {
		t.Errorf("error %q: want element %d", err, c*in+r)
	}
	if _, serr := os.Stat(out); !os.IsNotExist(serr) {
		t.Errorf("the output folder was written: %v", serr)
	}

	// An Inf in an untransposed weight, into an existing folder: nothing written.
	_, m = importFixture(t, "qwen2")
	n := initializer(t, m, "model.norm.weight")
	binary.LittleEndian.PutUint32(n.RawData[4*7:], math.Float32bits(float32(math.Inf(-1))))
	out = t.TempDir()
	if _, err := Export(m, out, ExportOptions{From: onnxDir}); err == nil || !strings.Contains(err.Error(), "model.norm.weight holds -Inf at [7] (element 7)") {
		t.Errorf("an Inf norm: %v", err)
	}
	if ents, _ := os.ReadDir(out); len(ents) != 0 {
		t.Errorf("files written: %v", ents)
	}
}

func itoa(i int64) string { return strconv.FormatInt(i, 10) }

// loraAdapters makes a rank-2 adapter on one projection of m, with values.
func loraAdapters(t *testing.T, m *onnxpb.ModelProto) ([]train.Adapter, map[string][]float32) {
	t.Helper()
	w := initializer(t, m, "model.layers.0.self_attn.q_proj.weight") // [in, out]
	in, out, r := int(w.GetDims()[0]), int(w.GetDims()[1]), 2
	a := train.Adapter{Weight: w.GetName(), Module: "model.layers.0.self_attn.q_proj", A: "model.layers.0.self_attn.q_proj.lora_A",
		B: "model.layers.0.self_attn.q_proj.lora_B", Scale: 2}
	av, bv := make([]float32, in*r), make([]float32, r*out)
	for i := range av {
		av[i] = float32(i%7) * 0.01
	}
	for i := range bv {
		bv[i] = float32(i%5) * 0.01
	}
	return []train.Adapter{a}, map[string][]float32{a.A: av, a.B: bv}
}

// poison writes a non-finite value of the tensor's dtype at element i of
// a tensor in a safetensors file.
func poison(t *testing.T, path, name string, i int64, nan bool) {
	t.Helper()
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	e, ok := f.Entry(name)
	f.Close()
	if !ok {
		t.Fatalf("%s has no %s", path, name)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	at := 8 + int64(binary.LittleEndian.Uint64(b)) + e.DataOffsets[0] + i*safetensors.ElemSize(e.DType)
	switch e.DType {
	case "BF16":
		binary.LittleEndian.PutUint16(b[at:], map[bool]uint16{true: 0x7fc0, false: 0x7f80}[nan])
	case "F16":
		binary.LittleEndian.PutUint16(b[at:], map[bool]uint16{true: 0x7e00, false: 0x7c00}[nan])
	case "F32":
		binary.LittleEndian.PutUint32(b[at:], map[bool]uint32{true: 0x7fc00000, false: 0x7f800000}[nan])
	default:
		t.Fatalf("dtype %s", e.DType)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// A checkpoint holding NaN or Inf is refused, naming the tensor, the
// element and the file — inline and streamed to external data, in a
// transposed projection and in a norm — and no model.onnx is written.
func TestImportRefusesNonFinite(t *testing.T) {
	cases := []struct {
		fixture, file, tensor string
		elem                  int64
		nan                   bool
		external              string
		want                  string
	}{
		{"qwen2", "model.safetensors", "model.layers.0.self_attn.q_proj.weight", 37, true, "never", "holds NaN at [1, 5] (element 37)"},
		{"qwen2", "model.safetensors", "model.layers.0.mlp.down_proj.weight", 40, false, "always", "holds +Inf at "},
		{"qwen3", "model-00004-of-00004.safetensors", "model.norm.weight", 3, true, "always", "holds NaN at [3] (element 3)"},
		{"qwen3-tied", "model.safetensors", "model.embed_tokens.weight", 0, false, "never", "holds +Inf at [0, 0] (element 0)"},
	}
	for _, c := range cases {
		dir := copyFixture(t, c.fixture)
		path := filepath.Join(dir, c.file)
		if c.fixture == "qwen3" {
			// find the shard holding the tensor
			ck, err := OpenCheckpoint(dir)
			if err != nil {
				t.Fatal(err)
			}
			f, _, _ := ck.Lookup(c.tensor)
			path = f.Path
			ck.Close()
		}
		poison(t, path, c.tensor, c.elem, c.nan)
		out := t.TempDir()
		_, err := Import(dir, out, ImportOptions{ExternalData: c.external})
		if err == nil {
			t.Errorf("%s %s: imported", c.fixture, c.tensor)
			continue
		}
		for _, w := range []string{`tensor "` + c.tensor + `" in `, c.want, filepath.Base(path), "the checkpoint is damaged or was saved after a diverged run"} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not say %q", c.fixture, err, w)
			}
		}
		for _, f := range []string{"model.onnx", "model.onnx.data", ImportRecord} {
			if _, err := os.Stat(filepath.Join(out, f)); err == nil {
				t.Errorf("%s: %s written", c.fixture, f)
			}
		}
	}
}

// Import errors from the builder name the checkpoint's model_type, not
// the builder's llama.
func TestImportErrorsNameModelType(t *testing.T) {
	dir := copyFixture(t, "qwen3")
	editConfig(t, dir, func(c map[string]any) { c["intermediate_size"] = 48 })
	_, err := Import(dir, t.TempDir(), ImportOptions{})
	if err == nil || !strings.Contains(err.Error(), "build the qwen3 model") || strings.Contains(err.Error(), "llama") {
		t.Errorf("error %v: want it to name qwen3, not llama", err)
	}
}

// writeStaleCheckpoint fills dir with what earlier exports leave: a
// sharded checkpoint, its index, a LoRA adapter and a file of the user's.
func writeStaleCheckpoint(t *testing.T, dir string) {
	t.Helper()
	os.MkdirAll(filepath.Join(dir, "adapter"), 0o755)
	for _, f := range []string{"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", IndexFile, "adapter/adapter_config.json", "notes.txt"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("old"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// An export into a folder holding a checkpoint is refused (nothing
// touched) unless Force, which removes the stale shards, index and
// adapter first and keeps other files.
func TestExportReplacesCheckpoint(t *testing.T) {
	onnxDir, m := importFixture(t, "qwen2")
	out := t.TempDir()
	writeStaleCheckpoint(t, out)
	_, err := Export(m, out, ExportOptions{From: onnxDir})
	if err == nil || !strings.Contains(err.Error(), "already holds a checkpoint") || !strings.Contains(err.Error(), "--force") ||
		!strings.Contains(err.Error(), "model-00001-of-00002.safetensors") || !strings.Contains(err.Error(), "adapter/") {
		t.Fatalf("export over a checkpoint: %v", err)
	}
	if _, err := os.Stat(filepath.Join(out, "model.safetensors")); err == nil {
		t.Fatal("model.safetensors written though refused")
	}
	if _, err := os.Stat(filepath.Join(out, "config.json")); err == nil {
		t.Fatal("config.json written though refused")
	}
	// Any *.safetensors makes it a checkpoint folder.
	other := t.TempDir()
	os.WriteFile(filepath.Join(other, "weights.safetensors"), []byte("x"), 0o644)
	if _, err := Export(m, other, ExportOptions{From: onnxDir}); err == nil {
		t.Error("export over weights.safetensors: no refusal")
	}

	res, err := Export(m, out, ExportOptions{From: onnxDir, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Removed, []string{"adapter", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", IndexFile}) {
		t.Errorf("removed %v", res.Removed)
	}
	for _, f := range []string{"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", IndexFile, "adapter"} {
		if _, err := os.Stat(filepath.Join(out, f)); err == nil {
			t.Errorf("stale %s left", f)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "notes.txt")); err != nil {
		t.Errorf("a file of the user's was removed: %v", err)
	}
	// What is there now is the model: it imports.
	if _, err := Import(out, t.TempDir(), ImportOptions{}); err != nil {
		t.Errorf("the replaced checkpoint does not import: %v", err)
	}
	// A second export into the same folder needs --force again.
	if _, err := Export(m, out, ExportOptions{From: onnxDir}); err == nil {
		t.Error("second export without Force: no refusal")
	}
}

// WriteTrained owns its run folder: a rerun replaces what an earlier run
// left there (stale shards, a LoRA run's adapter) without asking, and a
// run that writes no checkpoint removes an earlier one.
func TestWriteTrainedReplacesEarlierRun(t *testing.T) {
	base, m := importFixture(t, "qwen3-tied")
	run := t.TempDir()
	writeStaleCheckpoint(t, run)
	path := filepath.Join(run, "model.onnx")
	res, err := WriteTrained(path, m, nil, nil, base)
	if err != nil || res.Checkpoint == nil {
		t.Fatalf("%v %+v", err, res)
	}
	for _, f := range []string{"model-00001-of-00002.safetensors", IndexFile, "adapter"} {
		if _, err := os.Stat(filepath.Join(run, f)); err == nil {
			t.Errorf("stale %s left", f)
		}
	}
	// and again (a rerun of the finished run)
	_, m = importFixture(t, "qwen3-tied")
	if _, err := WriteTrained(path, m, nil, nil, base); err != nil {
		t.Fatalf("rerun: %v", err)
	}
	// A base without config.json: no checkpoint, and none left from before.
	os.Remove(filepath.Join(base, "config.json"))
	_, m = importFixture(t, "qwen3-tied")
	res, err = WriteTrained(path, m, nil, nil, base)
	if err != nil || res.Checkpoint != nil {
		t.Fatalf("%v %+v", err, res)
	}
	if _, err := os.Stat(filepath.Join(run, "model.safetensors")); err == nil {
		t.Error("an earlier run's model.safetensors is left beside a model.onnx it does not hold")
	}
}

// import-hf records the checkpoint it read; an adapter trained on the
// imported model names that checkpoint as its base while it holds
// weights, else the ONNX folder, saying it does not load.
func TestAdapterBase(t *testing.T) {
	ck := copyFixture(t, "qwen2")
	onnxDir := t.TempDir()
	if _, err := Import(ck, onnxDir, ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(ck)
	if got := ImportedFrom(onnxDir); got != abs {
		t.Errorf("ImportedFrom = %q, want %q", got, abs)
	}
	if base, ok := AdapterBase(onnxDir); base != abs || !ok {
		t.Errorf("AdapterBase = %q %v, want %q true", base, ok, abs)
	}
	// An export does not carry the record.
	m, err := ir.Load(filepath.Join(onnxDir, "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	hfDir := t.TempDir()
	if _, err := Export(m, hfDir, ExportOptions{From: onnxDir}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(hfDir, ImportRecord)); err == nil {
		t.Error("the export holds the import record")
	}
	// A folder holding a checkpoint itself (a train lm run's) is its own base.
	if base, ok := AdapterBase(hfDir); !ok || !filepath.IsAbs(base) {
		t.Errorf("AdapterBase(checkpoint folder) = %q %v", base, ok)
	}
	// The checkpoint moved away: the ONNX folder, which does not load.
	os.Remove(filepath.Join(ck, "model.safetensors"))
	onnxAbs, _ := filepath.Abs(onnxDir)
	if base, ok := AdapterBase(onnxDir); base != onnxAbs || ok {
		t.Errorf("AdapterBase without the checkpoint = %q %v, want %q false", base, ok, onnxAbs)
	}
}

// A LoRA run on an imported model writes an adapter whose
// base_model_name_or_path is the original checkpoint.
func TestWriteTrainedAdapterBase(t *testing.T) {
	ck := copyFixture(t, "qwen2")
	base := t.TempDir()
	if _, err := Import(ck, base, ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	m, err := ir.Load(filepath.Join(base, "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	ads, weights := loraAdapters(t, m)
	run := t.TempDir()
	res, err := WriteTrained(filepath.Join(run, "model.onnx"), m, weights, ads, base)
	if err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(ck)
	cfg := readJSON(t, filepath.Join(run, "adapter", AdapterConfig))
	if cfg["base_model_name_or_path"] != abs || res.AdapterBase != abs || !res.BaseLoads {
		t.Errorf("base_model_name_or_path %v (res %q %v), want %s", cfg["base_model_name_or_path"], res.AdapterBase, res.BaseLoads, abs)
	}
}
