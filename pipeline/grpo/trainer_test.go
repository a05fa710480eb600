package grpo

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/onnxpb"
	"github.com/tagpr/tagpr/onnx/ort"
	"github.com/tagpr/tagpr/onnx/train"
)

// TestRaisesVerifiableReward: GRPO on a reward the model can only reach by
// changing its distribution. A wrong loss sign or advantage would drive the
// target share down instead of up.
func TestRaisesVerifiableReward(t *testing.T) {
	var steps []train.Progress
	o := tinyOptions()
	o.Progress = func(p train.Progress) {
		if p.Note == "" {
			steps = append(steps, p)
		}
	}
	res := run(t, tinyConfig(t.TempDir()), tinyPrompts(16), o)
	logs := res.Logs
	if len(logs) != 30 || len(steps) != 30 || steps[29].Step != 30 || steps[29].Total != 30 {
		t.Fatalf("%d step logs, %d progress reports", len(logs), len(steps))
	}
	first, last := meanReward(logs[:5]), meanReward(logs[len(logs)-5:])
	var curve []string
	for _, l := range logs {
		curve = append(curve, fmt.Sprintf("%.2f", l.Reward.Mean))
	}
	t.Logf("mean reward by step: %s", strings.Join(curve, " "))
	if last < 0.5 || last < first+0.3 {
		t.Fatalf("mean reward went %.3f → %.3f; want ≥ 0.5 and up by ≥ 0.3", first, last)
	}
	if got := steps[29].Metrics["rewards/target_share/mean"]; got != logs[29].Reward.Mean {
		t.Errorf("progress reports rewards/target_share/mean %v, the log %v", got, logs[29].Reward.Mean)
	}
	// Old log-probs come from generation: at one iteration per batch the
	// ratio starts at 1, so nothing may be clipped on the first step…
	if logs[0].ClipRegion != 0 || logs[0].ClipLow != 0 || logs[0].ClipHigh != 0 {
		t.Errorf("step 1 clip ratios %v %v %v: the generation log-probs do not line up with the training graph's", logs[0].ClipLow, logs[0].ClipHigh, logs[0].ClipRegion)
	}
	// …and the policy equals its reference before the first update.
	if logs[0].KL == nil || math.Abs(*logs[0].KL) > 1e-6 {
		t.Errorf("step 1 KL %v, want ≈ 0", logs[0].KL)
	}
	if *logs[len(logs)-1].KL <= 1e-4 {
		t.Errorf("final KL %v: the policy moved, the KL to the start should be > 0", *logs[len(logs)-1].KL)
	}
}

// TestLossTypesLearn: every loss aggregation and reward scaling pushes the
// verifiable reward the right way, with and without the KL bias correction.
func TestLossTypesLearn(t *testing.T) {
	on := true
	for _, c := range []struct {
		loss, scale string
		correct     bool
	}{{LossGRPO, ScaleGroup, false}, {LossDrGRPO, ScaleNone, false}, {LossDAPO, ScaleBatch, true}} {
		cfg := tinyConfig(t.TempDir())
		cfg.Steps, cfg.LossType, cfg.ScaleRewards, cfg.SaveSteps = 20, c.loss, c.scale, 0
		if c.correct {
			cfg.UseBiasCorrectionKL = &on
		}
		res := run(t, cfg, tinyPrompts(16), tinyOptions())
		var rewards []float64
		for _, l := range res.Logs {
			rewards = append(rewards, l.Reward.Mean)
		}
		first, last := meanOf(rewards[:5]), meanOf(rewards[15:])
		t.Logf("%s, scale_rewards %s, bias-corrected KL %v: mean reward %.3f → %.3f", c.loss, c.scale, c.correct, first, last)
		if last < first+0.2 {
			t.Errorf("%s, scale_rewards %s: mean reward %.3f → %.3f, want up by ≥ 0.2", c.loss, c.scale, first, last)
		}
	}
}

