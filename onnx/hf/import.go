package hf

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/google/renameio/v2"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/onnxpb"
	"github.com/tagpr/tagpr/onnx/safetensors"
)

// ImportOptions configure Import.
type ImportOptions struct {
	// ExternalData: "auto" or "" (weights of 1 GiB or more go to
	// model.onnx.data), "always" or "never".
	ExternalData string
	// Progress, when set, is called as weights are converted: bytes of
	// float32 weights done and in all.
	Progress func(done, total int64)
}

// Imported describes a finished import.
type Imported struct {
	Model     string // the model.onnx written
	ModelType string
	Config    lm.Config
	Params    int64    // weights in the model
	Stored    int64    // bytes of the checkpoint's weights
	Written   int64    // bytes of float32 weights written
	External  bool     // weights in model.onnx.data
	Copied    []string // files copied beside the model
	Unused    []string // checkpoint tensors left out (rotary caches, a tied head's copy)
}

// externalAuto is the weight size from which "auto" writes model.onnx.data.
const externalAuto = 1 << 30

// SideFiles are the files copied beside a model: configs and tokenizer
// files (with the chat template), as transformers writes them.
var SideFiles = []string{"generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
	"chat_template.jinja", "chat_template.json", "added_tokens.json", "vocab.json", "merges.txt", "tokenizer.model"}

// Import reads the transformers checkpoint in dir and writes out/model.onnx
// (and out/model.onnx.data for big models) in the Optimum layout, built by
// onnx/lm's builder with the checkpoint's weights, plus config.json and
// the files in SideFiles that dir has (a generation_config.json is made
// from config.json when dir has none).
func Import(dir, out string, o ImportOptions) (*Imported, error) {
	cfg, rawConfig, err := readModelConfig(dir)
	if err != nil {
		return nil, err
	}
	full := cfg.Defaults()
	// Sizes the weights cannot hold are refused before the builder lays
	// out a graph (and inputs per layer) from them: a config.json with
	// num_hidden_layers or vocab_size off by orders of magnitude would
	// otherwise exhaust memory before the first missing tensor is noticed.
	ck, err := openFitting(dir, minWeights(full), fmt.Sprintf("vocab_size %d, hidden_size %d, num_hidden_layers %d, intermediate_size %d, num_attention_heads %d × head_dim %d",
		full.Vocab, full.DModel, full.Layers, full.FFN, full.Heads, full.HeadDim))
	if err != nil {
		return nil, err
	}
	defer ck.Close()
	res := &Imported{Model: filepath.Join(out, "model.onnx"), Config: cfg, Params: full.Params(), Stored: ck.Bytes()}
	switch o.ExternalData {
	case "", "auto":
		res.External = full.Params()*4 >= externalAuto
	case "always":
		res.External = true
	case "never":
		if full.Params()*4 >= 1<<31-(64<<20) {
			return nil, fmt.Errorf("import %s: %d float32 weights do not fit in one protobuf file (2 GiB); use external data", dir, full.Params())
		}
	default:
		return nil, fmt.Errorf("import: external data %q, want auto, always or never", o.ExternalData)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	var top struct {
		ModelType string `json:"model_type"`
	}
	_ = json.Unmarshal(rawConfig, &top)
	mt := top.ModelType
	res.ModelType = mt
	src := &checkpointSource{ck: ck, external: res.External, location: "model.onnx.data", used: map[string]bool{},
		progress: o.Progress, total: full.Params() * 4}
	m, err := lm.BuildFrom(cfg, src)
	if dmg := (*damagedError)(nil); errors.As(err, &dmg) {
		return nil, dmg
	}
	if err != nil {
		// The builder names its own architecture (llama for the whole
		// family); say the checkpoint's model_type instead.
		if inner := errors.Unwrap(err); inner != nil && strings.HasPrefix(err.Error(), fmt.Sprintf("build %s model: ", cfg.Defaults().Arch)) {
			err = inner
		}
		return nil, fmt.Errorf("import %s: build the %s model: %w", dir, mt, err)
	}
	m.DocString = fmt.Sprintf("%s imported from %s by tagpr", mt, filepath.Base(filepath.Clean(dir)))
	for _, name := range ck.Names() {
		if src.used[name] {
			continue
		}
		switch {
		case strings.HasSuffix(name, ".rotary_emb.inv_freq"):
		case name == "lm_head.weight" && *cfg.TieEmbeddings:
		default:
			return nil, fmt.Errorf("import %s: the checkpoint's tensor %q has no place in a %s model with this config.json", dir, name, mt)
		}
		res.Unused = append(res.Unused, name)
	}
	// model.onnx is written last: its presence means the folder is a whole
	// model. An earlier import's goes first, so that a write that fails
	// (a full disk) leaves no model.onnx beside this import's files.
	if err := os.Remove(res.Model); err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("import: %w", err)
	}
	if res.External {
		if err := src.writeData(filepath.Join(out, src.location), o.Progress); err != nil {
			return nil, err
		}
	}
	res.Written = src.bytes
	b, err := ir.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", dir, err)
	}
	if !res.External {
		os.Remove(filepath.Join(out, src.location)) // a stale one from an earlier import
	}
	if err := renameio.WriteFile(filepath.Join(out, "config.json"), rawConfig, 0o644); err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	copied, err := CopySideFiles(dir, out)
	if err != nil {
		return nil, err
	}
	res.Copied = copied
	if !contains(copied, "generation_config.json") {
		if err := writeGenerationConfig(out, rawConfig); err != nil {
			return nil, err
		}
	}
	if err := writeImportRecord(out, dir, mt); err != nil {
		return nil, err
	}
	if err := renameio.WriteFile(res.Model, b, 0o644); err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	return res, nil
}

