package train

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/onnxpb"
	"github.com/tagpr/tagpr/onnx/ort"
)

// headLM is a float64 two-layer model ending in an output projection of the
// kind the chunked head replaces: plain W [D,V], tied (Transpose of the
// embedding) or tempered (logits times a scalar).
func headLM(B, T, V, D int64, kind string) (*onnxpb.ModelProto, []string, map[string]feed) {
	b := newOpBench(13)
	ids := b.g.Input("input_ids", ir.Int64, "b", "t")
	emb := b.param(-1, 1, V, D)
	h := b.op("Tanh", []string{b.op("MatMul", []string{b.op("Gather", []string{emb, ids}), b.param(-1, 1, D, D)})})
	var w string
	if kind == "tied" {
		w = b.op("Transpose", []string{emb}, ir.AttrInts("perm", 1, 0))
	} else {
		w = b.param(-1, 1, D, V)
	}
	if kind == "tempered" {
		raw := b.op("MatMul", []string{h, w})
		b.g.Initializer("inverse_temperature", ir.Scalar("", 1/0.7))
		b.g.Node("Mul", []string{raw, "inverse_temperature"}, []string{"logits"})
	} else {
		b.g.Node("MatMul", []string{h, w}, []string{"logits"})
	}
	b.g.Output("logits", ir.Double, "b", "t", V)
	rng := rand.New(rand.NewPCG(3, 4))
	idv := make([]int64, B*T)
	for i := range idv {
		idv[i] = rng.Int64N(V)
	}
	return ir.MustModel(b.g, 18), b.params, map[string]feed{"input_ids": {shape: []int64{B, T}, i64: idv}}
}

// trainOutputs differentiates loss w.r.t. params, runs the graph once in
// float64 and returns the loss, the kept outputs and each gradient (under
// GradPrefix+param), with the training graph.
func trainOutputs(t *testing.T, m *onnxpb.ModelProto, loss string, params []string, feeds map[string]feed, keep []string) (map[string][]float64, *TrainingGraph) {
	t.Helper()
	sp, err := Specialize(m, feedShapes(feeds))
	if err != nil {
		t.Fatal(err)
	}
	tg, err := Differentiate(sp, loss, params, keep)
	if err != nil {
		t.Fatal(err)
	}
	return runTraining(t, tg, feeds), tg
}

// runTraining runs a float64 training graph once on feeds (weights from
// tg.Initial) and returns the loss, kept outputs and gradients (the last
// also under GradPrefix+param).
func runTraining(t *testing.T, tg *TrainingGraph, feeds map[string]feed) map[string][]float64 {
	t.Helper()
	return runTrainingWith(t, tg, feeds, ort.Options{OptLevel: "basic", IntraOpThreads: 1})
}

