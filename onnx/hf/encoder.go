package hf

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/renameio/v2"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/onnxpb"
)

// EncoderFamilies are the model_types ImportEncoder builds: BERT and the
// sentence encoders on its architecture (MiniLM, BGE, E5, GTE-base…), and
// RoBERTa (the same layers; positions counted from the padding id) with
// XLM-RoBERTa (RoBERTa's architecture over a sentencepiece vocabulary:
// multilingual-e5, bge-m3, paraphrase-multilingual-*), and MPNet (all-mpnet-base-v2: RoBERTa's positions, no token types, a
// bucketed relative-position bias on every layer's attention scores).
var EncoderFamilies = []string{"bert", "roberta", "xlm-roberta", "mpnet"}

// EncoderSideFiles are copied beside an imported encoder when the
// checkpoint has them: its tokenizer, and sentence-transformers' pooling
// and module configs, which say how embeddings are pooled.
var EncoderSideFiles = []string{"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
	"1_Pooling/config.json", "modules.json", "sentence_bert_config.json", "config_sentence_transformers.json"}

// bertKeys are the BERT config.json entries beyond harmlessKeys that leave
// what the encoder computes to the fields ImportEncoder reads and checks.
var bertKeys = setOf("type_vocab_size", "layer_norm_eps", "hidden_dropout_prob", "attention_probs_dropout_prob",
	"classifier_dropout", "position_embedding_type", "gradient_checkpointing", "relative_attention_num_buckets")

// bertConfig is the part of a BERT config.json ImportEncoder reads.
type bertConfig struct {
	ModelType         string          `json:"model_type"`
	VocabSize         int             `json:"vocab_size"`
	HiddenSize        int             `json:"hidden_size"`
	IntermediateSize  int             `json:"intermediate_size"`
	NumHiddenLayers   int             `json:"num_hidden_layers"`
	NumAttentionHeads int             `json:"num_attention_heads"`
	HiddenAct         string          `json:"hidden_act"`
	MaxPositions      int             `json:"max_position_embeddings"`
	TypeVocabSize     int             `json:"type_vocab_size"`
	LayerNormEps      float64         `json:"layer_norm_eps"`
	PadTokenID        *int64          `json:"pad_token_id"` // RoBERTa's padding_idx: positions start after it
	RelativeBuckets   int             `json:"relative_attention_num_buckets"`
	PositionType      string          `json:"position_embedding_type"`
	IsDecoder         bool            `json:"is_decoder"`
	CrossAttention    bool            `json:"add_cross_attention"`
	Quantization      json.RawMessage `json:"quantization_config"`
}

// arch is the architecture ImportEncoder builds for the model_type:
// XLM-RoBERTa's is RoBERTa's.
func (c bertConfig) arch() string {
	if c.ModelType == "xlm-roberta" {
		return "roberta"
	}
	return c.ModelType
}

// ImportedEncoder describes an encoder ImportEncoder wrote.
type ImportedEncoder struct {
	Model     string // out/model.onnx
	ModelType string
	Layers    int
	Hidden    int
	Params    int64
	Copied    []string // EncoderSideFiles copied from the checkpoint
	Unused    []string // checkpoint tensors the encoder does not read (a pooler, pretraining heads)
}

