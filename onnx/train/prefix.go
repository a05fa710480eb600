package train

import (
	"fmt"
	"math"
	"strings"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/onnxpb"
	"github.com/tagpr/tagpr/onnx/ort"
)

// Shared-prefix policy graphs. A GRPO step trains on G completions of each
// prompt; laid out as G rows of prompt + completion, every prompt runs
// through the model G times, forward and backward. A shared-prefix graph
// runs each prompt once (a first copy of the model over [P, Tp]), repeats
// its KV cache for its G completions, and runs the completions as a
// continuation (a second copy over [P·G, Tc] with that cache as past), both
// copies reading the same weights, so gradients from both add up. The
// first completion token is predicted from the prompt's last hidden state,
// the others from the continuation's; the loss blocks then see hidden
// states and ids of Tc+1 positions (position 0 the prompt's last token),
// laid out as they expect.

// SharedPrefix sizes a shared-prefix graph: P prompts of at most PromptLen
// tokens (left-padded), G completions each of at most CompletionLen tokens.
type SharedPrefix struct {
	Prompts, Generations     int64
	PromptLen, CompletionLen int64
}

// Inputs of a shared-prefix graph besides the model's own input_ids,
// attention_mask [P·G, Tp+Tc] and position_ids [P·G, Tc], which carry the
// completions.
const (
	PromptIDsInput  = "prompt_ids"             // [P,Tp] int64, left-padded
	PromptMaskInput = "prompt_attention_mask"  // [P,Tp] int64
	PromptPosInput  = "prompt_position_ids"    // [P,Tp] int64 (models that take position_ids)
	SharedIDs       = "shared_prefix/ids"      // [P·G, Tc+1]: each prompt's last token, then the completion
	prefixScope     = "shared_prefix/prompt/"  // the prompt copy's values
	sharedScope     = "shared_prefix/"         // the glue's values
	sharedHidden    = "shared_prefix/hidden"   // [P·G, Tc+1, D]
	suffixHidden    = "shared_prefix/suffix_h" // the continuation's own hidden states
)

// rows is P·G.
func (s SharedPrefix) rows() int64 { return s.Prompts * s.Generations }

func (s SharedPrefix) validate() error {
	if s.Prompts < 1 || s.Generations < 1 || s.PromptLen < 1 || s.CompletionLen < 1 {
		return fmt.Errorf("shared prefix: %d prompts × %d completions of %d + %d tokens: all must be positive", s.Prompts, s.Generations, s.PromptLen, s.CompletionLen)
	}
	return nil
}

