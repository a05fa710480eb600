package lm

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ortgo "github.com/yalue/onnxruntime_go"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/onnxpb"
	"github.com/tagpr/tagpr/onnx/ort"
)

func builtIO(t *testing.T, c Config) ([]ort.IOInfo, []ort.IOInfo) {
	t.Helper()
	pm, err := Build(c)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ir.Marshal(pm)
	if err != nil {
		t.Fatal(err)
	}
	ins, outs, err := ortgo.GetInputOutputInfoWithONNXData(b)
	if err != nil {
		t.Fatal(err)
	}
	return ins, outs
}

func TestReadLayoutOfBuiltins(t *testing.T) {
	c := testConfigs()["llama"]
	ins, outs := builtIO(t, c)
	lay, err := ReadLayout("m", ins, outs, CheckOptions{TokenizerVocab: c.Vocab})
	if err != nil {
		t.Fatal(err)
	}
	want := Layout{Layers: 2, KVHeads: 2, HeadDim: 16, Vocab: 101, HasPositionIDs: true, Float: "float32"}
	if lay.Layers != want.Layers || lay.KVHeads != want.KVHeads || lay.HeadDim != want.HeadDim || lay.Vocab != want.Vocab ||
		!lay.HasPositionIDs || lay.Float != "float32" || len(lay.Extra) != 0 {
		t.Fatalf("layout %+v, want %+v", lay, want)
	}
}

// Every refusal names the input or output and what was expected.
func TestReadLayoutRefusals(t *testing.T) {
	c := testConfigs()["llama"]
	ins, outs := builtIO(t, c)
	without := func(l []ort.IOInfo, name string) []ort.IOInfo {
		var out []ort.IOInfo
		for _, v := range l {
			if v.Name != name {
				out = append(out, v)
			}
		}
		return out
	}
	with := func(l []ort.IOInfo, name string, f func(*ort.IOInfo)) []ort.IOInfo {
		out := append([]ort.IOInfo(nil), l...)
		for i := range out {
			if out[i].Name == name {
				out[i].Dimensions = append(ortgo.Shape(nil), out[i].Dimensions...)
				f(&out[i])
			}
		}
		return out
	}
	var noPast []ort.IOInfo
	for _, v := range ins {
		if !strings.HasPrefix(v.Name, "past_") {
			noPast = append(noPast, v)
		}
	}
	for _, tc := range []struct {
		name      string
		ins, outs []ort.IOInfo
		opts      CheckOptions
		want      []string
	}{
		{"no attention_mask", without(ins, AttentionMask), outs, CheckOptions{}, []string{`missing input "attention_mask"`, "int64"}},
		{"int32 input_ids", with(ins, InputIDs, func(v *ort.IOInfo) { v.DataType = ortgo.TensorElementDataTypeInt32 }), outs, CheckOptions{},
			[]string{`input "input_ids"`, "int32", "want int64"}},
		{"rank-3 position_ids", with(ins, PositionIDs, func(v *ort.IOInfo) { v.Dimensions = append(v.Dimensions, 1) }), outs, CheckOptions{},
			[]string{`input "position_ids"`, "rank 3", "want rank 2"}},
		{"no logits", ins, without(outs, Logits), CheckOptions{}, []string{`missing output "logits"`}},
		{"float16 logits", ins, with(outs, Logits, func(v *ort.IOInfo) { v.DataType = ortgo.TensorElementDataTypeFloat16 }), CheckOptions{},
			[]string{`output "logits"`, "float16", "want float32"}},
		{"no present.1.value", ins, without(outs, PresentValue(1)), CheckOptions{}, []string{`missing output "present.1.value"`}},
		{"float64 past in a float32 model", with(ins, PastKey(1), func(v *ort.IOInfo) { v.DataType = ortgo.TensorElementDataTypeDouble }), outs, CheckOptions{},
			[]string{`input "past_key_values.1.key"`, "float64", "want float32"}},
		{"no cache", noPast, outs, CheckOptions{}, []string{`missing input "past_key_values.0.key"`, "text-generation-with-past"}},
		{"vocab below tokenizer", ins, outs, CheckOptions{TokenizerVocab: 500}, []string{`output "logits"`, "vocab 101", "500"}},
		{"config disagrees", ins, outs, CheckOptions{Config: &HFConfig{NumAttentionHeads: 4, NumKeyValueHeads: 4, HiddenSize: 64}},
			[]string{"kv heads 2", "config.json says 4"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadLayout("bad.onnx", tc.ins, tc.outs, tc.opts)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if !strings.Contains(err.Error(), "bad.onnx") {
				t.Errorf("error %q does not name the model", err)
			}
		})
	}
}

