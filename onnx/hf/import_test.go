package hf

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/safetensors"
)

const fixtures = "../testdata/hf"

// reference is the part of onnx/testdata/hf/*/reference.json the tests use.
type reference struct {
	StorageDType string `json:"storage_dtype"`
	Batch        struct {
		InputIDs      [][]int64 `json:"input_ids"`
		AttentionMask [][]int64 `json:"attention_mask"`
	} `json:"batch"`
	Logits struct {
		Torch [][][]float32 `json:"torch"`
	} `json:"logits"`
	Greedy struct {
		MaxNewTokens int       `json:"max_new_tokens"`
		TorchNewIDs  [][]int64 `json:"torch_new_ids"`
	} `json:"greedy"`
}

func readReference(t *testing.T, dir string) *reference {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "reference.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r reference
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("%s: %v", dir, err)
	}
	return &r
}

// prompts are the batch's rows without their left padding.
func (r *reference) prompts() [][]int64 {
	var out [][]int64
	for i, row := range r.Batch.InputIDs {
		var p []int64
		for j, id := range row {
			if r.Batch.AttentionMask[i][j] == 1 {
				p = append(p, id)
			}
		}
		out = append(out, p)
	}
	return out
}

// checkAgainstPyTorch loads an ONNX model and compares its logits (at real
// positions) and greedy continuation with PyTorch's; it returns the worst
// logit difference.
func checkAgainstPyTorch(t *testing.T, model string, ref *reference) float64 {
	t.Helper()
	m, err := lm.Load(model, lm.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	prompts := ref.prompts()
	lg, pad, err := m.Forward(context.Background(), prompts, 0)
	if err != nil {
		t.Fatal(err)
	}
	T, V := len(ref.Batch.InputIDs[0]), m.Layout.Vocab
	var worst float64
	for r := range prompts {
		for j := pad[r]; j < T; j++ {
			for v := 0; v < V; v++ {
				worst = math.Max(worst, math.Abs(float64(lg[(r*T+j)*V+v]-ref.Logits.Torch[r][j][v])))
			}
		}
	}
	if worst > 1e-5 {
		t.Errorf("%s: logits differ from PyTorch by %.3g (> 1e-5)", model, worst)
	}
	comps, _, err := m.Generate(context.Background(), prompts, lm.GenerateOptions{MaxNewTokens: ref.Greedy.MaxNewTokens, EOS: []int64{2}})
	if err != nil {
		t.Fatal(err)
	}
	for r, c := range comps {
		if !slices.Equal(c.Tokens, ref.Greedy.TorchNewIDs[r]) {
			t.Errorf("%s row %d: greedy %v, PyTorch %v", model, r, c.Tokens, ref.Greedy.TorchNewIDs[r])
		}
	}
	return worst
}

// Every fixture checkpoint (Qwen2 tied in BF16, Qwen3 untied in F32 and
// sharded, Qwen3 tied in F16, Mistral with a sliding window in BF16), as
// saved and after a few PyTorch training steps, imports to a model whose
// logits are PyTorch's within 1e-5 and whose greedy ids are PyTorch's.
func TestImportMatchesPyTorch(t *testing.T) {
	for _, name := range []string{"qwen2", "qwen3", "qwen3-tied", "mistral"} {
		for _, variant := range []string{"", "trained"} {
			dir := filepath.Join(fixtures, name, variant)
			t.Run(name+"/"+variant, func(t *testing.T) {
				ref := readReference(t, dir)
				out := t.TempDir()
				res, err := Import(dir, out, ImportOptions{})
				if err != nil {
					t.Fatal(err)
				}
				worst := checkAgainstPyTorch(t, out, ref)
				t.Logf("%s %s (%s, %d params, unused %v): max |Δ logits| %.2g", name, variant, ref.StorageDType, res.Params, res.Unused, worst)
			})
		}
	}
}

// Greedy decoding with transformers' repetition_penalty on every fixture
// checkpoint gives transformers' ids (penalty_reference.json, written by
// scripts/fixtures/hf_penalty_reference.py, whose penalty changes every
// model's plain greedy continuation).
func TestImportedRepetitionPenaltyMatchesTransformers(t *testing.T) {
	for _, name := range []string{"qwen2", "qwen3", "qwen3-tied", "mistral"} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(fixtures, name)
			b, err := os.ReadFile(filepath.Join(dir, "penalty_reference.json"))
			if err != nil {
				t.Fatal(err)
			}
			var want struct {
				Penalty      float64   `json:"repetition_penalty"`
				MaxNewTokens int       `json:"max_new_tokens"`
				NewIDs       [][]int64 `json:"new_ids"`
				PlainNewIDs  [][]int64 `json:"plain_new_ids"`
			}
			if err := json.Unmarshal(b, &want); err != nil {
				t.Fatal(err)
			}
			out := t.TempDir()
			if _, err := Import(dir, out, ImportOptions{}); err != nil {
				t.Fatal(err)
			}
			m, err := lm.Load(out, lm.LoadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			prompts := readReference(t, dir).prompts()
			for _, c := range []struct {
				penalty float64
				want    [][]int64
			}{{want.Penalty, want.NewIDs}, {1, want.PlainNewIDs}} {
				o := lm.GenerateOptions{MaxNewTokens: want.MaxNewTokens, EOS: []int64{2}, Sampling: lm.Sampling{RepetitionPenalty: c.penalty}}
				comps, _, err := m.Generate(context.Background(), prompts, o)
				if err != nil {
					t.Fatal(err)
				}
				for r, comp := range comps {
					if !slices.Equal(comp.Tokens, c.want[r]) {
						t.Errorf("repetition_penalty %g row %d: greedy %v, transformers %v", c.penalty, r, comp.Tokens, c.want[r])
					}
				}
			}
		})
	}
}

