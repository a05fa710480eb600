package train

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/onnxpb"
)

// Chunked vocabulary projection ("fused linear cross-entropy").
//
// A causal LM's logits are hidden [B,T,D] @ W [D,V]; with a 150k vocabulary
// the [B,T,V] logits, their log-softmax and its gradient are most of a
// training step's memory. The token losses (AddNextTokenLoss,
// AddPolicyLoss) therefore replace the model's output projection by one
// Scan over chunks of C token positions: each iteration projects its chunk
// onto the vocabulary, takes the log-probability of each target token, and,
// since every loss here is Σ_t c_t·ℓ(lp_t) with weights c_t that do not
// depend on the log-probabilities, computes the loss's gradient with respect
// to the chunk's logits right away — g_t·(onehot(target) − softmax) with
// g_t = ∂loss/∂lp_t — and from it the gradients of the hidden states and of
// W (accumulated over chunks). Only [C,V] is ever live. The loss itself is
// computed from the log-probabilities exactly as before.
//
// Differentiate finds the Scan by its marker and, instead of differentiating
// through it, adds its hidden-state and weight gradients to the backward
// pass; it drops the weight gradient (or the hidden one) when nothing
// trainable needs it, so LoRA never accumulates the [D,V] head gradient.

// defaultChunkElems sizes a chunk when the loss does not say: positions ×
// vocabulary of one chunk's logits (64 MiB in float32).
const defaultChunkElems = 1 << 24

// fusedHeadMarker starts the doc string of a chunked head's Scan node; the
// rest is the JSON of fusedHead.
const fusedHeadMarker = "tagpr:fused-lm-head "

// fusedHead is what Differentiate needs to know about a chunked head.
type fusedHead struct {
	Loss   string `json:"loss"`   // the loss the gradients are of
	Hidden string `json:"hidden"` // the hidden states fed to the head
	Weight string `json:"weight"` // W [D,V], or E [V,D] when Transposed
	// Transposed: Weight is E [V,D] (tied embeddings).
	Transposed bool `json:"transposed,omitempty"`
	// GradHidden and GradWeight are the values holding ∂loss/∂hidden and
	// ∂loss/∂weight ("" once dropped). GradWeight is the Scan's first
	// output (its state) and GradHidden comes from its last.
	GradHidden string `json:"grad_hidden,omitempty"`
	GradWeight string `json:"grad_weight,omitempty"`
}

// lmHead is logits = scale · (hidden @ W) as a graph computes it.
type lmHead struct {
	hidden string
	// weight is W [D,V], or E [V,D] when the graph computes W = Transpose(E)
	// (tied embeddings): the chunks then read E directly, transposed in Gemm,
	// instead of a [D,V] copy.
	weight     string
	transposed bool
	scale      string // a scalar initializer the logits are multiplied by (temperature), or ""
	vocab      int64  // 0 when the graph does not say
	nodes      []*onnxpb.NodeProto
	// lora: AddLoRA adapted the head, logits = h·W + k·(h·A)·B. The chunks
	// then project with W + k·A·B, one [D,V] value, so A and B get their
	// gradients through it.
	lora *loraHead
}

type loraHead struct{ a, b, k string }