// SharePrefix returns the shared-prefix model of a causal LM in the Optimum
// layout (m is not changed): its one output, "logits" [P·G, Tc+1, V], is the
// model's output projection of the shared hidden states, and SharedIDs holds
// the matching ids. Add a loss to it with IDs: SharedIDs. It holds m's own
// weight tensors (ir.CloneSharingInitializers): write neither's weights.
func SharePrefix(m *onnxpb.ModelProto, s SharedPrefix) (*onnxpb.ModelProto, error) {
	if err := s.validate(); err != nil {
		return nil, err
	}
	m = ir.CloneSharingInitializers(m) // a derived graph of a 0.5B model costs no copy of its weights
	g := m.GetGraph()
	if g == nil {
		return nil, fmt.Errorf("shared prefix: model has no graph")
	}
	for _, n := range g.Node {
		for _, a := range n.Attribute {
			if a.G != nil || len(a.Graphs) > 0 {
				return nil, fmt.Errorf("shared prefix: node %q (%s) has a subgraph; the model must be a plain graph", n.GetName(), n.GetOpType())
			}
		}
	}
	head, ok := findLMHead(g, "logits")
	if !ok {
		return nil, fmt.Errorf("shared prefix: the model's logits are not a MatMul of hidden states by a weight")
	}
	inputs := map[string]*onnxpb.ValueInfoProto{}
	for _, vi := range g.Input {
		inputs[vi.GetName()] = vi
	}
	for _, name := range []string{"input_ids", "attention_mask"} {
		if inputs[name] == nil {
			return nil, fmt.Errorf("shared prefix: the model has no %s input", name)
		}
	}
	_, hasPos := inputs["position_ids"]
	e := newEditor(g)
	e.prefix = sharedScope
	P, G, R := s.Prompts, s.Generations, s.rows()

	// The prompt copy: every node again, its values renamed, reading the
	// prompt inputs, an empty past and the same weights.
	rename := map[string]string{"input_ids": PromptIDsInput, "attention_mask": PromptMaskInput, "position_ids": PromptPosInput}
	var pasts []string
	for _, vi := range g.Input {
		name := vi.GetName()
		if !strings.HasPrefix(name, "past_key_values.") {
			continue
		}
		_, dims, _, ok := ir.ShapeOf(vi)
		if !ok || len(dims) != 4 || dims[1] < 0 || dims[3] < 0 {
			return nil, fmt.Errorf("shared prefix: input %q is declared %v; want [batch, kv_heads, past, head_dim] with fixed heads and head_dim", name, dims)
		}
		empty := &onnxpb.TensorProto{Name: prefixScope + name, DataType: vi.GetType().GetTensorType().GetElemType(), Dims: []int64{P, dims[1], 0, dims[3]}, RawData: []byte{}}
		g.Initializer = append(g.Initializer, empty)
		rename[name] = empty.GetName()
		pasts = append(pasts, name)
	}
	if len(pasts) == 0 {
		return nil, fmt.Errorf("shared prefix: the model takes no past_key_values inputs (a KV cache is how the prompt is shared)")
	}
	produced := map[string]bool{}
	for _, n := range g.Node {
		for _, o := range n.Output {
			if o != "" {
				produced[o] = true
				rename[o] = prefixScope + o
			}
		}
	}
	var prompt []*onnxpb.NodeProto
	for _, n := range g.Node {
		c := cloneNode(n)
		c.Name = prefixScope + n.GetName()
		for i, in := range c.Input {
			if r, ok := rename[in]; ok {
				c.Input[i] = r
			}
		}
		for i, o := range c.Output {
			if o != "" {
				c.Output[i] = rename[o]
			}
		}
		prompt = append(prompt, c)
	}
	g.Node = append(prompt, g.Node...)

	// repeat [P, …] → [P·G, …], each prompt's row G times in a row.
	repeat := func(v string) string {
		shape := e.op("Shape", []string{v})
		rest := e.op("Slice", []string{shape, e.ints(1), e.ints(math.MaxInt64)})
		x := e.op("Unsqueeze", []string{v, e.ints(1)})
		x = e.op("Expand", []string{x, e.op("Concat", []string{e.ints(P, G), rest}, ir.AttrInt("axis", 0))})
		return e.op("Reshape", []string{x, e.op("Concat", []string{e.ints(R), rest}, ir.AttrInt("axis", 0))})
	}
	// The continuation's past: the prompt copy's present, repeated.
	pastOf := map[string]string{}
	for _, name := range pasts {
		present := "present." + strings.TrimPrefix(name, "past_key_values.")
		if !produced[present] {
			return nil, fmt.Errorf("shared prefix: the model has %s but no %s output", name, present)
		}
		pastOf[name] = repeat(rename[present])
	}
	// The continuation's hidden states, after the prompt's last one.
	for _, n := range g.Node[len(prompt):] {
		for i, in := range n.Input {
			if p, ok := pastOf[in]; ok {
				n.Input[i] = p
			}
		}
		for i, o := range n.Output {
			if o == head.hidden {
				n.Output[i] = suffixHidden
			}
		}
	}
	last := e.op("Slice", []string{rename[head.hidden], e.ints(-1), e.ints(math.MaxInt64), e.ints(1)})
	g.Node = append(g.Node, &onnxpb.NodeProto{Name: e.fresh(sharedScope + "hidden"), OpType: "Concat",
		Input: []string{repeat(last), suffixHidden}, Output: []string{sharedHidden}, Attribute: []*onnxpb.AttributeProto{ir.AttrInt("axis", 1)}})
	for _, n := range head.nodes {
		for i, in := range n.Input {
			if in == head.hidden {
				n.Input[i] = sharedHidden
			}
		}
	}
	lastID := e.op("Slice", []string{PromptIDsInput, e.ints(-1), e.ints(math.MaxInt64), e.ints(1)})
	g.Node = append(g.Node, &onnxpb.NodeProto{Name: e.fresh(sharedScope + "ids"), OpType: "Concat",
		Input: []string{repeat(lastID), "input_ids"}, Output: []string{SharedIDs}, Attribute: []*onnxpb.AttributeProto{ir.AttrInt("axis", 1)}})

	// Inputs: the prompt's, then the completions' (the model's own names).
	var ins []*onnxpb.ValueInfoProto
	add := func(name string, dims ...any) error {
		vi, err := ir.ValueInfo(name, ir.Int64, dims...)
		ins = append(ins, vi)
		return err
	}
	for _, in := range []struct {
		name string
		dims []any
		want bool
	}{{PromptIDsInput, []any{P, s.PromptLen}, true}, {PromptMaskInput, []any{P, s.PromptLen}, true},
		{PromptPosInput, []any{P, s.PromptLen}, hasPos}, {"input_ids", []any{R, s.CompletionLen}, true},
		{"attention_mask", []any{R, s.PromptLen + s.CompletionLen}, true}, {"position_ids", []any{R, s.CompletionLen}, hasPos}} {
		if in.want {
			if err := add(in.name, in.dims...); err != nil {
				return nil, fmt.Errorf("shared prefix: %w", err)
			}
		}
	}
	for _, vi := range g.Input {
		if !strings.HasPrefix(vi.GetName(), "past_key_values.") && inputs[vi.GetName()] != nil && !isLMInput(vi.GetName()) {
			ins = append(ins, vi) // initializers listed as inputs
		}
	}
	g.Input = ins
	var outs []*onnxpb.ValueInfoProto
	for _, o := range g.Output {
		if o.GetName() == "logits" {
			outs = append(outs, o)
		}
	}
	g.Output = outs
	// No pruning here: SharedIDs is read only by the loss block still to come.
	if err := topoSort(g); err != nil {
		return nil, fmt.Errorf("shared prefix: %w", err)
	}
	return m, nil
}

