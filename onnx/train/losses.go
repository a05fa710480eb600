package train

import (
	"fmt"
	"math"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/onnxpb"
)

// Loss blocks are appended to an inference model before specialization. Each
// adds its data inputs (declared with unknown dims, fixed by Specialize) and
// returns the name of its [1]-shaped loss output. Token-level inputs are laid
// out like input_ids, [B,T]: entry t refers to token t as a prediction target
// (entry 0 is never a target).

// Names of the inputs and extra outputs the loss blocks add.
const (
	LossMaskInput       = "loss_mask"      // [B,T] float: 1 where token t is a target
	AdvantagesInput     = "advantages"     // [B] float
	OldLogprobsInput    = "old_logprobs"   // [B,T] float: log π_old(token t)
	RefLogprobsInput    = "ref_logprobs"   // [B,T] float: log π_ref(token t)
	ChosenInput         = "chosen_index"   // [P] int64
	RejectedInput       = "rejected_index" // [P] int64
	TargetInput         = "target"         // MSE target, shape of the prediction
	TokenLogprobsOutput = "token_logprobs" // [B,T-1]: log π(token t+1 | ≤ t)
	PolicyKLOutput      = "policy_kl"      // [1]: masked mean KL k3 to the reference (as in the loss)
	// The clip metrics count a token where the clip is active for its
	// advantage's sign (TRL's clip_ratio/low_mean, high_mean, region_mean):
	// ρ < 1−ε_low with A < 0, ρ > 1+ε_high with A > 0, and either.
	ClipLowOutput      = "clip_ratio_low"    // [1]
	ClipHighOutput     = "clip_ratio_high"   // [1]
	ClipRegionOutput   = "clip_ratio_region" // [1]
	PairAccuracyOutput = "pair_accuracy"     // [1]: fraction of pairs ranked right
	lossPrefix         = "loss/"
)

type lossBuilder struct {
	*editor
	m    *onnxpb.ModelProto
	elem ir.DataType
}

func newLossBuilder(m *onnxpb.ModelProto, value string) (*lossBuilder, error) {
	if m.GetGraph() == nil {
		return nil, fmt.Errorf("add loss: model has no graph")
	}
	elem := ir.Undefined
	for _, vi := range m.Graph.Output {
		if vi.GetName() == value {
			elem = vi.GetType().GetTensorType().GetElemType()
		}
	}
	if elem == ir.Undefined {
		return nil, fmt.Errorf("add loss: the model has no output %q", value)
	}
	if !isFloat(elem) {
		return nil, fmt.Errorf("add loss: output %q is %s, not float", value, elem)
	}
	e := newEditor(m.Graph)
	e.prefix = lossPrefix
	return &lossBuilder{editor: e, m: m, elem: elem}, nil
}

func (b *lossBuilder) input(name string, elem ir.DataType, rank int) (string, error) {
	if b.used[name] {
		return "", fmt.Errorf("add loss: the model already has a value named %q", name)
	}
	b.used[name] = true
	dims := make([]any, rank)
	for i := range dims {
		dims[i] = ""
	}
	vi, err := ir.ValueInfo(name, elem, dims...)
	if err != nil {
		return "", err
	}
	b.g.Input = append(b.g.Input, vi)
	return name, nil
}

func (b *lossBuilder) scalar(v float64) string {
	if b.elem == ir.Double {
		return b.init(lossPrefix+"c", ir.Scalar("", v))
	}
	return b.init(lossPrefix+"c", ir.Scalar("", float32(v)))
}

// output declares value as a graph output under name (via Identity).
func (b *lossBuilder) output(name, value string, rank int) (string, error) {
	if b.used[name] {
		return "", fmt.Errorf("add loss: the model already has a value named %q", name)
	}
	b.used[name] = true
	b.g.Node = append(b.g.Node, &onnxpb.NodeProto{Name: b.fresh(lossPrefix + name), OpType: "Identity", Input: []string{value}, Output: []string{name}})
	dims := make([]any, rank)
	for i := range dims {
		dims[i] = ""
	}
	vi, err := ir.ValueInfo(name, b.elem, dims...)
	if err != nil {
		return "", err
	}
	b.g.Output = append(b.g.Output, vi)
	return name, nil
}

func (b *lossBuilder) sumAll(v string) string {
	return b.op("ReduceSum", []string{v}, ir.AttrInt("keepdims", 0))
}

func (b *lossBuilder) toLoss(v, name string) (string, error) {
	return b.output(name, b.op("Reshape", []string{v, b.ints(1)}), 1)
}