// minWeights is a lower bound of the weights a llama-family config
// implies (embedding, projections, MLP, norms; not an untied head, whose
// absence the builder names), in float64 so absurd sizes cannot overflow.
func minWeights(c lm.Config) float64 {
	d, q, kv, f, V := float64(c.DModel), float64(c.Heads)*float64(c.HeadDim), float64(c.KVHeads)*float64(c.HeadDim), float64(c.FFN), float64(c.Vocab)
	return V*d + float64(c.Layers)*(2*d*q+2*d*kv+3*d*f+2*d)
}

// ImportRecord is the file Import writes beside model.onnx naming the
// checkpoint folder it read (absolute), so that a LoRA run on the model
// can point its PEFT adapter's base_model_name_or_path at weights
// transformers loads (AdapterBase). It is tagpr's own: not a side file,
// never copied into an export.
const ImportRecord = "tagpr_import.json"

// importRecord is ImportRecord's content.
type importRecord struct {
	Checkpoint string `json:"checkpoint"`
	ModelType  string `json:"model_type"`
}

func writeImportRecord(out, dir, modelType string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	b, err := json.MarshalIndent(importRecord{Checkpoint: abs, ModelType: modelType}, "", "  ")
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	if err := renameio.WriteFile(filepath.Join(out, ImportRecord), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("import: %w", err)
	}
	return nil
}

// ImportedFrom is the checkpoint folder `tagpr model import-hf` read to
// make the model in dir (its ImportRecord), or "" when dir has no record.
func ImportedFrom(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, ImportRecord))
	if err != nil {
		return ""
	}
	var r importRecord
	if json.Unmarshal(b, &r) != nil {
		return ""
	}
	return r.Checkpoint
}