func isLMInput(name string) bool {
	return name == "input_ids" || name == "attention_mask" || name == "position_ids"
}

func cloneNode(n *onnxpb.NodeProto) *onnxpb.NodeProto {
	c := &onnxpb.NodeProto{Name: n.Name, OpType: n.OpType, Domain: n.Domain, DocString: n.DocString,
		Input: append([]string{}, n.Input...), Output: append([]string{}, n.Output...), Attribute: n.Attribute}
	return c
}

// Shapes are the input shapes of a shared-prefix graph with a loss block,
// for Specialize.
func (s SharedPrefix) Shapes(m *onnxpb.ModelProto) (map[string][]int64, error) {
	R, Tc := s.rows(), s.CompletionLen
	out := map[string][]int64{}
	for _, vi := range m.GetGraph().GetInput() {
		switch name := vi.GetName(); name {
		case PromptIDsInput, PromptMaskInput, PromptPosInput:
			out[name] = []int64{s.Prompts, s.PromptLen}
		case "input_ids", "position_ids":
			out[name] = []int64{R, Tc}
		case "attention_mask":
			out[name] = []int64{R, s.PromptLen + Tc}
		case LossMaskInput, OldLogprobsInput, RefLogprobsInput:
			out[name] = []int64{R, Tc + 1}
		case AdvantagesInput:
			out[name] = []int64{R}
		}
	}
	return out, nil
}