// findLMHead recognises logits = MatMul(hidden, W), optionally followed by
// Mul with a scalar initializer, where the logits feed nothing but the
// graph output.
func findLMHead(g *onnxpb.GraphProto, logits string) (lmHead, bool) {
	producer := map[string]*onnxpb.NodeProto{}
	uses := map[string]int{}
	for _, n := range g.Node {
		for _, o := range n.Output {
			producer[o] = n
		}
		for _, in := range nodeInputs(n) {
			uses[in]++
		}
	}
	inits := map[string]*onnxpb.TensorProto{}
	for _, t := range g.Initializer {
		inits[t.GetName()] = t
	}
	standard := func(n *onnxpb.NodeProto) bool { d := n.GetDomain(); return d == "" || d == "ai.onnx" }
	var h lmHead
	n := producer[logits]
	if n == nil || uses[logits] > 0 || !standard(n) {
		return h, false
	}
	if n.GetOpType() == "Mul" && len(n.Input) == 2 {
		for i, in := range n.Input {
			if t := inits[in]; t != nil && isFloat(t.GetDataType()) && ir.NumElements(t.GetDims()) == 1 && len(t.GetDims()) <= 1 {
				other := n.Input[1-i]
				if uses[other] != 1 || producer[other] == nil {
					return h, false
				}
				h.scale = in
				h.nodes = append(h.nodes, n)
				n = producer[other]
				break
			}
		}
		if h.scale == "" {
			return h, false
		}
	}
	if n.GetOpType() == "Add" && len(n.Input) == 2 && standard(n) {
		if h.lora = loraOfHead(n, producer, uses); h.lora == nil {
			return h, false
		}
		h.nodes = append(h.nodes, n)
		base := producer[n.Input[0]]
		delta := producer[n.Input[1]]
		ab := producer[delta.Input[0]]
		h.nodes = append(h.nodes, delta, ab, producer[ab.Input[0]])
		n = base
	}
	if n.GetOpType() != "MatMul" || len(n.Input) != 2 || len(n.Output) != 1 || !standard(n) {
		return h, false
	}
	h.nodes = append(h.nodes, n)
	h.hidden, h.weight = n.Input[0], n.Input[1]

	if t := producer[h.weight]; t != nil && t.GetOpType() == "Transpose" && standard(t) && len(ir.AttrIntsOf(t, "perm")) == 2 &&
		ir.AttrIntsOf(t, "perm")[0] == 1 && ir.AttrIntsOf(t, "perm")[1] == 0 {
		h.weight, h.transposed = t.Input[0], true
	}
	if t := inits[h.weight]; t != nil {
		if len(t.GetDims()) != 2 {
			return h, false
		}
		h.vocab = t.GetDims()[1]
		if h.transposed {
			h.vocab = t.GetDims()[0]
		}
	}
	for _, o := range g.Output {
		if o.GetName() == logits {
			if _, dims, _, ok := ir.ShapeOf(o); ok && len(dims) > 0 && dims[len(dims)-1] > 0 {
				h.vocab = dims[len(dims)-1]
			}
		}
	}
	return h, true
}

// loraOfHead matches AddLoRA's Add(MatMul(h, W), Mul(MatMul(MatMul(h, A), B), k))
// (each intermediate read once) and returns A, B and k.
func loraOfHead(add *onnxpb.NodeProto, producer map[string]*onnxpb.NodeProto, uses map[string]int) *loraHead {
	is := func(v, op string) *onnxpb.NodeProto {
		n := producer[v]
		if n == nil || n.GetOpType() != op || len(n.Input) != 2 || uses[v] != 1 {
			return nil
		}
		return n
	}
	base, delta := is(add.Input[0], "MatMul"), is(add.Input[1], "Mul")
	if base == nil || delta == nil {
		return nil
	}
	ab := is(delta.Input[0], "MatMul")
	if ab == nil {
		return nil
	}
	xa := is(ab.Input[0], "MatMul")
	if xa == nil || xa.Input[0] != base.Input[0] {
		return nil
	}
	return &loraHead{a: xa.Input[1], b: ab.Input[1], k: delta.Input[1]}
}

// tokenGrad gives ∂loss/∂lp_t for each token position, in [B,T] layout
// aligned with the position that predicts (entry t is about predicting
// token t+1; the last is 0): sides are [B,T] values sliced into the chunks,
// and emit builds g from the chunk's log-probabilities and sides inside the
// chunk's body.
type tokenGrad struct {
	sides []string
	emit  func(c *chunkBody, lp string, sides []string) string
}

// chunkBody builds a Scan body.
type chunkBody struct {
	*editor
	elem  ir.DataType
	opset int64
}

func (c *chunkBody) scalar(v float64) string {
	if c.elem == ir.Double {
		return c.init(c.prefix+"c", ir.Scalar("", v))
	}
	return c.init(c.prefix+"c", ir.Scalar("", float32(v)))
}

// reduce is Reduce<op> over axis 1 keeping it, in the opset's form.
func (c *chunkBody) reduce(op, x string) string {
	if op == "ReduceMax" && c.opset < 18 {
		return c.op(op, []string{x}, ir.AttrInts("axes", 1), ir.AttrInt("keepdims", 1))
	}
	return c.op(op, []string{x, c.ints(1)}, ir.AttrInt("keepdims", 1))
}

