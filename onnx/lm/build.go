package lm

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/google/renameio/v2"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/onnxpb"
)

// Arch is a built-in model family.
type Arch string

const (
	// GPT2: LayerNorm, GELU (tanh form), learned positions, multi-head attention, biases.
	GPT2 Arch = "gpt2"
	// Llama: RMSNorm, SwiGLU, rotary positions, grouped KV heads, no biases
	// (Qwen2 style with AttentionBias).
	Llama Arch = "llama"
)

// Config sizes a built-in model. Zero fields take the defaults of Defaults.
type Config struct {
	Arch    Arch `json:"arch"`
	Layers  int  `json:"layers"`
	DModel  int  `json:"d_model"`
	Heads   int  `json:"heads"`
	KVHeads int  `json:"kv_heads"` // Llama only; GPT-2 uses Heads
	// HeadDim defaults to DModel/Heads.
	HeadDim int `json:"head_dim"`
	// FFN is the MLP width (GPT-2 default 4·DModel; Llama default the
	// multiple of 32 nearest 8/3·DModel).
	FFN          int     `json:"ffn"`
	Vocab        int     `json:"vocab"`
	MaxPositions int     `json:"max_positions"`
	RopeTheta    float64 `json:"rope_theta"`
	NormEps      float64 `json:"norm_eps"`
	// TieEmbeddings reuses the token embedding as the output projection
	// (default: true for GPT-2, false for Llama).
	TieEmbeddings *bool `json:"tie_embeddings,omitempty"`
	// AttentionBias adds q/k/v biases to a Llama (the Qwen2 variant).
	AttentionBias bool `json:"attention_bias"`
	// OutputBias adds an o_proj bias (a Llama with attention_bias), MLPBias
	// gate/up/down biases (mlp_bias), QKNorm an RMSNorm over each query and
	// key head before the rotation (Qwen3). Checkpoint imports set them.
	OutputBias bool `json:"output_bias,omitempty"`
	MLPBias    bool `json:"mlp_bias,omitempty"`
	QKNorm     bool `json:"qk_norm,omitempty"`
	// SlidingWindow > 0 lets a query see only the keys less than this many
	// positions back (Mistral's sliding_window).
	SlidingWindow int `json:"sliding_window,omitempty"`
	// DType is "float32" (default) or "float64" (for finite-difference
	// gradient checks; ORT runs it but generation does not).
	DType   string  `json:"dtype"`
	Seed    uint64  `json:"seed"`
	InitStd float64 `json:"init_std"` // default DefaultInitStd
	BOS     int64   `json:"bos_token_id"`
	EOS     int64   `json:"eos_token_id"`
	// Pad is the pad token id; nil writes none (generation then pads with EOS).
	Pad *int64 `json:"pad_token_id,omitempty"`
}

// DefaultInitStd is the weights' initial standard deviation when
// Config.InitStd is 0 (Hugging Face's initializer_range).
const DefaultInitStd = 0.02

// Defaults fills zero fields.
func (c Config) Defaults() Config {
	if c.Arch == "" {
		c.Arch = Llama
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.Layers, 2)
	def(&c.DModel, 128)
	def(&c.Heads, 4)
	def(&c.KVHeads, c.Heads) // gpt2 has no grouped KV: Validate refuses another count, not overwrite it
	if c.Heads > 0 {
		def(&c.HeadDim, c.DModel/c.Heads)
	}
	if c.Arch == GPT2 {
		def(&c.FFN, 4*c.DModel)
	} else {
		def(&c.FFN, (8*c.DModel/3+31)/32*32)
	}
	def(&c.Vocab, 512)
	def(&c.MaxPositions, 1024)
	if c.RopeTheta == 0 {
		c.RopeTheta = 10000
	}
	if c.NormEps == 0 {
		if c.Arch == GPT2 {
			c.NormEps = 1e-5
		} else {
			c.NormEps = 1e-6
		}
	}
	if c.TieEmbeddings == nil {
		t := c.Arch == GPT2
		c.TieEmbeddings = &t
	}
	if c.DType == "" {
		c.DType = "float32"
	}
	if c.InitStd == 0 {
		c.InitStd = DefaultInitStd
	}
	return c
}