// PolicyTraining configures BuildSharedPrefixPolicy.
type PolicyTraining struct {
	Loss   PolicyLoss
	Shared SharedPrefix
	Params []string // trainable weights (initializer names)
	Keep   []string // forward outputs to keep (ClipFractionOutput, PolicyKLOutput, …)
	// Recompute keeps only segment boundaries from the forward pass and
	// recomputes each segment's activations in the backward pass (as
	// LMTraining.Recompute): less memory for one more forward pass.
	Recompute bool
}

// BuildSharedPrefixPolicy derives the GRPO-family training graph of a causal
// LM over shared-prefix batches (SharedPrefixBatch). m is not changed.
func BuildSharedPrefixPolicy(m *onnxpb.ModelProto, o PolicyTraining) (*TrainingGraph, error) {
	sm, err := SharePrefix(m, o.Shared)
	if err != nil {
		return nil, err
	}
	loss := o.Loss
	loss.IDs = SharedIDs
	l, err := AddPolicyLoss(sm, loss)
	if err != nil {
		return nil, err
	}
	shapes, err := o.Shared.Shapes(sm)
	if err != nil {
		return nil, err
	}
	sp, err := specialize(sm, shapes)
	if err != nil {
		return nil, err
	}
	return differentiate(sp, l, o.Params, o.Keep, diffOptions{recompute: o.Recompute, streams: 4})
}

// SharedPrefixBatch is one step's shared-prefix batch: P prompts
// (left-padded to Tp) and their G completions each (right-padded to Tc).
// Loss inputs are laid out [P·G, Tc+1]: entry 0 is the prompt's last token
// (never a target), entry j+1 completion token j.
type SharedPrefixBatch struct {
	S                                  SharedPrefix
	PromptIDs, PromptMask, PromptPos   []int64 // [P,Tp]
	IDs, Mask, Pos                     []int64 // [P·G,Tc], [P·G,Tp+Tc], [P·G,Tc]
	LossMask, OldLogprobs, RefLogprobs []float32
	Advantages                         []float32 // [P·G]
}

// NewSharedPrefixBatch lays out prompts and completions (row r continues
// prompts[r/G]); every completion token is a target.
func NewSharedPrefixBatch(s SharedPrefix, prompts, completions [][]int64, pad int64) (*SharedPrefixBatch, error) {
	if err := s.validate(); err != nil {
		return nil, err
	}
	P, G, R, Tp, Tc := s.Prompts, s.Generations, s.rows(), s.PromptLen, s.CompletionLen
	if int64(len(prompts)) != P || int64(len(completions)) != R {
		return nil, fmt.Errorf("shared prefix batch: %d prompts and %d completions, want %d and %d×%d", len(prompts), len(completions), P, P, G)
	}
	b := &SharedPrefixBatch{S: s, PromptIDs: make([]int64, P*Tp), PromptMask: make([]int64, P*Tp), PromptPos: make([]int64, P*Tp),
		IDs: make([]int64, R*Tc), Mask: make([]int64, R*(Tp+Tc)), Pos: make([]int64, R*Tc),
		LossMask: make([]float32, R*(Tc+1)), OldLogprobs: make([]float32, R*(Tc+1)), RefLogprobs: make([]float32, R*(Tc+1)), Advantages: make([]float32, R)}
	for p, ids := range prompts {
		n := int64(len(ids))
		if n == 0 || n > Tp {
			return nil, fmt.Errorf("shared prefix batch: prompt %d has %d tokens, want 1 to %d", p, n, Tp)
		}
		for t := int64(0); t < Tp; t++ {
			k := int64(p)*Tp + t
			if t < Tp-n {
				b.PromptIDs[k], b.PromptPos[k] = pad, 1 // HF's position for padding
				continue
			}
			b.PromptIDs[k], b.PromptMask[k], b.PromptPos[k] = ids[t-(Tp-n)], 1, t-(Tp-n)
		}
	}
	for r, c := range completions {
		if int64(len(c)) > Tc {
			return nil, fmt.Errorf("shared prefix batch: completion %d has %d tokens, more than %d", r, len(c), Tc)
		}
		p := int64(r) / G
		n := int64(len(prompts[p]))
		copy(b.Mask[int64(r)*(Tp+Tc):], b.PromptMask[p*Tp:(p+1)*Tp])
		for j := int64(0); j < Tc; j++ {
			k := int64(r)*Tc + j
			b.Pos[k] = n + j
			if j >= int64(len(c)) {
				b.IDs[k] = pad
				continue
			}
			b.IDs[k] = c[j]
			b.Mask[int64(r)*(Tp+Tc)+Tp+j] = 1
			b.LossMask[int64(r)*(Tc+1)+j+1] = 1
		}
	}
	return b, nil
}

