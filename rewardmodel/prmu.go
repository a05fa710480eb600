package rewardmodel

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/onnxpb"
)

// PRMU (Personalization Reward Model with User embeddings) scores how well a
// response fits a user known only by the texts of their profile items. The
// graph, float32 throughout:
//
//	text encoder  enc(text) = tanh(W_enc·x(text) + b_enc)
//	user          u = tanh(W_user·pool_k enc(profile item k) + b_user)
//	response      r = tanh(W_resp·enc(response) + b_resp)
//	fusion        score = w_out·tanh(W_fuse·[u, r, u⊙r] + b_fuse) + b_out
//
// x(text) is, with the built-in encoder, the mean of a learned embedding of
// the text's tokens (a bag of tokens over PRMU's own small tokenizer); with
// PRMUConfig.Encoder, the pooled embedding of a sentence encoder exported
// from PyTorch (TextEncoder), frozen or tuned with LoRA.
//
// pool is the mean over the items (default) or, with Pool "attention", a
// softmax-weighted sum with weights w_att·tanh(W_att·enc(item) + b_att), so
// a user's telling items can count more than the rest; padding items get
// no weight either way.
//
// One encoder reads profile items and responses, so a word of a response
// lands where the same word of the profile does. A bag of tokens suffices
// for what PRMU has to see on the synthetic benchmark (which labels, words
// and styles a user uses) and keeps scoring cheap next to the policy; a
// sentence encoder can read word order, negation and paraphrase.

// Names of the PRMU graph's inputs and output. With the built-in encoder,
// texts come in as bags of tokens: a row holds each vocab entry's share of
// the text's tokens (it sums to 1), so the mean of the token embeddings is
// one MatMul, whose gradient is a MatMul too (a Gather's is a scatter-add,
// several times slower in ORT). A profile row of zeros is no item: it is not
// counted. With a TextEncoder, texts come in as its pooled embeddings and
// profile_mask says which item slots hold an item.
const (
	PRMUProfileBOW  = "profile_bow"  // [B,K,V] float32: K profile items
	PRMUResponseBOW = "response_bow" // [B,V] float32
	PRMUProfileEmb  = "profile_emb"  // [B,K,D] float32: encoder embeddings of K profile items
	PRMUProfileMask = "profile_mask" // [B,K] float32: 1 for an item, 0 for padding
	PRMUResponseEmb = "response_emb" // [B,D] float32
	PRMUScoreOutput = "score"        // [B] float32: the raw score (a logit)
)

// Profile pooling modes (PRMUConfig.Pool).
const (
	PoolMean      = "mean"
	PoolAttention = "attention"
)

// prmuWeightPrefix starts every PRMU weight's name (the trainer selects them by it).
const prmuWeightPrefix = "prmu."

// PRMUConfig sizes a PRMU and how much of each text it reads. Zero fields
// take the defaults of Defaults.
type PRMUConfig struct {
	Vocab             int     `json:"vocab,omitempty"`     // bag: embedding rows, the tokenizer's vocab size
	Embed             int     `json:"embed,omitempty"`     // bag: token embedding width (default 64)
	Hidden            int     `json:"hidden"`              // encoder, user and fusion width (default 64)
	MaxItems          int     `json:"max_items"`           // profile items read per user, the first ones (default 8)
	MaxItemTokens     int     `json:"max_item_tokens"`     // bag: tokens read per profile item (default 48)
	MaxResponseTokens int     `json:"max_response_tokens"` // bag: tokens read per response (default 48)
	Pool              string  `json:"pool"`                // profile pooling: "mean" (default) or "attention"
	Seed              uint64  `json:"seed"`                // weight initialization
	EmbedStd          float64 `json:"embed_std,omitempty"` // bag: embedding init scale (default 0.5)
	// Encoder, when set, replaces the bag of tokens by a sentence encoder
	// exported from PyTorch.
	Encoder *PRMUEncoder `json:"encoder,omitempty"`
}

// Encoder tunings (PRMUEncoder.Tuning).
const (
	TuneFrozen = "frozen" // the encoder stays as exported; text embeddings are computed once and cached
	TuneLoRA   = "lora"   // low-rank adapters on the encoder's MatMul weights train with the head
)