// Validate refuses sizes that cannot make a model.
func (c Config) Validate() error {
	switch c.Arch {
	case GPT2, Llama:
	default:
		return fmt.Errorf("model config: arch %q, want gpt2 or llama", c.Arch)
	}
	pos := map[string]int{"layers": c.Layers, "d_model": c.DModel, "heads": c.Heads, "kv_heads": c.KVHeads,
		"head_dim": c.HeadDim, "ffn": c.FFN, "vocab": c.Vocab, "max_positions": c.MaxPositions}
	for _, k := range []string{"layers", "d_model", "heads", "kv_heads", "head_dim", "ffn", "vocab", "max_positions"} {
		if pos[k] <= 0 {
			return fmt.Errorf("model config: %s is %d, want > 0", k, pos[k])
		}
	}
	if c.Heads%c.KVHeads != 0 {
		return fmt.Errorf("model config: heads %d is not a multiple of kv_heads %d", c.Heads, c.KVHeads)
	}
	if c.Arch == GPT2 && c.KVHeads != c.Heads {
		return fmt.Errorf("model config: gpt2 has no grouped KV heads (kv_heads %d, heads %d)", c.KVHeads, c.Heads)
	}
	if c.Arch == GPT2 && (c.OutputBias || c.MLPBias || c.QKNorm || c.SlidingWindow != 0 || c.AttentionBias) {
		return fmt.Errorf("model config: attention_bias, output_bias, mlp_bias, qk_norm and sliding_window are llama options (arch gpt2)")
	}
	if c.SlidingWindow < 0 {
		return fmt.Errorf("model config: sliding_window %d, want >= 0 (0: none)", c.SlidingWindow)
	}
	if width := positionWidth(c); int64(c.MaxPositions)*int64(width) > MaxPositionTable {
		if c.Arch == Llama {
			return fmt.Errorf("model config: max_positions (max_position_embeddings) %d × head_dim %d: the rotary cos and sin tables built into the graph would hold %d values each (at most %d); lower max_position_embeddings in config.json to the context you use (rotary positions below it compute the same)",
				c.MaxPositions, width, int64(c.MaxPositions)*int64(width), int64(MaxPositionTable))
		}
		return fmt.Errorf("model config: max_positions %d × d_model %d: the position embedding would hold %d values (at most %d); lower max_positions",
			c.MaxPositions, width, int64(c.MaxPositions)*int64(width), int64(MaxPositionTable))
	}
	if c.Arch == Llama && c.HeadDim%2 != 0 {
		return fmt.Errorf("model config: rotary positions need an even head_dim, got %d", c.HeadDim)
	}
	if c.DType != "float32" && c.DType != "float64" {
		return fmt.Errorf("model config: dtype %q, want float32 or float64", c.DType)
	}
	for name, id := range map[string]int64{"bos_token_id": c.BOS, "eos_token_id": c.EOS} {
		if id < 0 || id >= int64(c.Vocab) {
			return fmt.Errorf("model config: %s %d outside the vocab [0, %d)", name, id, c.Vocab)
		}
	}
	if c.Pad != nil && (*c.Pad < 0 || *c.Pad >= int64(c.Vocab)) {
		return fmt.Errorf("model config: pad_token_id %d outside the vocab [0, %d)", *c.Pad, c.Vocab)
	}
	if !(c.InitStd >= 0) || math.IsInf(c.InitStd, 0) {
		return fmt.Errorf("model config: init_std %v, want a finite number >= 0", c.InitStd)
	}
	if !(c.NormEps > 0) || math.IsInf(c.NormEps, 0) {
		return fmt.Errorf("model config: norm_eps (rms_norm_eps, layer_norm_epsilon) %v, want a finite number > 0 (1e-6 is usual)", c.NormEps)
	}
	if c.Arch == Llama && (!(c.RopeTheta > 0) || math.IsInf(c.RopeTheta, 0)) {
		return fmt.Errorf("model config: rope_theta %v, want a finite number > 0 (10000 is usual)", c.RopeTheta)
	}
	return nil
}

// MaxPositionTable bounds a model's per-position table (a Llama's rotary
// cos and sin, [max_positions, head_dim] each and stored inside
// model.onnx; GPT-2's position embedding, [max_positions, d_model]), so
// that an absurd max_position_embeddings is refused instead of exhausting
// memory. 2^27 values covers a 1M-token context at head_dim 128.
const MaxPositionTable = 1 << 27

func positionWidth(c Config) int {
	if c.Arch == GPT2 {
		return c.DModel
	}
	return c.HeadDim
}