// tokenLogprobs returns log π(ids[:,t+1] | ≤ t), shape [B,T-1]. The
// log-softmax runs over all T positions (the last one gathers a dummy
// target) so the [B,T,V] logits are never sliced or copied.
func (b *lossBuilder) tokenLogprobs(logits, ids string) string {
	big := int64(math.MaxInt64)
	next := b.op("Slice", []string{ids, b.ints(1), b.ints(big), b.ints(1)})
	dummy := b.op("Mul", []string{b.op("Slice", []string{ids, b.ints(0), b.ints(1), b.ints(1)}), b.init(lossPrefix+"i", ir.Scalar("", int64(0)))})
	tgt := b.op("Unsqueeze", []string{b.op("Concat", []string{next, dummy}, ir.AttrInt("axis", 1)), b.ints(-1)})
	lp := b.op("LogSoftmax", []string{logits}, ir.AttrInt("axis", -1))
	picked := b.op("Squeeze", []string{b.op("GatherElements", []string{lp, tgt}, ir.AttrInt("axis", -1)), b.ints(-1)})
	return b.op("Slice", []string{picked, b.ints(0), b.ints(-1), b.ints(1)})
}

func (b *lossBuilder) targets(v string) string {
	return b.op("Slice", []string{v, b.ints(1), b.ints(math.MaxInt64), b.ints(1)})
}

// atLeastOne guards a denominator made of mask sums.
func (b *lossBuilder) atLeastOne(v string) string {
	return b.op("Max", []string{v, b.scalar(1)})
}

// NextTokenLoss configures the masked next-token cross-entropy.
type NextTokenLoss struct {
	Logits string // [B,T,V] output (default "logits")
	IDs    string // [B,T] int64 input (default "input_ids")
	// Chunk is the token positions per vocabulary chunk (see
	// losses_chunked.go) when the logits are a plain output projection of
	// the hidden states: 0 sizes chunks to about 64 MiB of logits; < 0
	// computes the full [B,T,V] logits instead (the unchunked graph).
	Chunk int
}

// AddNextTokenLoss appends the masked mean next-token cross-entropy (SFT):
// Σ_{b,t≥1} mask[b,t]·(−log π(ids[b,t] | ids[b,<t])) / max(Σ mask[:,1:], 1),
// with the LossMaskInput (0 for prompt and padding tokens). It also exposes
// TokenLogprobsOutput. It returns the loss output's name ("loss").
func AddNextTokenLoss(m *onnxpb.ModelProto, o NextTokenLoss) (string, error) {
	if o.Logits == "" {
		o.Logits = "logits"
	}
	if o.IDs == "" {
		o.IDs = "input_ids"
	}
	b, err := newLossBuilder(m, o.Logits)
	if err != nil {
		return "", err
	}
	mask, err := b.input(LossMaskInput, b.elem, 2)
	if err != nil {
		return "", err
	}
	w := b.targets(mask)
	den := b.atLeastOne(b.sumAll(w))
	lp, setLoss, err := b.logprobs(o.Logits, o.IDs, o.Chunk, b.nextTokenGrad(mask, den))
	if err != nil {
		return "", err
	}
	if _, err := b.output(TokenLogprobsOutput, lp, 2); err != nil {
		return "", err
	}
	num := b.sumAll(b.op("Mul", []string{lp, w}))
	loss, err := b.toLoss(b.op("Neg", []string{b.op("Div", []string{num, den})}), "loss")
	setLoss(loss)
	return loss, err
}

// PolicyLoss configures the GRPO-family clipped policy loss (TRL names).
type PolicyLoss struct {
	Logits, IDs string
	Epsilon     float64 // ε_low: ratio clipped below at 1−ε (default 0.2)
	EpsilonHigh float64 // ε_high: above at 1+ε_high (default: Epsilon)
	Beta        float64 // KL k3 coefficient (0: no KL term)
	// BiasCorrectionKL multiplies the KL term by the importance ratio ρ
	// (TRL's use_bias_correction_kl): its gradient is then the unbiased
	// reverse-KL gradient, and it differs from the plain k3's even on-policy,
	// where ρ = 1 but ∇ρ is not 0.
	BiasCorrectionKL bool
	// LossType: "grpo" (mean over sequences of each sequence's token mean),
	// "dapo" (token mean over all active tokens of the batch) or "dr_grpo"
	// (token sum / (B · MaxCompletionLength)).
	LossType            string
	MaxCompletionLength int // dr_grpo normalizer; 0: T−1
	Chunk               int // as NextTokenLoss.Chunk
}

