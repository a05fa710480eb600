package train

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/onnxpb"
	"github.com/tagpr/tagpr/onnx/ort"
)

// LMBatch is a causal-LM training batch in the Optimum layout: B rows of T
// tokens, left- or right-padded, with an empty KV cache.
type LMBatch struct {
	B, T     int64
	IDs      []int64   // [B,T]
	Mask     []int64   // [B,T] attention mask: 1 for real tokens
	LossMask []float32 // [B,T] 1 where token t is a prediction target
	// For policy losses (AddPolicyLoss), laid out [B,T] like IDs (entry t
	// is about token t) and [B] for Advantages.
	Advantages, OldLogprobs, RefLogprobs []float32
	// Pos, when set, holds the tokens' positions (packed rows restart them
	// with each example); otherwise Positions derives them from Mask.
	Pos []int64
}

// NewLMBatch packs token rows (right-padded with pad to length T; longer
// rows are cut) into a batch; every real token after the first of its row
// is a target unless promptLen[i] says the first promptLen[i] tokens are a
// prompt (nil: no prompts).
func NewLMBatch(rows [][]int64, T int, pad int64, promptLen []int) *LMBatch {
	b := &LMBatch{B: int64(len(rows)), T: int64(T)}
	n := len(rows) * T
	b.IDs, b.Mask, b.LossMask = make([]int64, n), make([]int64, n), make([]float32, n)
	for i, r := range rows {
		for t := 0; t < T; t++ {
			k := i*T + t
			if t >= len(r) {
				b.IDs[k] = pad
				continue
			}
			b.IDs[k], b.Mask[k] = r[t], 1
			p := 0
			if promptLen != nil {
				p = promptLen[i]
			}
			if t >= 1 && t >= p {
				b.LossMask[k] = 1
			}
		}
	}
	return b
}

// Positions are HF's: cumsum(mask) − 1, with 1 at padded positions.
func (b *LMBatch) Positions() []int64 {
	if b.Pos != nil {
		return b.Pos
	}
	pos := make([]int64, len(b.Mask))
	for i := int64(0); i < b.B; i++ {
		c := int64(0)
		for t := int64(0); t < b.T; t++ {
			k := i*b.T + t
			c += b.Mask[k]
			if b.Mask[k] == 0 {
				pos[k] = 1
			} else {
				pos[k] = c - 1
			}
		}
	}
	return pos
}

// Tokens is the number of target tokens.
func (b *LMBatch) Tokens() int {
	n := 0
	for _, w := range b.LossMask {
		if w != 0 {
			n++
		}
	}
	return n
}

// LMShapes gives the input shapes of a causal LM (with loss inputs) for a
// batch of B×T tokens and an empty past, for Specialize.
func LMShapes(m *onnxpb.ModelProto, B, T int64) (map[string][]int64, error) {
	out := map[string][]int64{}
	for _, vi := range m.GetGraph().GetInput() {
		name := vi.GetName()
		_, dims, _, _ := ir.ShapeOf(vi)
		switch {
		case name == "input_ids" || name == "attention_mask" || name == "position_ids" || name == LossMaskInput ||
			name == OldLogprobsInput || name == RefLogprobsInput:
			out[name] = []int64{B, T}
		case name == AdvantagesInput:
			out[name] = []int64{B}
		case strings.HasPrefix(name, "past_key_values."):
			if len(dims) != 4 || dims[1] < 0 || dims[3] < 0 {
				return nil, fmt.Errorf("lm shapes: input %q is declared %v; want [batch, kv_heads, past, head_dim] with fixed heads and head_dim", name, dims)
			}
			out[name] = []int64{B, dims[1], 0, dims[3]}
		default:
			isInit := false
			for _, t := range m.Graph.Initializer {
				isInit = isInit || t.GetName() == name
			}
			if !isInit {
				return nil, fmt.Errorf("lm shapes: input %q is not part of the causal-LM layout", name)
			}
		}
	}
	return out, nil
}

