package train

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/ort"
)

// TestSharedPrefixEqualsRows: the shared-prefix policy graph (each prompt
// run once, its cache repeated for its completions) gives the loss, the
// completion tokens' log-probs and the gradients of the graph over rows of
// prompt + completion, in float64, for Llama and GPT-2, every loss type.
func TestSharedPrefixEqualsRows(t *testing.T) {
	prompts := [][]int64{{3, 5, 7, 9}, {4, 6, 8, 10, 12, 14}}
	completions := [][]int64{{1, 2, 3, 4, 5}, {6, 7}, {8, 9, 10}, {11, 12, 13, 14}, {15}, {16, 17, 18, 19, 20}}
	s := SharedPrefix{Prompts: 2, Generations: 3, PromptLen: 6, CompletionLen: 5}
	rng := rand.New(rand.NewPCG(2, 3))
	old := make([][]float32, len(completions))
	ref := make([][]float32, len(completions))
	adv := make([]float32, len(completions))
	for r, c := range completions {
		for range c {
			old[r] = append(old[r], float32(-2+rng.Float64()))
			ref[r] = append(ref[r], float32(-2+rng.Float64()))
		}
		adv[r] = float32(rng.Float64()*2 - 1)
	}
	for _, arch := range []lm.Arch{lm.Llama, lm.GPT2} {
		for _, c := range []struct {
			o         PolicyLoss
			recompute bool
		}{{PolicyLoss{LossType: "grpo", Beta: 0.05}, false}, {PolicyLoss{LossType: "grpo", Beta: 0.05, BiasCorrectionKL: true}, false},
			{PolicyLoss{LossType: "dapo"}, false}, {PolicyLoss{LossType: "dr_grpo", MaxCompletionLength: 5}, false},
			{PolicyLoss{LossType: "dapo", Beta: 0.05}, true}} {
			o := c.o
			t.Run(fmt.Sprintf("%s/%s/recompute=%v", arch, o.LossType, c.recompute), func(t *testing.T) {
				m, err := lm.Build(tinyConfig(arch, "float64"))
				if err != nil {
					t.Fatal(err)
				}
				params := SelectParams(&Specialized{Model: m}, nil)
				keep := []string{TokenLogprobsOutput, ClipLowOutput, ClipHighOutput, ClipRegionOutput}
				// Rows of prompt + completion.
				T := int(s.PromptLen + s.CompletionLen)
				var rows [][]int64
				var plen []int
				for r, c := range completions {
					p := prompts[r/3]
					rows = append(rows, append(append([]int64{}, p...), c...))
					plen = append(plen, len(p))
				}
				lb := NewLMBatch(rows, T, 0, plen)
				mm := cloneModel(m)
				loss, err := AddPolicyLoss(mm, o)
				if err != nil {
					t.Fatal(err)
				}
				feeds := lmFeeds(t, m, lb)
				floats := func(shape []int64, rowsOf func(r int) (int, []float32)) feed {
					f := make([]float64, shape[0]*shape[1])
					for r := range completions {
						off, v := rowsOf(r)
						for j, x := range v {
							f[r*int(shape[1])+off+j] = float64(x)
						}
					}
					return feed{shape: shape, f64: f}
				}
				feeds[OldLogprobsInput] = floats([]int64{lb.B, lb.T}, func(r int) (int, []float32) { return plen[r], old[r] })
				if o.Beta > 0 {
					feeds[RefLogprobsInput] = floats([]int64{lb.B, lb.T}, func(r int) (int, []float32) { return plen[r], ref[r] })
				}
				a := make([]float64, len(adv))
				for i, x := range adv {
					a[i] = float64(x)
				}
				feeds[AdvantagesInput] = feed{shape: []int64{lb.B}, f64: a}
				want, tg := trainOutputs(t, mm, loss, params, feeds, keep)

				// Shared prefix.
				sb, err := NewSharedPrefixBatch(s, prompts, completions, 0)
				if err != nil {
					t.Fatal(err)
				}
				for r := range completions {
					copy(sb.OldLogprobs[r*6+1:], old[r])
					copy(sb.RefLogprobs[r*6+1:], ref[r])
				}
				copy(sb.Advantages, adv)
				stg, err := BuildSharedPrefixPolicy(m, PolicyTraining{Loss: o, Shared: s, Params: params, Keep: keep, Recompute: c.recompute})
				if err != nil {
					t.Fatal(err)
				}
				if c.recompute {
					recomputed, gates := 0, 0
					for _, n := range stg.Model.Graph.Node {
						if strings.HasPrefix(n.GetName(), recomputePrefix) {
							recomputed++
						}
						if n.GetOpType() == "Where" && strings.HasPrefix(n.GetName(), recomputePrefix+"gate/") {
							gates++
						}
					}
					// Two streams (prompts', completions') per layer
					// boundary: segments within layers, not one for all.
					if recomputed < 10 || gates <= tinyConfig(arch, "float64").Layers {
						t.Fatalf("%d recomputed nodes, %d gated boundaries", recomputed, gates)
					}
					t.Logf("%d nodes recomputed, %d gated boundaries", recomputed, gates)
				}
				sf := map[string]feed{}
				for _, vi := range stg.Model.Graph.Input {
					sh := stg.Types[vi.GetName()].Shape
					switch name := vi.GetName(); name {
					case PromptIDsInput:
						sf[name] = feed{shape: sh, i64: sb.PromptIDs}
					case PromptMaskInput:
						sf[name] = feed{shape: sh, i64: sb.PromptMask}
					case PromptPosInput:
						sf[name] = feed{shape: sh, i64: sb.PromptPos}
					case "input_ids":
						sf[name] = feed{shape: sh, i64: sb.IDs}
					case "attention_mask":
						sf[name] = feed{shape: sh, i64: sb.Mask}
					case "position_ids":
						sf[name] = feed{shape: sh, i64: sb.Pos}
					case LossMaskInput, OldLogprobsInput, RefLogprobsInput:
						src := map[string][]float32{LossMaskInput: sb.LossMask, OldLogprobsInput: sb.OldLogprobs, RefLogprobsInput: sb.RefLogprobs}[name]
						f := make([]float64, len(src))
						for i, x := range src {
							f[i] = float64(x)
						}
						sf[name] = feed{shape: sh, f64: f}
					case AdvantagesInput:
						sf[name] = feed{shape: sh, f64: a}
					}
				}
				got := runTraining(t, stg, sf)
				if d := math.Abs(got[stg.Loss][0] - want[tg.Loss][0]); d > 1e-12 {
					t.Fatalf("loss %v, rows give %v", got[stg.Loss][0], want[tg.Loss][0])
				}
				for _, k := range []string{ClipLowOutput, ClipHighOutput, ClipRegionOutput} {
					if d := math.Abs(got[k][0] - want[k][0]); d > 1e-12 {
						t.Fatalf("%s %v, rows give %v", k, got[k][0], want[k][0])
					}
				}
				for r, c := range completions {
					for j := range c {
						g := got[TokenLogprobsOutput][r*5+j]
						w := want[TokenLogprobsOutput][r*(T-1)+plen[r]-1+j]
						if math.Abs(g-w) > 1e-12 {
							t.Fatalf("completion %d token %d: log-prob %v shared, %v in rows", r, j, g, w)
						}
					}
				}
				// Relative to the largest gradient of all: k_proj biases get
				// rounding noise only (softmax ignores a shift shared by all keys).
				worst, scale := 0.0, 0.0
				for _, p := range params {
					for _, x := range want[GradPrefix+p] {
						scale = math.Max(scale, math.Abs(x))
					}
				}
				for _, p := range params {
					w, g := want[GradPrefix+p], got[GradPrefix+p]
					for i := range w {
						worst = math.Max(worst, math.Abs(g[i]-w[i])/scale)
					}
				}
				if worst > 1e-10 {
					t.Fatalf("gradients differ by %.3g of the largest", worst)
				}
				t.Logf("max gradient difference %.2g of the largest", worst)
			})
		}
	}
}

