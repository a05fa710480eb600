package train

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/onnxpb"
)

// tinyLM is a float64 bigram model: logits = Emb[ids]·W.
func tinyLM(B, T, V, D int64) (*onnxpb.ModelProto, []string, map[string]feed) {
	b := newOpBench(11)
	ids := b.g.Input("input_ids", ir.Int64, "b", "t")
	h := b.op("Gather", []string{b.param(-1, 1, V, D), ids})
	logits := b.g.Node("MatMul", []string{h, b.param(-1, 1, D, V)}, []string{"logits"})[0]
	b.g.Output(logits, ir.Double, "b", "t", V)
	rng := rand.New(rand.NewPCG(3, 4))
	idv := make([]int64, B*T)
	for i := range idv {
		idv[i] = rng.Int64N(V)
	}
	return ir.MustModel(b.g, 18), b.params, map[string]feed{"input_ids": {shape: []int64{B, T}, i64: idv}}
}

// runDouble runs the training graph once and returns the loss, the kept
// outputs and the gradients (trainOutputs).
func runDouble(t *testing.T, m *onnxpb.ModelProto, loss string, params []string, feeds map[string]feed, keep []string) map[string][]float64 {
	t.Helper()
	out, _ := trainOutputs(t, m, loss, params, feeds, keep)
	return out
}

func TestNextTokenLoss(t *testing.T) {
	const B, T, V = 2, 5, 7
	m, params, feeds := tinyLM(B, T, V, 3)
	loss, err := AddNextTokenLoss(m, NextTokenLoss{})
	if err != nil {
		t.Fatal(err)
	}
	mask := []float64{0, 0, 1, 1, 1, 0, 1, 1, 0, 0} // prompt and padding masked
	feeds[LossMaskInput] = feed{shape: []int64{B, T}, f64: mask}
	out := runDouble(t, m, loss, params, feeds, []string{TokenLogprobsOutput})
	lp := out[TokenLogprobsOutput]
	num, den := 0.0, 0.0
	for b := 0; b < B; b++ {
		for t := 1; t < T; t++ {
			w := mask[b*T+t]
			num += -lp[b*(T-1)+t-1] * w
			den += w
		}
	}
	if got := out[loss][0]; math.Abs(got-num/den) > 1e-12 {
		t.Fatalf("loss %v, want %v", got, num/den)
	}
	t.Logf("max rel err %.3g", gradCheck(t, m, loss, params, feeds, 30))
}

// policyRef is the GRPO-family loss (docs/rl-step.md) written out in Go; it
// returns the loss, the KL and TRL's three clip ratios (low, high, region).
func policyRef(lp, old, ref, mask, adv []float64, B, T int, o PolicyLoss) (loss, kl float64, clip [3]float64) {
	if o.EpsilonHigh == 0 {
		o.EpsilonHigh = o.Epsilon // AddPolicyLoss's default
	}
	L := T - 1
	seqSum := make([]float64, B)
	seqCnt := make([]float64, B)
	total, cnt, klSum := 0.0, 0.0, 0.0
	for b := 0; b < B; b++ {
		for t := 0; t < L; t++ {
			w := mask[b*T+t+1]
			l := lp[b*L+t]
			rho := math.Exp(l - old[b*T+t+1])
			c := math.Min(math.Max(rho, 1-o.Epsilon), 1+o.EpsilonHigh)
			tok := -math.Min(rho*adv[b], c*adv[b])
			d := ref[b*T+t+1] - l
			k := math.Exp(d) - d - 1
			if o.BiasCorrectionKL {
				k *= rho
			}
			tok += o.Beta * k
			seqSum[b] += tok * w
			seqCnt[b] += w
			total += tok * w
			cnt += w
			klSum += k * w
			low, high := rho < 1-o.Epsilon && adv[b] < 0, rho > 1+o.EpsilonHigh && adv[b] > 0
			for i, c := range []bool{low, high, low || high} {
				if c {
					clip[i] += w
				}
			}
		}
	}
	switch o.LossType {
	case "grpo":
		for b := range seqSum {
			loss += seqSum[b] / math.Max(seqCnt[b], 1) / float64(B)
		}
	case "dapo":
		loss = total / math.Max(cnt, 1)
	case "dr_grpo":
		n := L
		if o.MaxCompletionLength > 0 {
			n = o.MaxCompletionLength
		}
		loss = total / float64(B*n)
	}
	for i := range clip {
		clip[i] /= math.Max(cnt, 1)
	}
	return loss, klSum / math.Max(cnt, 1), clip
}