// PRMUEncoder chooses a sentence encoder exported with `optimum-cli export
// onnx --task feature-extraction` (see TextEncoder) as PRMU's text encoder.
type PRMUEncoder struct {
	// Dir is the export. In prmu.json it is relative to the PRMU directory
	// (Save copies the encoder there, tuned weights merged).
	Dir string `json:"dir"`
	// Pooling is "mean" or "cls"; "" reads Dir/1_Pooling/config.json.
	Pooling string `json:"pooling,omitempty"`
	// MaxTokens per text, special tokens included (0: 128 or the model's limit).
	MaxTokens int     `json:"max_tokens,omitempty"`
	Tuning    string  `json:"tuning"`               // TuneFrozen (default) or TuneLoRA
	LoRARank  int     `json:"lora_rank,omitempty"`  // adapter rank (default 4)
	LoRAAlpha float64 `json:"lora_alpha,omitempty"` // adapters scale by alpha/rank (default alpha = rank)
	// LoRASteps are the steps of joint adapter and head training that
	// follow the frozen-encoder steps (default 100).
	LoRASteps int `json:"lora_steps,omitempty"`
	// Dim and SHA256 are set by training: the embedding width and the
	// identity of the encoder the head was trained with (LoadPRMU refuses
	// another).
	Dim    int    `json:"dim,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
}

// Defaults fills zero fields.
func (c PRMUConfig) Defaults() PRMUConfig {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.Hidden, 64)
	def(&c.MaxItems, 8)
	if c.Pool == "" {
		c.Pool = PoolMean
	}
	if c.Encoder != nil {
		e := *c.Encoder
		if e.Tuning == "" {
			e.Tuning = TuneFrozen
		}
		if e.Tuning == TuneLoRA && e.LoRARank == 0 {
			e.LoRARank = 4
		}
		if e.Tuning == TuneLoRA && e.LoRASteps == 0 {
			e.LoRASteps = 100
		}
		c.Encoder = &e
		return c
	}
	def(&c.Embed, 64)
	def(&c.MaxItemTokens, 48)
	def(&c.MaxResponseTokens, 48)
	if c.EmbedStd == 0 {
		c.EmbedStd = 0.5
	}
	return c
}

// Validate refuses sizes that cannot make a model.
func (c PRMUConfig) Validate() error {
	type field struct {
		name string
		v    int
	}
	fields := []field{{"hidden", c.Hidden}, {"max_items", c.MaxItems}}
	if c.Encoder == nil {
		fields = append(fields, field{"vocab", c.Vocab}, field{"embed", c.Embed},
			field{"max_item_tokens", c.MaxItemTokens}, field{"max_response_tokens", c.MaxResponseTokens})
	}
	for _, f := range fields {
		if f.v <= 0 {
			return fmt.Errorf("prmu config: %s is %d, want > 0", f.name, f.v)
		}
	}
	if c.Pool != PoolMean && c.Pool != PoolAttention {
		return fmt.Errorf("prmu config: pool %q, want %q or %q", c.Pool, PoolMean, PoolAttention)
	}
	if c.Encoder != nil {
		return c.Encoder.validate()
	}
	if !(c.EmbedStd > 0) || math.IsInf(c.EmbedStd, 0) {
		return fmt.Errorf("prmu config: embed_std %v, want a finite value > 0", c.EmbedStd)
	}
	return nil
}

func (e *PRMUEncoder) validate() error {
	switch {
	case e.Dir == "":
		return fmt.Errorf("prmu config: encoder.dir is empty: name the directory of an encoder exported with optimum-cli export onnx --task feature-extraction")
	case e.Pooling != "" && e.Pooling != EncoderPoolMean && e.Pooling != EncoderPoolCLS:
		return fmt.Errorf("prmu config: encoder.pooling %q, want %q, %q or empty (read 1_Pooling/config.json)", e.Pooling, EncoderPoolMean, EncoderPoolCLS)
	case e.Tuning != TuneFrozen && e.Tuning != TuneLoRA:
		return fmt.Errorf("prmu config: encoder.tuning %q, want %q or %q", e.Tuning, TuneFrozen, TuneLoRA)
	case e.MaxTokens < 0:
		return fmt.Errorf("prmu config: encoder.max_tokens %d, want >= 0 (0: 128 or the model's limit)", e.MaxTokens)
	case e.Dim < 0:
		return fmt.Errorf("prmu config: encoder.dim %d, want >= 0", e.Dim)
	case e.Tuning == TuneLoRA && e.LoRARank <= 0:
		return fmt.Errorf("prmu config: encoder.lora_rank %d, want > 0", e.LoRARank)
	case e.LoRASteps < 0:
		return fmt.Errorf("prmu config: encoder.lora_steps %d, want >= 0", e.LoRASteps)
	case math.IsNaN(e.LoRAAlpha) || math.IsInf(e.LoRAAlpha, 0) || e.LoRAAlpha < 0:
		return fmt.Errorf("prmu config: encoder.lora_alpha %v, want a finite value >= 0", e.LoRAAlpha)
	}
	return nil
}

// BuildPRMU makes the PRMU inference graph with seeded random weights.
// Batch, item and token dims are symbolic. With an encoder, its embedding
// width (Encoder.Dim) must be known.
func BuildPRMU(cfg PRMUConfig) (*onnxpb.ModelProto, error) {
	c := cfg.Defaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	b := newPRMUBuilder(ir.NewGraph("tagpr_prmu"), c)
	g := b.g
	if c.Encoder == nil {
		g.Input(PRMUProfileBOW, ir.Float, "batch", "items", c.Vocab)
		g.Input(PRMUResponseBOW, ir.Float, "batch", c.Vocab)
		b.bagHead(PRMUProfileBOW, PRMUResponseBOW)
	} else {
		D := c.Encoder.Dim
		if D <= 0 {
			return nil, fmt.Errorf("build prmu: the encoder's embedding width is unknown (encoder.dim %d)", D)
		}
		g.Input(PRMUProfileEmb, ir.Float, "batch", "items", D)
		g.Input(PRMUProfileMask, ir.Float, "batch", "items")
		g.Input(PRMUResponseEmb, ir.Float, "batch", D)
		b.embeddingHead(PRMUProfileEmb, PRMUProfileMask, PRMUResponseEmb)
	}
	g.Output(PRMUScoreOutput, ir.Float, "batch")

	m, err := ir.NewModel(g, 0)
	if err != nil {
		return nil, fmt.Errorf("build prmu: %w", err)
	}
	m.DocString = fmt.Sprintf("tagpr PRMU: %s, hidden %d, %s pooling, seed %d", c.describeEncoder(), c.Hidden, c.Pool, c.Seed)
	if err := ir.Validate(m); err != nil {
		return nil, fmt.Errorf("build prmu: %w", err)
	}
	return m, nil
}

// describeEncoder says which text encoder the config uses.
func (c PRMUConfig) describeEncoder() string {
	if c.Encoder == nil {
		return fmt.Sprintf("bag of tokens (vocab %d, embed %d)", c.Vocab, c.Embed)
	}
	return fmt.Sprintf("%s encoder %s (%s pooling, width %d)", c.Encoder.Tuning, c.Encoder.Dir, c.Encoder.Pooling, c.Encoder.Dim)
}

type prmuBuilder struct {
	g   *ir.Graph
	c   PRMUConfig
	rng *rand.Rand
}

func newPRMUBuilder(g *ir.Graph, c PRMUConfig) *prmuBuilder {
	return &prmuBuilder{g: g, c: c, rng: rand.New(rand.NewPCG(c.Seed, 0x70726d75))}
}

// bagHead is the PRMU on bags of tokens [...,V]: the shared text encoder is
// the mean token embedding (the bag times the table), then a tanh layer.
func (b *prmuBuilder) bagHead(profBOW, respBOW string) {
	E, H := int64(b.c.Embed), int64(b.c.Hidden)
	embed := b.normal(prmuWeightPrefix+"embed", b.c.EmbedStd, int64(b.c.Vocab), E)
	encW := b.normal(prmuWeightPrefix+"enc.weight", 1/math.Sqrt(float64(E)), E, H)
	encB := b.zeros(prmuWeightPrefix+"enc.bias", H)
	encode := func(bow string) string {
		return b.op("Tanh", b.op("Add", b.op("MatMul", b.op("MatMul", bow, embed), encW), encB))
	}
	// 1 for an item with tokens (its row sums to ~1), 0 for none.
	big := b.g.Const("prmu_c", ir.Scalar("", float32(1e6)))
	present := b.op("Min", b.op("Mul", b.sum(profBOW, -1, false), big), b.one()) // [B,K]
	b.head(encode(profBOW), present, encode(respBOW))
}

// embeddingHead is the PRMU on encoder embeddings [...,D]: the shared text
// encoder is a tanh layer over them.
func (b *prmuBuilder) embeddingHead(profEmb, profMask, respEmb string) {
	D, H := int64(b.c.Encoder.Dim), int64(b.c.Hidden)
	encW := b.normal(prmuWeightPrefix+"enc.weight", 1/math.Sqrt(float64(D)), D, H)
	encB := b.zeros(prmuWeightPrefix+"enc.bias", H)
	encode := func(x string) string { return b.op("Tanh", b.op("Add", b.op("MatMul", x, encW), encB)) }
	b.head(encode(profEmb), profMask, encode(respEmb))
}

// head pools the encoded items [B,K,H] (present [B,K] is 1 for an item),
// fuses the user with the encoded response [B,H] and writes the score.
func (b *prmuBuilder) head(items, present, resp string) {
	H := int64(b.c.Hidden)
	var u string
	if b.c.Pool == PoolAttention {
		u = b.attentionPool(items, present, H) // [B,H]
	} else {
		u = b.maskedMean(items, b.op("Unsqueeze", present, b.ints(-1)), 1) // [B,H]
	}
	u = b.dense(prmuWeightPrefix+"user", u, H, H)                                    // [B,H]
	r := b.dense(prmuWeightPrefix+"resp", resp, H, H)                                // [B,H]
	z := b.g.Op("Concat", []string{u, r, b.op("Mul", u, r)}, ir.AttrInt("axis", -1)) // [B,3H]
	f := b.dense(prmuWeightPrefix+"fuse", z, 3*H, H)
	out := b.op("Add", b.op("MatMul", f, b.normal(prmuWeightPrefix+"out.weight", 1/math.Sqrt(float64(H)), H, 1)),
		b.zeros(prmuWeightPrefix+"out.bias", 1))
	b.g.Node("Reshape", []string{out, b.ints(-1)}, []string{PRMUScoreOutput})
}

func (b *prmuBuilder) op(op string, in ...string) string { return b.g.Op(op, in) }

func (b *prmuBuilder) ints(v ...int64) string {
	return b.g.Const("prmu_c", ir.Vector("", v...))
}

func (b *prmuBuilder) one() string { return b.g.Const("prmu_c", ir.Scalar("", float32(1))) }

func (b *prmuBuilder) normal(name string, std float64, dims ...int64) string {
	data := make([]float32, ir.NumElements(dims))
	for i := range data {
		data[i] = float32(b.rng.NormFloat64() * std)
	}
	return b.g.Initializer(name, ir.Tensor(name, dims, data))
}

func (b *prmuBuilder) zeros(name string, dims ...int64) string {
	return b.g.Initializer(name, ir.Tensor(name, dims, make([]float32, ir.NumElements(dims))))
}

// sum is ReduceSum over one axis.
func (b *prmuBuilder) sum(x string, axis int64, keep bool) string {
	k := int64(0)
	if keep {
		k = 1
	}
	return b.g.Op("ReduceSum", []string{x, b.ints(axis)}, ir.AttrInt("keepdims", k))
}

// maskedMean averages x over axis where w (broadcast to x) is 1; an empty
// row averages to 0 rather than NaN.
func (b *prmuBuilder) maskedMean(x, w string, axis int64) string {
	return b.op("Div", b.sum(b.op("Mul", x, w), axis, false), b.op("Max", b.sum(w, axis, false), b.one()))
}

// attentionPool is Σ_k softmax_k(w·tanh(W·h_k + b))·h_k over the present
// items: absent items' logits are pushed down by 1e4, so their weight is 0
// (exp underflows) without a NaN when a row has no item at all.
func (b *prmuBuilder) attentionPool(items, present string, H int64) string {
	a := b.dense(prmuWeightPrefix+"attn", items, H, H)                                                 // [B,K,H]
	logit := b.op("MatMul", a, b.normal(prmuWeightPrefix+"attn.query", 1/math.Sqrt(float64(H)), H, 1)) // [B,K,1]
	logit = b.op("Squeeze", logit, b.ints(-1))                                                         // [B,K]
	off := b.op("Mul", b.op("Sub", present, b.one()), b.g.Const("prmu_c", ir.Scalar("", float32(1e4))))
	w := b.g.Op("Softmax", []string{b.op("Add", logit, off)}, ir.AttrInt("axis", -1))
	return b.sum(b.op("Mul", items, b.op("Unsqueeze", w, b.ints(-1))), 1, false)
}

// dense is tanh(x·W + b) with W stored [in, out].
func (b *prmuBuilder) dense(name, x string, in, out int64) string {
	w := b.normal(name+".weight", 1/math.Sqrt(float64(in)), in, out)
	return b.op("Tanh", b.op("Add", b.op("MatMul", x, w), b.zeros(name+".bias", out)))
}