func (c *chunkBody) input(name string, elem ir.DataType, rank int) string {
	dims := make([]any, rank)
	for i := range dims {
		dims[i] = ""
	}
	vi, _ := ir.ValueInfo(name, elem, dims...)
	c.g.Input = append(c.g.Input, vi)
	c.used[name] = true
	return name
}

func (c *chunkBody) output(v string, elem ir.DataType, rank int) {
	dims := make([]any, rank)
	for i := range dims {
		dims[i] = ""
	}
	vi, _ := ir.ValueInfo(v, elem, dims...)
	c.g.Output = append(c.g.Output, vi)
}

// chunkTokens picks the chunk length for a head: o > 0 as given, else
// defaultChunkElems / vocab (at least 16 positions).
func chunkTokens(o int, vocab int64) int64 {
	if o > 0 {
		return int64(o)
	}
	if vocab <= 0 {
		return 256
	}
	return max(16, defaultChunkElems/vocab)
}

// chunkedLogprobs replaces the model's output projection (head) by the
// chunked Scan and returns log π(ids[:,t+1] | ≤ t), [B,T-1]. With grad
// non-nil the Scan also computes the loss's gradients (see fusedHead); the
// caller sets the loss name with setLoss once it knows it.
func (b *lossBuilder) chunkedLogprobs(head lmHead, logits, ids string, chunk int, grad *tokenGrad) (lp string, setLoss func(string), err error) {
	g := b.g
	// The head's nodes and the logits output go: nothing else reads them.
	drop := map[*onnxpb.NodeProto]bool{}
	for _, n := range head.nodes {
		drop[n] = true
	}
	nodes := g.Node[:0]
	for _, n := range g.Node {
		if !drop[n] {
			nodes = append(nodes, n)
		}
	}
	g.Node = nodes
	outs := g.Output[:0]
	for _, o := range g.Output {
		if o.GetName() != logits {
			outs = append(outs, o)
		}
	}
	g.Output = outs
	if ir.OpsetOf(b.m, "") < minTrainOpset {
		ir.SetOpset(b.m, "", minTrainOpset) // ScatterElements with reduction
	}
	opset := ir.OpsetOf(b.m, "")

	if head.lora != nil {
		l := head.lora
		head.weight = b.op("Add", []string{head.weight, b.op("Mul", []string{b.op("MatMul", []string{l.a, l.b}), l.k})})
	}
	big := int64(math.MaxInt64)
	one := b.ints(1)
	ncTok := chunkTokens(chunk, head.vocab)
	idShape := b.op("Shape", []string{ids})
	n := b.op("ReduceProd", []string{idShape}, ir.AttrInt("keepdims", 1)) // [1]: B·T
	k := b.op("Div", []string{b.op("Add", []string{n, b.ints(ncTok - 1)}), b.ints(ncTok)})
	nc := b.op("Div", []string{b.op("Add", []string{n, b.op("Sub", []string{k, one})}), k}) // ceil(N/K): K chunks of nc
	padN := b.op("Sub", []string{b.op("Mul", []string{k, nc}), n})
	wShape := b.op("Shape", []string{head.weight})
	var d string
	if head.transposed {
		d = b.op("Slice", []string{wShape, b.ints(1), b.ints(2)})
	} else {
		d = b.op("Slice", []string{wShape, b.ints(0), one})
	}
	chunks := func(v string) string { // [B,T] → [K,nc], zero-padded
		flat := b.op("Reshape", []string{v, b.ints(-1)})
		padded := b.op("Pad", []string{flat, b.op("Concat", []string{b.ints(0), padN}, ir.AttrInt("axis", 0))})
		return b.op("Reshape", []string{padded, b.op("Concat", []string{k, nc}, ir.AttrInt("axis", 0))})
	}
	h2 := b.op("Reshape", []string{head.hidden, b.op("Concat", []string{b.ints(-1), d}, ir.AttrInt("axis", 0))})
	hPad := b.op("Pad", []string{h2, b.op("Concat", []string{b.ints(0, 0), padN, b.ints(0)}, ir.AttrInt("axis", 0))})
	hChunks := b.op("Reshape", []string{hPad, b.op("Concat", []string{k, nc, d}, ir.AttrInt("axis", 0))})
	next := b.op("Slice", []string{ids, one, b.ints(big), one})
	dummy := b.op("Mul", []string{b.op("Slice", []string{ids, b.ints(0), one, one}), b.init(lossPrefix+"i", ir.Scalar("", int64(0)))})
	targets := chunks(b.op("Concat", []string{next, dummy}, ir.AttrInt("axis", 1)))

	body := &onnxpb.GraphProto{Name: "chunked_lm_head"}
	c := &chunkBody{editor: newEditor(body), elem: b.elem, opset: opset}
	c.prefix = "loss/chunk/"
	for _, v := range []string{head.hidden, head.weight, head.scale} {
		c.used[v] = true // outer names the body reads stay unshadowed
	}
	withGrad := grad != nil
	var dwIn string
	if withGrad {
		dwIn = c.input(c.fresh("loss/chunk/grad_weight_in"), b.elem, 2)
	}
	hIn := c.input(c.fresh("loss/chunk/hidden"), b.elem, 2)
	tIn := c.input(c.fresh("loss/chunk/targets"), ir.Int64, 1)
	var sideIns []string
	if withGrad {
		for range grad.sides {
			sideIns = append(sideIns, c.input(c.fresh("loss/chunk/side"), b.elem, 1))
		}
	}
	var z string
	if head.transposed {
		z = c.op("Gemm", []string{hIn, head.weight}, ir.AttrInt("transB", 1))
	} else {
		z = c.op("MatMul", []string{hIn, head.weight})
	}
	if head.scale != "" {
		z = c.op("Mul", []string{z, head.scale})
	}
	zmax := c.reduce("ReduceMax", z)
	e := c.op("Exp", []string{c.op("Sub", []string{z, zmax})})
	s := c.reduce("ReduceSum", e)
	lse := c.op("Add", []string{zmax, c.op("Log", []string{s})})
	tgt := c.op("Unsqueeze", []string{tIn, c.ints(1)})
	lpChunk := c.op("Squeeze", []string{c.op("Sub", []string{c.op("GatherElements", []string{z, tgt}, ir.AttrInt("axis", 1)), lse}), c.ints(1)})
	var dwOut, dhOut string
	if withGrad {
		gt := c.op("Unsqueeze", []string{grad.emit(c, lpChunk, sideIns), c.ints(1)})
		dz := c.op("Mul", []string{c.op("Div", []string{e, s}), c.op("Neg", []string{gt})})
		dz = c.op("ScatterElements", []string{dz, tgt, gt}, ir.AttrInt("axis", 1), ir.AttrString("reduction", "add"))
		if head.scale != "" {
			dz = c.op("Mul", []string{dz, head.scale})
		}
		if head.transposed {
			dhOut = c.op("MatMul", []string{dz, head.weight})
			dwOut = c.op("Gemm", []string{dz, hIn, dwIn}, ir.AttrInt("transA", 1))
		} else {
			dhOut = c.op("Gemm", []string{dz, head.weight}, ir.AttrInt("transB", 1))
			dwOut = c.op("Gemm", []string{hIn, dz, dwIn}, ir.AttrInt("transA", 1))
		}
		c.output(dwOut, b.elem, 2)
	}
	c.output(lpChunk, b.elem, 1)
	if withGrad {
		c.output(dhOut, b.elem, 2)
	}

	scanIn := []string{hChunks, targets}
	var scanOut []string
	info := fusedHead{Hidden: head.hidden, Weight: head.weight, Transposed: head.transposed}
	if withGrad {
		// The accumulator starts as W·0: zeros ORT cannot fold into a
		// constant of W's size at session creation, as it does Expand(0, shape).
		scanIn = append([]string{b.op("Mul", []string{head.weight, b.scalar(0)})}, scanIn...)
		for _, sd := range grad.sides {
			scanIn = append(scanIn, chunks(sd))
		}
		scanOut = append(scanOut, b.fresh(lossPrefix+"grad_weight"))
	}
	lpScan := b.fresh(lossPrefix + "chunk_logprobs")
	scanOut = append(scanOut, lpScan)
	var dhScan string
	if withGrad {
		dhScan = b.fresh(lossPrefix + "chunk_grad_hidden")
		scanOut = append(scanOut, dhScan)
	}
	states := 0
	if withGrad {
		states = 1 // the weight gradient, accumulated over chunks
	}
	scan := &onnxpb.NodeProto{Name: b.fresh(lossPrefix + "chunked_lm_head"), OpType: "Scan", Input: scanIn, Output: scanOut,
		Attribute: []*onnxpb.AttributeProto{ir.AttrGraph("body", body), ir.AttrInt("num_scan_inputs", int64(len(scanIn)-states))}}
	g.Node = append(g.Node, scan)
	flatLP := b.op("Slice", []string{b.op("Reshape", []string{lpScan, b.ints(-1)}), b.ints(0), n})
	lp = b.op("Slice", []string{b.op("Reshape", []string{flatLP, idShape}), b.ints(0), b.ints(-1), one})
	if !withGrad {
		return lp, func(string) {}, nil
	}
	dh2 := b.op("Slice", []string{b.op("Reshape", []string{dhScan, b.op("Concat", []string{b.ints(-1), d}, ir.AttrInt("axis", 0))}), b.ints(0), n})
	dh := b.op("Reshape", []string{dh2, b.op("Shape", []string{head.hidden})})
	if info.GradHidden, err = b.seedOutput("grad_hidden", dh); err != nil {
		return "", nil, err
	}
	if info.GradWeight, err = b.seedOutput("grad_weight", scanOut[0]); err != nil {
		return "", nil, err
	}
	setLoss = func(loss string) {
		info.Loss = loss
		doc, _ := json.Marshal(info)
		scan.DocString = fusedHeadMarker + string(doc)
	}
	return lp, setLoss, nil
}