// Values makes the batch's tensors for a training graph's data inputs
// (input_ids, attention_mask, position_ids and the loss inputs); destroy
// them after use.
func (b *LMBatch) Values(tg *TrainingGraph) (map[string]ort.Value, error) {
	return b.ValuesFor(tg.Model.Graph)
}

// ValuesFor is Values for any graph in the causal-LM layout.
func (b *LMBatch) ValuesFor(g *onnxpb.GraphProto) (map[string]ort.Value, error) {
	out := map[string]ort.Value{}
	shape := []int64{b.B, b.T}
	fail := func(err error) (map[string]ort.Value, error) {
		for _, v := range out {
			v.Destroy()
		}
		return nil, err
	}
	floats := func(name string, d []float32, shape []int64) (ort.Value, error) {
		if int64(len(d)) != ir.NumElements(shape) {
			return nil, fmt.Errorf("the graph needs %s %v, the batch has %d values", name, shape, len(d))
		}
		return ort.NewTensor(shape, d)
	}
	for _, vi := range g.Input {
		var v ort.Value
		var err error
		switch vi.GetName() {
		case "input_ids":
			v, err = ort.NewTensor(shape, b.IDs)
		case "attention_mask":
			v, err = ort.NewTensor(shape, b.Mask)
		case "position_ids":
			v, err = ort.NewTensor(shape, b.Positions())
		case LossMaskInput:
			v, err = floats(LossMaskInput, b.LossMask, shape)
		case AdvantagesInput:
			v, err = floats(AdvantagesInput, b.Advantages, []int64{b.B})
		case OldLogprobsInput:
			v, err = floats(OldLogprobsInput, b.OldLogprobs, shape)
		case RefLogprobsInput:
			v, err = floats(RefLogprobsInput, b.RefLogprobs, shape)
		default:
			continue
		}
		if err != nil {
			return fail(fmt.Errorf("lm batch: %s: %w", vi.GetName(), err))
		}
		out[vi.GetName()] = v
	}
	return out, nil
}

// LMDataset serves token rows as LMBatches.
type LMDataset struct {
	Rows      [][]int64
	PromptLen []int // optional: tokens of each row that are prompt (not targets)
	SeqLen    int
	Pad       int64
	Graph     *TrainingGraph
	// Packed serves rows of several examples each (PackRows; the graph must
	// be built with LMTraining.Packed): Len and Batch then count packed rows.
	Packed bool
	packed [][]int
}

func (d *LMDataset) Len() int {
	if d.Packed {
		return len(d.packedRows())
	}
	return len(d.Rows)
}

func (d *LMDataset) packedRows() [][]int {
	if d.packed == nil {
		lens := make([]int, len(d.Rows))
		for i, r := range d.Rows {
			lens[i] = len(r)
		}
		d.packed = PackRows(lens, d.SeqLen)
	}
	return d.packed
}

// LMBatch makes the batch of these examples (packed rows when Packed).
func (d *LMDataset) LMBatch(idx []int) (*LMBatch, error) {
	if d.Packed {
		rows := d.packedRows()
		sel := make([][]int, len(idx))
		for i, k := range idx {
			if k < 0 || k >= len(rows) {
				return nil, fmt.Errorf("lm dataset: packed row %d of %d", k, len(rows))
			}
			sel[i] = rows[k]
		}
		return NewPackedLMBatch(d.Rows, d.PromptLen, sel, d.SeqLen, d.Pad), nil
	}
	rows := make([][]int64, len(idx))
	var prompts []int
	if d.PromptLen != nil {
		prompts = make([]int, len(idx))
	}
	for i, k := range idx {
		if k < 0 || k >= len(d.Rows) {
			return nil, fmt.Errorf("lm dataset: example %d of %d", k, len(d.Rows))
		}
		rows[i] = d.Rows[k]
		if prompts != nil {
			prompts[i] = d.PromptLen[k]
		}
	}
	return NewLMBatch(rows, d.SeqLen, d.Pad, prompts), nil
}