// Values makes the batch's tensors for a shared-prefix training graph's data
// inputs; destroy them after use.
func (b *SharedPrefixBatch) Values(tg *TrainingGraph) (map[string]ort.Value, error) {
	return b.ValuesFor(tg.Model.Graph)
}

// ValuesFor is Values for any shared-prefix graph.
func (b *SharedPrefixBatch) ValuesFor(g *onnxpb.GraphProto) (map[string]ort.Value, error) {
	R, Tc, Tp, P := b.S.rows(), b.S.CompletionLen, b.S.PromptLen, b.S.Prompts
	out := map[string]ort.Value{}
	for _, vi := range g.GetInput() {
		var v ort.Value
		var err error
		switch vi.GetName() {
		case PromptIDsInput:
			v, err = ort.NewTensor([]int64{P, Tp}, b.PromptIDs)
		case PromptMaskInput:
			v, err = ort.NewTensor([]int64{P, Tp}, b.PromptMask)
		case PromptPosInput:
			v, err = ort.NewTensor([]int64{P, Tp}, b.PromptPos)
		case "input_ids":
			v, err = ort.NewTensor([]int64{R, Tc}, b.IDs)
		case "attention_mask":
			v, err = ort.NewTensor([]int64{R, Tp + Tc}, b.Mask)
		case "position_ids":
			v, err = ort.NewTensor([]int64{R, Tc}, b.Pos)
		case LossMaskInput:
			v, err = ort.NewTensor([]int64{R, Tc + 1}, b.LossMask)
		case OldLogprobsInput:
			v, err = ort.NewTensor([]int64{R, Tc + 1}, b.OldLogprobs)
		case RefLogprobsInput:
			v, err = ort.NewTensor([]int64{R, Tc + 1}, b.RefLogprobs)
		case AdvantagesInput:
			v, err = ort.NewTensor([]int64{R}, b.Advantages)
		default:
			continue
		}
		if err != nil {
			for _, x := range out {
				x.Destroy()
			}
			return nil, fmt.Errorf("shared prefix batch: %s: %w", vi.GetName(), err)
		}
		out[vi.GetName()] = v
	}
	return out, nil
}

// NewSharedPrefixScorer is a forward-only scorer of completion tokens over
// shared-prefix batches (the reference model of an RL step): Logprobs
// returns log π(completion token j | prompt, tokens < j), [P·G, Tc].
func NewSharedPrefixScorer(m *onnxpb.ModelProto, s SharedPrefix, opts ort.Options) (*TokenScorer, error) {
	return NewSharedPrefixScorerFed(m, s, opts, nil)
}

// NewSharedPrefixScorerFed is NewSharedPrefixScorer with the weights named
// in fed (a Trainer's FrozenTensors: a LoRA run's base, its reference) fed
// from those tensors instead of copied into the session: the weights are
// held once. fed's tensors must outlive the scorer; it does not destroy them.
func NewSharedPrefixScorerFed(m *onnxpb.ModelProto, s SharedPrefix, opts ort.Options, fed map[string]ort.Value) (*TokenScorer, error) {
	sm, err := SharePrefix(m, s)
	if err != nil {
		return nil, err
	}
	if _, err := AddNextTokenLoss(sm, NextTokenLoss{IDs: SharedIDs}); err != nil {
		return nil, err
	}
	shapes, err := s.Shapes(sm)
	if err != nil {
		return nil, err
	}
	return newScorer(sm, shapes, s.rows(), s.CompletionLen+1, opts, fed)
}