// readBertConfig reads dir/config.json, refusing by name what the encoder
// ImportEncoder builds would compute differently.
func readBertConfig(dir string) (bertConfig, []byte, error) {
	var c bertConfig
	raw, keys, fail0, err := readConfigJSON(dir, &c)
	if err != nil {
		return bertConfig{}, nil, err
	}
	fail := func(format string, a ...any) (bertConfig, []byte, error) {
		return bertConfig{}, nil, fail0(format, a...)
	}
	if !contains(EncoderFamilies, c.ModelType) {
		return fail("model_type %q is not a text encoder tagpr imports (%s); export it with optimum-cli export onnx --task feature-extraction instead",
			c.ModelType, strings.Join(EncoderFamilies, ", "))
	}
	if len(c.Quantization) > 0 && string(c.Quantization) != "null" {
		return fail("quantization_config: quantized checkpoints are not supported")
	}
	if unknown := unknownKeys(keys, func(k, _ string) bool { return harmlessKeys[k] || bertKeys[k] }); len(unknown) > 0 {
		return fail("%s not supported: tagpr cannot tell whether the encoder computes the same without %s", plural(unknown, "field"), them(unknown))
	}
	switch {
	case c.HiddenAct != "gelu":
		return fail("hidden_act %q is not supported (the BERT encoder tagpr builds uses the exact, erf GELU: \"gelu\")", c.HiddenAct)
	case c.PositionType != "" && c.PositionType != "absolute":
		return fail("position_embedding_type %q is not supported (absolute positions only)", c.PositionType)
	case c.IsDecoder || c.CrossAttention:
		return fail("is_decoder / add_cross_attention: a causal or cross-attending BERT is not a text encoder")
	}
	for k, v := range map[string]int{"num_hidden_layers": c.NumHiddenLayers, "hidden_size": c.HiddenSize, "num_attention_heads": c.NumAttentionHeads,
		"intermediate_size": c.IntermediateSize, "vocab_size": c.VocabSize, "max_position_embeddings": c.MaxPositions} {
		if v <= 0 {
			return fail("%s is %d or missing; want a positive size", k, v)
		}
	}
	if c.TypeVocabSize < 0 {
		return fail("type_vocab_size is %d; want 0 or more", c.TypeVocabSize)
	}
	if c.HiddenSize%c.NumAttentionHeads != 0 {
		return fail("hidden_size %d is not a multiple of num_attention_heads %d", c.HiddenSize, c.NumAttentionHeads)
	}
	if c.ModelType == "mpnet" {
		// MPNetEmbeddings numbers positions from 1 whatever pad_token_id
		// says, and the encoder buckets relative positions into 32.
		one := int64(1)
		c.PadTokenID, c.TypeVocabSize = &one, 0
		if c.RelativeBuckets == 0 {
			c.RelativeBuckets = mpnetBuckets
		}
		if c.RelativeBuckets != mpnetBuckets {
			return fail("relative_attention_num_buckets %d: MPNetEncoder computes %d buckets whatever its table holds; a table of another size is not supported", c.RelativeBuckets, mpnetBuckets)
		}
		if c.MaxPositions < 3 || c.VocabSize < 2 {
			return fail("max_position_embeddings %d, vocab_size %d: MPNet numbers positions from 2", c.MaxPositions, c.VocabSize)
		}
	}
	if c.arch() == "roberta" {
		if c.PadTokenID == nil {
			one := int64(1) // RobertaConfig's default
			c.PadTokenID = &one
		}
		if p := *c.PadTokenID; p < 0 || p >= int64(c.VocabSize) || p+2 > int64(c.MaxPositions) {
			return fail("pad_token_id %d: RoBERTa numbers positions from it, so it must lie in the vocabulary (%d) with max_position_embeddings %d > pad_token_id + 1", p, c.VocabSize, c.MaxPositions)
		}
	}
	if c.LayerNormEps == 0 {
		c.LayerNormEps = 1e-12 // BertConfig's default
	}
	if !(c.LayerNormEps > 0) || math.IsInf(c.LayerNormEps, 0) {
		return fail("layer_norm_eps %g: want a positive finite number", c.LayerNormEps)
	}
	return c, raw, nil
}

// params is the encoder's weight count (float64: absurd sizes cannot
// overflow).
func (c bertConfig) params() float64 {
	d, f, L := float64(c.HiddenSize), float64(c.IntermediateSize), float64(c.NumHiddenLayers)
	emb := (float64(c.VocabSize)+float64(c.MaxPositions)+float64(c.TypeVocabSize))*d + 2*d
	if c.ModelType == "mpnet" {
		emb += float64(c.RelativeBuckets * c.NumAttentionHeads)
	}
	return emb + L*(4*d*d+4*d+2*d*f+f+d+4*d)
}