func TestPolicyLoss(t *testing.T) {
	const B, T, V = 3, 6, 5
	for _, o := range []PolicyLoss{
		{LossType: "grpo", Epsilon: 0.2, EpsilonHigh: 0.28, Beta: 0.04},
		{LossType: "dapo", Epsilon: 0.2, EpsilonHigh: 0.28},
		{LossType: "dr_grpo", Epsilon: 0.1, Beta: 0.1, MaxCompletionLength: 8},
		{LossType: "dapo", Epsilon: 0.1, Beta: 0.1, BiasCorrectionKL: true},
	} {
		t.Run(fmt.Sprintf("%s_kl_correction_%v", o.LossType, o.BiasCorrectionKL), func(t *testing.T) {
			m, params, feeds := tinyLM(B, T, V, 3)
			loss, err := AddPolicyLoss(m, o)
			if err != nil {
				t.Fatal(err)
			}
			// First the current log-probs, to set old/ref log-probs near them
			// so that some ratios are clipped and some are not.
			m0, _, _ := tinyLM(B, T, V, 3)
			l0, _ := AddNextTokenLoss(m0, NextTokenLoss{})
			ones := make([]float64, B*T)
			for i := range ones {
				ones[i] = 1
			}
			f0 := map[string]feed{"input_ids": feeds["input_ids"], LossMaskInput: {shape: []int64{B, T}, f64: ones}}
			lp := runDouble(t, m0, l0, params, f0, []string{TokenLogprobsOutput})[TokenLogprobsOutput]
			rng := rand.New(rand.NewPCG(5, 6))
			old, ref := make([]float64, B*T), make([]float64, B*T)
			for b := 0; b < B; b++ {
				for t := 1; t < T; t++ {
					old[b*T+t] = lp[b*(T-1)+t-1] + 1.2*(rng.Float64()-0.5)
					ref[b*T+t] = lp[b*(T-1)+t-1] + 0.4*(rng.Float64()-0.5)
				}
			}
			mask := []float64{0, 0, 1, 1, 1, 1, 0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 1, 1}
			adv := []float64{1.2, -0.7, 0.3}
			feeds[LossMaskInput] = feed{shape: []int64{B, T}, f64: mask}
			feeds[AdvantagesInput] = feed{shape: []int64{B}, f64: adv}
			feeds[OldLogprobsInput] = feed{shape: []int64{B, T}, f64: old}
			keep := []string{TokenLogprobsOutput, ClipLowOutput, ClipHighOutput, ClipRegionOutput}
			if o.Beta > 0 {
				feeds[RefLogprobsInput] = feed{shape: []int64{B, T}, f64: ref}
				keep = append(keep, PolicyKLOutput)
			}
			out := runDouble(t, m, loss, params, feeds, keep)
			wl, wkl, wclip := policyRef(lp, old, ref, mask, adv, B, T, o)
			if got := out[loss][0]; math.Abs(got-wl) > 1e-12 {
				t.Errorf("loss %v, want %v", got, wl)
			}
			for i, name := range []string{ClipLowOutput, ClipHighOutput, ClipRegionOutput} {
				if got := out[name][0]; math.Abs(got-wclip[i]) > 1e-12 {
					t.Errorf("%s %v, want %v", name, got, wclip[i])
				}
			}
			if wclip[2] == 0 || wclip[2] == 1 {
				t.Errorf("clip region %v: the batch should clip some tokens, not all", wclip[2])
			}
			if o.Beta > 0 {
				if got := out[PolicyKLOutput][0]; math.Abs(got-wkl) > 1e-12 {
					t.Errorf("kl %v, want %v", got, wkl)
				}
			}
			t.Logf("loss %.6f clip ratios (low, high, region) %.2f; max rel err %.3g", wl, wclip, gradCheck(t, m, loss, params, feeds, 30))
		})
	}
	m, _, _ := tinyLM(B, T, V, 3)
	if _, err := AddPolicyLoss(m, PolicyLoss{LossType: "ppo"}); err == nil {
		t.Fatal("unknown loss_type accepted")
	}
}

func TestPairwiseLoss(t *testing.T) {
	b := newOpBench(21)
	x := b.input(-1, 1, 6, 4)
	score := b.g.Node("MatMul", []string{b.op("Tanh", []string{b.op("MatMul", []string{x, b.param(-1, 1, 4, 5)})}), b.param(-1, 1, 5, 1)}, []string{"score"})[0]
	b.g.Output(score, ir.Double, "n", 1)
	m := ir.MustModel(b.g, 18)
	loss, err := AddPairwiseLoss(m, score)
	if err != nil {
		t.Fatal(err)
	}
	b.feeds[ChosenInput] = feed{shape: []int64{3}, i64: []int64{0, 2, 4}}
	b.feeds[RejectedInput] = feed{shape: []int64{3}, i64: []int64{1, 3, 5}}
	out := runDouble(t, m, loss, b.params, b.feeds, []string{"score", PairAccuracyOutput})
	s := out["score"]
	want, acc := 0.0, 0.0
	for p := 0; p < 3; p++ {
		d := s[2*p] - s[2*p+1]
		want += -math.Log(1/(1+math.Exp(-d))) / 3
		if d > 0 {
			acc += 1.0 / 3
		}
	}
	if math.Abs(out[loss][0]-want) > 1e-12 || math.Abs(out[PairAccuracyOutput][0]-acc) > 1e-12 {
		t.Fatalf("loss %v acc %v, want %v %v", out[loss][0], out[PairAccuracyOutput][0], want, acc)
	}
	t.Logf("max rel err %.3g", gradCheck(t, m, loss, b.params, b.feeds, 30))
}

func TestMSELoss(t *testing.T) {
	b := newOpBench(22)
	x := b.input(-1, 1, 5, 3)
	pred := b.g.Node("Gemm", []string{x, b.param(-1, 1, 3, 2), b.param(-1, 1, 2)}, []string{"pred"})[0]
	b.g.Output(pred, ir.Double, "n", 2)
	m := ir.MustModel(b.g, 18)
	loss, err := AddMSELoss(m, pred)
	if err != nil {
		t.Fatal(err)
	}
	b.feeds[TargetInput] = feed{shape: []int64{5, 2}, f64: b.randn(10, -1, 1)}
	out := runDouble(t, m, loss, b.params, b.feeds, []string{"pred"})
	want := 0.0
	for i, p := range out["pred"] {
		d := p - b.feeds[TargetInput].f64[i]
		want += d * d / 10
	}
	if math.Abs(out[loss][0]-want) > 1e-12 {
		t.Fatalf("loss %v, want %v", out[loss][0], want)
	}
	t.Logf("max rel err %.3g", gradCheck(t, m, loss, b.params, b.feeds, 30))
}