// CopySideFiles copies the SideFiles that src has into dst (atomically
// each) and returns their names.
func CopySideFiles(src, dst string) ([]string, error) {
	var out []string
	for _, name := range SideFiles {
		b, err := os.ReadFile(filepath.Join(src, name))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("copy %s: %w", name, err)
		}
		if filepath.Clean(src) == filepath.Clean(dst) {
			out = append(out, name)
			continue
		}
		if err := renameio.WriteFile(filepath.Join(dst, name), b, 0o644); err != nil {
			return nil, fmt.Errorf("copy %s: %w", name, err)
		}
		out = append(out, name)
	}
	return out, nil
}

// writeGenerationConfig writes the generation_config.json transformers
// derives from config.json's token ids.
func writeGenerationConfig(dir string, rawConfig []byte) error {
	var c map[string]any
	if err := json.Unmarshal(rawConfig, &c); err != nil {
		return fmt.Errorf("generation config: %w", err)
	}
	g := map[string]any{"_from_model_config": true}
	for _, k := range []string{"bos_token_id", "eos_token_id", "pad_token_id", "transformers_version"} {
		if v, ok := c[k]; ok && v != nil {
			g[k] = v
		}
	}
	b, err := json.MarshalIndent(g, "", "  ")
	if err != nil {
		return fmt.Errorf("generation config: %w", err)
	}
	return renameio.WriteFile(filepath.Join(dir, "generation_config.json"), append(b, '\n'), 0o644)
}

// checkpointSource gives the builder the checkpoint's tensors: inline, or
// as references into the external data file that writeData then streams.
type checkpointSource struct {
	ck       *Checkpoint
	external bool
	location string
	used     map[string]bool
	plan     []planned
	bytes    int64 // float32 bytes handed out
	// progress hears of each weight converted in memory (without external
	// data, where writeData reports instead), of total float32 bytes.
	progress func(done, total int64)
	total    int64
}

// planned is one weight's place in the external data file.
type planned struct {
	name       string
	offset     int64
	transposed bool
}

// dataAlign aligns each weight in model.onnx.data, as ir.Write does.
const dataAlign = 64

func (s *checkpointSource) Weight(name string, dims []int64, transposed bool) (*onnxpb.TensorProto, error) {
	f, e, ok := s.ck.Lookup(name)
	if !ok {
		return nil, fmt.Errorf("the checkpoint has no tensor %q, which config.json implies", name)
	}
	want := append([]int64{}, dims...)
	if transposed {
		want[0], want[1] = want[1], want[0]
	}
	if !slices.Equal(e.Shape, want) {
		return nil, fmt.Errorf("tensor %q (%s) has shape %v; config.json implies %v", name, filepath.Base(f.Path), e.Shape, want)
	}
	switch e.DType {
	case "F32", "F16", "BF16":
	default:
		return nil, fmt.Errorf("tensor %q (%s) is %s; tagpr reads F32, F16 and BF16 weights", name, filepath.Base(f.Path), e.DType)
	}
	s.used[name] = true
	n := ir.NumElements(dims) * 4
	s.bytes += n
	if !s.external {
		var buf bytes.Buffer
		buf.Grow(int(n))
		if err := convert(&buf, f, name, e, transposed); err != nil {
			return nil, err
		}
		if s.progress != nil {
			s.progress(s.bytes, max(s.total, s.bytes))
		}
		return &onnxpb.TensorProto{Name: name, Dims: dims, DataType: ir.Float, RawData: buf.Bytes()}, nil
	}
	var off int64
	if len(s.plan) > 0 {
		last := s.plan[len(s.plan)-1]
		_, le, _ := s.ck.Lookup(last.name)
		off = (last.offset + le.Elements()*4 + dataAlign - 1) / dataAlign * dataAlign
	}
	s.plan = append(s.plan, planned{name: name, offset: off, transposed: transposed})
	return &onnxpb.TensorProto{Name: name, Dims: dims, DataType: ir.Float,
		DataLocation: onnxpb.TensorProto_EXTERNAL.Enum(),
		ExternalData: []*onnxpb.StringStringEntryProto{
			{Key: "location", Value: s.location},
			{Key: "offset", Value: strconv.FormatInt(off, 10)},
			{Key: "length", Value: strconv.FormatInt(n, 10)},
		}}, nil
}