// Params is the number of weights the built model holds.
func (c Config) Params() int64 {
	c = c.Defaults()
	d, q, kv, f, V := int64(c.DModel), int64(c.Heads*c.HeadDim), int64(c.KVHeads*c.HeadDim), int64(c.FFN), int64(c.Vocab)
	var layer int64
	if c.Arch == GPT2 {
		layer = 2*2*d + (d*q + q) + 2*(d*kv+kv) + (q*d + d) + (d*f + f) + (f*d + d)
	} else {
		layer = 2*d + d*q + 2*d*kv + q*d + 3*d*f
		if c.AttentionBias {
			layer += q + 2*kv
		}
		if c.OutputBias {
			layer += d
		}
		if c.MLPBias {
			layer += 2*f + d
		}
		if c.QKNorm {
			layer += 2 * int64(c.HeadDim)
		}
	}
	n := V*d + int64(c.Layers)*layer
	if c.Arch == GPT2 {
		n += int64(c.MaxPositions)*d + 2*d
	} else {
		n += d
	}
	if !*c.TieEmbeddings {
		n += d * V
	}
	return n
}

// Build makes the model graph: weights as initializers drawn from a seeded
// normal, the causal and padding masks computed in the graph from
// attention_mask, and the Optimum IO layout (see the package doc).
func Build(cfg Config) (*onnxpb.ModelProto, error) {
	return BuildFrom(cfg, nil)
}

// WeightSource supplies a model's weights in place of random ones.
type WeightSource interface {
	// Weight returns the initializer for the builder's weight name, with
	// dims in the builder's layout. transposed says the builder stores the
	// Hugging Face tensor transposed: linear layers are [in, out] here and
	// [out, in] in a checkpoint. The tensor may point at external data
	// (see ir.Graph.ExternalInitializer) that the source writes itself.
	Weight(name string, dims []int64, transposed bool) (*onnxpb.TensorProto, error)
}

// BuildFrom is Build with every weight taken from src (nil: random). With
// a source, the weight names are Hugging Face's (model.layers.0.self_attn.q_proj.weight)
// for the llama family, so a checkpoint's tensors load by name; the tests
// load GPT-2 and Llama checkpoints this way to show the graphs compute the
// same functions as transformers.
func BuildFrom(cfg Config, src WeightSource) (*onnxpb.ModelProto, error) {
	c := cfg.Defaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	b := newBuilder(c)
	b.src = src
	b.model()
	if b.err != nil {
		return nil, fmt.Errorf("build %s model: %w", c.Arch, b.err)
	}
	m, err := ir.NewModel(b.g, 0)
	if err != nil {
		return nil, fmt.Errorf("build %s model: %w", c.Arch, err)
	}
	m.ProducerName = "tagpr"
	m.DocString = fmt.Sprintf("tagpr built-in %s causal LM: %d layers, d_model %d, %d heads (%d kv), vocab %d",
		c.Arch, c.Layers, c.DModel, c.Heads, c.KVHeads, c.Vocab)
	if src == nil {
		m.DocString += fmt.Sprintf(", seed %d", c.Seed)
	}
	if err := ir.Validate(m); err != nil {
		return nil, fmt.Errorf("build %s model: %w", c.Arch, err)
	}
	return m, nil
}

// builder writes one model graph.
type builder struct {
	c    Config
	g    *ir.Graph
	dt   ir.DataType
	rng  *rand.Rand
	nrep int
	src  WeightSource
	err  error
	// nodeNames are the node names given by named.
	nodeNames map[string]bool
}

func newBuilder(c Config) *builder {
	dt := ir.Float
	if c.DType == "float64" {
		dt = ir.Double
	}
	return &builder{c: c, g: ir.NewGraph("tagpr_" + string(c.Arch)), dt: dt,
		rng: rand.New(rand.NewPCG(c.Seed, 0x7461677072)), nrep: c.Heads / c.KVHeads, nodeNames: map[string]bool{}}
}

// weight adds an initializer of the model's float type.
func (b *builder) weight(name string, dims []int64, data []float64) string {
	if b.dt == ir.Double {
		return b.g.Initializer(name, ir.Tensor(name, dims, data))
	}
	f := make([]float32, len(data))
	for i, v := range data {
		f[i] = float32(v)
	}
	return b.g.Initializer(name, ir.Tensor(name, dims, f))
}

// param adds a model weight: from the source when there is one, else
// drawn by init (transposed: see WeightSource).
func (b *builder) param(name string, dims []int64, transposed bool, init func(data []float64)) string {
	if b.src == nil {
		data := make([]float64, ir.NumElements(dims))
		init(data)
		return b.weight(name, dims, data)
	}
	t, err := b.src.Weight(name, dims, transposed)
	if err != nil {
		if b.err == nil {
			b.err = err
		}
		return b.g.Initializer(name, ir.Tensor(name, dims, make([]float32, ir.NumElements(dims))))
	}
	if t.GetDataLocation() == onnxpb.TensorProto_EXTERNAL {
		return b.g.ExternalInitializer(name, t)
	}
	return b.g.Initializer(name, t)
}