// TestRewardWeights: the reward is Σ weight·reward, each reward is logged on
// its own, and a reward that fails or gives a non-finite value stops the
// run naming it.
func TestRewardWeights(t *testing.T) {
	length := Func("length", func(s Sample) float64 { return float64(len(s.Tokens)) })
	cfg := tinyConfig(t.TempDir())
	cfg.Steps, cfg.SaveSteps, cfg.RewardWeights = 2, 0, []float64{2, -0.5}
	var scored []Scored
	o := tinyOptions()
	o.Callbacks.OnStep = func(step int, s []Scored) error {
		if step == 1 {
			scored = s
		}
		return nil
	}
	res := run(t, cfg, tinyPrompts(4), o, targetShare, length)
	if len(scored) != 4*8 {
		t.Fatalf("step 1 had %d scored completions", len(scored))
	}
	for _, s := range scored {
		if want := 2*s.Rewards[0] - 0.5*s.Rewards[1]; s.Reward != want || s.Rewards[1] != float64(len(s.Tokens)) {
			t.Fatalf("reward %v of parts %v, want %v", s.Reward, s.Rewards, want)
		}
	}
	if l := res.Logs[0]; len(l.Rewards) != 2 || l.Rewards["length"].Mean == 0 {
		t.Fatalf("step 1 logged rewards %v", l.Rewards)
	}
	// The weighted rewards' shares of the reward and of the signal each sum to 1.
	for _, l := range res.Logs {
		var share, signal float64
		for _, c := range l.Contributions {
			share, signal = share+c.Share, signal+c.Signal
		}
		if len(l.Contributions) != 2 || math.Abs(share-1) > 1e-9 || (l.ZeroStdFraction < 1 && math.Abs(signal-1) > 1e-9) {
			t.Fatalf("step %d: contributions %v (shares sum to %v, signals to %v)", l.Step, l.Contributions, share, signal)
		}
	}
	for name, bad := range map[string]Reward{
		"nan":    Func("nan", func(Sample) float64 { return math.NaN() }),
		"broken": brokenReward{},
	} {
		tr, err := New(tinyModel(t), []Reward{bad}, tinyPrompts(4), tinyConfig(t.TempDir()), tinyOptions())
		if err != nil {
			t.Fatal(err)
		}
		_, err = tr.Train(context.Background())
		tr.Close()
		if err == nil || !strings.Contains(err.Error(), "reward "+name) {
			t.Errorf("reward %s: %v", name, err)
		}
	}
}

type brokenReward struct{}

func (brokenReward) Name() string { return "broken" }
func (brokenReward) Score(context.Context, []Sample) ([]float64, error) {
	return nil, fmt.Errorf("judge unreachable")
}

func TestConfigValidate(t *testing.T) {
	ok := tinyConfig("x").WithDefaults()
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	if d := (Config{}).WithDefaults(); d.LossType != LossDAPO || d.ScaleRewards != ScaleGroup || d.Epsilon != 0.2 || d.EpsilonHigh != 0.2 ||
		d.NumIterations != 1 || d.Temperature != 1 || !d.BiasCorrectionKL() || d.LearningRate != 1e-6 {
		t.Fatalf("defaults %+v", d)
	}
	for knob, edit := range map[string]func(*Config){
		"num_generations":         func(c *Config) { c.NumGenerations = 1 },
		"loss_type":               func(c *Config) { c.LossType = "ppo" },
		"scale_rewards":           func(c *Config) { c.ScaleRewards = "std" },
		"beta":                    func(c *Config) { c.Beta = math.NaN() },
		"epsilon 1:":              func(c *Config) { c.Epsilon = 1 },
		"temperature":             func(c *Config) { c.Temperature = -1 },
		"learning_rate":           func(c *Config) { c.LearningRate = math.Inf(1) },
		"top_p":                   func(c *Config) { c.TopP = 2 },
		"max_grad_norm":           func(c *Config) { c.MaxGradNorm = -1 },
		"reward_weights":          func(c *Config) { c.RewardWeights = []float64{math.NaN()} },
		"dynamic_sampling_rounds": func(c *Config) { c.DynamicSamplingRounds = -1 },
	} {
		c := ok
		edit(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), knob) {
			t.Errorf("%s: %v", knob, err)
		}
	}
	for what, c := range map[string]struct {
		prompts []Prompt
		load    lm.LoadOptions
		cfg     func(*Config)
	}{
		`"empty" is empty`:             {prompts: []Prompt{{ID: "empty"}}},
		"over max_prompt_length 2":     {prompts: tinyPrompts(2), cfg: func(c *Config) { c.MaxPromptLength = 2 }},
		"exceeds the model's 10":       {prompts: tinyPrompts(2), load: lm.LoadOptions{Config: &lm.HFConfig{MaxPositions: 10}}},
		"exceeds the model's 64":       {prompts: tinyPrompts(2), cfg: func(c *Config) { c.MaxCompletionLength = 64 }}, // no config: the built model's table
		"2 reward_weights for 1":       {prompts: tinyPrompts(2), cfg: func(c *Config) { c.RewardWeights = []float64{1, 1} }},
		"steps 0, prompts_per_step 4:": {prompts: tinyPrompts(2), cfg: func(c *Config) { c.Steps = 0 }},
	} {
		cfg := tinyConfig(t.TempDir())
		if c.cfg != nil {
			c.cfg(&cfg)
		}
		o := tinyOptions()
		o.Load = c.load
		if tr, err := New(tinyModel(t), []Reward{targetShare}, c.prompts, cfg, o); err == nil || !strings.Contains(err.Error(), what) {
			if tr != nil {
				tr.Close()
			}
			t.Errorf("want an error saying %q, got %v", what, err)
		}
	}
}