// runTrainingWith is runTraining in a session with the given options.
func runTrainingWith(t *testing.T, tg *TrainingGraph, feeds map[string]feed, opts ort.Options) map[string][]float64 {
	t.Helper()
	b, err := ir.Marshal(tg.Model)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ort.NewSession(b, "chunked", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Destroy()
	in := map[string]ort.Value{}
	for n, f := range feeds {
		if ir.NumElements(f.shape) == 0 {
			continue
		}
		v, err := f.value()
		if err != nil {
			t.Fatal(err)
		}
		defer v.Destroy()
		in[n] = v
	}
	for _, p := range append(append([]string{}, tg.Params...), tg.Frozen...) {
		d, _ := ir.Float64s(tg.Initial[p])
		v, _ := ort.NewTensor(shapeOrOne(tg.Initial[p].GetDims()), d)
		defer v.Destroy()
		in[p] = v
	}
	res, err := s.Run(in, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Destroy()
	out := map[string][]float64{}
	names := append([]string{tg.Loss}, tg.Outputs...)
	for _, p := range tg.Params {
		names = append(names, tg.Grads[p])
	}
	for _, o := range names {
		d, err := ort.Data[float64](o, res.Get(o))
		if err != nil {
			t.Fatal(err)
		}
		out[o] = append([]float64{}, d...)
	}
	for _, p := range tg.Params {
		out[GradPrefix+p] = out[tg.Grads[p]]
	}
	return out
}

// largestValue is the most elements of any value the graph computes.
func largestValue(tg *TrainingGraph) int64 {
	big := int64(0)
	for _, n := range tg.Model.Graph.Node {
		for _, o := range n.Output {
			big = max(big, ir.NumElements(tg.Types[o].Shape))
		}
	}
	return big
}

// policyFeeds adds the RL inputs for a B×T batch (old and reference
// log-probs near lp so that some ratios clip and some do not).
func policyFeeds(feeds map[string]feed, B, T int64, lp []float64) {
	rng := rand.New(rand.NewPCG(5, 6))
	old, ref, mask := make([]float64, B*T), make([]float64, B*T), make([]float64, B*T)
	for b := int64(0); b < B; b++ {
		for t := int64(1); t < T; t++ {
			old[b*T+t] = lp[b*(T-1)+t-1] + 0.6*(rng.Float64()-0.5)
			ref[b*T+t] = lp[b*(T-1)+t-1] + 0.4*(rng.Float64()-0.5)
			if t >= 2 && rng.Float64() < 0.8 {
				mask[b*T+t] = 1
			}
		}
	}
	adv := make([]float64, B)
	for i := range adv {
		adv[i] = 2*rng.Float64() - 1
	}
	feeds[LossMaskInput] = feed{shape: []int64{B, T}, f64: mask}
	feeds[AdvantagesInput] = feed{shape: []int64{B}, f64: adv}
	feeds[OldLogprobsInput] = feed{shape: []int64{B, T}, f64: old}
	feeds[RefLogprobsInput] = feed{shape: []int64{B, T}, f64: ref}
}

// TestChunkedHeadMatchesFull: the chunked head's loss, token log-probs and
// every gradient equal the full-logits graph's in float64, for plain, tied
// and tempered heads, next-token and every policy loss type, with chunks
// that divide the B·T positions and chunks that need padding; no value of
// the chunked graph is as large as the [B,T,V] logits.
func TestChunkedHeadMatchesFull(t *testing.T) {
	const B, T, V, D = 3, 7, 23, 4
	losses := []struct {
		name   string
		add    func(m *onnxpb.ModelProto, chunk int) (string, error)
		policy bool
	}{
		{"next_token", func(m *onnxpb.ModelProto, chunk int) (string, error) {
			return AddNextTokenLoss(m, NextTokenLoss{Chunk: chunk})
		}, false},
		{"grpo", func(m *onnxpb.ModelProto, chunk int) (string, error) {
			return AddPolicyLoss(m, PolicyLoss{LossType: "grpo", Epsilon: 0.2, EpsilonHigh: 0.28, Beta: 0.04, Chunk: chunk})
		}, true},
		{"grpo_bias_corrected_kl", func(m *onnxpb.ModelProto, chunk int) (string, error) {
			return AddPolicyLoss(m, PolicyLoss{LossType: "grpo", Epsilon: 0.2, Beta: 0.04, BiasCorrectionKL: true, Chunk: chunk})
		}, true},
		{"dapo", func(m *onnxpb.ModelProto, chunk int) (string, error) {
			return AddPolicyLoss(m, PolicyLoss{LossType: "dapo", Epsilon: 0.2, Chunk: chunk})
		}, true},
		{"dr_grpo", func(m *onnxpb.ModelProto, chunk int) (string, error) {
			return AddPolicyLoss(m, PolicyLoss{LossType: "dr_grpo", Epsilon: 0.1, Beta: 0.1, MaxCompletionLength: 9, Chunk: chunk})
		}, true},
	}
	for _, kind := range []string{"plain", "tied", "tempered"} {
		for _, l := range losses {
			chunks := []int{4} // 21 positions: 6 chunks, the last padded
			if l.name == "next_token" {
				chunks = append(chunks, 7, 1, 0) // exact chunks, one per position, one chunk in all
			}
			for _, chunk := range chunks {
				t.Run(fmt.Sprintf("%s/%s/chunk%d", kind, l.name, chunk), func(t *testing.T) {
					m, params, feeds := headLM(B, T, V, D, kind)
					full := cloneModel(m)
					lossF, err := l.add(full, -1)
					if err != nil {
						t.Fatal(err)
					}
					if l.policy {
						// Log-probs of the current weights first, to place old/ref near them.
						m0 := cloneModel(m)
						l0, _ := AddNextTokenLoss(m0, NextTokenLoss{Chunk: -1})
						f0 := map[string]feed{"input_ids": feeds["input_ids"], LossMaskInput: {shape: []int64{B, T}, f64: make([]float64, B*T)}}
						lp := runDouble(t, m0, l0, params, f0, []string{TokenLogprobsOutput})[TokenLogprobsOutput]
						policyFeeds(feeds, B, T, lp)
					} else {
						mask := make([]float64, B*T)
						for i := range mask {
							mask[i] = float64((i * 7 % 5) % 2)
						}
						feeds[LossMaskInput] = feed{shape: []int64{B, T}, f64: mask}
					}
					if !hasInput(full, RefLogprobsInput) {
						delete(feeds, RefLogprobsInput)
					}
					keep := []string{TokenLogprobsOutput}
					if l.policy {
						keep = append(keep, ClipLowOutput, ClipHighOutput, ClipRegionOutput)
					}
					want, tgFull := trainOutputs(t, full, lossF, params, feeds, keep)
					chunked := cloneModel(m)
					lossC, err := l.add(chunked, chunk)
					if err != nil {
						t.Fatal(err)
					}
					got, tgC := trainOutputs(t, chunked, lossC, params, feeds, keep)
					worst := 0.0
					for k, w := range want {
						if k != lossF && !slices.Contains(keep, k) && !strings.HasPrefix(k, GradPrefix) {
							continue
						}
						gk := k
						if k == lossF {
							gk = lossC
						}
						g := got[gk]
						if len(g) != len(w) {
							t.Fatalf("%s: %d values, want %d", k, len(g), len(w))
						}
						scale := 0.0
						for _, x := range w {
							scale = math.Max(scale, math.Abs(x))
						}
						for i := range w {
							e := math.Abs(g[i]-w[i]) / math.Max(scale, 1e-300)
							worst = math.Max(worst, e)
							if e > 1e-12 {
								t.Errorf("%s[%d] = %.15g, full logits give %.15g", k, i, g[i], w[i])
								break
							}
						}
					}
					if big, full := largestValue(tgC), largestValue(tgFull); big >= B*T*V || full < B*T*V {
						t.Errorf("largest value: chunked %d, full %d elements; logits are %d", big, full, B*T*V)
					}
					t.Logf("max rel diff %.2g", worst)
				})
			}
		}
	}
}

func hasInput(m *onnxpb.ModelProto, name string) bool {
	for _, vi := range m.Graph.Input {
		if vi.GetName() == name {
			return true
		}
	}
	return false
}

// TestChunkedHeadGradCheck: finite differences in float64 through ORT
// agree with the chunked head's gradients (padded chunks, tied head,
// policy loss with KL).
func TestChunkedHeadGradCheck(t *testing.T) {
	const B, T, V, D = 2, 5, 11, 3
	m, params, feeds := headLM(B, T, V, D, "tied")
	m0 := cloneModel(m)
	l0, _ := AddNextTokenLoss(m0, NextTokenLoss{Chunk: -1})
	f0 := map[string]feed{"input_ids": feeds["input_ids"], LossMaskInput: {shape: []int64{B, T}, f64: make([]float64, B*T)}}
	lp := runDouble(t, m0, l0, params, f0, []string{TokenLogprobsOutput})[TokenLogprobsOutput]
	policyFeeds(feeds, B, T, lp)
	loss, err := AddPolicyLoss(m, PolicyLoss{LossType: "grpo", Epsilon: 0.2, Beta: 0.05, Chunk: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("max rel err %.3g", gradCheck(t, m, loss, params, feeds, 20))

	m, params, feeds = headLM(B, T, V, D, "tempered")
	loss, err = AddNextTokenLoss(m, NextTokenLoss{Chunk: 3})
	if err != nil {
		t.Fatal(err)
	}
	feeds[LossMaskInput] = feed{shape: []int64{B, T}, f64: []float64{0, 1, 1, 1, 0, 0, 0, 1, 1, 1}}
	t.Logf("max rel err %.3g", gradCheck(t, m, loss, params, feeds, 20))
}

// TestChunkedHeadTrims: a frozen head gets no weight gradient in its Scan
// (LoRA's case); a graph training only the head does not compute the
// hidden states' gradient; the frozen gradients equal the full graph's.
func TestChunkedHeadTrims(t *testing.T) {
	const B, T, V, D = 2, 6, 13, 4
	m, params, feeds := headLM(B, T, V, D, "plain")
	feeds[LossMaskInput] = feed{shape: []int64{B, T}, f64: []float64{0, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0}}
	head := params[2]
	for _, tc := range []struct {
		name      string
		params    []string
		wantState bool
		wantDH    bool
	}{
		{"frozen head", params[:2], false, true},
		{"head only", []string{head}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			full := cloneModel(m)
			lf, _ := AddNextTokenLoss(full, NextTokenLoss{Chunk: -1})
			want, _ := trainOutputs(t, full, lf, tc.params, feeds, nil)
			mc := cloneModel(m)
			lc, _ := AddNextTokenLoss(mc, NextTokenLoss{Chunk: 5})
			got, tg := trainOutputs(t, mc, lc, tc.params, feeds, nil)
			for _, p := range tc.params {
				for i, w := range want[GradPrefix+p] {
					if math.Abs(got[GradPrefix+p][i]-w) > 1e-12*math.Max(1, math.Abs(w)) {
						t.Fatalf("grad %s[%d] = %v, want %v", p, i, got[GradPrefix+p][i], w)
					}
				}
			}
			heads, err := fusedHeads(tg.Model.Graph)
			if err != nil || len(heads) != 1 {
				t.Fatalf("%d chunked heads (%v)", len(heads), err)
			}
			for n := range heads {
				body := ir.FindAttr(n, "body").GetG()
				states := len(n.Input) - int(ir.AttrIntOf(n, "num_scan_inputs", 0))
				if (states == 1) != tc.wantState || (len(n.Output) == states+2) != tc.wantDH {
					t.Errorf("scan has %d states and %d outputs; want weight gradient %v, hidden gradient %v", states, len(n.Output), tc.wantState, tc.wantDH)
				}
				gemms := 0
				for _, bn := range body.Node {
					if bn.GetOpType() == "Gemm" || bn.GetOpType() == "MatMul" {
						gemms++
					}
				}
				if gemms != 2 {
					t.Errorf("scan body has %d matrix products, want 2 (logits and one gradient)", gemms)
				}
			}
		})
	}
}

// TestTokenScorerChunked: the forward-only scorer keeps no gradient work in
// its chunked head and gives the full-logits scorer's log-probabilities.
func TestTokenScorerChunked(t *testing.T) {
	const B, T = 2, 9
	cfg := lm.Config{Arch: lm.Llama, Layers: 1, DModel: 16, Heads: 2, KVHeads: 1, Vocab: 37, MaxPositions: 16, Seed: 3}
	m, err := lm.Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rows := randomRows(2, B, 5, T, cfg.Vocab)
	var lps [][]float32
	for _, chunk := range []int{-1, 4} {
		s, err := newTokenScorer(m, B, T, ort.Options{}, chunk)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		heads, _ := fusedHeads(s.graph)
		if want := map[bool]int{true: 1, false: 0}[chunk > 0]; len(heads) != want {
			t.Fatalf("chunk %d: %d chunked heads, want %d", chunk, len(heads), want)
		}
		for n := range heads {
			if len(n.Output) != 1 {
				t.Fatalf("scorer's chunked head has %d outputs, want the log-probs only", len(n.Output))
			}
		}
		lp, err := s.Logprobs(NewLMBatch(rows, T, 0, nil))
		if err != nil {
			t.Fatal(err)
		}
		lps = append(lps, lp)
	}
	for i := range lps[0] {
		if math.Abs(float64(lps[1][i]-lps[0][i])) > 1e-5 {
			t.Fatalf("log-prob %d = %v, full logits give %v", i, lps[1][i], lps[0][i])
		}
	}
}

// TestChunkedHeadLoRA: a head with a LoRA adapter is chunked through the
// merged W + k·A·B, and the adapters' gradients equal the full graph's.
func TestChunkedHeadLoRA(t *testing.T) {
	const B, T, V, D = 2, 6, 13, 4
	m, params, feeds := headLM(B, T, V, D, "plain")
	ads, err := AddLoRA(m, LoRA{Rank: 2, Alpha: 3, Seed: 4})
	if err != nil {
		t.Fatal(err)
	}
	// B starts at zero; give it values so that A's gradient is not zero.
	rng := rand.New(rand.NewPCG(8, 8))
	for _, it := range m.Graph.Initializer {
		for _, a := range ads {
			if it.GetName() == a.B {
				v := make([]float64, ir.NumElements(it.GetDims()))
				for i := range v {
					v[i] = rng.Float64() - 0.5
				}
				*it = *ir.Tensor(it.GetName(), it.GetDims(), v)
			}
		}
	}
	feeds[LossMaskInput] = feed{shape: []int64{B, T}, f64: []float64{0, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0}}
	trainable := append(AdapterParams(ads), params[0])
	full := cloneModel(m)
	lf, _ := AddNextTokenLoss(full, NextTokenLoss{Chunk: -1})
	want, _ := trainOutputs(t, full, lf, trainable, feeds, nil)
	mc := cloneModel(m)
	lc, _ := AddNextTokenLoss(mc, NextTokenLoss{Chunk: 5})
	got, tg := trainOutputs(t, mc, lc, trainable, feeds, nil)
	if heads, _ := fusedHeads(tg.Model.Graph); len(heads) != 1 {
		t.Fatalf("%d chunked heads, want 1", len(heads))
	}
	for k, w := range want {
		for i := range w {
			if math.Abs(got[k][i]-w[i]) > 1e-12*math.Max(1, math.Abs(w[i])) {
				t.Fatalf("%s[%d] = %v, full logits give %v", k, i, got[k][i], w[i])
			}
		}
	}
	t.Logf("max rel err %.3g", gradCheck(t, mc, lc, trainable, feeds, 10))
}