// writeData streams every planned weight into path: each converted on its
// own and its mapped pages released after, so memory stays near one
// weight's size.
func (s *checkpointSource) writeData(path string, progress func(done, total int64)) error {
	pf, err := renameio.NewPendingFile(path, renameio.WithPermissions(0o644))
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	defer pf.Cleanup()
	w := bufio.NewWriterSize(pf, 4<<20)
	var at, done int64
	pad := make([]byte, dataAlign)
	for _, p := range s.plan {
		f, e, _ := s.ck.Lookup(p.name)
		if p.offset > at {
			w.Write(pad[:p.offset-at])
			at = p.offset
		}
		if err := convert(w, f, p.name, e, p.transposed); err != nil {
			return err
		}
		f.Release(p.name)
		at += e.Elements() * 4
		done += e.Elements() * 4
		if progress != nil {
			progress(done, s.bytes)
		}
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("import: write %s: %w", path, err)
	}
	if err := pf.CloseAtomicallyReplace(); err != nil {
		return fmt.Errorf("import: write %s: %w", path, err)
	}
	return nil
}

// convert writes a checkpoint tensor as little-endian float32, transposed
// ([out, in] → [in, out]) when asked, a block at a time.
func convert(w io.Writer, f *safetensors.File, name string, e safetensors.Entry, transposed bool) error {
	src, err := f.Bytes(name)
	if err != nil {
		return err
	}
	es := safetensors.ElemSize(e.DType)
	fail := func(err error) error {
		return fmt.Errorf("import: tensor %q (%s): %w", name, filepath.Base(f.Path), err)
	}
	if !transposed {
		const chunk = 1 << 20
		buf := make([]float32, min(int64(chunk), e.Elements()))
		for start := int64(0); start < e.Elements(); start += chunk {
			n := min(chunk, e.Elements()-start)
			if err := safetensors.ToFloat32(e.DType, src[start*es:(start+n)*es], buf[:n]); err != nil {
				return fail(err)
			}
			if i, kind := firstNonFinite32(buf[:n]); i >= 0 {
				return damaged(f, name, e, start+i, kind)
			}
			if _, err := w.Write(safetensors.LEBytes(buf[:n])); err != nil {
				return fail(err)
			}
			f.ReleaseRange(name, start*es, (start+n)*es)
		}
		return nil
	}
	rows, cols := e.Shape[0], e.Shape[1] // [out, in]; written as [in, out]
	tile := max(int64(1), min(cols, (4<<20)/max(rows*4, 1)))
	buf := make([]float32, tile*rows)
	seg := make([]float32, tile)
	for c0 := int64(0); c0 < cols; c0 += tile {
		n := min(tile, cols-c0)
		for r := int64(0); r < rows; r++ {
			off := (r*cols + c0) * es
			if err := safetensors.ToFloat32(e.DType, src[off:off+n*es], seg[:n]); err != nil {
				return fail(err)
			}
			if i, kind := firstNonFinite32(seg[:n]); i >= 0 {
				return damaged(f, name, e, r*cols+c0+i, kind)
			}
			for k := int64(0); k < n; k++ {
				buf[k*rows+r] = seg[k]
			}
		}
		if _, err := w.Write(safetensors.LEBytes(buf[:n*rows])); err != nil {
			return fail(err)
		}
	}
	return nil
}

// damaged refuses a checkpoint tensor holding NaN or Inf at element i.
func damaged(f *safetensors.File, name string, e safetensors.Entry, i int64, kind string) error {
	return &damagedError{fmt.Sprintf("import: %s: the checkpoint is damaged or was saved after a diverged run; tagpr imports finite weights only — use an earlier checkpoint",
		nonFinite(fmt.Sprintf("tensor %q in %s", name, f.Path), e.Shape, i, kind))}
}