func (b *builder) normal(name string, std float64, transposed bool, dims ...int64) string {
	return b.param(name, dims, transposed, func(data []float64) {
		for i := range data {
			data[i] = b.rng.NormFloat64() * std
		}
	})
}

func (b *builder) fill(name string, v float64, dims ...int64) string {
	return b.param(name, dims, false, func(data []float64) {
		for i := range data {
			data[i] = v
		}
	})
}

// named adds a node named as Optimum's exports name them, from the module
// path and the op: /model/layers.0/self_attn/q_proj/MatMul for module
// model.layers.0.self_attn.q_proj. HFNames reads the module back.
func (b *builder) named(module, op string, in []string, attrs ...ir.Attribute) string {
	return b.namedTo(module, op, in, "", attrs...)
}

// namedTo is named with a given output name ("": generated).
func (b *builder) namedTo(module, op string, in []string, out string, attrs ...ir.Attribute) string {
	var parts []string
	for _, seg := range strings.Split(module, ".") {
		if _, err := strconv.Atoi(seg); err == nil && len(parts) > 0 {
			parts[len(parts)-1] += "." + seg
			continue
		}
		parts = append(parts, seg)
	}
	name := "/" + strings.Join(append(parts, op), "/")
	// Repeats get _1, _2… as exporters number them.
	for i := 1; b.nodeNames[name]; i++ {
		name = fmt.Sprintf("/%s/%s_%d", strings.Join(parts, "/"), op, i)
	}
	b.nodeNames[name] = true
	n := b.g.AddNode(&onnxpb.NodeProto{Name: name, OpType: op, Input: in, Output: []string{out}, Attribute: attrs})
	return n.Output[0]
}

// scalar is a rank-0 constant of the model's float type.
func (b *builder) scalar(prefix string, v float64) string {
	if b.dt == ir.Double {
		return b.constant(ir.Scalar("", v))
	}
	return b.constant(ir.Scalar("", float32(v)))
}

// constant adds a Constant node (shapes, axes, scalars) with a generated name.
func (b *builder) constant(t *onnxpb.TensorProto) string {
	n := b.g.AddNode(&onnxpb.NodeProto{OpType: "Constant", Output: []string{""}, Attribute: []ir.Attribute{ir.AttrTensor("value", t)}})
	return n.Output[0]
}

func (b *builder) ints(_ string, v ...int64) string { return b.constant(ir.Vector("", v...)) }

func (b *builder) op(op string, in ...string) string { return b.g.Op(op, in) }

func (b *builder) model() {
	c, g := b.c, b.g
	g.Input(InputIDs, ir.Int64, "batch_size", "sequence_length")
	g.Input(AttentionMask, ir.Int64, "batch_size", "past_sequence_length + sequence_length")
	g.Input(PositionIDs, ir.Int64, "batch_size", "sequence_length")
	for i := 0; i < c.Layers; i++ {
		g.Input(PastKey(i), b.dt, "batch_size", c.KVHeads, "past_sequence_length", c.HeadDim)
		g.Input(PastValue(i), b.dt, "batch_size", c.KVHeads, "past_sequence_length", c.HeadDim)
	}

	bias := b.maskBias()
	d, V := int64(c.DModel), int64(c.Vocab)
	wte := b.normal("model.embed_tokens.weight", c.InitStd, false, V, d)
	x := b.named("model.embed_tokens", "Gather", []string{wte, InputIDs}, ir.AttrInt("axis", 0))
	var rope *rotary
	if c.Arch == GPT2 {
		wpe := b.normal("model.embed_positions.weight", c.InitStd/2, false, int64(c.MaxPositions), d)
		x = b.op("Add", x, b.named("model.embed_positions", "Gather", []string{wpe, PositionIDs}, ir.AttrInt("axis", 0)))
	} else {
		rope = b.rotary()
	}
	for i := 0; i < c.Layers; i++ {
		p := fmt.Sprintf("model.layers.%d.", i)
		h := b.norm(p+"input_layernorm", x)
		x = b.op("Add", x, b.attention(i, p+"self_attn.", h, bias, rope))
		h = b.norm(p+"post_attention_layernorm", x)
		x = b.op("Add", x, b.mlp(p+"mlp.", h))
	}
	x = b.norm("model.norm", x)
	var head string
	if *c.TieEmbeddings {
		head = b.named("lm_head", "Transpose", []string{wte}, ir.AttrInts("perm", 1, 0))
	} else {
		head = b.normal("lm_head.weight", c.InitStd, true, d, V)
	}
	b.namedTo("lm_head", "MatMul", []string{x, head}, Logits)
	g.Output(Logits, b.dt, "batch_size", "sequence_length", c.Vocab)
	for i := 0; i < c.Layers; i++ {
		g.Output(PresentKey(i), b.dt, "batch_size", c.KVHeads, "past_sequence_length + sequence_length", c.HeadDim)
		g.Output(PresentValue(i), b.dt, "batch_size", c.KVHeads, "past_sequence_length + sequence_length", c.HeadDim)
	}
}