// TestNewRefusesBadRewards: a nil reward, or two of one name (whose log
// entries, rewards/NAME/mean, would overwrite each other), is refused by New
// naming it, not a panic or a log that silently lost a reward.
func TestNewRefusesBadRewards(t *testing.T) {
	length := Func("length", func(s Sample) float64 { return float64(len(s.Tokens)) })
	for what, rewards := range map[string][]Reward{
		"reward 1 is nil":                         {targetShare, nil},
		"reward 0 is nil":                         {Func("f", nil)},
		"reward 0 has no name":                    {Func("", func(Sample) float64 { return 0 })},
		`rewards 0 and 2 are both named "length"`: {length, targetShare, length},
	} {
		tr, err := New(tinyModel(t), rewards, tinyPrompts(2), tinyConfig(t.TempDir()), tinyOptions())
		if err == nil || !strings.Contains(err.Error(), what) {
			if tr != nil {
				tr.Close()
			}
			t.Errorf("want an error saying %q, got %v", what, err)
		}
	}
}

// TestResumeIsBitIdentical: a run interrupted between steps, then again in
// the middle of a step, and resumed each time, ends with the same weights
// and log as an uninterrupted run; the callbacks see every step once and a
// checkpoint after the steps it covers.
func TestResumeIsBitIdentical(t *testing.T) {
	cfg := tinyConfig("")
	cfg.Steps, cfg.SaveSteps, cfg.NumIterations = 7, 2, 2
	prompts := tinyPrompts(6) // 4 per step: epochs roll over mid-run
	cfg.OutputDir = t.TempDir()
	want := run(t, cfg, prompts, tinyOptions())

	cfg.OutputDir = t.TempDir()
	var events []string
	o := tinyOptions()
	o.Callbacks = Callbacks{
		OnStart: func(done int) error { events = append(events, fmt.Sprintf("start %d", done)); return nil },
		OnStep:  func(step int, _ []Scored) error { events = append(events, fmt.Sprintf("step %d", step)); return nil },
		OnSave:  func(step int) error { events = append(events, fmt.Sprintf("save %d", step)); return nil },
	}
	trainOnce := func(ctx context.Context, rewards ...Reward) error {
		return trainTo(ctx, t, cfg, prompts, o, rewards...)
	}
	interruptAfter(t, 3, cfg, prompts, o, targetShare) // Ctrl-C between steps 3 and 4
	// Resumed at step 4; cancelled while scoring step 5.
	ctx, cancel := context.WithCancel(context.Background())
	if err := trainOnce(ctx, &cancelOnCall{Reward: targetShare, at: 2, cancel: cancel}); err != context.Canceled {
		t.Fatalf("second run: %v, want context.Canceled", err)
	}
	if err := trainOnce(context.Background(), targetShare); err != nil {
		t.Fatal(err)
	}
	wantEvents := "start 0,step 1,step 2,save 2,step 3,save 3,start 3,step 4,save 4,start 4,step 5,step 6,save 6,step 7,save 7"
	if got := strings.Join(events, ","); got != wantEvents {
		t.Errorf("callbacks:\n got %s\nwant %s", got, wantEvents)
	}
	tr, err := New(tinyModel(t), []Reward{targetShare}, prompts, cfg, tinyOptions())
	if err != nil {
		t.Fatal(err)
	}
	got, err := tr.Train(context.Background()) // done: nothing to redo
	tr.Close()
	if err != nil {
		t.Fatal(err)
	}
	sameWeights(t, want, got)
	if len(want.Logs) != 7 || len(got.Logs) != 7 {
		t.Fatalf("logs have %d and %d lines, want 7", len(want.Logs), len(got.Logs))
	}
	for i := range want.Logs {
		a, b := want.Logs[i], got.Logs[i]
		a.Seconds, b.Seconds = Times{}, Times{}
		ja, _ := json.Marshal(a)
		jb, _ := json.Marshal(b)
		if string(ja) != string(jb) {
			t.Fatalf("log step %d differs:\n%s\n%s", i+1, ja, jb)
		}
	}

	// A changed config does not resume silently.
	cfg.LearningRate = 5e-3
	if err := trainOnce(context.Background(), targetShare); err == nil || !strings.Contains(err.Error(), `learning_rate was "0.01", now "0.005"`) {
		t.Fatalf("changed config: %v", err)
	}
}