// ImportEncoder reads the BERT-family, RoBERTa, XLM-RoBERTa or MPNet checkpoint in dir
// (config.json and safetensors, as transformers or sentence-transformers
// saves it; the masked-LM classes' "bert.", "roberta." or "mpnet." prefix
// is read too) and writes out/model.onnx as `optimum-cli export onnx
// --task feature-extraction` would: inputs input_ids, attention_mask (and
// token_type_ids when the model has token types), output
// last_hidden_state [batch, sequence, hidden], computed as transformers'
// model does (its positions, erf GELU, post-LayerNorm, MPNet's
// relative-position bias). config.json, the tokenizer and
// sentence-transformers' pooling config go beside it, so the folder is a
// PRMU text encoder as is. Weights past 2 GiB (larger than BERT-large) are
// refused; non-finite weights too, by name, as Import's.
func ImportEncoder(dir, out string) (*ImportedEncoder, error) {
	c, raw, err := readBertConfig(dir)
	if err != nil {
		return nil, err
	}
	ck, err := openFitting(dir, c.params(), fmt.Sprintf("vocab_size %d, hidden_size %d, num_hidden_layers %d, intermediate_size %d",
		c.VocabSize, c.HiddenSize, c.NumHiddenLayers, c.IntermediateSize))
	if err != nil {
		return nil, err
	}
	defer ck.Close()
	if c.params()*4 >= 1<<31-(64<<20) {
		return nil, fmt.Errorf("import %s: %.4g float32 weights do not fit in one ONNX file (2 GiB); tagpr imports encoders up to BERT-large's size", dir, c.params())
	}
	prefix := ""
	if _, _, ok := ck.Lookup(c.arch() + ".embeddings.word_embeddings.weight"); ok {
		// BertForMaskedLM's bert., (XLM)RobertaForMaskedLM's roberta., MPNetForMaskedLM's mpnet.
		prefix = c.arch() + "."
	}
	src := &checkpointSource{ck: ck, used: map[string]bool{}}
	b := &bertBuilder{g: ir.NewGraph("bert_encoder"), c: c, src: src, prefix: prefix}
	hidden := b.build()
	if b.err != nil {
		return nil, fmt.Errorf("import %s: %w", dir, b.err)
	}
	b.g.Output(hidden, ir.Float, "batch_size", "sequence_length", c.HiddenSize)
	if err := b.g.Err(); err != nil {
		return nil, fmt.Errorf("import %s: build the encoder: %w", dir, err)
	}
	m, err := ir.NewModel(b.g, 18)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", dir, err)
	}
	m.DocString = fmt.Sprintf("%s text encoder imported from %s by tagpr", c.ModelType, filepath.Base(filepath.Clean(dir)))
	res := &ImportedEncoder{Model: filepath.Join(out, "model.onnx"), ModelType: c.ModelType, Layers: c.NumHiddenLayers,
		Hidden: c.HiddenSize, Params: int64(c.params())}
	for _, name := range ck.Names() {
		if src.used[name] {
			continue
		}
		rest := strings.TrimPrefix(name, prefix)
		switch {
		case strings.HasPrefix(rest, "pooler."), strings.HasPrefix(name, "cls."), strings.HasPrefix(name, "lm_head."),
			rest == "embeddings.position_ids", rest == "embeddings.token_type_ids":
		default:
			return nil, fmt.Errorf("import %s: the checkpoint's tensor %q has no place in a %s encoder with this config.json", dir, name, c.ModelType)
		}
		res.Unused = append(res.Unused, name)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	// model.onnx goes first and comes back last, as Import's: its presence
	// means the folder is a whole encoder.
	if err := os.Remove(res.Model); err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("import: %w", err)
	}
	bs, err := ir.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", dir, err)
	}
	if err := renameio.WriteFile(filepath.Join(out, "config.json"), raw, 0o644); err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	for _, name := range EncoderSideFiles {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("import: copy %s: %w", name, err)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(out, name)), 0o755); err != nil {
			return nil, fmt.Errorf("import: %w", err)
		}
		if err := renameio.WriteFile(filepath.Join(out, name), b, 0o644); err != nil {
			return nil, fmt.Errorf("import: copy %s: %w", name, err)
		}
		res.Copied = append(res.Copied, name)
	}
	if err := renameio.WriteFile(res.Model, bs, 0o644); err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	return res, nil
}