// Load refuses files that are not models, folders without one, and models
// too small for the tokenizer; Generate refuses unbound extra inputs.
func TestLoadRefusals(t *testing.T) {
	dir := t.TempDir()
	c := testConfigs()["gpt2"]
	if _, err := WriteModelDir(c, dir, false); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir, LoadOptions{TokenizerVocab: 1000}); err == nil || !strings.Contains(err.Error(), "smaller than the tokenizer's 1000") {
		t.Errorf("vocab check: %v", err)
	}
	m, err := Load(dir, LoadOptions{TokenizerVocab: c.Vocab})
	if err != nil {
		t.Fatal(err)
	}
	if m.Config == nil || m.Config.ModelType != "gpt2" || m.DefaultPad() != 0 || len(m.DefaultEOS()) != 1 {
		t.Errorf("configs not read: %+v", m.Config)
	}
	m.Close()
	bad := filepath.Join(dir, "junk.onnx")
	os.WriteFile(bad, []byte("not a model"), 0o644)
	if _, err := Load(bad, LoadOptions{}); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("junk file: %v", err)
	}
	if _, err := Load(t.TempDir(), LoadOptions{}); err == nil || !strings.Contains(err.Error(), "model.onnx") {
		t.Errorf("empty folder: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "config.json"), []byte("{bad json"), 0o644)
	if _, err := Load(dir, LoadOptions{}); err == nil || !strings.Contains(err.Error(), "config.json") {
		t.Errorf("broken config.json: %v", err)
	}

	pm, _ := Build(c)
	if _, err := WeightsAsInputs(pm, []string{"lm_head.weight"}); err == nil {
		t.Error("gpt2 ties lm_head to the embedding; lm_head.weight should not exist")
	}
	if _, err := WeightsAsInputs(pm, []string{"model.norm.weight"}); err != nil {
		t.Fatal(err)
	}
	b, _ := ir.Marshal(pm)
	m2, err := LoadBytes(b, "unbound", LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	_, _, err = m2.Generate(context.Background(), testPrompts, GenerateOptions{MaxNewTokens: 2})
	if err == nil || !strings.Contains(err.Error(), `"model.norm.weight"`) {
		t.Errorf("unbound weight input: %v", err)
	}
	for _, o := range []GenerateOptions{{MaxNewTokens: 0}, {MaxNewTokens: 2, Sampling: Sampling{TopP: 2}}, {MaxNewTokens: 2, StopStrings: []string{"x"}}} {
		if _, _, err := m2.Generate(context.Background(), testPrompts, o); err == nil {
			t.Errorf("options %+v accepted", o)
		}
	}
}

// The float64 build is the same model in double precision, and ORT runs it.
func TestBuiltinFloat64(t *testing.T) {
	for name, c := range testConfigs() {
		t.Run(name, func(t *testing.T) {
			ref := buildModel(t, c)
			want, _, err := ref.Forward(context.Background(), testPrompts[:1], 0)
			if err != nil {
				t.Fatal(err)
			}
			c.DType = "float64"
			pm, err := Build(c)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := ir.Marshal(pm)
			sess, err := ort.NewSession(b, "float64 "+name, ort.Options{IntraOpThreads: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer sess.Destroy()
			p := testPrompts[0]
			T := int64(len(p))
			in := map[string]ort.Value{}
			mk := func(name string, shape []int64, data []int64) {
				v, err := ort.NewTensor(shape, data)
				if err != nil {
					t.Fatal(err)
				}
				in[name] = v
			}
			mk(InputIDs, []int64{1, T}, p)
			mask, pos := make([]int64, T), make([]int64, T)
			for i := range mask {
				mask[i], pos[i] = 1, int64(i)
			}
			mk(AttentionMask, []int64{1, T}, mask)
			mk(PositionIDs, []int64{1, T}, pos)
			kv := c.Defaults()
			for l := 0; l < c.Layers; l++ {
				for _, n := range []string{PastKey(l), PastValue(l)} {
					v, err := ort.NewTensor([]int64{1, int64(kv.KVHeads), 0, int64(kv.HeadDim)}, []float64{})
					if err != nil {
						t.Fatal(err)
					}
					in[n] = v
				}
			}
			out, err := sess.Run(in, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer out.Destroy()
			got, err := ort.Data[float64](Logits, out.Get(Logits))
			if err != nil {
				t.Fatal(err)
			}
			var d float64
			for i := range got {
				d = max(d, abs(got[i]-float64(want[i])))
			}
			t.Logf("max |float64 - float32| logits = %.2e", d)
			if d > 1e-4 {
				t.Errorf("float64 build differs from float32 by %.3e", d)
			}
		})
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

// An Optimum merged decoder's use_cache_branch is fed false on the first
// step and true after: here a wrong value would move 1000 onto token 5.
func TestUseCacheBranchFed(t *testing.T) {
	c := testConfigs()["llama"]
	pm, err := Build(c)
	if err != nil {
		t.Fatal(err)
	}
	g := ir.WrapGraph(pm.Graph)
	for _, n := range pm.Graph.Node {
		for i, o := range n.Output {
			if o == Logits {
				n.Output[i] = "logits_raw"
			}
		}
	}
	g.Rescan()
	g.Input(UseCacheBranch, ir.Bool, 1)
	past := g.Op("Shape", []string{PastKey(0)}, ir.AttrInt("start", 2), ir.AttrInt("end", 3))
	hasPast := g.Op("Greater", []string{past, g.AddNode(&onnxpb.NodeProto{OpType: "Constant", Output: []string{""},
		Attribute: []ir.Attribute{ir.AttrTensor("value", ir.Vector("", int64(0)))}}).Output[0]})
	wrong := g.Op("Cast", []string{g.Op("Xor", []string{hasPast, UseCacheBranch})}, ir.AttrInt("to", int64(ir.Float)))
	hot := make([]float32, c.Vocab)
	hot[5] = 1000
	bump := g.Op("Mul", []string{wrong, g.Initializer("bump", ir.Vector("", hot...))})
	g.Node("Add", []string{"logits_raw", bump}, []string{Logits})
	b, err := ir.Marshal(pm)
	if err != nil {
		t.Fatal(err)
	}
	m, err := LoadBytes(b, "merged-style", LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if !m.Layout.HasCacheBranch || len(m.Layout.Extra) != 0 {
		t.Fatalf("layout %+v", m.Layout)
	}
	checkCacheMatchesFull(t, m, testPrompts)
	comps, _, err := m.Generate(context.Background(), testPrompts, GenerateOptions{MaxNewTokens: 4, IgnoreEOS: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range comps {
		for _, tok := range c.Tokens {
			if tok == 5 {
				t.Fatalf("token 5 generated: use_cache_branch was fed wrong (%v)", c.Tokens)
			}
		}
	}
}

// logits_to_keep is added only where the logits come from a MatMul of the
// hidden states, and cuts the logits to the last k positions.
func TestLogitsToKeep(t *testing.T) {
	c := testConfigs()["gpt2"]
	pm, err := Build(c)
	if err != nil {
		t.Fatal(err)
	}
	if !addLogitsToKeep(pm) || addLogitsToKeep(pm) {
		t.Fatal("want the edit applied once")
	}
	if err := ir.Validate(pm); err != nil {
		t.Fatalf("edited graph invalid: %v", err)
	}
	// A model whose logits come from another op is left alone.
	g := ir.NewGraph("not_matmul")
	g.Input("x", ir.Float, "b", "t", 4)
	g.Node("Relu", []string{"x"}, []string{Logits})
	g.Output(Logits, ir.Float, "b", "t", 4)
	other, err := ir.NewModel(g, 0)
	if err != nil {
		t.Fatal(err)
	}
	if addLogitsToKeep(other) {
		t.Error("edited a graph without a MatMul head")
	}
	// Generation keeps one position; Forward keeps all (the other tests
	// compare the two); the session's logits really are cut.
	m := buildModel(t, c)
	m.mu.Lock()
	defer m.mu.Unlock()
	gen, err := m.newGen(1, 1, 5)
	if err != nil {
		t.Fatal(err)
	}
	defer gen.release()
	copy(gen.ids(5), []int64{1, 2, 3, 4, 5})
	var d time.Duration
	lg, K, err := gen.forward(context.Background(), 5, 2, &d)
	if err != nil {
		t.Fatal(err)
	}
	if K != 2 || len(lg) < 2*c.Vocab {
		t.Fatalf("kept %d positions", K)
	}
}

// A folder without an ONNX model is refused; one holding a Hugging Face
// checkpoint says how to convert it.
func TestResolveModelPathFolders(t *testing.T) {
	empty := t.TempDir()
	if _, err := ResolveModelPath(empty); err == nil || !strings.Contains(err.Error(), "without model.onnx") {
		t.Fatalf("empty folder: %v", err)
	}
	hf := t.TempDir()
	os.WriteFile(filepath.Join(hf, "config.json"), []byte(`{"model_type":"qwen2"}`), 0o644)
	os.WriteFile(filepath.Join(hf, "model-00001-of-00002.safetensors"), nil, 0o644)
	_, err := ResolveModelPath(hf)
	if err == nil || !strings.Contains(err.Error(), "Hugging Face checkpoint") || !strings.Contains(err.Error(), "tagpr model import-hf "+hf) {
		t.Fatalf("checkpoint folder: %v", err)
	}
	onnxDir := t.TempDir()
	os.MkdirAll(filepath.Join(onnxDir, "onnx"), 0o755)
	os.WriteFile(filepath.Join(onnxDir, "onnx", "model.onnx"), nil, 0o644)
	if p, err := ResolveModelPath(onnxDir); err != nil || p != filepath.Join(onnxDir, "onnx", "model.onnx") {
		t.Fatalf("transformers.js layout: %q, %v", p, err)
	}
}
