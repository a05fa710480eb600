package pipeline

import (
	"fmt"
	"math"

	"google.golang.org/protobuf/proto"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/onnxpb"
	"github.com/tagpr/tagpr/onnx/ort"
	"github.com/tagpr/tagpr/onnx/train"
)

// Advantages computes A_i = (r_i − mean_group)/(std + ε) for rewards laid out
// group-major (G consecutive completions per prompt), as TRL does: the std is
// the unbiased one of the group (scale "group") or of the whole batch
// ("batch"); "none" only centres. It also returns the fraction of groups
// whose rewards are all equal (they carry no learning signal).
func Advantages(rewards []float64, G int, scale string) (adv []float64, zeroStd float64, err error) {
	if G < 2 || len(rewards)%G != 0 {
		return nil, 0, fmt.Errorf("advantages: %d rewards in groups of %d", len(rewards), G)
	}
	switch scale {
	case ScaleGroup, ScaleBatch, ScaleNone:
	default:
		return nil, 0, fmt.Errorf("advantages: scale_rewards %q: want group, batch or none", scale)
	}
	adv = make([]float64, len(rewards))
	batchStd := stdUnbiased(rewards)
	groups := len(rewards) / G
	zero := 0
	for g := 0; g < groups; g++ {
		rs := rewards[g*G : (g+1)*G]
		mean := meanOf(rs)
		std := stdUnbiased(rs)
		if std < 1e-8 { // torch.isclose(std, 0)'s absolute tolerance
			zero++
		}
		for i, r := range rs {
			a := r - mean
			switch scale {
			case ScaleGroup:
				a /= std + advantageEps
			case ScaleBatch:
				a /= batchStd + advantageEps
			}
			adv[g*G+i] = a
		}
	}
	return adv, float64(zero) / float64(groups), nil
}

func meanOf(x []float64) float64 {
	s := 0.0
	for _, v := range x {
		s += v
	}
	return s / float64(len(x))
}

// stdUnbiased is torch.std's default (Bessel-corrected); 0 for one value.
func stdUnbiased(x []float64) float64 {
	if len(x) < 2 {
		return 0
	}
	m := meanOf(x)
	s := 0.0
	for _, v := range x {
		s += (v - m) * (v - m)
	}
	return math.Sqrt(s / float64(len(x)-1))
}

// rlBatch is one step's training batch at the graph's fixed [B,T]: each row
// is prompt + completion, right-padded; the loss mask marks completion
// tokens; OldLogprobs[b,t] is the generation's log-prob of token t.
type rlBatch struct {
	*train.LMBatch
	Advantages  []float32 // [B]
	OldLogprobs []float32 // [B,T]
	RefLogprobs []float32 // [B,T], zero unless filled from the reference
	Truncated   []bool    // [B] the completion hit the length limit
}

// buildRLBatch lays out the completions (row r continues prompts[r/G]).
// With maskTruncated, completions that ended by the length limit get no
// loss (TRL's mask_truncated_completions).
func buildRLBatch(prompts [][]int64, comps []lm.Completion, adv []float64, G, T int, pad int64, maskTruncated bool) (*rlBatch, error) {
	B := len(comps)
	if B != len(prompts)*G || len(adv) != B {
		return nil, fmt.Errorf("rl batch: %d completions and %d advantages for %d prompts × %d", B, len(adv), len(prompts), G)
	}
	rows := make([][]int64, B)
	plen := make([]int, B)
	for r, c := range comps {
		p := prompts[r/G]
		if len(p)+len(c.Tokens) > T {
			return nil, fmt.Errorf("rl batch: row %d: prompt %d + completion %d tokens exceed the batch length %d", r, len(p), len(c.Tokens), T)
		}
		if len(c.LogProbs) != len(c.Tokens) {
			return nil, fmt.Errorf("rl batch: row %d: %d log-probs for %d tokens (generate with log-probs)", r, len(c.LogProbs), len(c.Tokens))
		}
		rows[r] = append(append(make([]int64, 0, len(p)+len(c.Tokens)), p...), c.Tokens...)
		plen[r] = len(p)
	}
	b := &rlBatch{LMBatch: train.NewLMBatch(rows, T, pad, plen), Advantages: make([]float32, B),
		OldLogprobs: make([]float32, B*T), RefLogprobs: make([]float32, B*T), Truncated: make([]bool, B)}
	for r, c := range comps {
		b.Advantages[r] = float32(adv[r])
		copy(b.OldLogprobs[r*T+plen[r]:], c.LogProbs)
		b.Truncated[r] = c.Finish == lm.FinishLength
		if maskTruncated && b.Truncated[r] {
			clear(b.LossMask[r*T : (r+1)*T])
		}
	}
	return b, nil
}

