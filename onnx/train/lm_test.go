package train

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/onnxpb"
	"github.com/tagpr/tagpr/onnx/ort"
)

func tinyConfig(arch lm.Arch, dtype string) lm.Config {
	c := lm.Config{Arch: arch, Layers: 2, DModel: 16, Heads: 4, Vocab: 32, MaxPositions: 32, DType: dtype, Seed: 5, InitStd: 0.2}
	if arch == lm.Llama {
		c.KVHeads = 2
	}
	return c
}

// floatWeights lists a model's float initializers with more than one element.
func floatWeights(m *onnxpb.ModelProto) []string {
	var out []string
	for _, t := range m.Graph.Initializer {
		if isFloat(t.GetDataType()) && ir.NumElements(t.GetDims()) > 1 {
			out = append(out, t.GetName())
		}
	}
	return out
}

// lmFeeds feeds b to m: its inputs, the loss mask, and empty pasts.
func lmFeeds(t *testing.T, m *onnxpb.ModelProto, b *LMBatch) map[string]feed {
	shapes, err := LMShapes(m, b.B, b.T)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]feed{}
	lm := make([]float64, len(b.LossMask))
	for i, x := range b.LossMask {
		lm[i] = float64(x)
	}
	for name, s := range shapes {
		switch name {
		case "input_ids":
			out[name] = feed{shape: s, i64: b.IDs}
		case "attention_mask":
			out[name] = feed{shape: s, i64: b.Mask}
		case "position_ids":
			out[name] = feed{shape: s, i64: b.Positions()}
		default:
			out[name] = feed{shape: s, f64: []float64{}}
		}
	}
	// The token losses' mask, whether or not m has a loss yet.
	out[LossMaskInput] = feed{shape: []int64{b.B, b.T}, f64: lm}
	return out
}

func randomRows(seed uint64, n, minLen, maxLen, vocab int) [][]int64 {
	rng := rand.New(rand.NewPCG(seed, 9))
	rows := make([][]int64, n)
	for i := range rows {
		l := minLen + rng.IntN(maxLen-minLen+1)
		for range l {
			rows[i] = append(rows[i], 3+rng.Int64N(int64(vocab-3)))
		}
	}
	return rows
}

// TestBuiltinFiniteDifferences: whole built-in GPT-2 and Llama graphs in float64.
func TestBuiltinFiniteDifferences(t *testing.T) {
	for _, arch := range []lm.Arch{lm.GPT2, lm.Llama} {
		t.Run(string(arch), func(t *testing.T) {
			m, err := lm.Build(tinyConfig(arch, "float64"))
			if err != nil {
				t.Fatal(err)
			}
			params := floatWeights(m)
			loss, err := AddNextTokenLoss(m, NextTokenLoss{})
			if err != nil {
				t.Fatal(err)
			}
			b := NewLMBatch(randomRows(1, 2, 4, 7, 32), 7, 0, []int{0, 2})
			worst := gradCheck(t, m, loss, params, lmFeeds(t, m, b), 3)
			t.Logf("%d weights, max rel err %.3g", len(params), worst)
		})
	}
}