// LossTokens counts the targets the loss of these examples' batch averages
// over (AddNextTokenLoss: the loss mask after each row's first position).
func (d *LMDataset) LossTokens(idx []int) (int, error) {
	lb, err := d.LMBatch(idx)
	if err != nil {
		return 0, err
	}
	n := 0
	for i, m := range lb.LossMask {
		if int64(i)%lb.T > 0 && m != 0 {
			n++
		}
	}
	return n, nil
}

func (d *LMDataset) Batch(idx []int) (map[string]ort.Value, func(), error) {
	lb, err := d.LMBatch(idx)
	if err != nil {
		return nil, nil, err
	}
	v, err := lb.Values(d.Graph)
	if err != nil {
		return nil, nil, err
	}
	return v, func() {
		for _, x := range v {
			x.Destroy()
		}
	}, nil
}

// LMTraining configures BuildLMTraining.
type LMTraining struct {
	// Batch and SeqLen are the fixed training shape: rows of tokens
	// (Batch ≥ 1, SeqLen ≥ 2).
	Batch, SeqLen int64
	// Trainable patterns (ResolveTrainable: whole modules or weights by
	// name); empty: all weights. Ignored with LoRA.
	Trainable []string
	LoRA      *LoRA
	Keep      []string // forward outputs to keep (e.g. "logits", TokenLogprobsOutput)
	// FrozenAsInputs feeds the frozen weights from Go too (TrainingGraph.FreezeToInputs):
	// for LoRA on models past protobuf's 2 GiB, or to share them with generation.
	FrozenAsInputs bool
	// Policy, when set, trains with the GRPO-family loss instead of the
	// next-token cross-entropy (batches then carry advantages and log-probs).
	Policy *PolicyLoss
	// Consume builds from m itself, changing it, instead of a copy: one
	// copy of the weights fewer for callers that are done with m.
	Consume bool
	// Recompute: keep only segment boundaries (the residual stream between
	// blocks) from the forward pass and recompute each segment's activations
	// in the backward pass (less memory for one more forward pass).
	Recompute bool
	// Packed: batches hold several examples per row (LMDataset.Packed);
	// attention stays inside each example (the model must take position_ids).
	Packed bool
	// Chunk: token positions per vocabulary chunk of the loss (see
	// NextTokenLoss.Chunk; it overrides Policy.Chunk when set). Keeping
	// "logits" computes them whole.
	Chunk int
}