// maskBias is the additive attention bias [B,1,1,T,S]: 0 where query t
// (absolute position S-T+t) may see key s — s <= S-T+t, within the sliding
// window if there is one (S-T+t - s < window), and attention_mask[b,s] ==
// 1 — and -1e9 elsewhere. A finite value keeps rows
// with nothing visible (left-padding queries) free of NaN.
func (b *builder) maskBias() string {
	g := b.g
	zero := b.constant(ir.Scalar("", int64(0)))
	one := b.constant(ir.Scalar("", int64(1)))
	idx1 := b.constant(ir.Scalar("", int64(1)))
	S := g.Op("Gather", []string{b.op("Shape", AttentionMask), idx1}, ir.AttrInt("axis", 0))
	T := g.Op("Gather", []string{b.op("Shape", InputIDs), idx1}, ir.AttrInt("axis", 0))
	keys := b.op("Range", zero, S, one)                 // [S]
	queries := b.op("Range", b.op("Sub", S, T), S, one) // [T] absolute positions
	k2, q2 := b.op("Unsqueeze", keys, b.ints("axes", 0)), b.op("Unsqueeze", queries, b.ints("axes", 1))
	causal := b.op("LessOrEqual", k2, q2) // [T,S]
	if w := b.c.SlidingWindow; w > 0 {
		causal = b.op("And", causal, b.op("Less", b.op("Sub", q2, k2), b.constant(ir.Scalar("", int64(w)))))
	}
	pad := g.Op("Cast", []string{AttentionMask}, ir.AttrInt("to", int64(ir.Bool)))
	pad = b.op("Unsqueeze", pad, b.ints("axes", 1, 2, 3)) // [B,1,1,1,S]
	allowed := b.op("And", causal, pad)                   // [B,1,1,T,S]
	return b.op("Where", allowed, b.scalar("mask_open", 0), b.scalar("mask_closed", -1e9))
}

// rotary holds the cos/sin of each position, gathered by position_ids.
type rotary struct{ cosQ, sinQ, cosK, sinK string }

// rotary builds Hugging Face's rotate-half rotary embedding from tables
// [MaxPositions, HeadDim] gathered by position_ids, so no Sin/Cos kernel is
// needed (those lack double kernels). The sin table carries rotate_half's
// sign: rot(x) = x·cos + swap_halves(x)·sin_signed.
func (b *builder) rotary() *rotary {
	c := b.c
	D, half := c.HeadDim, c.HeadDim/2
	cos := make([]float64, c.MaxPositions*D)
	sin := make([]float64, c.MaxPositions*D)
	for p := 0; p < c.MaxPositions; p++ {
		for i := 0; i < half; i++ {
			invFreq := 1 / math.Pow(c.RopeTheta, float64(2*i)/float64(D))
			a := float64(p) * invFreq
			if b.dt == ir.Float {
				// As transformers computes them: inv_freq, the angle and
				// cos/sin in float32, so positions far out agree too.
				inv := 1 / float32(math.Pow(c.RopeTheta, float64(float32(2*i)/float32(D))))
				a = float64(float32(p) * inv)
			}
			cos[p*D+i], cos[p*D+half+i] = math.Cos(a), math.Cos(a)
			sin[p*D+i], sin[p*D+half+i] = -math.Sin(a), math.Sin(a)
		}
	}
	ct := b.weight("model.rotary.cos", []int64{int64(c.MaxPositions), int64(D)}, cos)
	st := b.weight("model.rotary.sin_signed", []int64{int64(c.MaxPositions), int64(D)}, sin)
	cg := b.named("model.rotary_emb", "Gather", []string{ct, PositionIDs}, ir.AttrInt("axis", 0)) // [B,T,D]
	sg := b.named("model.rotary_emb", "Gather", []string{st, PositionIDs}, ir.AttrInt("axis", 0))
	q := b.ints("axes", 1, 2) // → [B,1,1,T,D] for 5-D queries
	k := b.ints("axes", 1)    // → [B,1,T,D] for keys
	return &rotary{cosQ: b.op("Unsqueeze", cg, q), sinQ: b.op("Unsqueeze", sg, q),
		cosK: b.op("Unsqueeze", cg, k), sinK: b.op("Unsqueeze", sg, k)}
}