// TestSharedPrefixScorer: the forward-only shared-prefix scorer gives the
// row scorer's log-probs of the completion tokens.
func TestSharedPrefixScorer(t *testing.T) {
	m, err := lm.Build(tinyConfig(lm.Llama, "float32"))
	if err != nil {
		t.Fatal(err)
	}
	prompts := [][]int64{{3, 5, 7}, {4, 6, 8, 10}}
	completions := [][]int64{{1, 2, 3}, {6}, {8, 9}, {11, 12, 13}}
	s := SharedPrefix{Prompts: 2, Generations: 2, PromptLen: 4, CompletionLen: 3}
	sc, err := NewSharedPrefixScorer(m, s, ort.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	sb, err := NewSharedPrefixBatch(s, prompts, completions, 0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := sc.SharedLogprobs(sb)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := NewTokenScorer(m, 4, 7, ort.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	var rows [][]int64
	for r, c := range completions {
		rows = append(rows, append(append([]int64{}, prompts[r/2]...), c...))
	}
	want, err := rs.Logprobs(NewLMBatch(rows, 7, 0, nil))
	if err != nil {
		t.Fatal(err)
	}
	for r, c := range completions {
		p := len(prompts[r/2])
		for j := range c {
			if d := math.Abs(float64(got[r*3+j] - want[r*6+p-1+j])); d > 1e-5 {
				t.Fatalf("completion %d token %d: %v shared, %v rows", r, j, got[r*3+j], want[r*6+p-1+j])
			}
		}
	}
}