// seedOutput declares a gradient the chunked head computes as a graph output
// (so specialization keeps it; Differentiate takes it from there).
func (b *lossBuilder) seedOutput(name, value string) (string, error) {
	name = b.fresh(lossPrefix + name)
	b.g.Node = append(b.g.Node, &onnxpb.NodeProto{Name: b.fresh(lossPrefix + "seed"), OpType: "Identity", Input: []string{value}, Output: []string{name}})
	b.g.Output = append(b.g.Output, &onnxpb.ValueInfoProto{Name: name, Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{ElemType: b.elem}}}})
	return name, nil
}

// nextAligned shifts a [B,T] float value left by one position (entry t then
// belongs to the prediction of token t+1) and zero-fills the last column.
func (b *lossBuilder) nextAligned(v string) string {
	one := b.ints(1)
	rows := b.op("Slice", []string{b.op("Shape", []string{v}), b.ints(0), one})
	zeros := b.op("Expand", []string{b.scalar(0), b.op("Concat", []string{rows, one}, ir.AttrInt("axis", 0))})
	return b.op("Concat", []string{b.op("Slice", []string{v, one, b.ints(math.MaxInt64), one}), zeros}, ir.AttrInt("axis", 1))
}

// logprobs is log π(ids[:,t+1] | ≤ t), [B,T-1]: through the chunked head
// when the graph's logits come from a plain output projection and chunk >= 0,
// else from the full logits. setLoss records the loss the chunked head's
// gradients are of.
func (b *lossBuilder) logprobs(logits, ids string, chunk int, grad *tokenGrad) (string, func(string), error) {
	if chunk >= 0 {
		if head, ok := findLMHead(b.g, logits); ok {
			return b.chunkedLogprobs(head, logits, ids, chunk, grad)
		}
	}
	return b.tokenLogprobs(logits, ids), func(string) {}, nil
}