func (b *builder) rotate(x, cos, sin string) string {
	g, half := b.g, int64(b.c.HeadDim/2)
	axis := b.ints("axes", -1)
	lo := b.op("Slice", x, b.ints("starts", 0), b.ints("ends", half), axis)
	hi := b.op("Slice", x, b.ints("starts", half), b.ints("ends", int64(b.c.HeadDim)), axis)
	swapped := g.Op("Concat", []string{hi, lo}, ir.AttrInt("axis", -1))
	return b.op("Add", b.op("Mul", x, cos), b.op("Mul", swapped, sin))
}

func (b *builder) norm(prefix, x string) string {
	return b.normOver(prefix, x, int64(b.c.DModel))
}

// normOver normalizes over the last axis, of width d.
func (b *builder) normOver(prefix, x string, d int64) string {
	c, g := b.c, b.g
	if c.Arch == GPT2 {
		w := b.fill(prefix+".weight", 1, d)
		bi := b.fill(prefix+".bias", 0, d)
		return b.named(prefix, "LayerNormalization", []string{x, w, bi}, ir.AttrInt("axis", -1), ir.AttrFloat("epsilon", float32(c.NormEps)))
	}
	// RMSNorm, decomposed as Hugging Face exports it: Pow(x, 2) → ReduceMean
	// → Add eps → Sqrt → Div → Mul weight. ORT fuses exactly this pattern
	// into SimplifiedLayerNormalization (x·x in place of Pow is not fused).
	// In float64 that fused kernel is off by ~1e-3 in ORT 1.30, so the
	// double build squares with Mul, which ORT leaves alone.
	w := b.fill(prefix+".weight", 1, d)
	sq := b.op("Pow", x, b.scalar("two", 2))
	if b.dt == ir.Double {
		sq = b.op("Mul", x, x)
	}
	ms := g.Op("ReduceMean", []string{sq, b.ints("axes", -1)}, ir.AttrInt("keepdims", 1))
	rms := b.op("Sqrt", b.op("Add", ms, b.scalar("eps", c.NormEps)))
	return b.named(prefix, "Mul", []string{b.op("Div", x, rms), w})
}

// linear is x·W (+ bias); W is stored [in, out], the transpose of a
// checkpoint's nn.Linear weight.
func (b *builder) linear(name string, x string, in, out int64, bias bool, std float64) string {
	y := b.named(name, "MatMul", []string{x, b.normal(name+".weight", std, true, in, out)})
	if bias {
		y = b.named(name, "Add", []string{y, b.fill(name+".bias", 0, out)})
	}
	return y
}