// External data: the weights streamed to model.onnx.data give the same model.
func TestImportExternalData(t *testing.T) {
	dir := filepath.Join(fixtures, "qwen3")
	out := t.TempDir()
	res, err := Import(dir, out, ImportOptions{ExternalData: "always"})
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(out, "model.onnx.data"))
	if err != nil || !res.External {
		t.Fatalf("no external data: %v", err)
	}
	if st.Size() < res.Params*4 {
		t.Fatalf("model.onnx.data has %d bytes for %d weights", st.Size(), res.Params)
	}
	checkAgainstPyTorch(t, out, readReference(t, dir))
}

// The PyTorch Llama fixture's parameters are a Llama checkpoint too.
func TestImportLlama(t *testing.T) {
	src := filepath.Join("..", "testdata", "pytorch", "llama")
	dir := t.TempDir()
	for from, to := range map[string]string{"config.json": "config.json", "params.safetensors": "model.safetensors"} {
		b, err := os.ReadFile(filepath.Join(src, from))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, to), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := t.TempDir()
	if _, err := Import(dir, out, ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(src, "reference.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ref reference
	if err := json.Unmarshal(b, &ref); err != nil {
		t.Fatal(err)
	}
	worst := checkAgainstPyTorch(t, out, &ref)
	t.Logf("llama: max |Δ logits| %.2g", worst)
}

// copyFixture copies a fixture checkpoint to a temp dir for editing.
func copyFixture(t *testing.T, name string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(filepath.Join(fixtures, name))); err != nil {
		t.Fatal(err)
	}
	return dir
}

// editIndex points the first tensor of dir's shard index at shard.
func editIndex(t *testing.T, dir, shard string) {
	t.Helper()
	p := filepath.Join(dir, IndexFile)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var ix struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(b, &ix); err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(ix.WeightMap))
	for n := range ix.WeightMap {
		names = append(names, n)
	}
	slices.Sort(names)
	ix.WeightMap[names[0]] = shard
	b, _ = json.Marshal(ix)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func editConfig(t *testing.T, dir string, edit func(map[string]any)) {
	t.Helper()
	p := filepath.Join(dir, "config.json")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	edit(c)
	b, _ = json.Marshal(c)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// What the builder cannot reproduce is refused by name.
func TestImportRefuses(t *testing.T) {
	cases := []struct {
		fixture string
		edit    func(dir string, c map[string]any)
		want    string
	}{
		{"qwen2", func(_ string, c map[string]any) { c["model_type"] = "gemma" }, `model_type "gemma" is not supported; tagpr imports llama, mistral, qwen2, qwen3`},
		{"qwen2", func(_ string, c map[string]any) { c["num_experts"] = 8 }, `field "num_experts" is not supported`},
		{"qwen2", func(_ string, c map[string]any) { c["use_mrope"] = true }, `field "use_mrope" is not supported`},
		{"qwen2", func(_ string, c map[string]any) {
			c["rope_scaling"] = map[string]any{"rope_type": "yarn", "factor": 4}
		}, `rope_scaling {"factor":4,"rope_type":"yarn"}: rotary scaling of type "yarn" is not supported`},
		{"qwen3", func(_ string, c map[string]any) { c["use_sliding_window"] = true }, "use_sliding_window true"},
		{"qwen3", func(_ string, c map[string]any) { c["layer_types"] = []string{"full_attention", "sliding_attention"} }, `layer_types[1] is "sliding_attention"`},
		{"mistral", func(_ string, c map[string]any) { c["hidden_act"] = "gelu" }, `hidden_act "gelu" is not supported`},
		{"qwen2", func(_ string, c map[string]any) { c["quantization_config"] = map[string]any{"bits": 4} }, "quantization_config: quantized checkpoints are not supported"},
		{"qwen2", func(_ string, c map[string]any) { c["tie_word_embeddings"] = false }, `the checkpoint has no tensor "lm_head.weight"`},
		{"qwen3", func(_ string, c map[string]any) { c["intermediate_size"] = 48 }, `tensor "model.layers.0.mlp.gate_proj.weight" (model-00002-of-00004.safetensors) has shape [64 32]; config.json implies [48 32]`},
		{"qwen3", func(dir string, _ map[string]any) { os.Remove(filepath.Join(dir, "model-00003-of-00004.safetensors")) }, "model-00003-of-00004.safetensors"},
		// An index naming "." or ".." read the folder (or its parent) as
		// a shard: "read safetensors .: no such device".
		{"qwen3", func(dir string, _ map[string]any) { editIndex(t, dir, "..") }, `model.safetensors.index.json: shard ".." is not a file name in the folder`},
		{"qwen3", func(dir string, _ map[string]any) { editIndex(t, dir, ".") }, `model.safetensors.index.json: shard "." is not a file name in the folder`},
		{"qwen3", func(dir string, _ map[string]any) { editIndex(t, dir, "model-00009-of-00009.safetensors") }, "model.safetensors.index.json lists shard model-00009-of-00009.safetensors, which the folder does not have"},
		{"mistral", func(dir string, _ map[string]any) { os.Remove(filepath.Join(dir, "model.safetensors")) }, "has neither model.safetensors nor model.safetensors.index.json"},
		{"qwen2", func(_ string, c map[string]any) { c["rope_theta"] = -1.0 }, "rope_theta -1, want a finite number > 0"},
		{"qwen2", func(_ string, c map[string]any) { c["rms_norm_eps"] = -1e-6 }, "norm_eps (rms_norm_eps, layer_norm_epsilon) -1e-06, want a finite number > 0"},
		// Sizes far beyond the weights are refused before anything is
		// allocated from them (these ran out of memory in the builder).
		{"qwen2", func(_ string, c map[string]any) { c["vocab_size"] = 100_000_000_000 }, "config.json implies at least 3.2e+12 weights (vocab_size 100000000000"},
		{"qwen3", func(_ string, c map[string]any) { c["intermediate_size"] = 10_000_000_000 }, "but the checkpoint's tensors hold"},
		{"qwen2", func(_ string, c map[string]any) { c["num_hidden_layers"] = 100_000 }, "num_hidden_layers 100000"},
	}
	for _, c := range cases {
		dir := copyFixture(t, c.fixture)
		editConfig(t, dir, func(m map[string]any) { c.edit(dir, m) })
		_, err := Import(dir, t.TempDir(), ImportOptions{})
		if err == nil {
			t.Errorf("%s: want an error saying %q", c.fixture, c.want)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %q does not say %q", c.fixture, err, c.want)
		}
	}
	// use_mrope false (or null) changes nothing: imported.
	dir0 := copyFixture(t, "qwen2")
	editConfig(t, dir0, func(c map[string]any) { c["use_mrope"] = false })
	if _, err := Import(dir0, t.TempDir(), ImportOptions{}); err != nil {
		t.Errorf("use_mrope false: %v", err)
	}
	// An extra tensor the model has no place for.
	dir := copyFixture(t, "qwen3-tied")
	editConfig(t, dir, func(c map[string]any) { c["num_hidden_layers"] = 1 })
	_, err := Import(dir, t.TempDir(), ImportOptions{})
	if err == nil || !strings.Contains(err.Error(), `tensor "model.layers.1.`) || !strings.Contains(err.Error(), "has no place") {
		t.Errorf("extra layer: %v", err)
	}
}

// A random Qwen2-shaped checkpoint imports and runs (the benchmark's
// generator at a small size, in every stored dtype).
// TestImportReportsProgress: an import reports its weights' conversion
// with and without external data, ending at its total (an import under
// 1 GiB, converted in memory, reported nothing: seconds of silence).
func TestImportReportsProgress(t *testing.T) {
	for _, tied := range []bool{false, true} {
		rc := RandomCheckpoint{Layers: 2, Hidden: 32, Heads: 4, KVHeads: 2, Intermediate: 48, Vocab: 64, MaxPositions: 32, Tied: tied, DType: "BF16", Seed: 3}
		dir := t.TempDir()
		if err := rc.Write(dir); err != nil {
			t.Fatal(err)
		}
		for _, ext := range []string{"never", "always"} {
			var calls int
			var done, total int64
			res, err := Import(dir, t.TempDir(), ImportOptions{ExternalData: ext, Progress: func(d, n int64) { calls, done, total = calls+1, d, n }})
			if err != nil {
				t.Fatal(err)
			}
			if calls < 2 || done != total || total != res.Params*4 {
				t.Errorf("tied %v, external data %s: %d reports, the last %d of %d bytes; want several, ending at %d", tied, ext, calls, done, total, res.Params*4)
			}
		}
	}
}

func TestRandomCheckpointImports(t *testing.T) {
	for _, dt := range []string{"BF16", "F16", "F32"} {
		rc := RandomCheckpoint{Layers: 2, Hidden: 32, Heads: 4, KVHeads: 2, Intermediate: 48, Vocab: 64, MaxPositions: 32, Tied: dt != "F32", DType: dt, Seed: 3}
		dir, out := t.TempDir(), t.TempDir()
		if err := rc.Write(dir); err != nil {
			t.Fatal(err)
		}
		res, err := Import(dir, out, ImportOptions{ExternalData: "always"})
		if err != nil {
			t.Fatal(err)
		}
		if res.Params != rc.Params() {
			t.Errorf("%s: imported %d parameters, wrote %d", dt, res.Params, rc.Params())
		}
		m, err := lm.Load(out, lm.LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		lg, _, err := m.Forward(context.Background(), [][]int64{{1, 2, 3}}, 0)
		m.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range lg {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Fatalf("%s: logit %v", dt, v)
			}
		}
	}
}

// A folder holding both model.safetensors and a shard index imports
// model.safetensors, as transformers loads it (it looks for the single
// file first): the index won, so a stale sharded checkpoint beside a new
// single file imported other weights than transformers uses, silently.
func TestImportPrefersSingleFileAsTransformers(t *testing.T) {
	dir := copyFixture(t, "qwen3/trained") // sharded, trained weights
	ck, err := OpenCheckpoint(filepath.Join(fixtures, "qwen3"))
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	var tensors []safetensors.Tensor
	for _, name := range ck.Names() {
		f, e, _ := ck.Lookup(name)
		b, err := f.Bytes(name)
		if err != nil {
			t.Fatal(err)
		}
		tensors = append(tensors, safetensors.Tensor{Name: name, DType: e.DType, Shape: e.Shape, Data: b})
	}
	if err := safetensors.Write(filepath.Join(dir, "model.safetensors"), tensors, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	if _, err := Import(dir, out, ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	// The untrained checkpoint's logits: model.safetensors was read.
	checkAgainstPyTorch(t, out, readReference(t, filepath.Join(fixtures, "qwen3")))
}

// IsCheckpoint and Checkpoint.Files: the weight files Import reads, one
// model.safetensors or the index with its shards; a folder with only an
// ONNX model, or nothing, is no checkpoint.
func TestCheckpointFiles(t *testing.T) {
	for _, c := range []struct {
		name string
		want []string
	}{
		{"qwen2", []string{"model.safetensors"}},
		{"qwen3", nil}, // filled from the folder: the index and every shard
	} {
		dir := filepath.Join(fixtures, c.name)
		if !IsCheckpoint(dir) {
			t.Fatalf("%s is not a checkpoint", dir)
		}
		want := c.want
		if want == nil {
			shards, _ := filepath.Glob(filepath.Join(dir, "model-*.safetensors"))
			for _, s := range shards {
				want = append(want, filepath.Base(s))
			}
			want = append(want, IndexFile)
			slices.Sort(want)
			if len(shards) < 2 {
				t.Fatalf("%s: %d shards; the test wants a sharded checkpoint", dir, len(shards))
			}
		}
		ck, err := OpenCheckpoint(dir)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, f := range ck.Files() {
			got = append(got, filepath.Base(f))
		}
		ck.Close()
		if !slices.Equal(got, want) {
			t.Errorf("%s: files %v, want %v", c.name, got, want)
		}
	}
	if IsCheckpoint(filepath.Join("..", "testdata", "pytorch", "qwen2-chat")) || IsCheckpoint(t.TempDir()) {
		t.Error("an ONNX model's folder or an empty one taken for a checkpoint")
	}
}