// nextTokenGrad: loss = −Σ lp·w / den, so ∂loss/∂lp_t = −w_{t+1}/den.
func (b *lossBuilder) nextTokenGrad(mask, den string) *tokenGrad {
	c := b.op("Neg", []string{b.op("Div", []string{b.nextAligned(mask), den})})
	return &tokenGrad{sides: []string{c}, emit: func(_ *chunkBody, _ string, sides []string) string { return sides[0] }}
}

// policyGrad is ∂loss/∂lp_t of AddPolicyLoss: weight_t · ∂tok/∂lp_t, where
// the loss is Σ weight_t·tok_t (weights from the loss type's normalization,
// none of which depends on lp) and, with ρ = exp(lp − old),
// ∂tok/∂lp = −∂obj/∂lp + β·∂kl/∂lp, ∂obj/∂lp being ρ·A on
// the branch min() takes when that branch moves with ρ (the clipped branch
// does only inside the clip range) and 0 otherwise — the same subgradient
// autodiff takes through Where.
func (b *lossBuilder) policyGrad(o PolicyLoss, weight, adv, old, ref string) *tokenGrad {
	advBT := b.op("Expand", []string{b.op("Unsqueeze", []string{adv, b.ints(1)}), b.op("Shape", []string{weight})})
	sides := []string{weight, b.nextAligned(old), advBT}
	if o.Beta > 0 {
		sides = append(sides, b.nextAligned(ref))
	}
	return &tokenGrad{sides: sides, emit: func(c *chunkBody, lp string, s []string) string {
		ratio := c.op("Exp", []string{c.op("Sub", []string{lp, s[1]})})
		lo, hi := c.scalar(1-o.Epsilon), c.scalar(1+o.EpsilonHigh)
		below := c.op("Less", []string{ratio, lo})
		above := c.op("Greater", []string{ratio, hi})
		clipped := c.op("Where", []string{below, lo, c.op("Where", []string{above, hi, ratio})})
		s1 := c.op("Mul", []string{ratio, s[2]})
		s2 := c.op("Mul", []string{clipped, s[2]})
		inside := c.op("Not", []string{c.op("Or", []string{below, above})})
		dobj := c.op("Where", []string{c.op("LessOrEqual", []string{s1, s2}), s1, c.op("Where", []string{inside, s2, c.scalar(0)})})
		dtok := c.op("Neg", []string{dobj})
		if o.Beta > 0 {
			// ∂k3/∂lp = 1 − exp(ref − lp); with BiasCorrectionKL,
			// ∂(ρ·k3)/∂lp = ρ·(∂k3/∂lp + k3) = ρ·(lp − ref).
			dkl := c.op("Sub", []string{c.scalar(1), c.op("Exp", []string{c.op("Sub", []string{s[3], lp})})})
			if o.BiasCorrectionKL {
				dkl = c.op("Mul", []string{ratio, c.op("Sub", []string{lp, s[3]})})
			}
			dtok = c.op("Add", []string{dtok, c.op("Mul", []string{dkl, c.scalar(o.Beta)})})
		}
		return c.op("Mul", []string{s[0], dtok})
	}}
}