// attention is causal self-attention with grouped KV heads. Queries are kept
// as [B, Hkv, nrep, T, D] so each KV head serves its nrep query heads by
// broadcasting, without copying the cache.
func (b *builder) attention(layer int, p, x, bias string, rope *rotary) string {
	c, g := b.c, b.g
	d, H, Hkv, D, nrep := int64(c.DModel), int64(c.Heads), int64(c.KVHeads), int64(c.HeadDim), int64(b.nrep)
	hasBias := c.Arch == GPT2 || c.AttentionBias
	std := c.InitStd
	q := b.linear(p+"q_proj", x, d, H*D, hasBias, std)
	k := b.linear(p+"k_proj", x, d, Hkv*D, hasBias, std)
	v := b.linear(p+"v_proj", x, d, Hkv*D, hasBias, std)

	q = b.op("Reshape", q, b.ints("shape", 0, 0, Hkv, nrep, D))
	if c.QKNorm {
		q = b.normOver(p+"q_norm", q, D)
	}
	q = g.Op("Transpose", []string{q}, ir.AttrInts("perm", 0, 2, 3, 1, 4)) // [B,Hkv,nrep,T,D]
	k = b.op("Reshape", k, b.ints("shape", 0, 0, Hkv, D))
	if c.QKNorm {
		k = b.normOver(p+"k_norm", k, D)
	}
	k = g.Op("Transpose", []string{k}, ir.AttrInts("perm", 0, 2, 1, 3)) // [B,Hkv,T,D]
	v = b.op("Reshape", v, b.ints("shape", 0, 0, Hkv, D))
	v = g.Op("Transpose", []string{v}, ir.AttrInts("perm", 0, 2, 1, 3))
	if rope != nil {
		q = b.rotate(q, rope.cosQ, rope.sinQ)
		k = b.rotate(k, rope.cosK, rope.sinK)
	}
	g.Node("Concat", []string{PastKey(layer), k}, []string{PresentKey(layer)}, ir.AttrInt("axis", 2))
	g.Node("Concat", []string{PastValue(layer), v}, []string{PresentValue(layer)}, ir.AttrInt("axis", 2))

	one := b.ints("axes", 2)
	k5 := b.op("Unsqueeze", PresentKey(layer), one) // [B,Hkv,1,S,D]
	v5 := b.op("Unsqueeze", PresentValue(layer), one)
	kt := g.Op("Transpose", []string{k5}, ir.AttrInts("perm", 0, 1, 2, 4, 3)) // [B,Hkv,1,D,S]
	q = b.op("Mul", q, b.scalar("attn_scale", 1/math.Sqrt(float64(D))))
	scores := b.op("Add", b.op("MatMul", q, kt), bias) // [B,Hkv,nrep,T,S]
	probs := g.Op("Softmax", []string{scores}, ir.AttrInt("axis", -1))
	ctx := b.op("MatMul", probs, v5)                                           // [B,Hkv,nrep,T,D]
	ctx = g.Op("Transpose", []string{ctx}, ir.AttrInts("perm", 0, 3, 1, 2, 4)) // [B,T,Hkv,nrep,D]
	ctx = b.op("Reshape", ctx, b.ints("shape", 0, 0, H*D))
	// GPT-2 scales the residual projections' init by 1/sqrt(2·layers).
	ostd := std
	if c.Arch == GPT2 {
		ostd = std / math.Sqrt(2*float64(c.Layers))
	}
	return b.linear(p+"o_proj", ctx, H*D, d, c.Arch == GPT2 || c.OutputBias, ostd)
}

func (b *builder) mlp(p, x string) string {
	c, g := b.c, b.g
	d, f := int64(c.DModel), int64(c.FFN)
	if c.Arch == GPT2 {
		h := b.linear(p+"fc_in", x, d, f, true, c.InitStd)
		// gelu_new: 0.5·h·(1 + tanh(√(2/π)·(h + 0.044715·h³)))
		h3 := b.op("Mul", b.op("Mul", h, h), h)
		inner := b.op("Mul", b.op("Add", h, b.op("Mul", h3, b.scalar("gelu_c", 0.044715))), b.scalar("gelu_k", math.Sqrt(2/math.Pi)))
		gelu := b.op("Mul", b.op("Mul", h, b.scalar("half", 0.5)), b.op("Add", b.op("Tanh", inner), b.scalar("one", 1)))
		return b.linear(p+"fc_out", gelu, f, d, true, c.InitStd/math.Sqrt(2*float64(c.Layers)))
	}
	gate := b.linear(p+"gate_proj", x, d, f, c.MLPBias, c.InitStd)
	up := b.linear(p+"up_proj", x, d, f, c.MLPBias, c.InitStd)
	var silu string
	if b.dt == ir.Double {
		// ORT fuses x·sigmoid(x) into com.microsoft QuickGelu, which has no
		// double kernel; this form computes the same and is left alone.
		silu = b.op("Mul", gate, b.op("Reciprocal", b.op("Add", b.op("Exp", b.op("Neg", gate)), b.scalar("one", 1))))
	} else {
		silu = b.op("Mul", gate, g.Op("Sigmoid", []string{gate}))
	}
	return b.linear(p+"down_proj", b.op("Mul", silu, up), f, d, c.MLPBias, c.InitStd)
}