// BuildLMTraining derives the SFT training graph of a causal LM (Optimum
// layout): optional LoRA, the masked next-token loss, specialization to
// Batch×SeqLen with an empty past, and the backward pass. m is not changed
// unless Consume.
func BuildLMTraining(m *onnxpb.ModelProto, o LMTraining) (*TrainingGraph, []Adapter, error) {
	if o.Batch < 1 || o.SeqLen < 2 {
		return nil, nil, fmt.Errorf("build training graph: batch %d, seq_len %d: want batch ≥ 1 and seq_len ≥ 2 (a row's next-token targets need two tokens)", o.Batch, o.SeqLen)
	}
	if m.GetGraph() == nil {
		return nil, nil, fmt.Errorf("build training graph: the model has no graph")
	}
	if err := ValidatePatterns(o.Trainable); err != nil {
		return nil, nil, fmt.Errorf("build training graph: trainable: %w", err)
	}
	if !o.Consume {
		m = cloneModel(m)
	}
	var adapters []Adapter
	var selected []PatternMatch
	if o.LoRA != nil {
		var err error
		if selected, err = o.LoRA.Select(m); err != nil {
			return nil, nil, fmt.Errorf("lora: %w", err)
		}
		if adapters, err = AddLoRA(m, *o.LoRA); err != nil {
			return nil, nil, err
		}
	}
	// The vocabulary, for ChanceLoss: read before the loss, since a chunked
	// head leaves no [B,T,V] logits to read it from.
	var vocab int64
	if h, ok := findLMHead(m.GetGraph(), "logits"); ok {
		vocab = h.vocab
	}
	var loss string
	var err error
	if slices.Contains(o.Keep, "logits") && o.Chunk == 0 {
		o.Chunk = -1 // the logits are wanted whole
	}
	if o.Policy != nil {
		p := *o.Policy
		if o.Chunk != 0 {
			p.Chunk = o.Chunk
		}
		loss, err = AddPolicyLoss(m, p)
	} else {
		loss, err = AddNextTokenLoss(m, NextTokenLoss{Chunk: o.Chunk})
	}
	if err != nil {
		return nil, nil, err
	}
	shapes, err := LMShapes(m, o.Batch, o.SeqLen)
	if err != nil {
		return nil, nil, err
	}
	sp, err := specialize(m, shapes) // m is already this function's copy
	if err != nil {
		return nil, nil, err
	}
	if o.Packed {
		if _, err := isolateExamples(sp); err != nil {
			return nil, nil, fmt.Errorf("build training graph: %w", err)
		}
	}
	params := AdapterParams(adapters)
	if o.LoRA == nil {
		if params, selected, err = ResolveTrainable(SelectParams(sp, nil), o.Trainable); err != nil {
			return nil, nil, fmt.Errorf("build training graph: %w", err)
		}
	}
	if len(params) == 0 {
		return nil, nil, fmt.Errorf("build training graph: the model has no trainable weight")
	}
	tg, err := differentiate(sp, loss, params, o.Keep, diffOptions{recompute: o.Recompute})
	if err != nil {
		return nil, nil, err
	}
	tg.Selected = selected
	if logits := sp.Types["logits"].Shape; len(logits) == 3 {
		vocab = logits[2]
	}
	if o.Policy == nil && vocab > 1 {
		tg.ChanceLoss = math.Log(float64(vocab))
	}
	if o.FrozenAsInputs {
		if err := tg.FreezeToInputs(); err != nil {
			return nil, nil, fmt.Errorf("build training graph: %w", err)
		}
	}
	return tg, adapters, nil
}

// TokenScorer computes per-token log-probabilities of a causal LM (the
// reference or old policy of an RL step) with a forward-only graph.
type TokenScorer struct {
	B, T  int64
	graph *onnxpb.GraphProto
	sess  *ort.Session
	fed   map[string]ort.Value // weights fed as inputs, not owned
}

// NewTokenScorer specializes m (not changed) to B×T batches with an empty
// past and keeps only the TokenLogprobsOutput.
func NewTokenScorer(m *onnxpb.ModelProto, B, T int64, opts ort.Options) (*TokenScorer, error) {
	return newTokenScorer(m, B, T, opts, 0)
}

// newTokenScorer is NewTokenScorer with the vocabulary chunking of NextTokenLoss.Chunk.
func newTokenScorer(m *onnxpb.ModelProto, B, T int64, opts ort.Options, chunk int) (*TokenScorer, error) {
	m = ir.CloneSharingInitializers(m) // the session copies the weights it needs; m's are only read
	if _, err := AddNextTokenLoss(m, NextTokenLoss{Chunk: chunk}); err != nil {
		return nil, err
	}
	shapes, err := LMShapes(m, B, T)
	if err != nil {
		return nil, err
	}
	return newScorer(m, shapes, B, T, opts, nil)
}