// bertBuilder lays out BertModel's forward pass as ONNX nodes named by
// module path, as Optimum's export names them, taking each weight from the
// checkpoint as it goes; the first error stops it.
type bertBuilder struct {
	g      *ir.Graph
	c      bertConfig
	src    *checkpointSource
	prefix string
	names  map[string]int // node names given, for node's numbering
	err    error
}

// weight adds the checkpoint's tensor name (without the model's prefix)
// as an initializer of dims; a Linear's weight (linear) is stored [in, out]
// for MatMul, transposed from torch's [out, in].
func (b *bertBuilder) weight(name string, linear bool, dims ...int64) string {
	if b.err != nil {
		return name
	}
	t, err := b.src.Weight(b.prefix+name, dims, linear)
	if err != nil {
		b.err = err
		return name
	}
	t.Name = name
	return b.g.Initializer(name, t)
}

// node adds one op named path/op (path/op_1, … after the first, as Optimum
// numbers them), its output name_output_0.
func (b *bertBuilder) node(path, op string, inputs []string, attrs ...ir.Attribute) string {
	name := path + "/" + op
	if n := b.names[name]; n > 0 {
		b.names[name] = n + 1
		name = fmt.Sprintf("%s_%d", name, n)
	} else {
		if b.names == nil {
			b.names = map[string]int{}
		}
		b.names[name] = 1
	}
	out := name + "_output_0"
	b.g.AddNode(&onnxpb.NodeProto{Name: name, OpType: op, Input: inputs, Output: []string{out}, Attribute: attrs})
	return out
}

// linear is x·W + b for the module at path (dots in the weight names,
// slashes in the node names).
func (b *bertBuilder) linear(x, module string, in, out int) string {
	path := "/" + strings.ReplaceAll(module, ".", "/")
	y := b.node(path, "MatMul", []string{x, b.weight(module+".weight", true, int64(in), int64(out))})
	return b.node(path, "Add", []string{y, b.weight(module+".bias", false, int64(out))})
}

func (b *bertBuilder) layerNorm(x, module string) string {
	d := int64(b.c.HiddenSize)
	return b.node("/"+strings.ReplaceAll(module, ".", "/"), "LayerNormalization",
		[]string{x, b.weight(module+".weight", false, d), b.weight(module+".bias", false, d)},
		ir.AttrInt("axis", -1), ir.AttrFloat("epsilon", float32(b.c.LayerNormEps)))
}

