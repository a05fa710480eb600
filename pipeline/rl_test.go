package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/onnxpb"
	"github.com/tagpr/tagpr/onnx/ort"
	"github.com/tagpr/tagpr/onnx/train"
	"github.com/tagpr/tagpr/rewardmodel"
)

func mustORT(t testing.TB) {
	t.Helper()
	if err := ort.Init(""); err != nil {
		t.Fatal(err)
	}
}

// Tiny verifiable task: the reward is the fraction of completion tokens equal
// to rlTarget. A random-init model emits it with probability ≈ 1/vocab.
const (
	rlVocab  = 32
	rlTarget = 7
	rlEOS    = 1
	rlPad    = 0
)

func tinyRLModel(t testing.TB) *onnxpb.ModelProto {
	t.Helper()
	m, err := lm.Build(lm.Config{Arch: lm.Llama, Layers: 2, DModel: 32, Heads: 4, KVHeads: 2, Vocab: rlVocab, MaxPositions: 64, Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func tinyRLPrompts(n int) []RLPrompt {
	rng := rand.New(rand.NewPCG(4, 2))
	out := make([]RLPrompt, n)
	for i := range out {
		ids := make([]int64, 3+rng.IntN(4))
		for j := range ids {
			ids[j] = 2 + rng.Int64N(rlVocab-2)
		}
		out[i] = RLPrompt{ID: fmt.Sprintf("p%02d", i), IDs: ids}
	}
	return out
}

// targetReward scores a completion by its share of rlTarget tokens (EOS
// included in the length, so stopping early is no trick).
type targetReward struct{}

func (targetReward) Components() []string { return []string{"target_frac"} }
func (targetReward) Describe() string     { return "fraction of target tokens" }
func (targetReward) Score(_ context.Context, s []RLSample) ([]RLScore, error) {
	out := make([]RLScore, len(s))
	for i, x := range s {
		hit := 0
		for _, id := range x.Tokens {
			if id == rlTarget {
				hit++
			}
		}
		f := float64(hit) / float64(max(1, len(x.Tokens)))
		out[i] = RLScore{Reward: f, Parts: []float64{f}}
	}
	return out, nil
}

func tinyRLStage() RLStage {
	return RLStage{Name: "target", Reward: RewardExploratory, Steps: 30, PromptsPerStep: 4, NumGenerations: 8,
		MaxCompletionLength: 8, LR: 1e-2, Warmup: 2, Clip: 1, Beta: 0.02, CheckpointEvery: 10, Seed: 3}
}

func tinyRLPolicy(t testing.TB) RLPolicy {
	return RLPolicy{Model: tinyRLModel(t), EOS: []int64{rlEOS}, Pad: rlPad}
}

// TestRLRaisesVerifiableReward: GRPO on a reward the model can only reach by
// changing its distribution. A wrong loss sign or advantage would drive the
// target share down instead of up.
func TestRLRaisesVerifiableReward(t *testing.T) {
	mustORT(t)
	var logs []RLStepLog
	res, err := TrainRL(context.Background(), tinyRLStage(), tinyRLPolicy(t), tinyRLPrompts(16), targetReward{}, t.TempDir(),
		RLHooks{Step: func(l RLStepLog, total int) { logs = append(logs, l) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(logs) != 30 || res.Summary.Steps != 30 {
		t.Fatalf("%d step logs, summary %d steps", len(logs), res.Summary.Steps)
	}
	mean := func(ls []RLStepLog) float64 {
		s := 0.0
		for _, l := range ls {
			s += l.Reward.Mean
		}
		return s / float64(len(ls))
	}
	first, last := mean(logs[:5]), mean(logs[len(logs)-5:])
	var curve []string
	for _, l := range logs {
		curve = append(curve, fmt.Sprintf("%.2f", l.Reward.Mean))
	}
	t.Logf("mean reward by step: %s", strings.Join(curve, " "))
	t.Logf("first 5 steps %.3f, last 5 %.3f; summary %+v", first, last, res.Summary.End)
	if last < 0.5 || last < first+0.3 {
		t.Fatalf("mean reward went %.3f → %.3f; want ≥ 0.5 and up by ≥ 0.3", first, last)
	}
	// Old log-probs come from generation: at one iteration per batch the
	// ratio starts at 1, so nothing may be clipped on the first step…
	if logs[0].ClipFraction != 0 {
		t.Errorf("step 1 clip fraction %v: the generation log-probs do not line up with the training graph's", logs[0].ClipFraction)
	}
	// …and the policy equals its reference before the first update.
	if logs[0].KL == nil || math.Abs(*logs[0].KL) > 1e-6 {
		t.Errorf("step 1 KL %v, want ≈ 0", logs[0].KL)
	}
	if *logs[len(logs)-1].KL <= 1e-4 {
		t.Errorf("final KL %v: the policy moved, the KL to the start should be > 0", *logs[len(logs)-1].KL)
	}
}

func TestAdvantages(t *testing.T) {
	r := []float64{1, 0, 0, 1, 2, 2, 2, 2} // two groups of 4; the second has zero std
	s := math.Sqrt(1.0 / 3)                // unbiased std of {1,0,0,1}
	cases := map[string][]float64{
		ScaleGroup: {0.5 / (s + 1e-4), -0.5 / (s + 1e-4), -0.5 / (s + 1e-4), 0.5 / (s + 1e-4), 0, 0, 0, 0},
		ScaleNone:  {0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0},
	}
	bs := stdUnbiased(r)
	cases[ScaleBatch] = []float64{0.5 / (bs + 1e-4), -0.5 / (bs + 1e-4), -0.5 / (bs + 1e-4), 0.5 / (bs + 1e-4), 0, 0, 0, 0}
	for scale, want := range cases {
		adv, zero, err := Advantages(r, 4, scale)
		if err != nil {
			t.Fatal(err)
		}
		if zero != 0.5 {
			t.Errorf("%s: zero-std fraction %v, want 0.5", scale, zero)
		}
		for i := range want {
			if math.Abs(adv[i]-want[i]) > 1e-12 {
				t.Errorf("%s: advantage %d = %v, want %v", scale, i, adv[i], want[i])
			}
		}
	}
	// torch.std([0,1,2,3,4,5,6,7]) = 2.449489742783178
	if got := stdUnbiased([]float64{0, 1, 2, 3, 4, 5, 6, 7}); math.Abs(got-2.449489742783178) > 1e-12 {
		t.Errorf("unbiased std %v", got)
	}
	for _, bad := range []struct {
		r     []float64
		g     int
		scale string
	}{{r, 3, ScaleGroup}, {r, 1, ScaleGroup}, {r, 4, "std"}} {
		if _, _, err := Advantages(bad.r, bad.g, bad.scale); err == nil {
			t.Errorf("Advantages(%d rewards, G=%d, %q) accepted", len(bad.r), bad.g, bad.scale)
		}
	}
}

func TestRLBatchLayout(t *testing.T) {
	prompts := [][]int64{{5, 6, 7}, {8}}
	comps := []lm.Completion{
		{Tokens: []int64{9, 1}, LogProbs: []float32{-0.5, -0.25}, Finish: lm.FinishEOS},
		{Tokens: []int64{10, 11, 12}, LogProbs: []float32{-1, -2, -3}, Finish: lm.FinishLength},
		{Tokens: []int64{13}, LogProbs: []float32{-4}, Finish: lm.FinishEOS},
		{Tokens: []int64{14, 15, 16}, LogProbs: []float32{-5, -6, -7}, Finish: lm.FinishLength},
	}
	adv := []float64{1, -1, 0.5, -0.5}
	s := train.SharedPrefix{Prompts: 2, Generations: 2, PromptLen: 3, CompletionLen: 3}
	for _, maskTrunc := range []bool{false, true} {
		b, err := buildRLBatch(s, prompts, comps, adv, 0, maskTrunc)
		if err != nil {
			t.Fatal(err)
		}
		// Prompts left-padded to 3; completions right-padded to 3; the loss
		// inputs have one more column, for the prompt's last token.
		check := func(name string, got, want any) {
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("mask_truncated=%v: %s %v, want %v", maskTrunc, name, got, want)
			}
		}
		check("prompt ids", b.PromptIDs, []int64{5, 6, 7, 0, 0, 8})
		check("prompt mask", b.PromptMask, []int64{1, 1, 1, 0, 0, 1})
		check("prompt positions", b.PromptPos, []int64{0, 1, 2, 1, 1, 0})
		check("ids", b.IDs, []int64{9, 1, 0, 10, 11, 12, 13, 0, 0, 14, 15, 16})
		check("mask", b.Mask, []int64{1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1})
		check("positions", b.Pos, []int64{3, 4, 5, 3, 4, 5, 1, 2, 3, 1, 2, 3})
		wantLoss := []float32{0, 1, 1, 0, 0, 1, 1, 1, 0, 1, 0, 0, 0, 1, 1, 1}
		if maskTrunc {
			for _, r := range []int{1, 3} {
				clear(wantLoss[r*4 : (r+1)*4])
			}
		}
		check("loss mask", b.LossMask, wantLoss)
		check("old log-probs", b.OldLogprobs, []float32{0, -0.5, -0.25, 0, 0, -1, -2, -3, 0, -4, 0, 0, 0, -5, -6, -7})
		check("advantages", b.Advantages, []float32{1, -1, 0.5, -0.5})
	}
	short := s
	short.CompletionLen = 2
	if _, err := buildRLBatch(short, prompts, comps, adv, 0, false); err == nil || !strings.Contains(err.Error(), "more than 2") {
		t.Fatalf("overlong completion: %v", err)
	}
	noLP := append([]lm.Completion{}, comps...)
	noLP[2].LogProbs = nil
	if _, err := buildRLBatch(s, prompts, noLP, adv, 0, false); err == nil {
		t.Fatal("completion without log-probs accepted")
	}
}

// TestRLBatchMatchesGeneration: the old log-probs the batch carries (from
// sampling with the KV cache) sit where a full forward pass over the batch
// computes the same tokens' log-probs, with and without a temperature.
func TestRLBatchMatchesGeneration(t *testing.T) {
	mustORT(t)
	for _, tau := range []float64{1, 0.7} {
		m, err := temperedModel(tinyRLModel(t), tau)
		if err != nil {
			t.Fatal(err)
		}
		gen, err := lm.LoadBytes(mustMarshal(t, m), "tiny", lm.LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer gen.Close()
		ps := tinyRLPrompts(3)
		ids := [][]int64{ps[0].IDs, ps[1].IDs, ps[2].IDs}
		pad := int64(rlPad)
		comps, _, err := gen.Generate(context.Background(), ids, lm.GenerateOptions{MaxNewTokens: 6, NumGenerations: 2,
			Sampling: lm.Sampling{Temperature: 1}, Seed: 1, EOS: []int64{rlEOS}, Pad: &pad})
		if err != nil {
			t.Fatal(err)
		}
		s := train.SharedPrefix{Prompts: 3, Generations: 2, PromptLen: 6, CompletionLen: 6}
		T := 7 // loss-input columns: the prompt's last token, then the completion
		b, err := buildRLBatch(s, ids, comps, make([]float64, 6), rlPad, false)
		if err != nil {
			t.Fatal(err)
		}
		scored := func(model *onnxpb.ModelProto) []float32 {
			sc, err := train.NewSharedPrefixScorer(model, s, ort.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer sc.Close()
			if err := b.fillReference(sc); err != nil {
				t.Fatal(err)
			}
			return append([]float32(nil), b.RefLogprobs...)
		}
		fwd, plain := scored(m), scored(tinyRLModel(t))
		n, moved := 0, 0.0
		for i, w := range b.LossMask {
			if w == 0 {
				continue
			}
			n++
			if d := math.Abs(float64(fwd[i] - b.OldLogprobs[i])); d > 1e-4 {
				t.Fatalf("τ=%g row %d token %d: forward log-prob %v, generation %v", tau, i/T, i%T, fwd[i], b.OldLogprobs[i])
			}
			moved = math.Max(moved, math.Abs(float64(plain[i]-fwd[i])))
		}
		if n < 6 {
			t.Fatalf("only %d completion tokens", n)
		}
		if (tau == 1) != (moved == 0) {
			t.Fatalf("τ=%g: the untempered model's log-probs differ by up to %v from the policy's", tau, moved)
		}
	}
}

func mustMarshal(t testing.TB, m *onnxpb.ModelProto) []byte {
	t.Helper()
	b, err := ir.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// cancellingReward cancels the run while scoring step `at` (mid-step, before
// any update) and reports the cancellation.
type cancellingReward struct {
	targetReward
	calls, at int
	cancel    context.CancelFunc
}

func (c *cancellingReward) Score(ctx context.Context, s []RLSample) ([]RLScore, error) {
	c.calls++
	if c.calls == c.at {
		c.cancel()
		return nil, ctx.Err()
	}
	return c.targetReward.Score(ctx, s)
}

// TestRLResumeIsBitIdentical: a stage interrupted between steps, then again
// in the middle of a step, and resumed each time, ends with the same
// weights, log and rollouts as an uninterrupted run.
func TestRLResumeIsBitIdentical(t *testing.T) {
	mustORT(t)
	st := tinyRLStage()
	st.Steps, st.CheckpointEvery, st.NumIterations = 7, 2, 2
	prompts := tinyRLPrompts(6) // 4 per step: epochs roll over mid-run
	ref := t.TempDir()
	want, err := TrainRL(context.Background(), st, tinyRLPolicy(t), prompts, targetReward{}, ref, RLHooks{})
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	_, err = TrainRL(ctx, st, tinyRLPolicy(t), prompts, targetReward{}, dir, RLHooks{Step: func(l RLStepLog, _ int) {
		if l.Step == 3 {
			cancel() // Ctrl-C between steps 3 and 4
		}
	}})
	if err != context.Canceled {
		t.Fatalf("first run: %v, want context.Canceled", err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	var resumed []int
	// Resumed at step 4; cancelled while scoring step 5.
	_, err = TrainRL(ctx, st, tinyRLPolicy(t), prompts, &cancellingReward{at: 2, cancel: cancel}, dir, RLHooks{Step: func(l RLStepLog, _ int) { resumed = append(resumed, l.Step) }})
	if err != context.Canceled {
		t.Fatalf("second run: %v, want context.Canceled", err)
	}
	if len(resumed) != 1 || resumed[0] != 4 {
		t.Fatalf("second run did steps %v, want [4]", resumed)
	}
	resumed = nil
	got, err := TrainRL(context.Background(), st, tinyRLPolicy(t), prompts, targetReward{}, dir, RLHooks{Step: func(l RLStepLog, _ int) { resumed = append(resumed, l.Step) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(resumed) != 3 || resumed[0] != 5 {
		t.Fatalf("third run did steps %v, want [5 6 7]", resumed)
	}
	for name, w := range want.Weights {
		g := got.Weights[name]
		for i := range w {
			if math.Float32bits(w[i]) != math.Float32bits(g[i]) {
				t.Fatalf("weight %s[%d]: resumed %v, uninterrupted %v", name, i, g[i], w[i])
			}
		}
	}
	wl, _ := readRLLog(filepath.Join(ref, rlCheckpointDir, RLLogFile))
	gl, _ := readRLLog(filepath.Join(dir, rlCheckpointDir, RLLogFile))
	if len(wl) != 7 || len(gl) != 7 {
		t.Fatalf("logs have %d and %d lines, want 7", len(wl), len(gl))
	}
	for i := range wl {
		wl[i].Seconds, gl[i].Seconds = RLTimes{}, RLTimes{}
		a, _ := json.Marshal(wl[i])
		b, _ := json.Marshal(gl[i])
		if string(a) != string(b) {
			t.Fatalf("log step %d differs:\n%s\n%s", i+1, a, b)
		}
	}
	wr, err := ReadRolloutDir(filepath.Join(ref, rlRolloutDir))
	if err != nil {
		t.Fatal(err)
	}
	gr, err := ReadRolloutDir(filepath.Join(dir, rlRolloutDir))
	if err != nil {
		t.Fatal(err)
	}
	if len(wr) != 7*st.batchRows() || !reflect.DeepEqual(wr, gr) {
		t.Fatalf("rollouts: %d rows uninterrupted, %d resumed (equal: %v)", len(wr), len(gr), reflect.DeepEqual(wr, gr))
	}
	if wr[0].Stage != st.Name || wr[0].Step != 1 || len(wr[0].Rewards) != 1 || len(wr[0].LogProbs) != len(wr[0].TokenIDs) {
		t.Fatalf("rollout row %+v", wr[0])
	}

	// A changed config does not resume silently.
	changed := st
	changed.Steps, changed.LR = 9, 5e-3
	_, err = TrainRL(context.Background(), changed, tinyRLPolicy(t), prompts, targetReward{}, ref, RLHooks{})
	for _, want := range []string{`lr was "0.01", now "0.005"`, `steps was "7", now "9"`, "remove " + ref} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("changed config: %v; want it to say %q", err, want)
		}
	}
	// The checkpoint interval is not a result setting: it may change.
	interval := st
	interval.CheckpointEvery++
	if _, err := TrainRL(context.Background(), interval, tinyRLPolicy(t), prompts, targetReward{}, ref, RLHooks{}); err != nil {
		t.Fatalf("changed checkpoint_every: %v", err)
	}
}

type fixedPRMU struct{ got [][]string }

func (f *fixedPRMU) Score(_ context.Context, profiles [][]string, responses []string) ([]float64, error) {
	out := make([]float64, len(responses))
	for i, r := range responses {
		f.got = append(f.got, append([]string{r}, profiles[i]...))
		out[i] = math.Log(3) // sigmoid → 0.75
	}
	return out, nil
}

func TestTagPRReward(t *testing.T) {
	tx := rewardmodel.DefaultTaxonomy()
	good := "<think>\n<recall_history>the user tagged romance</recall_history>\n<infer_preference>romance</infer_preference>\n<conclude>romance</conclude>\n</think>\n<answer>romance</answer>"
	p := &RLPrompt{ID: "q", Kind: rewardmodel.Classification, Gold: "romance", Profile: []string{"tag: romance"}}
	samples := []RLSample{{Prompt: p, Text: good}, {Prompt: p, Text: "romance"}}
	check := rewardmodel.CheckTags(good, tx)
	tag := check.Reward()

	g := &TagPRReward{Mode: RewardGuided, Weights: rewardmodel.DefaultWeights(), Taxonomy: tx}
	s, err := g.Score(context.Background(), samples)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(g.Describe(), "PRMU absent") || len(g.Components()) != 3 {
		t.Fatalf("describe %q components %v", g.Describe(), g.Components())
	}
	if math.Abs(s[0].Reward-(1+0.3*tag)) > 1e-12 || s[0].Parts[0] != 1 || s[0].Parts[1] != 1 {
		t.Fatalf("guided without PRMU: %+v (tag %v)", s[0], tag)
	}
	if s[1].Parts[0] != 0 || s[1].Parts[1] != 0 {
		t.Fatalf("an answer outside <answer> scored %+v", s[1])
	}

	prmu := &fixedPRMU{}
	g.PRMU = prmu
	s, err = g.Score(context.Background(), samples)
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Components()) != 4 || math.Abs(s[0].Reward-(1+0.3*tag+0.5*0.75)) > 1e-12 || math.Abs(s[0].Parts[3]-0.75) > 1e-12 || s[1].Parts[3] != 0 {
		t.Fatalf("guided with PRMU: %+v %+v", s[0], s[1])
	}
	if len(prmu.got) != 1 || prmu.got[0][0] != "romance" || prmu.got[0][1] != "tag: romance" {
		t.Fatalf("PRMU was asked %v; want only the parseable answer with its user's profile", prmu.got)
	}

	e := &TagPRReward{Mode: RewardExploratory, Taxonomy: tx, PRMU: prmu}
	s, err = e.Score(context.Background(), samples)
	if err != nil {
		t.Fatal(err)
	}
	if s[0].Reward != 1 || s[1].Reward != 0 || len(e.Components()) != 3 {
		t.Fatalf("exploratory: %+v %+v %v", s[0], s[1], e.Components())
	}
}

func TestRLStageValidate(t *testing.T) {
	ok := tinyRLStage().WithDefaults()
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	if ok.LossType != "dapo" || ok.ScaleRewards != ScaleGroup || ok.Epsilon != 0.2 || ok.EpsilonHigh != 0.2 || ok.NumIterations != 1 || ok.Temperature != 1 {
		t.Fatalf("defaults %+v", ok)
	}
	for knob, edit := range map[string]func(*RLStage){
		"reward":          func(s *RLStage) { s.Reward = "greedy" },
		"num_generations": func(s *RLStage) { s.NumGenerations = 1 },
		"loss_type":       func(s *RLStage) { s.LossType = "ppo" },
		"scale_rewards":   func(s *RLStage) { s.ScaleRewards = "std" },
		"beta":            func(s *RLStage) { s.Beta = -1 },
		"temperature":     func(s *RLStage) { s.Temperature = -1 },
		"lr":              func(s *RLStage) { s.LR = 0 },
		"top_p":           func(s *RLStage) { s.TopP = 2 },
		"alpha":           func(s *RLStage) { s.Reward, s.Weights.Alpha = RewardGuided, -1 },
		"weight_decay":    func(s *RLStage) { s.WeightDecay = math.Inf(1) },
		"clip":            func(s *RLStage) { s.Clip = math.NaN() },
		"lr ":             func(s *RLStage) { s.LR = math.NaN() },
	} {
		s := ok
		edit(&s)
		err := s.Validate()
		if err == nil || !strings.Contains(err.Error(), knob) || !strings.Contains(err.Error(), `"target"`) {
			t.Errorf("%s: %v", knob, err)
		}
	}
	pol := RLPolicy{Model: tinyRLModel(t), EOS: []int64{rlEOS}, Load: lm.LoadOptions{Config: &lm.HFConfig{MaxPositions: 10}}}
	if _, err := TrainRL(context.Background(), ok, pol, tinyRLPrompts(4), targetReward{}, t.TempDir(), RLHooks{}); err == nil || !strings.Contains(err.Error(), "exceeds the model's 10 positions") {
		t.Errorf("prompt + completion past the model's positions: %v", err)
	}
	if _, err := TrainRL(context.Background(), ok, tinyRLPolicy(t), []RLPrompt{{ID: "empty"}}, targetReward{}, t.TempDir(), RLHooks{}); err == nil || !strings.Contains(err.Error(), `"empty" is empty`) {
		t.Errorf("empty prompt: %v", err)
	}
	p := &RLPipeline{Stages: []RLStage{ok, ok}}
	if err := p.Validate(); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("duplicate stage names: %v", err)
	}
	bad := ok
	bad.Name = "../x"
	if err := (&RLPipeline{Stages: []RLStage{bad}}).Validate(); err == nil {
		t.Error("path-like stage name accepted")
	}
}

// TestRLBrokenFiles: a log line cut by a crash is dropped on resume; a
// broken line before the end, or a broken stage summary, is an error naming
// the file.
func TestRLBrokenFiles(t *testing.T) {
	mustORT(t)
	st := tinyRLStage()
	st.Steps, st.CheckpointEvery = 2, 1
	dir := t.TempDir()
	if _, err := TrainRL(context.Background(), st, tinyRLPolicy(t), tinyRLPrompts(4), targetReward{}, dir, RLHooks{}); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, rlCheckpointDir, RLLogFile)
	good, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(good), "\n")
	// Cut mid-write: the partial third line goes, the two whole ones stay.
	if err := os.WriteFile(logPath, []byte(lines[0]+lines[1]+`{"stage":"target","st`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := trimRLLog(logPath, 2); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(logPath); string(got) != string(good) {
		t.Fatalf("after trimming a cut line:\n%s\nwant\n%s", got, good)
	}
	if err := os.WriteFile(logPath, []byte(lines[0]+"garbage\n"+lines[1]), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readRLLog(logPath); err == nil || !strings.Contains(err.Error(), logPath) || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("broken middle line: %v", err)
	}

	sum := filepath.Join(dir, rlSummaryFile)
	if err := os.WriteFile(sum, []byte(`{"stage": 3}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readSummary(sum); err == nil || !strings.Contains(err.Error(), sum) {
		t.Fatalf("broken summary: %v", err)
	}
}

// TestRLPipelineWithTemperature: a tempered stage starts on-policy (nothing
// clipped, no KL before the first update) and exports the plain model.
func TestRLPipelineWithTemperature(t *testing.T) {
	mustORT(t)
	dir := t.TempDir()
	start := filepath.Join(dir, "start")
	if _, err := lm.WriteModelDir(lm.Config{Arch: lm.Llama, Layers: 2, DModel: 32, Heads: 4, KVHeads: 2, Vocab: rlVocab, MaxPositions: 64, Seed: 9}, start, false); err != nil {
		t.Fatal(err)
	}
	st := tinyRLStage()
	st.Name, st.Steps, st.Temperature, st.CheckpointEvery = "hot", 3, 0.7, 0
	var logs []RLStepLog
	p := &RLPipeline{Stages: []RLStage{st}, Start: start, Dir: filepath.Join(dir, "rl"), EOS: []int64{rlEOS}, Pad: rlPad,
		Prompts: func(RLStage) ([]RLPrompt, error) { return tinyRLPrompts(8), nil },
		Scorer:  func(RLStage) (RLScorer, error) { return targetReward{}, nil },
		Hooks:   RLHooks{Step: func(l RLStepLog, _ int) { logs = append(logs, l) }}}
	sums, err := p.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(sums) != 1 || sums[0].Steps != 3 || len(logs) != 3 {
		t.Fatalf("summaries %+v, %d step logs", sums, len(logs))
	}
	if logs[0].ClipFraction != 0 || logs[0].KL == nil || math.Abs(*logs[0].KL) > 1e-6 {
		t.Fatalf("step 1 of a tempered stage: clip fraction %v, KL %v; want 0 and ≈ 0", logs[0].ClipFraction, *logs[0].KL)
	}
	out, err := ir.Load(filepath.Join(p.Final(), "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range out.Graph.Node {
		if strings.HasPrefix(n.GetName(), "rl/") {
			t.Fatalf("the exported model carries the stage's node %s", n.GetName())
		}
	}
	m, err := lm.Load(p.Final(), lm.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
}

// TestRLLossTypesLearn: every loss aggregation and reward scaling pushes the
// verifiable reward the right way.
func TestRLLossTypesLearn(t *testing.T) {
	mustORT(t)
	for _, c := range []struct{ loss, scale string }{{"grpo", ScaleGroup}, {"dr_grpo", ScaleNone}, {"dapo", ScaleBatch}} {
		st := tinyRLStage()
		st.Steps, st.LossType, st.ScaleRewards, st.CheckpointEvery = 20, c.loss, c.scale, 0
		var rewards []float64
		_, err := TrainRL(context.Background(), st, tinyRLPolicy(t), tinyRLPrompts(16), targetReward{}, t.TempDir(),
			RLHooks{Step: func(l RLStepLog, _ int) { rewards = append(rewards, l.Reward.Mean) }})
		if err != nil {
			t.Fatal(err)
		}
		first, last := meanOf(rewards[:5]), meanOf(rewards[15:])
		t.Logf("%s, scale_rewards %s: mean reward %.3f → %.3f", c.loss, c.scale, first, last)
		if last < first+0.2 {
			t.Errorf("%s, scale_rewards %s: mean reward %.3f → %.3f, want up by ≥ 0.2", c.loss, c.scale, first, last)
		}
	}
}