// newScorer specializes m (a model with a next-token loss block, changed)
// and keeps only its TokenLogprobsOutput.
//
// Initializers named in fed with the same shape become inputs fed from
// those tensors.
func newScorer(m *onnxpb.ModelProto, shapes map[string][]int64, B, T int64, opts ort.Options, fed map[string]ort.Value) (*TokenScorer, error) {
	sp, err := specialize(m, shapes)
	if err != nil {
		return nil, err
	}
	g := sp.Model.Graph
	if err := forwardOnlyHeads(g); err != nil {
		return nil, fmt.Errorf("token scorer: %w", err)
	}
	var keep []*onnxpb.ValueInfoProto
	for _, o := range g.Output {
		if o.GetName() == TokenLogprobsOutput {
			keep = append(keep, o)
		}
	}
	g.Output = keep
	prune(g, false)
	inputs, err := feedInitializers(g, fed)
	if err != nil {
		return nil, fmt.Errorf("token scorer: %w", err)
	}
	b, err := ir.Marshal(sp.Model)
	if err != nil {
		return nil, fmt.Errorf("token scorer: %w", err)
	}
	s, err := ort.NewSession(b, "token scorer", opts)
	if err != nil {
		return nil, fmt.Errorf("token scorer: %w", err)
	}
	// The batches' tensors are made for the graph's inputs: keep the graph
	// without the initializers the session has copied (a model's worth of
	// weights, or the caller's own tensors, held for nothing).
	return &TokenScorer{B: B, T: T, graph: &onnxpb.GraphProto{Name: g.GetName(), Node: g.Node, Input: g.Input, Output: g.Output}, sess: s, fed: inputs}, nil
}

// Logprobs returns log π(token t+1 | ≤ t) for each row, [B,T-1] row-major.
func (s *TokenScorer) Logprobs(b *LMBatch) ([]float32, error) {
	if b.B != s.B || b.T != s.T {
		return nil, fmt.Errorf("token scorer: batch %d×%d, scorer made for %d×%d", b.B, b.T, s.B, s.T)
	}
	return s.run(b.ValuesFor(s.graph))
}

// SharedLogprobs returns, for a scorer made by NewSharedPrefixScorer, the
// log-prob of each completion token, [P·G, Tc] row-major.
func (s *TokenScorer) SharedLogprobs(b *SharedPrefixBatch) ([]float32, error) {
	if b.S.rows() != s.B || b.S.CompletionLen+1 != s.T {
		return nil, fmt.Errorf("token scorer: shared-prefix batch of %d×%d completions, scorer made for %d×%d", b.S.rows(), b.S.CompletionLen, s.B, s.T-1)
	}
	return s.run(b.ValuesFor(s.graph))
}

func (s *TokenScorer) run(in map[string]ort.Value, err error) ([]float32, error) {
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, v := range in {
			v.Destroy()
		}
	}()
	feed := in
	if len(s.fed) > 0 {
		feed = maps.Clone(in) // in's own values are destroyed above, not the fed weights
		maps.Copy(feed, s.fed)
	}
	res, err := s.sess.Run(feed, nil)
	if err != nil {
		return nil, fmt.Errorf("token scorer: %w", err)
	}
	defer res.Destroy()
	d, err := ort.Data[float32](TokenLogprobsOutput, res.Get(TokenLogprobsOutput))
	if err != nil {
		return nil, fmt.Errorf("token scorer: %w", err)
	}
	return append([]float32{}, d...), nil
}

// Close releases the session (not the fed weights).
func (s *TokenScorer) Close() { s.sess.Destroy() }

// feedInitializers turns g's initializers named in fed, of the same shape,
// into inputs and returns the tensors that feed them.
func feedInitializers(g *onnxpb.GraphProto, fed map[string]ort.Value) (map[string]ort.Value, error) {
	if len(fed) == 0 {
		return nil, nil
	}
	out := map[string]ort.Value{}
	kept := g.Initializer[:0]
	for _, t := range g.Initializer {
		v, ok := fed[t.GetName()]
		if !ok || t.GetDataType() != ir.Float || !slices.Equal(v.GetShape(), t.GetDims()) {
			kept = append(kept, t)
			continue
		}
		vi, err := ir.ValueInfo(t.GetName(), ir.Float, ir.Dims(t.GetDims())...)
		if err != nil {
			return nil, err
		}
		g.Input = append(g.Input, vi)
		out[t.GetName()] = v
	}
	g.Initializer = kept
	return out, nil
}