// build returns last_hidden_state's value.
func (b *bertBuilder) build() string {
	g, c := b.g, b.c
	d, heads := int64(c.HiddenSize), int64(c.NumAttentionHeads)
	dh := d / heads
	ids := g.Input("input_ids", ir.Int64, "batch_size", "sequence_length")
	mask := g.Input("attention_mask", ir.Int64, "batch_size", "sequence_length")

	// Embeddings: words + token types + positions 0..T-1, then LayerNorm.
	x := b.node("/embeddings/word_embeddings", "Gather", []string{b.weight("embeddings.word_embeddings.weight", false, int64(c.VocabSize), d), ids})
	if c.TypeVocabSize > 0 {
		types := g.Input("token_type_ids", ir.Int64, "batch_size", "sequence_length")
		te := b.node("/embeddings/token_type_embeddings", "Gather", []string{b.weight("embeddings.token_type_embeddings.weight", false, int64(c.TypeVocabSize), d), types})
		x = b.node("/embeddings", "Add", []string{x, te})
	}
	posIDs := b.positionIDs(ids)
	pe := b.node("/embeddings/position_embeddings", "Gather", []string{b.weight("embeddings.position_embeddings.weight", false, int64(c.MaxPositions), d), posIDs})
	x = b.layerNorm(b.node("/embeddings/positions", "Add", []string{x, pe}), "embeddings.LayerNorm")

	// The additive mask transformers builds: (1 - mask) · float32 min, [B,1,1,T].
	m := b.node("/mask", "Cast", []string{mask}, ir.AttrInt("to", int64(ir.Float)))
	m = b.node("/mask", "Unsqueeze", []string{m, g.ConstInt64s("mask_axes", 1, 2)})
	m = b.node("/mask", "Sub", []string{g.Const("one_f", ir.Vector("", float32(1))), m})
	bias := b.node("/mask", "Mul", []string{m, g.Const("min_f", ir.Vector("", float32(-math.MaxFloat32)))})

	if c.ModelType == "mpnet" { // + the relative-position bias, [1,H,T,T]
		bias = b.node("/encoder", "Add", []string{bias, b.relativeBias(ids)})
	}

	split := g.ConstInt64s("heads_shape", 0, 0, heads, dh)
	merge := g.ConstInt64s("hidden_shape", 0, 0, d)
	scale := g.Const("scale", ir.Vector("", float32(1/math.Sqrt(float64(dh)))))
	for l := 0; l < c.NumHiddenLayers; l++ {
		layer := fmt.Sprintf("encoder.layer.%d", l)
		path := "/" + strings.ReplaceAll(layer, ".", "/")
		// BERT's attention.self.{query,key,value} and attention.output
		// are MPNet's attention.attn.{q,k,v,o} and attention.
		self, names, out, outNorm := layer+".attention.self", [3]string{"query", "key", "value"}, layer+".attention.output.dense", layer+".attention.output.LayerNorm"
		if c.ModelType == "mpnet" {
			self, names, out, outNorm = layer+".attention.attn", [3]string{"q", "k", "v"}, layer+".attention.attn.o", layer+".attention.LayerNorm"
		}
		ap := "/" + strings.ReplaceAll(self, ".", "/")
		headsOf := func(name string, perm ...int64) string {
			y := b.linear(x, self+"."+name, int(d), int(d))
			p := ap + "/" + name
			return b.node(p, "Transpose", []string{b.node(p, "Reshape", []string{y, split})}, ir.AttrInts("perm", perm...))
		}
		q, k, v := headsOf(names[0], 0, 2, 1, 3), headsOf(names[1], 0, 2, 3, 1), headsOf(names[2], 0, 2, 1, 3)
		s := b.node(ap, "Mul", []string{b.node(ap+"/scores", "MatMul", []string{q, k}), scale})
		p := b.node(ap, "Softmax", []string{b.node(ap, "Add", []string{s, bias})}, ir.AttrInt("axis", -1))
		ctx := b.node(ap+"/context", "MatMul", []string{p, v})
		ctx = b.node(ap+"/context", "Reshape", []string{b.node(ap+"/context", "Transpose", []string{ctx}, ir.AttrInts("perm", 0, 2, 1, 3)), merge})
		a := b.linear(ctx, out, int(d), int(d))
		x = b.layerNorm(b.node(path+"/attention/output", "Add", []string{a, x}), outNorm)
		h := b.linear(x, layer+".intermediate.dense", int(d), c.IntermediateSize)
		h = b.gelu(h, path+"/intermediate/intermediate_act_fn")
		o := b.linear(h, layer+".output.dense", c.IntermediateSize, int(d))
		x = b.layerNorm(b.node(path+"/output", "Add", []string{o, x}), layer+".output.LayerNorm")
	}
	return g.Node("Identity", []string{x}, []string{"last_hidden_state"})[0]
}

// positionIDs are BERT's positions 0..T-1 ([1,T]), or RoBERTa's: the
// count of non-padding tokens up to each one, after padding_idx, and
// padding_idx itself at padding ([B,T]), as transformers numbers them.
func (b *bertBuilder) positionIDs(ids string) string {
	g, c := b.g, b.c
	if c.arch() == "roberta" || c.ModelType == "mpnet" {
		pad := g.Const("pad_id", ir.Vector("", *c.PadTokenID))
		real := b.node("/embeddings/position_ids", "Cast", []string{b.node("/embeddings/position_ids", "Not",
			[]string{b.node("/embeddings/position_ids", "Equal", []string{ids, pad})})}, ir.AttrInt("to", int64(ir.Int64)))
		count := b.node("/embeddings/position_ids", "CumSum", []string{real, g.Const("seq_axis", ir.Scalar("", int64(1)))})
		return b.node("/embeddings/position_ids", "Add", []string{b.node("/embeddings/position_ids", "Mul", []string{count, real}), pad})
	}
	positions := make([]int64, c.MaxPositions)
	for i := range positions {
		positions[i] = int64(i)
	}
	table := g.Initializer("embeddings.position_ids", ir.Tensor("", []int64{1, int64(c.MaxPositions)}, positions))
	seqLen := b.node("/embeddings", "Slice", []string{b.node("/embeddings", "Shape", []string{ids}), g.ConstInt64s("one", 1), g.ConstInt64s("two", 2)})
	return b.node("/embeddings/position_ids", "Slice", []string{table, g.ConstInt64s("zero", 0), seqLen, g.ConstInt64s("one", 1)})
}