// HFConfigFor is the config.json Hugging Face would write for this model,
// which transformers.js and Optimum read.
func HFConfigFor(cfg Config) map[string]any {
	c := cfg.Defaults()
	m := map[string]any{
		"model_type":           string(c.Arch),
		"vocab_size":           c.Vocab,
		"bos_token_id":         c.BOS,
		"eos_token_id":         c.EOS,
		"tie_word_embeddings":  *c.TieEmbeddings,
		"use_cache":            true,
		"torch_dtype":          c.DType,
		"transformers_version": "4.57.0",
		"tagpr_builtin":        c,
	}
	if c.Pad != nil {
		m["pad_token_id"] = *c.Pad
	}
	if c.Arch == GPT2 {
		m["architectures"] = []string{"GPT2LMHeadModel"}
		m["n_embd"], m["n_head"], m["n_layer"] = c.DModel, c.Heads, c.Layers
		m["n_positions"], m["n_ctx"], m["n_inner"] = c.MaxPositions, c.MaxPositions, c.FFN
		m["layer_norm_epsilon"], m["activation_function"] = c.NormEps, "gelu_new"
		return m
	}
	m["architectures"] = []string{"LlamaForCausalLM"}
	switch {
	case c.QKNorm:
		// transformers' Qwen3: q/k norms; biases on q/k/v/o together or none.
		m["model_type"], m["architectures"] = "qwen3", []string{"Qwen3ForCausalLM"}
	case c.AttentionBias && !c.OutputBias:
		// transformers' Llama puts attention_bias on o_proj too; Qwen2 has
		// q/k/v biases only, as this model.
		m["model_type"], m["architectures"] = "qwen2", []string{"Qwen2ForCausalLM"}
	}
	if c.SlidingWindow > 0 {
		m["model_type"], m["architectures"], m["sliding_window"] = "mistral", []string{"MistralForCausalLM"}, c.SlidingWindow
	}
	m["hidden_size"], m["num_attention_heads"], m["num_key_value_heads"] = c.DModel, c.Heads, c.KVHeads
	m["num_hidden_layers"], m["head_dim"], m["intermediate_size"] = c.Layers, c.HeadDim, c.FFN
	m["max_position_embeddings"], m["rms_norm_eps"], m["rope_theta"] = c.MaxPositions, c.NormEps, c.RopeTheta
	m["hidden_act"], m["attention_bias"], m["mlp_bias"] = "silu", c.AttentionBias, c.MLPBias
	return m
}

// GenerationConfigFor is the matching generation_config.json.
func GenerationConfigFor(cfg Config) map[string]any {
	c := cfg.Defaults()
	m := map[string]any{"bos_token_id": c.BOS, "eos_token_id": c.EOS, "transformers_version": "4.57.0"}
	if c.Pad != nil {
		m["pad_token_id"] = *c.Pad
	}
	return m
}

// WriteModelDir builds the model and writes dir/model.onnx (or
// dir/onnx/model.onnx with transformersLayout), dir/config.json and
// dir/generation_config.json, each atomically. It returns the model path.
func WriteModelDir(cfg Config, dir string, transformersLayout bool) (string, error) {
	m, err := Build(cfg)
	if err != nil {
		return "", err
	}
	modelPath := filepath.Join(dir, "model.onnx")
	if transformersLayout {
		modelPath = filepath.Join(dir, "onnx", "model.onnx")
	}
	if err := os.MkdirAll(filepath.Dir(modelPath), 0o755); err != nil {
		return "", fmt.Errorf("write model %s: %w", modelPath, err)
	}
	// The model goes last, an earlier one first: model.onnx is what makes
	// dir a model, so a write that fails (a full disk) must not leave one
	// without, or beside another model's, config.json.
	if err := os.Remove(modelPath); err != nil && !os.IsNotExist(err) {
		return "", fmt.Errorf("write model %s: %w", modelPath, err)
	}
	for name, v := range map[string]any{"config.json": HFConfigFor(cfg), "generation_config.json": GenerationConfigFor(cfg)} {
		p := filepath.Join(dir, name)
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return "", fmt.Errorf("write %s: %w", p, err)
		}
		if err := renameio.WriteFile(p, append(b, '\n'), 0o644); err != nil {
			return "", fmt.Errorf("write %s: %w", p, err)
		}
	}
	if err := ir.Write(m, modelPath, ir.WriteOptions{}); err != nil {
		return "", err // ir.Write names the model's path
	}
	return modelPath, nil
}

// TablePositions is the number of positions a model built by Build holds a
// table for (its rotary cos table, or GPT-2's learned position embeddings),
// 0 when the graph has neither (an exported model computes its rotary
// angles, and config.json's max_position_embeddings says the limit): what
// a caller without a config can check a run's lengths against.
func TablePositions(m *onnxpb.ModelProto) int {
	for _, t := range m.GetGraph().GetInitializer() {
		if n := t.GetName(); (n == "model.rotary.cos" || n == "model.embed_positions.weight") && len(t.GetDims()) == 2 {
			return int(t.GetDims()[0])
		}
	}
	return 0
}