// AddPolicyLoss appends the GRPO-family loss. Per active token (LossMaskInput
// marks completion tokens): ρ = exp(logπ − logπ_old), token loss
// −min(ρ·A, clip(ρ, 1−ε_low, 1+ε_high)·A) + β·k3, k3 = exp(logπ_ref − logπ) − (logπ_ref − logπ) − 1
// (times ρ with BiasCorrectionKL), aggregated by LossType: TRL's
// GRPOTrainer._compute_loss, checked against TRL 1.16 in losses_trl_test.go.
// Inputs: LossMaskInput, AdvantagesInput, OldLogprobsInput,
// RefLogprobsInput (when Beta > 0). Extra outputs: TokenLogprobsOutput,
// PolicyKLOutput (when Beta > 0), ClipLowOutput, ClipHighOutput,
// ClipRegionOutput.
func AddPolicyLoss(m *onnxpb.ModelProto, o PolicyLoss) (string, error) {
	if o.Logits == "" {
		o.Logits = "logits"
	}
	if o.IDs == "" {
		o.IDs = "input_ids"
	}
	if o.Epsilon == 0 {
		o.Epsilon = 0.2
	}
	if o.EpsilonHigh == 0 {
		o.EpsilonHigh = o.Epsilon
	}
	if o.LossType == "" {
		o.LossType = "grpo"
	}
	switch o.LossType {
	case "grpo", "dapo", "dr_grpo":
	default:
		return "", fmt.Errorf("add policy loss: unknown loss_type %q (want grpo, dapo or dr_grpo)", o.LossType)
	}
	if o.Epsilon < 0 || o.EpsilonHigh < 0 || o.Beta < 0 {
		return "", fmt.Errorf("add policy loss: epsilon %v, epsilon_high %v and beta %v must not be negative", o.Epsilon, o.EpsilonHigh, o.Beta)
	}
	b, err := newLossBuilder(m, o.Logits)
	if err != nil {
		return "", err
	}
	mask, err := b.input(LossMaskInput, b.elem, 2)
	if err != nil {
		return "", err
	}
	adv, err := b.input(AdvantagesInput, b.elem, 1)
	if err != nil {
		return "", err
	}
	old, err := b.input(OldLogprobsInput, b.elem, 2)
	if err != nil {
		return "", err
	}
	var ref string
	if o.Beta > 0 {
		if ref, err = b.input(RefLogprobsInput, b.elem, 2); err != nil {
			return "", err
		}
	}
	w := b.targets(mask)
	count := b.atLeastOne(b.sumAll(w))
	// The loss is Σ_t weight_t · tok_t with these weights, for the chunked head's gradient.
	var weight string
	next := b.nextAligned(mask)
	rows := b.op("Cast", []string{b.op("Slice", []string{b.op("Shape", []string{w}), b.ints(0), b.ints(1)})}, ir.AttrInt("to", int64(b.elem)))
	switch o.LossType {
	case "grpo":
		perRow := b.atLeastOne(b.op("ReduceSum", []string{w, b.ints(1)}, ir.AttrInt("keepdims", 1)))
		weight = b.op("Div", []string{b.op("Div", []string{next, perRow}), rows})
	case "dapo":
		weight = b.op("Div", []string{next, count})
	case "dr_grpo":
		weight = b.op("Div", []string{next, b.drGRPONorm(w, o.MaxCompletionLength)})
	}
	lp, setLoss, err := b.logprobs(o.Logits, o.IDs, o.Chunk, b.policyGrad(o, weight, adv, old, ref))
	if err != nil {
		return "", err
	}
	if _, err := b.output(TokenLogprobsOutput, lp, 2); err != nil {
		return "", err
	}
	ratio := b.op("Exp", []string{b.op("Sub", []string{lp, b.targets(old)})})
	a := b.op("Unsqueeze", []string{adv, b.ints(1)})
	lo, hi := b.scalar(1-o.Epsilon), b.scalar(1+o.EpsilonHigh)
	below := b.op("Less", []string{ratio, lo})
	above := b.op("Greater", []string{ratio, hi})
	clipped := b.op("Where", []string{below, lo, b.op("Where", []string{above, hi, ratio})})
	s1 := b.op("Mul", []string{ratio, a})
	s2 := b.op("Mul", []string{clipped, a})
	obj := b.op("Where", []string{b.op("LessOrEqual", []string{s1, s2}), s1, s2})
	tok := b.op("Neg", []string{obj})
	masked := func(v string) string { return b.op("Div", []string{b.sumAll(b.op("Mul", []string{v, w})), count}) }
	var kl string
	if o.Beta > 0 {
		d := b.op("Sub", []string{b.targets(ref), lp})
		kl = b.op("Sub", []string{b.op("Sub", []string{b.op("Exp", []string{d}), d}), b.scalar(1)})
		if o.BiasCorrectionKL {
			kl = b.op("Mul", []string{kl, ratio})
		}
		tok = b.op("Add", []string{tok, b.op("Mul", []string{kl, b.scalar(o.Beta)})})
		if _, err := b.toLoss(masked(kl), PolicyKLOutput); err != nil {
			return "", err
		}
	}
	zero := b.scalar(0)
	low := b.op("And", []string{below, b.op("Less", []string{a, zero})})
	high := b.op("And", []string{above, b.op("Greater", []string{a, zero})})
	region := b.op("Or", []string{low, high})
	for _, c := range [][2]string{{ClipLowOutput, low}, {ClipHighOutput, high}, {ClipRegionOutput, region}} {
		if _, err := b.toLoss(masked(b.op("Cast", []string{c[1]}, ir.AttrInt("to", int64(b.elem)))), c[0]); err != nil {
			return "", err
		}
	}
	var loss string
	switch o.LossType {
	case "grpo":
		perSeq := b.op("Div", []string{
			b.op("ReduceSum", []string{b.op("Mul", []string{tok, w}), b.ints(1)}, ir.AttrInt("keepdims", 0)),
			b.atLeastOne(b.op("ReduceSum", []string{w, b.ints(1)}, ir.AttrInt("keepdims", 0)))})
		loss = b.op("ReduceMean", []string{perSeq}, ir.AttrInt("keepdims", 0))
	case "dapo":
		loss = masked(tok)
	case "dr_grpo":
		loss = b.op("Div", []string{b.sumAll(b.op("Mul", []string{tok, w})), b.drGRPONorm(w, o.MaxCompletionLength)})
	}
	loss, err = b.toLoss(loss, "loss")
	setLoss(loss)
	return loss, err
}