// values makes the tensors for the inputs a graph declares (input_ids,
// attention_mask, position_ids, loss_mask, advantages, old_logprobs,
// ref_logprobs); release destroys them.
func (b *rlBatch) values(g *onnxpb.GraphProto) (map[string]ort.Value, func(), error) {
	out := map[string]ort.Value{}
	release := func() {
		for _, v := range out {
			v.Destroy()
		}
	}
	bt := []int64{b.B, b.T}
	for _, vi := range g.GetInput() {
		var v ort.Value
		var err error
		switch vi.GetName() {
		case lm.InputIDs:
			v, err = ort.NewTensor(bt, b.IDs)
		case lm.AttentionMask:
			v, err = ort.NewTensor(bt, b.Mask)
		case lm.PositionIDs:
			v, err = ort.NewTensor(bt, b.Positions())
		case train.LossMaskInput:
			v, err = ort.NewTensor(bt, b.LossMask)
		case train.AdvantagesInput:
			v, err = ort.NewTensor([]int64{b.B}, b.Advantages)
		case train.OldLogprobsInput:
			v, err = ort.NewTensor(bt, b.OldLogprobs)
		case train.RefLogprobsInput:
			v, err = ort.NewTensor(bt, b.RefLogprobs)
		default:
			continue
		}
		if err != nil {
			release()
			return nil, nil, fmt.Errorf("rl batch: %s: %w", vi.GetName(), err)
		}
		out[vi.GetName()] = v
	}
	return out, release, nil
}

// tokenScorer computes log π(token t | < t) for a [B,T] batch with frozen
// weights: the model plus the next-token loss block, specialized to [B,T],
// with every output but the token log-probs removed so ORT drops the rest.
type tokenScorer struct {
	sess   *ort.Session
	graph  *onnxpb.GraphProto
	B, T   int64
	outBuf []float32
}

func newTokenScorer(m *onnxpb.ModelProto, B, T int, label string) (*tokenScorer, error) {
	m = proto.Clone(m).(*onnxpb.ModelProto)
	if _, err := train.AddNextTokenLoss(m, train.NextTokenLoss{}); err != nil {
		return nil, fmt.Errorf("%s: %w", label, err)
	}
	shapes, err := train.LMShapes(m, int64(B), int64(T))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", label, err)
	}
	sp, err := train.Specialize(m, shapes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", label, err)
	}
	g := sp.Model.Graph
	var keep []*onnxpb.ValueInfoProto
	for _, o := range g.Output {
		if o.GetName() == train.TokenLogprobsOutput {
			keep = append(keep, o)
		}
	}
	if len(keep) != 1 {
		return nil, fmt.Errorf("%s: the scoring graph has no %s output", label, train.TokenLogprobsOutput)
	}
	g.Output = keep
	b, err := ir.Marshal(sp.Model)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", label, err)
	}
	sess, err := ort.NewSession(b, label, ort.Options{})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", label, err)
	}
	return &tokenScorer{sess: sess, graph: g, B: int64(B), T: int64(T)}, nil
}

// fill writes the log-prob of each token t ≥ 1 into dst[b*T+t] (dst is [B,T]).
func (s *tokenScorer) fill(b *rlBatch, dst []float32) error {
	if b.B != s.B || b.T != s.T {
		return fmt.Errorf("token scorer: batch [%d,%d], graph [%d,%d]", b.B, b.T, s.B, s.T)
	}
	in, release, err := b.values(s.graph)
	if err != nil {
		return err
	}
	defer release()
	res, err := s.sess.Run(in, nil)
	if err != nil {
		return fmt.Errorf("token scorer: %w", err)
	}
	defer res.Destroy()
	lp, err := ort.Data[float32](train.TokenLogprobsOutput, res.Get(train.TokenLogprobsOutput))
	if err != nil {
		return fmt.Errorf("token scorer: %w", err)
	}
	T := int(s.T)
	if len(lp) != int(s.B)*(T-1) {
		return fmt.Errorf("token scorer: %d log-probs, want %d×%d", len(lp), s.B, T-1)
	}
	for r := 0; r < int(s.B); r++ {
		dst[r*T] = 0
		copy(dst[r*T+1:(r+1)*T], lp[r*(T-1):(r+1)*(T-1)])
	}
	return nil
}

func (s *tokenScorer) Close() {
	if s.sess != nil {
		s.sess.Destroy()
		s.sess = nil
	}
}