// mpnetBuckets and mpnetMaxDistance are MPNetEncoder's fixed bucketing
// of relative positions.
const (
	mpnetBuckets     = 32
	mpnetMaxDistance = 128
)

// relativeBias is MPNet's position bias [1,H,T,T]: the bucket of each
// relative position k - q (a table over every q, k below
// max_position_embeddings, sliced to T×T) looked up in
// encoder.relative_attention_bias [buckets, H].
func (b *bertBuilder) relativeBias(ids string) string {
	g, c := b.g, b.c
	P := c.MaxPositions
	table := make([]int64, P*P)
	for q := range P {
		for k := range P {
			table[q*P+k] = mpnetBucket(int64(k - q))
		}
	}
	buckets := g.Initializer("encoder.relative_position_buckets", ir.Tensor("", []int64{int64(P), int64(P)}, table))
	T := b.node("/encoder", "Slice", []string{b.node("/encoder", "Shape", []string{ids}), g.ConstInt64s("one", 1), g.ConstInt64s("two", 2)})
	TT := b.node("/encoder", "Concat", []string{T, T}, ir.AttrInt("axis", 0))
	rel := b.node("/encoder/relative_position", "Slice", []string{buckets, g.ConstInt64s("zeros", 0, 0), TT, g.ConstInt64s("axes", 0, 1)})
	w := b.weight("encoder.relative_attention_bias.weight", false, int64(c.RelativeBuckets), int64(c.NumAttentionHeads))
	values := b.node("/encoder/relative_attention_bias", "Gather", []string{w, rel}) // [T,T,H]
	values = b.node("/encoder", "Transpose", []string{values}, ir.AttrInts("perm", 2, 0, 1))
	return b.node("/encoder", "Unsqueeze", []string{values, g.ConstInt64s("zero", 0)})
}

// mpnetBucket is MPNetEncoder.relative_position_bucket for one relative
// position, in float32 as torch computes it.
func mpnetBucket(rel int64) int64 {
	half := int64(mpnetBuckets / 2)
	n := -rel
	ret := int64(0)
	if n < 0 {
		ret += half
		n = -n
	}
	maxExact := half / 2
	if n < maxExact {
		return ret + n
	}
	ratio := float32(n) / float32(maxExact)
	large := maxExact + int64(float32(math.Log(float64(ratio)))/float32(math.Log(float64(mpnetMaxDistance)/float64(maxExact)))*float32(half-maxExact))
	return ret + min(large, half-1)
}

// gelu is 0.5·x·(1 + erf(x/√2)), as torch's exact GELU.
func (b *bertBuilder) gelu(x, path string) string {
	g := b.g
	e := b.node(path, "Erf", []string{b.node(path, "Div", []string{x, g.Const("sqrt2", ir.Vector("", float32(math.Sqrt2)))})})
	e = b.node(path, "Add", []string{e, g.Const("one_g", ir.Vector("", float32(1)))})
	return b.node(path, "Mul", []string{b.node(path, "Mul", []string{x, e}), g.Const("half", ir.Vector("", float32(0.5)))})
}

// IsEncoder reports whether dir's config.json names a model_type
// ImportEncoder builds (a text encoder, not a causal LM).
func IsEncoder(dir string) bool {
	raw, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return false
	}
	var top struct {
		ModelType string `json:"model_type"`
	}
	return json.Unmarshal(raw, &top) == nil && contains(EncoderFamilies, top.ModelType)
}
