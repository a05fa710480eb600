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
//	text encoder  enc(text) = tanh(W_enc·mean(embed[token] for its tokens) + b_enc)
//	user          u = tanh(W_user·pool_k enc(profile item k) + b_user)
//	response      r = tanh(W_resp·enc(response) + b_resp)
//	fusion        score = w_out·tanh(W_fuse·[u, r, u⊙r] + b_fuse) + b_out
//
// pool is the mean over the items (default) or, with Pool "attention", a
// softmax-weighted sum with weights w_att·tanh(W_att·enc(item) + b_att), so
// a user's telling items can count more than the rest; padding items get
// no weight either way.
//
// One encoder reads profile items and responses, so a word of a response
// lands where the same word of the profile does. A bag of tokens suffices
// for what PRMU has to see (which labels, words and styles a user uses) and
// keeps scoring cheap next to the policy.

// Names of the PRMU graph's inputs and output. Texts come in as bags of
// tokens: a row holds each vocab entry's share of the text's tokens (it sums
// to 1), so the mean of the token embeddings is one MatMul, whose gradient
// is a MatMul too (a Gather's is a scatter-add, several times slower in ORT).
// A profile row of zeros is no item: it is not counted.
const (
	PRMUProfileBOW  = "profile_bow"  // [B,K,V] float32: K profile items
	PRMUResponseBOW = "response_bow" // [B,V] float32
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
	Vocab             int     `json:"vocab"`               // embedding rows: the tokenizer's vocab size
	Embed             int     `json:"embed"`               // token embedding width (default 64)
	Hidden            int     `json:"hidden"`              // encoder, user and fusion width (default 64)
	MaxItems          int     `json:"max_items"`           // profile items read per user, the first ones (default 8)
	MaxItemTokens     int     `json:"max_item_tokens"`     // tokens read per profile item (default 48)
	MaxResponseTokens int     `json:"max_response_tokens"` // tokens read per response (default 48)
	Pool              string  `json:"pool"`                // profile pooling: "mean" (default) or "attention"
	Seed              uint64  `json:"seed"`                // weight initialization
	EmbedStd          float64 `json:"embed_std"`           // embedding init scale (default 0.5)
}

// Defaults fills zero fields.
func (c PRMUConfig) Defaults() PRMUConfig {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.Embed, 64)
	def(&c.Hidden, 64)
	def(&c.MaxItems, 8)
	def(&c.MaxItemTokens, 48)
	def(&c.MaxResponseTokens, 48)
	if c.EmbedStd == 0 {
		c.EmbedStd = 0.5
	}
	if c.Pool == "" {
		c.Pool = PoolMean
	}
	return c
}

// Validate refuses sizes that cannot make a model.
func (c PRMUConfig) Validate() error {
	for _, f := range []struct {
		name string
		v    int
	}{{"vocab", c.Vocab}, {"embed", c.Embed}, {"hidden", c.Hidden}, {"max_items", c.MaxItems},
		{"max_item_tokens", c.MaxItemTokens}, {"max_response_tokens", c.MaxResponseTokens}} {
		if f.v <= 0 {
			return fmt.Errorf("prmu config: %s is %d, want > 0", f.name, f.v)
		}
	}
	if c.Pool != PoolMean && c.Pool != PoolAttention {
		return fmt.Errorf("prmu config: pool %q, want %q or %q", c.Pool, PoolMean, PoolAttention)
	}
	if !(c.EmbedStd > 0) || math.IsInf(c.EmbedStd, 0) {
		return fmt.Errorf("prmu config: embed_std %v, want a finite value > 0", c.EmbedStd)
	}
	return nil
}

// BuildPRMU makes the PRMU inference graph with seeded random weights.
// Batch, item and token dims are symbolic.
func BuildPRMU(cfg PRMUConfig) (*onnxpb.ModelProto, error) {
	c := cfg.Defaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	b := &prmuBuilder{g: ir.NewGraph("tagpr_prmu"), rng: rand.New(rand.NewPCG(c.Seed, 0x70726d75))}
	g := b.g
	g.Input(PRMUProfileBOW, ir.Float, "batch", "items", c.Vocab)
	g.Input(PRMUResponseBOW, ir.Float, "batch", c.Vocab)

	E, H := int64(c.Embed), int64(c.Hidden)
	b.embed = b.normal(prmuWeightPrefix+"embed", c.EmbedStd, int64(c.Vocab), E)
	b.encW = b.normal(prmuWeightPrefix+"enc.weight", 1/math.Sqrt(float64(E)), E, H)
	b.encB = b.zeros(prmuWeightPrefix+"enc.bias", H)

	items := b.encode(PRMUProfileBOW) // [B,K,H]
	// 1 for an item with tokens (its row sums to ~1), 0 for none.
	big := b.g.Const("prmu_c", ir.Scalar("", float32(1e6)))
	present := b.op("Min", b.op("Mul", b.sum(PRMUProfileBOW, -1, false), big), b.one()) // [B,K]
	var u string
	if c.Pool == PoolAttention {
		u = b.attentionPool(items, present, H) // [B,H]
	} else {
		u = b.maskedMean(items, b.op("Unsqueeze", present, b.ints(-1)), 1) // [B,H]
	}
	u = b.dense(prmuWeightPrefix+"user", u, H, H)                                  // [B,H]
	r := b.dense(prmuWeightPrefix+"resp", b.encode(PRMUResponseBOW), H, H)         // [B,H]
	z := g.Op("Concat", []string{u, r, b.op("Mul", u, r)}, ir.AttrInt("axis", -1)) // [B,3H]
	f := b.dense(prmuWeightPrefix+"fuse", z, 3*H, H)
	out := b.op("Add", b.op("MatMul", f, b.normal(prmuWeightPrefix+"out.weight", 1/math.Sqrt(float64(H)), H, 1)),
		b.zeros(prmuWeightPrefix+"out.bias", 1))
	g.Node("Reshape", []string{out, b.ints(-1)}, []string{PRMUScoreOutput})
	g.Output(PRMUScoreOutput, ir.Float, "batch")

	m, err := ir.NewModel(g, 0)
	if err != nil {
		return nil, fmt.Errorf("build prmu: %w", err)
	}
	m.DocString = fmt.Sprintf("tagpr PRMU: vocab %d, embed %d, hidden %d, %s pooling, seed %d", c.Vocab, c.Embed, c.Hidden, c.Pool, c.Seed)
	if err := ir.Validate(m); err != nil {
		return nil, fmt.Errorf("build prmu: %w", err)
	}
	return m, nil
}

type prmuBuilder struct {
	g                 *ir.Graph
	rng               *rand.Rand
	embed, encW, encB string
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

// encode is the shared text encoder: the mean token embedding (the bag
// times the table), then a tanh layer. bow [...,V] → [...,H].
func (b *prmuBuilder) encode(bow string) string {
	pooled := b.op("MatMul", bow, b.embed)
	return b.op("Tanh", b.op("Add", b.op("MatMul", pooled, b.encW), b.encB))
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