// fusedHeads finds the chunked heads of a graph.
func fusedHeads(g *onnxpb.GraphProto) (map[*onnxpb.NodeProto]*fusedHead, error) {
	out := map[*onnxpb.NodeProto]*fusedHead{}
	for _, n := range g.Node {
		doc, ok := strings.CutPrefix(n.GetDocString(), fusedHeadMarker)
		if !ok || n.GetOpType() != "Scan" {
			continue
		}
		var f fusedHead
		if err := json.Unmarshal([]byte(doc), &f); err != nil {
			return nil, fmt.Errorf("chunked lm head %q: %w", n.GetName(), err)
		}
		out[n] = &f
	}
	return out, nil
}

// trimFusedHead drops the weight and/or hidden gradient from a chunked
// head's Scan (and what only they used), so a frozen head or a forward-only
// graph does no gradient work. The graph's seed outputs of what was dropped
// go too; the caller prunes.
func trimFusedHead(g *onnxpb.GraphProto, n *onnxpb.NodeProto, f *fusedHead, keepHidden, keepWeight bool) {
	body := ir.FindAttr(n, "body").GetG()
	dropOut := map[string]bool{}
	if f.GradWeight != "" && !keepWeight {
		n.Input, n.Output = n.Input[1:], n.Output[1:]
		body.Input, body.Output = body.Input[1:], body.Output[1:]
		dropOut[f.GradWeight], f.GradWeight = true, ""
	}
	if f.GradHidden != "" && !keepHidden {
		n.Output = n.Output[:len(n.Output)-1]
		body.Output = body.Output[:len(body.Output)-1]
		dropOut[f.GradHidden], f.GradHidden = true, ""
	}
	if len(dropOut) == 0 {
		return
	}
	prune(body, true)
	states := len(body.Input) - int(ir.AttrIntOf(n, "num_scan_inputs", 0))
	used := map[string]bool{}
	for _, bn := range body.Node {
		for _, in := range nodeInputs(bn) {
			used[in] = true
		}
	}
	for _, o := range body.Output {
		used[o.GetName()] = true
	}
	var ins []string
	var bins []*onnxpb.ValueInfoProto
	for i, vi := range body.Input {
		if i < states || used[vi.GetName()] {
			ins, bins = append(ins, n.Input[i]), append(bins, vi)
		}
	}
	n.Input, body.Input = ins, bins
	ir.SetAttr(n, ir.AttrInt("num_scan_inputs", int64(len(bins)-states)))
	outs := g.Output[:0]
	for _, o := range g.Output {
		if !dropOut[o.GetName()] {
			outs = append(outs, o)
		}
	}
	g.Output = outs
	doc, _ := json.Marshal(f)
	n.DocString = fusedHeadMarker + string(doc)
}