// drGRPONorm is dr_grpo's B·L, from the mask's shape so the block stays
// shape-generic.
func (b *lossBuilder) drGRPONorm(w string, maxLen int) string {
	shape := b.op("Shape", []string{w})
	bsz := b.op("Gather", []string{shape, b.init(lossPrefix+"i", ir.Scalar("", int64(0)))})
	var l string
	if maxLen > 0 {
		l = b.init(lossPrefix+"i", ir.Scalar("", int64(maxLen)))
	} else {
		l = b.op("Gather", []string{shape, b.init(lossPrefix+"i", ir.Scalar("", int64(1)))})
	}
	return b.op("Cast", []string{b.op("Mul", []string{bsz, l})}, ir.AttrInt("to", int64(b.elem)))
}

// AddPairwiseLoss appends the Bradley–Terry loss on a scalar-per-example
// output (score, [N] or [N,1]): mean over pairs of −log σ(s[chosen] − s[rejected]),
// computed stably as softplus(−d) = relu(−d) + log(1 + exp(−|d|)). Inputs:
// ChosenInput, RejectedInput (indices into the batch). Extra output:
// PairAccuracyOutput.
func AddPairwiseLoss(m *onnxpb.ModelProto, score string) (string, error) {
	b, err := newLossBuilder(m, score)
	if err != nil {
		return "", err
	}
	ci, err := b.input(ChosenInput, ir.Int64, 1)
	if err != nil {
		return "", err
	}
	ri, err := b.input(RejectedInput, ir.Int64, 1)
	if err != nil {
		return "", err
	}
	s := b.op("Reshape", []string{score, b.ints(-1)})
	d := b.op("Sub", []string{b.op("Gather", []string{s, ci}), b.op("Gather", []string{s, ri})})
	nd := b.op("Neg", []string{d})
	sp := b.op("Add", []string{b.op("Relu", []string{nd}),
		b.op("Log", []string{b.op("Add", []string{b.scalar(1), b.op("Exp", []string{b.op("Neg", []string{b.op("Abs", []string{d})})})})})})
	acc := b.op("ReduceMean", []string{b.op("Cast", []string{b.op("Greater", []string{d, b.scalar(0)})}, ir.AttrInt("to", int64(b.elem)))}, ir.AttrInt("keepdims", 0))
	if _, err := b.toLoss(acc, PairAccuracyOutput); err != nil {
		return "", err
	}
	return b.toLoss(b.op("ReduceMean", []string{sp}, ir.AttrInt("keepdims", 0)), "loss")
}

// AddMSELoss appends mean((pred − target)²) with TargetInput shaped like pred.
func AddMSELoss(m *onnxpb.ModelProto, pred string) (string, error) {
	b, err := newLossBuilder(m, pred)
	if err != nil {
		return "", err
	}
	rank := 0
	for _, vi := range m.Graph.Output {
		if vi.GetName() == pred {
			rank = len(vi.GetType().GetTensorType().GetShape().GetDim())
		}
	}
	tgt, err := b.input(TargetInput, b.elem, rank)
	if err != nil {
		return "", err
	}
	d := b.op("Sub", []string{pred, tgt})
	return b.toLoss(b.op("ReduceMean", []string{b.op("Mul", []string{d, d})}, ir.AttrInt("keepdims", 0)), "loss")
}