// cancelOnCall cancels the run on its at-th Score call (mid-step, before
// any update) and reports the cancellation.
type cancelOnCall struct {
	Reward
	calls, at int
	cancel    context.CancelFunc
}

func (c *cancelOnCall) Score(ctx context.Context, s []Sample) ([]float64, error) {
	if c.calls++; c.calls == c.at {
		c.cancel()
		return nil, ctx.Err()
	}
	return c.Reward.Score(ctx, s)
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
		if want := map[string]float64{ScaleGroup: 0.5, ScaleNone: 0.5, ScaleBatch: 0}[scale]; zero != want {
			t.Errorf("%s: zero-std fraction %v, want %v (the batch's std is not 0)", scale, zero, want)
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

func TestBatchLayout(t *testing.T) {
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
		b, err := buildBatch(s, prompts, comps, adv, 0, maskTrunc)
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
		check("truncated", b.Truncated, []bool{false, true, false, true})
	}
	short := s
	short.CompletionLen = 2
	if _, err := buildBatch(short, prompts, comps, adv, 0, false); err == nil || !strings.Contains(err.Error(), "more than 2") {
		t.Fatalf("overlong completion: %v", err)
	}
	noLP := append([]lm.Completion{}, comps...)
	noLP[2].LogProbs = nil
	if _, err := buildBatch(s, prompts, noLP, adv, 0, false); err == nil {
		t.Fatal("completion without log-probs accepted")
	}
}

// TestBatchMatchesGeneration: the old log-probs the batch carries (from
// sampling with the KV cache) sit where a full forward pass over the batch
// computes the same tokens' log-probs, with and without a temperature.
func TestBatchMatchesGeneration(t *testing.T) {
	for _, tau := range []float64{1, 0.7} {
		m, err := lm.WithTemperature(tinyModel(t), tau)
		if err != nil {
			t.Fatal(err)
		}
		gen, err := lm.LoadBytes(mustMarshal(t, m), "tiny", lm.LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer gen.Close()
		ps := tinyPrompts(3)
		ids := [][]int64{ps[0].IDs, ps[1].IDs, ps[2].IDs}
		p := int64(pad)
		comps, _, err := gen.Generate(context.Background(), ids, lm.GenerateOptions{MaxNewTokens: 6, NumGenerations: 2,
			Sampling: lm.Sampling{Temperature: 1}, Seed: 1, EOS: []int64{eos}, Pad: &p})
		if err != nil {
			t.Fatal(err)
		}
		s := train.SharedPrefix{Prompts: 3, Generations: 2, PromptLen: 6, CompletionLen: 6}
		T := 7 // loss-input columns: the prompt's last token, then the completion
		b, err := buildBatch(s, ids, comps, make([]float64, 6), pad, false)
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
		fwd, plain := scored(m), scored(tinyModel(t))
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

// A term's signal counts only where it varies within a group: b is large
// but constant in the first group, so it drives only the second.
func TestContributions(t *testing.T) {
	a, b := []float64{1, 0, 0, 0}, []float64{0.5, 0.5, 0, 1}
	total := []float64{1.5, 0.5, 0, 1}
	got := contributions([]string{"a", "b"}, [][]float64{a, b}, total, 2)
	want := map[string]Contribution{"a": {Share: 1.0 / 3, Signal: 0.5}, "b": {Share: 2.0 / 3, Signal: 0.5}}
	for k, w := range want {
		if g := got[k]; math.Abs(g.Share-w.Share) > 1e-12 || math.Abs(g.Signal-w.Signal) > 1e-12 {
			t.Errorf("%s: %+v, want %+v", k, g, w)
		}
	}
	flat := contributions([]string{"a"}, [][]float64{{1, 1}}, []float64{1, 1}, 2)
	if flat["a"].Signal != 0 || flat["a"].Share != 1 {
		t.Errorf("equal rewards: %+v, want share 1, signal 0", flat["a"])
	}
}