// forwardOnlyHeads trims every chunked head of g to its log-probabilities.
func forwardOnlyHeads(g *onnxpb.GraphProto) error {
	heads, err := fusedHeads(g)
	if err != nil {
		return err
	}
	for n, f := range heads {
		trimFusedHead(g, n, f, false, false)
	}
	return nil
}

// seedFusedHeads trims each chunked head to the gradients loss's weights
// need and adds those to contrib (the backward pass's gradient
// contributions). The reverse walk skips the returned nodes.
func seedFusedHeads(g *onnxpb.GraphProto, loss string, needs map[string]bool, contrib map[string][]string) (map[*onnxpb.NodeProto]*fusedHead, error) {
	heads, err := fusedHeads(g)
	if err != nil {
		return nil, err
	}
	for n, f := range heads {
		if f.Loss != loss {
			return nil, fmt.Errorf("the chunked lm head %q computes the gradient of %q, not of %q (build the loss with Chunk < 0 to differentiate another output)", n.GetName(), f.Loss, loss)
		}
		trimFusedHead(g, n, f, needs[f.Hidden], needs[f.Weight])
		if f.GradHidden != "" {
			contrib[f.Hidden] = append(contrib[f.Hidden], f.GradHidden)
		}
		if f.GradWeight != "" {
			contrib[f.Weight] = append(contrib[f.Weight], f.GradWeight)
		}
	}
	return heads, nil
}

// probeWithoutHeadGrads returns nodes (a graph's, in order) with each
// chunked head's Scan replaced by a copy without the weight gradient and the
// node exposing that gradient left out, for specialization's probe (pg);
// skip maps the values left out to the weight whose type they have.
func probeWithoutHeadGrads(pg *onnxpb.GraphProto, nodes []*onnxpb.NodeProto) ([]*onnxpb.NodeProto, map[string]string, error) {
	heads, err := fusedHeads(&onnxpb.GraphProto{Node: nodes})
	if err != nil {
		return nil, nil, err
	}
	skip := map[string]string{}
	swap := map[*onnxpb.NodeProto]*onnxpb.NodeProto{}
	for n, f := range heads {
		if f.GradWeight == "" {
			continue
		}
		// The gradient, its seed output and its W·0 start.
		skip[n.Output[0]], skip[f.GradWeight], skip[n.Input[0]] = f.Weight, f.Weight, f.Weight
		c := proto.Clone(n).(*onnxpb.NodeProto)
		fc := *f
		trimFusedHead(pg, c, &fc, true, false)
		swap[n] = c
	}
	if len(skip) == 0 {
		return append([]*onnxpb.NodeProto{}, nodes...), skip, nil
	}
	var out []*onnxpb.NodeProto
	for _, n := range nodes {
		if c, ok := swap[n]; ok {
			n = c
		}
		if len(n.Output) == 1 {
			if _, ok := skip[n.Output[0]]; ok && (n.GetOpType() == "Identity" || n.GetOpType() == "Mul") {
				continue
			}
		}
		out = append(out, n)
	}
	return out, skip, nil
}
