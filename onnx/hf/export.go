package hf

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/google/renameio/v2"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/onnxpb"
	"github.com/tagpr/tagpr/onnx/safetensors"
	"github.com/tagpr/tagpr/onnx/train"
)

// ExportOptions configure Export.
type ExportOptions struct {
	// From is the folder whose config.json, generation_config.json and
	// tokenizer files go with the weights (the base model's folder).
	From string
	// Force replaces a checkpoint already in the output folder: the
	// files that would be stale beside the new model.safetensors or
	// shadow it (StaleCheckpointFiles: model*.safetensors shards,
	// model.safetensors.index.json, adapter/) are removed first. Without
	// it, Export refuses a folder that holds a checkpoint
	// (CheckpointFiles).
	Force bool
}

// Exported describes a written checkpoint.
type Exported struct {
	Dir     string
	Tensors int
	Tied    map[string]string // left to tie_word_embeddings
	Copied  []string
	Removed []string // stale checkpoint files removed first (Force)
}

// dtypes maps ONNX element types to safetensors'.
var dtypes = map[ir.DataType]string{ir.Float: "F32", ir.Double: "F64", ir.Float16: "F16", ir.BFloat16: "BF16"}

// Exportable says why a model's weights cannot be written as a
// transformers checkpoint, or nil: every weight must get a Hugging Face
// name from the graph (lm.MapHFNamesFor: an lm head equal to the
// embedding stays untied when from's config.json says
// tie_word_embeddings false), and from holds a config.json that
// transformers can read.
func Exportable(m *onnxpb.ModelProto, from string) (*lm.HFNames, map[string]any, error) {
	hc, err := lm.ReadHFConfig(filepath.Join(from, "config.json"))
	if err != nil {
		return nil, nil, err
	}
	names, err := lm.MapHFNamesFor(m, hc)
	if err != nil {
		return nil, nil, err
	}
	if len(names.Unnamed) > 0 {
		return nil, nil, fmt.Errorf("weights %s are used by nodes whose names carry no module path, so they have no Hugging Face name", examples(names.Unnamed, 4))
	}
	if len(names.Params) == 0 {
		return nil, nil, fmt.Errorf("the model has no weight to export")
	}
	if err := configFitsWeights(hc, names.Params, filepath.Join(from, "config.json")); err != nil {
		return nil, nil, err
	}
	path := filepath.Join(from, "config.json")
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("a checkpoint needs config.json: %w", err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(b, &cfg); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	if bi, ok := cfg["tagpr_builtin"].(map[string]any); ok && bi["arch"] == string(lm.GPT2) {
		return nil, nil, fmt.Errorf("tagpr's built-in gpt2 (separate q/k/v, fc_in/fc_out) has no transformers class with its weight names; export the llama built-in or an Optimum GPT-2")
	}
	return names, cfg, nil
}

// configFitsWeights checks the attention and MLP sizes config.json gives
// against the weights' shapes: a checkpoint whose config disagrees with its
// tensors (num_attention_heads 4 for 2 heads' q_proj) is refused by
// transformers, or, where the shapes happen to agree, computes another
// function.
func configFitsWeights(hc *lm.HFConfig, params []lm.HFParam, path string) error {
	if hc == nil || hc.HiddenSize <= 0 || hc.NumAttentionHeads <= 0 {
		return nil // GPT-2 names, or sizes transformers derives elsewhere
	}
	headDim := hc.HeadDim
	if headDim == 0 {
		headDim = hc.HiddenSize / hc.NumAttentionHeads
	}
	kv := hc.NumKeyValueHeads
	if kv == 0 {
		kv = hc.NumAttentionHeads
	}
	h := int64(hc.HiddenSize)
	want := []struct {
		suffix string
		shape  []int64
	}{
		{".self_attn.q_proj.weight", []int64{int64(hc.NumAttentionHeads * headDim), h}},
		{".self_attn.k_proj.weight", []int64{int64(kv * headDim), h}},
		{".self_attn.v_proj.weight", []int64{int64(kv * headDim), h}},
	}
	if hc.IntermediateSize > 0 {
		want = append(want, struct {
			suffix string
			shape  []int64
		}{".mlp.gate_proj.weight", []int64{int64(hc.IntermediateSize), h}})
	}
	for _, w := range want {
		for _, p := range params {
			if strings.HasSuffix(p.Name, w.suffix) && !slices.Equal(p.Shape, w.shape) {
				return fmt.Errorf("%s: hidden_size %d, num_attention_heads %d, num_key_value_heads %d, head_dim %d, intermediate_size %d make %s %v, but the model's is %v: correct config.json to the model's sizes",
					path, hc.HiddenSize, hc.NumAttentionHeads, kv, headDim, hc.IntermediateSize, p.Name, w.shape, p.Shape)
			}
		}
	}
	return nil
}

func examples(s []string, n int) string {
	if len(s) <= n {
		return strings.Join(s, ", ")
	}
	return strings.Join(s[:n], ", ") + fmt.Sprintf(", … (%d in all)", len(s))
}

// Export writes m (a causal LM in the Optimum layout, weights loaded) as a
// transformers checkpoint in out: model.safetensors with the Hugging Face
// names and layouts of lm.MapHFNames, config.json from o.From with
// tie_word_embeddings and dtype set to what was written, and
// generation_config.json and the tokenizer files (SideFiles) from o.From.
func Export(m *onnxpb.ModelProto, out string, o ExportOptions) (*Exported, error) {
	names, cfg, err := Exportable(m, o.From)
	if err != nil {
		return nil, fmt.Errorf("export-hf: %w", err)
	}
	inits := map[string]*onnxpb.TensorProto{}
	for _, t := range m.GetGraph().GetInitializer() {
		inits[t.GetName()] = t
	}
	params := append([]lm.HFParam{}, names.Params...)
	// A parameter whose initializer another one shares (Optimum stores
	// tensors with equal values once: a fresh model's zero biases and unit
	// norms) is its own tensor in transformers: left out, from_pretrained
	// would initialize it anew. Only the lm head tied to the embedding is
	// left to tie_word_embeddings.
	for name, to := range names.Tied {
		if name == "lm_head.weight" {
			continue
		}
		p, _ := names.Param(to)
		p.Name = name
		params = append(params, p)
	}
	sort.Slice(params, func(i, j int) bool { return params[i].Name < params[j].Name })
	var tensors []safetensors.Tensor
	dtype := ""
	for _, p := range params {
		t := inits[p.Init]
		dt, ok := dtypes[t.GetDataType()]
		if !ok {
			return nil, fmt.Errorf("export-hf: %s (initializer %q) is %s, not a float type", p.Name, p.Init, t.GetDataType())
		}
		if dtype == "" {
			dtype = dt
		}
		raw, err := ir.RawBytes(t)
		if err != nil {
			return nil, fmt.Errorf("export-hf: %s: %w", p.Name, err)
		}
		if i, kind := firstNonFinite(dt, raw); i >= 0 {
			if p.Transposed { // the initializer is [in, out]; name the element in the checkpoint's [out, in]
				cols := t.GetDims()[1]
				i = (i%cols)*t.GetDims()[0] + i/cols
			}
			where := nonFinite(p.Name, p.Shape, i, kind)
			if p.Init != p.Name {
				where += fmt.Sprintf(" (initializer %q)", p.Init)
			}
			return nil, fmt.Errorf("export-hf: %s: the model's weights are damaged (a diverged run, or imported from a damaged checkpoint) and tagpr writes no NaN or Inf; export an earlier model or checkpoint whose weights are finite, or retrain", where)
		}
		st := safetensors.Tensor{Name: p.Name, DType: dt, Shape: p.Shape, Data: raw}
		if p.Transposed {
			st.Data, st.Fill = nil, transposeInto(raw, t.GetDims(), int(ir.ElemSize(t.GetDataType())))
		}
		tensors = append(tensors, st)
	}
	if have, err := CheckpointFiles(out); err != nil {
		return nil, fmt.Errorf("export-hf: %w", err)
	} else if len(have) > 0 && !o.Force {
		return nil, fmt.Errorf("export-hf: %s already holds a checkpoint (%s); pass --force to replace it (model*.safetensors, %s and adapter/ are removed first)", out, strings.Join(have, ", "), IndexFile)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, fmt.Errorf("export-hf: %w", err)
	}
	var removed []string
	if o.Force {
		if removed, err = removeStale(out, o.From); err != nil {
			return nil, fmt.Errorf("export-hf: %w", err)
		}
	}
	_, tied := names.Tied["lm_head.weight"]
	cfg["tie_word_embeddings"] = tied
	delete(cfg, "tagpr_builtin")
	dtypeName := map[string]string{"F32": "float32", "F64": "float64", "F16": "float16", "BF16": "bfloat16"}[dtype]
	if _, ok := cfg["torch_dtype"]; ok {
		cfg["torch_dtype"] = dtypeName
	}
	if _, ok := cfg["dtype"]; ok || cfg["torch_dtype"] == nil {
		cfg["dtype"] = dtypeName
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("export-hf: %w", err)
	}
	if err := renameio.WriteFile(filepath.Join(out, "config.json"), append(b, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("export-hf: %w", err)
	}
	copied, err := CopySideFiles(o.From, out)
	if err != nil {
		return nil, fmt.Errorf("export-hf: %w", err)
	}
	if !contains(copied, "generation_config.json") {
		if err := writeGenerationConfig(out, b); err != nil {
			return nil, fmt.Errorf("export-hf: %w", err)
		}
	}
	// The weights go last: a folder with model.safetensors is a whole
	// checkpoint, and an export that fails before (a full disk) leaves
	// none, so a rerun is not refused as if over someone's checkpoint.
	if err := safetensors.Write(filepath.Join(out, "model.safetensors"), tensors, map[string]string{"format": "pt"}); err != nil {
		return nil, fmt.Errorf("export-hf: %w", err)
	}
	var tiedHead map[string]string
	if to, ok := names.Tied["lm_head.weight"]; ok {
		tiedHead = map[string]string{"lm_head.weight": to}
	}
	return &Exported{Dir: out, Tensors: len(tensors), Tied: tiedHead, Copied: copied, Removed: removed}, nil
}

// CheckpointFiles lists what in dir makes it a checkpoint folder that an
// export would replace: *.safetensors files, *.safetensors.index.json and
// an adapter/ folder. A missing dir holds none.
func CheckpointFiles(dir string) ([]string, error) {
	var out []string
	for _, pat := range []string{"*.safetensors", "*.safetensors.index.json"} {
		m, err := filepath.Glob(filepath.Join(dir, pat))
		if err != nil {
			return nil, err
		}
		for _, f := range m {
			out = append(out, filepath.Base(f))
		}
	}
	if st, err := os.Stat(filepath.Join(dir, "adapter")); err == nil && st.IsDir() {
		out = append(out, "adapter/")
	}
	sort.Strings(out)
	return out, nil
}

// StaleCheckpointFiles lists the files in dir that an export removes
// before writing model.safetensors: the ones it writes itself or that
// would shadow it — model*.safetensors (an earlier sharded checkpoint's
// shards), model.safetensors.index.json (transformers reads the index
// before model.safetensors) and adapter/ (a LoRA run's PEFT adapter,
// which a full model's export must not keep). Other files are left.
func StaleCheckpointFiles(dir string) ([]string, error) {
	m, err := filepath.Glob(filepath.Join(dir, "model*.safetensors"))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, f := range m {
		out = append(out, filepath.Base(f))
	}
	for _, n := range []string{IndexFile, "adapter"} {
		if _, err := os.Lstat(filepath.Join(dir, n)); err == nil {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out, nil
}

// removeStale removes StaleCheckpointFiles from dir, but for, when dir is
// the exported model's own folder from, its adapter/ (which belongs to
// the model being exported), and returns what it removed. The earlier
// model.safetensors goes too: an export that fails after writing the new
// config.json must not leave the old weights beside it.
func removeStale(dir, from string) ([]string, error) {
	stale, err := StaleCheckpointFiles(dir)
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, n := range stale {
		if n == "adapter" && sameDir(dir, from) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, n)); err != nil {
			return removed, err
		}
		removed = append(removed, n)
	}
	return removed, nil
}

// sameDir says whether a and b name the same folder.
func sameDir(a, b string) bool {
	if filepath.Clean(a) == filepath.Clean(b) {
		return true
	}
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}

// transposeInto writes a row-major [rows, cols] tensor of es-byte
// elements transposed, a block of output rows at a time.
func transposeInto(raw []byte, dims []int64, es int) func(io.Writer) error {
	return func(w io.Writer) error {
		rows, cols := int(dims[0]), int(dims[1])
		tile := max(1, min(cols, (4<<20)/max(rows*es, 1)))
		buf := make([]byte, tile*rows*es)
		for c0 := 0; c0 < cols; c0 += tile {
			n := min(tile, cols-c0)
			for r := 0; r < rows; r++ {
				for k := 0; k < n; k++ {
					copy(buf[(k*rows+r)*es:(k*rows+r+1)*es], raw[(r*cols+c0+k)*es:(r*cols+c0+k+1)*es])
				}
			}
			if _, err := w.Write(buf[:n*rows*es]); err != nil {
				return err
			}
		}
		return nil
	}
}

// Trained is what WriteTrained wrote besides model.onnx.
type Trained struct {
	Checkpoint *Exported // nil when none was written
	Skipped    string    // why not
	Adapter    string    // the PEFT adapter folder of a LoRA run
	// AdapterBase is the adapter's base_model_name_or_path (AdapterBase)
	// and BaseLoads whether transformers can load it as is; when not, the
	// adapter must be applied to the original checkpoint by hand.
	AdapterBase string
	BaseLoads   bool
}

// WriteTrained writes a training run's result into the folder of path:
// the inference model m with the trained weights (adapters merged) as a
// transformers checkpoint — model.safetensors, config.json,
// generation_config.json, tokenizer files from the base model's folder
// from — plus a LoRA run's adapters in PEFT's format in adapter/, and
// then path itself (model.onnx, last: its presence means the rest is
// there). Weights without Hugging Face names, or a base without
// config.json, skip the checkpoint and say why. m is consumed: the
// trained weights are written into it (train.ExportInto), so a run's
// export holds the model once.
func WriteTrained(path string, m *onnxpb.ModelProto, weights map[string][]float32, adapters []train.Adapter, from string) (*Trained, error) {
	if err := train.ExportInto(m, weights, adapters); err != nil {
		return nil, err
	}
	exp := m
	dir := filepath.Dir(path)
	res := &Trained{}
	if _, _, err := Exportable(exp, from); err != nil {
		res.Skipped = err.Error()
		// A checkpoint left by an earlier run in this folder would not
		// hold this model.onnx's weights.
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		if _, err := removeStale(dir, from); err != nil {
			return nil, err
		}
		if err := os.Remove(filepath.Join(dir, "model.safetensors")); err != nil && !os.IsNotExist(err) {
			return nil, err
		}
		if _, err := CopySideFiles(from, dir); err != nil {
			return nil, err
		}
	} else {
		// The run folder is the run's own: a rerun, a resume or a --fresh
		// start replaces what an earlier one wrote there.
		if res.Checkpoint, err = Export(exp, dir, ExportOptions{From: from, Force: true}); err != nil {
			return nil, err
		}
		if len(adapters) > 0 {
			hc, _ := lm.ReadHFConfig(filepath.Join(from, "config.json"))
			o := AdapterOptions{}
			o.Base, res.BaseLoads = AdapterBase(from)
			res.AdapterBase = o.Base
			if hc != nil {
				o.ModelType = hc.ModelType
			}
			res.Adapter = filepath.Join(dir, "adapter")
			if err := ExportAdapters(res.Adapter, m, adapters, weights, o); err != nil {
				return nil, err
			}
		}
	}
	// model.onnx here is no longer the one import-hf wrote (when the run
	// was written into an imported model's folder).
	if err := os.Remove(filepath.Join(dir, ImportRecord)); err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	if err := train.WriteModel(path, exp); err != nil {
		return nil, err
	}
	return res, nil
}