// TestMemorize: a built-in model learns a small text set by heart.
func TestMemorize(t *testing.T) {
	cfg := tinyConfig(lm.GPT2, "float32")
	cfg.DModel, cfg.InitStd = 32, 0.02
	m, err := lm.Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rows := randomRows(2, 4, 12, 12, 32)
	tg, _, err := BuildLMTraining(m, LMTraining{Batch: 4, SeqLen: 12})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := NewTrainer(tg, TrainerOptions{Schedule: Schedule{Peak: 1e-2, Warmup: 10, Total: 200, MinRatio: 0.1}, ClipNorm: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	data := &LMDataset{Rows: rows, SeqLen: 12, Graph: tg}
	in, rel, err := data.Batch([]int{0, 1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	defer rel()
	var first, last float64
	for s := 0; s < 200; s++ {
		r, err := tr.Step(in)
		if err != nil {
			t.Fatal(err)
		}
		if r.Skipped {
			t.Fatalf("step %d skipped: %s", s, r.Reason)
		}
		if s == 0 {
			first = r.Loss
		}
		last = r.Loss
	}
	t.Logf("loss %.4f → %.4f", first, last)
	if last > 0.05 {
		t.Fatalf("loss after 200 steps %.4f, want < 0.05 (from %.4f)", last, first)
	}
}

// TestLoRA: only adapters train, the loss falls, and the merged export
// gives the training graph's logits.
func TestLoRA(t *testing.T) {
	cfg := tinyConfig(lm.Llama, "float32")
	cfg.DModel, cfg.InitStd = 32, 0.05
	m, err := lm.Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rows := randomRows(3, 4, 10, 10, 32)
	tg, ads, err := BuildLMTraining(m, LMTraining{Batch: 4, SeqLen: 10, LoRA: &LoRA{Rank: 4, Alpha: 8, Targets: []string{"*"}, Seed: 1}, Keep: []string{"logits"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range tg.Params {
		if !contains(p, "lora_") {
			t.Fatalf("non-adapter weight %s is trainable", p)
		}
	}
	t.Logf("%d adapters", len(ads))
	// The same with the frozen weights fed from Go: same loss.
	tgF, _, err := BuildLMTraining(m, LMTraining{Batch: 4, SeqLen: 10, LoRA: &LoRA{Rank: 4, Alpha: 8, Targets: []string{"*"}, Seed: 1}, FrozenAsInputs: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(tgF.Frozen) == 0 {
		t.Fatal("no frozen weight became an input")
	}
	trF, err := NewTrainer(tgF, TrainerOptions{Schedule: Schedule{Peak: 1e-2}})
	if err != nil {
		t.Fatal(err)
	}
	defer trF.Close()
	tr, err := NewTrainer(tg, TrainerOptions{Schedule: Schedule{Peak: 1e-2, Warmup: 5, Total: 80}})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	data := &LMDataset{Rows: rows, SeqLen: 10, Graph: tg}
	in, rel, err := data.Batch([]int{0, 1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	defer rel()
	lF, _, err := trF.Compute(in)
	if err != nil {
		t.Fatal(err)
	}
	l0, _, err := tr.Compute(in)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(lF-l0) > 1e-5*math.Abs(l0) {
		t.Fatalf("loss with frozen weights as inputs %v, baked in %v", lF, l0)
	}
	var first, last float64
	for s := 0; s < 80; s++ {
		r, err := tr.Step(in)
		if err != nil {
			t.Fatal(err)
		}
		if s == 0 {
			first = r.Loss
		}
		last = r.Loss
	}
	t.Logf("LoRA loss %.4f → %.4f", first, last)
	if last > 0.7*first {
		t.Fatalf("LoRA loss fell only from %.4f to %.4f", first, last)
	}
	_, outs, err := tr.Compute(in)
	if err != nil {
		t.Fatal(err)
	}
	want := outs["logits"]
	exp, err := ExportModel(m, tr.Weights(), ads)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ir.Marshal(exp)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ort.NewSession(b, "exported", ort.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Destroy()
	feeds := map[string]ort.Value{}
	batch := NewLMBatch(rows, 10, 0, nil)
	shapes, _ := LMShapes(exp, 4, 10)
	for name, sh := range shapes {
		var v ort.Value
		switch name {
		case "input_ids":
			v, err = ort.NewTensor(sh, batch.IDs)
		case "attention_mask":
			v, err = ort.NewTensor(sh, batch.Mask)
		case "position_ids":
			v, err = ort.NewTensor(sh, batch.Positions())
		default:
			v, err = ort.NewTensor(sh, []float32{})
		}
		if err != nil {
			t.Fatal(err)
		}
		defer v.Destroy()
		feeds[name] = v
	}
	res, err := s.Run(feeds, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Destroy()
	got, err := ort.Data[float32]("logits", res.Get("logits"))
	if err != nil {
		t.Fatal(err)
	}
	maxd, maxv := 0.0, 0.0
	for i := range want {
		maxd = math.Max(maxd, math.Abs(float64(got[i]-want[i])))
		maxv = math.Max(maxv, math.Abs(float64(want[i])))
	}
	t.Logf("exported vs training logits: max |Δ| %.3g (max |logit| %.3g)", maxd, maxv)
	if maxd > 1e-4*math.Max(1, maxv) {
		t.Fatalf("merged export differs from the training graph: max |Δ| %.3g", maxd)
	}
	// The base weights themselves did not move.
	base := map[string]bool{}
	for _, a := range ads {
		base[a.Weight] = true
	}
	for _, it := range exp.Graph.Initializer {
		if base[it.GetName()] {
			continue
		}
		for _, o := range m.Graph.Initializer {
			if o.GetName() == it.GetName() && string(o.GetRawData()) != string(it.GetRawData()) {
				t.Fatalf("weight %s changed without an adapter", it.GetName())
			}
		}
	}
	_ = context.Background
}

// TestWeightsSharedWithGeneration: the generation engine reads the very
// slices the optimizer updates; after training steps it computes with the
// new weights, with no copy or reload.
func TestWeightsSharedWithGeneration(t *testing.T) {
	gen, ws, tg, rows := sharedWeightsCase(t, false)
	shared := map[string][]float32{}
	for _, w := range ws {
		shared[w.Name] = w.Data
	}
	if len(tg.Params) != len(ws) {
		t.Fatalf("trainer selects %d weights, generation takes %d as inputs", len(tg.Params), len(ws))
	}
	tr, err := NewTrainer(tg, TrainerOptions{Schedule: Schedule{Peak: 1e-2}, Weights: shared})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	for _, p := range tr.Params {
		if &p.Data[0] != &shared[p.Name][0] {
			t.Fatalf("weight %s is a copy, not the generation engine's storage", p.Name)
		}
	}
	checkGenerationFollows(t, gen, tg, rows, tr.Step, tr.Compute)
}

// TestPolicyTraining: GRPO steps raise the completion log-probs of the row
// with a positive advantage and lower those of the negative one; the token
// scorer agrees with the training graph's log-probs.
func TestPolicyTraining(t *testing.T) {
	cfg := tinyConfig(lm.Llama, "float32")
	cfg.InitStd = 0.05
	m, err := lm.Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	const B, T = 2, 8
	rows := randomRows(8, B, T, T, 32)
	batch := NewLMBatch(rows, T, 0, []int{3, 3}) // 3 prompt tokens, 5 completion tokens
	sc, err := NewTokenScorer(m, B, T, ort.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	lp0, err := sc.Logprobs(batch)
	if err != nil {
		t.Fatal(err)
	}
	aligned := make([]float32, B*T) // entry t: log-prob of token t
	for b := 0; b < B; b++ {
		for t := 1; t < T; t++ {
			aligned[b*T+t] = lp0[b*(T-1)+t-1]
		}
	}
	batch.OldLogprobs, batch.RefLogprobs = aligned, aligned
	batch.Advantages = []float32{1, -1}
	tg, _, err := BuildLMTraining(m, LMTraining{Batch: B, SeqLen: T, Keep: []string{TokenLogprobsOutput},
		Policy: &PolicyLoss{LossType: "dapo", Epsilon: 0.2, EpsilonHigh: 0.28, Beta: 0.01}})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := NewTrainer(tg, TrainerOptions{Schedule: Schedule{Peak: 3e-3}})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	in, err := batch.Values(tg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, v := range in {
			v.Destroy()
		}
	}()
	var res StepResult
	for s := 0; s < 10; s++ {
		if res, err = tr.Step(in); err != nil {
			t.Fatal(err)
		}
		if s == 0 {
			for i, x := range res.Outputs[TokenLogprobsOutput] {
				if math.Abs(float64(x-lp0[i])) > 1e-5 {
					t.Fatalf("training graph log-prob %d = %v, scorer %v", i, x, lp0[i])
				}
			}
		}
	}
	_, outs, err := tr.Compute(in)
	if err != nil {
		t.Fatal(err)
	}
	now := outs[TokenLogprobsOutput]
	delta := func(b int) float64 {
		d := 0.0
		for t := 3; t < T; t++ {
			d += float64(now[b*(T-1)+t-1] - lp0[b*(T-1)+t-1])
		}
		return d
	}
	t.Logf("completion log-prob change: row A=+1 %+.3f, row A=-1 %+.3f", delta(0), delta(1))
	if delta(0) <= 0 || delta(1) >= 0 {
		t.Fatalf("policy steps moved log-probs the wrong way: %+.3f (A=+1), %+.3f (A=-1)", delta(0), delta(1))
	}
	if _, err := (&LMBatch{B: B, T: T, IDs: batch.IDs, Mask: batch.Mask, LossMask: batch.LossMask}).Values(tg); err == nil {
		t.Fatal("policy batch without advantages accepted")
	}
}

// TestAccumEqualsOneBatch: four examples of unequal length trained as one
// batch of 4 and as 4 accumulated micro-batches of 1 give the same loss
// and the same weights (token-weighted micro-batches, as transformers'
// Trainer); an equal-weight mean of the micro-batch means would not.
func TestAccumEqualsOneBatch(t *testing.T) {
	m, err := lm.Build(tinyConfig(lm.Llama, "float32"))
	if err != nil {
		t.Fatal(err)
	}
	rows := [][]int64{{5, 6, 7}, {8, 9, 10, 11, 12, 13, 14, 15, 16, 17}, {18, 19, 20, 21}, {22, 23, 24, 25, 26, 27, 28}}
	prompts := []int{1, 4, 1, 2}
	run := func(batch, accum int, weighted bool) ([2]float64, *Trainer) {
		tg, _, err := BuildLMTraining(m, LMTraining{Batch: int64(batch), SeqLen: 10})
		if err != nil {
			t.Fatal(err)
		}
		tr, err := NewTrainer(tg, TrainerOptions{Schedule: Schedule{Peak: 1e-2, Decay: "constant"}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(tr.Close)
		var data Dataset = &LMDataset{Rows: rows, PromptLen: prompts, SeqLen: 10, Graph: tg}
		if !weighted {
			data = unweighted{data}
		}
		var loss [2]float64 // loss, gradient norm
		loop := &Loop{Trainer: tr, Data: data, BatchSize: batch, Accum: accum, Steps: 1, Dir: t.TempDir(), Seed: 7,
			Progress: func(p Progress) {
				if v, ok := p.Metrics["loss"]; ok {
					loss = [2]float64{v, p.Metrics["grad_norm"]}
				}
			}}
		if _, err := loop.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		return loss, tr
	}
	l4, one := run(4, 1, true)
	l1, acc := run(1, 4, true)
	lu, plain := run(1, 4, false)
	t.Logf("loss, gradient norm: batch 4 %.7f, 4 × 1 weighted %.7f, 4 × 1 equal weights %.7f", l4, l1, lu)
	for k, what := range []string{"loss", "gradient norm"} {
		if math.Abs(l4[k]-l1[k]) > 1e-6*math.Abs(l4[k]) {
			t.Fatalf("accumulated %s %.7f, one batch %.7f", what, l1[k], l4[k])
		}
		if math.Abs(l4[k]-lu[k]) < 1e-3*math.Abs(l4[k]) {
			t.Fatalf("the equal-weight %s %.7f matches one batch's %.7f: the rows are not unequal enough to test this", what, lu[k], l4[k])
		}
	}
	worst, moved := 0.0, 0.0
	for i, p := range one.Params {
		for j, w := range p.Data {
			worst = math.Max(worst, math.Abs(float64(w-acc.Params[i].Data[j])))
			moved = math.Max(moved, math.Abs(float64(w-plain.Params[i].Data[j])))
		}
	}
	// AdamW's first step moves a weight by about ±lr whatever the gradient's
	// size, so rounding in a near-zero gradient shows at a fraction of lr.
	t.Logf("weights: weighted accumulation within %.3g of one batch; equal weights %.3g (lr 1e-2)", worst, moved)
	if worst > 1e-4 || moved < 1e-3 {
		t.Fatalf("accumulated weights differ from one batch's by %.3g (equal weights: %.3g)", worst, moved)
	}
}

// unweighted hides LMDataset's loss-token count: Loop then takes the plain
// mean of its micro-batches.
type unweighted struct{ Dataset }
