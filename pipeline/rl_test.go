package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
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
	"github.com/tagpr/tagpr/pipeline/grpo"
	"github.com/tagpr/tagpr/pipeline/grpo/grpotest"
	"github.com/tagpr/tagpr/rewardmodel"
)

func mustORT(t testing.TB) {
	t.Helper()
	if err := ort.Init(""); err != nil {
		t.Fatal(err)
	}
}

// The tiny verifiable task of grpotest (pipeline/grpo's tests train on it;
// here it drives the stage plumbing).
const (
	rlEOS = grpotest.EOS
	rlPad = grpotest.Pad
)

func tinyRLModel(t testing.TB) *onnxpb.ModelProto { return grpotest.Model(t) }

func tinyRLPrompts(n int) []RLPrompt {
	out := make([]RLPrompt, n)
	for i, ids := range grpotest.Prompts(n) {
		out[i] = RLPrompt{ID: fmt.Sprintf("p%02d", i), IDs: ids}
	}
	return out
}

// targetRewards offer one reward: the share of the target token.
func targetRewards() Rewards {
	return Rewards{"target_frac": grpo.Func("target_frac", func(s grpo.Sample) float64 { return grpotest.TargetShare(s.Tokens) })}
}

func tinyRLStage() RLStage {
	return RLStage{Name: "target", Rewards: map[string]float64{"target_frac": 1}, Steps: 30, PromptsPerStep: 4, NumGenerations: 8,
		MaxCompletionLength: 8, LR: 1e-2, Warmup: 2, Clip: 1, Beta: 0.02, CheckpointEvery: 10, Seed: 3}
}

func tinyRLPolicy(t testing.TB) RLPolicy {
	return RLPolicy{Model: tinyRLModel(t), EOS: []int64{rlEOS}, Pad: rlPad}
}

// stepsOf records the steps a run reports.
func stepsOf(steps *[]int) train.ProgressFunc {
	return func(p train.Progress) {
		if p.Note == "" {
			*steps = append(*steps, p.Step)
		}
	}
}

// cancelAt cancels the run while scoring its at-th batch (mid-step, before
// any update) and reports the cancellation.
type cancelAt struct {
	grpo.Reward
	calls, at int
	cancel    context.CancelFunc
}

func (c *cancelAt) Score(ctx context.Context, s []grpo.Sample) ([]float64, error) {
	if c.calls++; c.calls == c.at {
		c.cancel()
		return nil, ctx.Err()
	}
	return c.Reward.Score(ctx, s)
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
	want, err := TrainRL(context.Background(), st, tinyRLPolicy(t), prompts, targetRewards(), ref, nil)
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	_, err = TrainRL(ctx, st, tinyRLPolicy(t), prompts, targetRewards(), dir, func(p train.Progress) {
		if p.Step == 3 && p.Note == "" {
			cancel() // Ctrl-C between steps 3 and 4
		}
	})
	if err != context.Canceled {
		t.Fatalf("first run: %v, want context.Canceled", err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	var resumed []int
	// Resumed at step 4; cancelled while scoring step 5.
	cancelling := Rewards{"target_frac": &cancelAt{Reward: targetRewards()["target_frac"], at: 2, cancel: cancel}}
	_, err = TrainRL(ctx, st, tinyRLPolicy(t), prompts, cancelling, dir, stepsOf(&resumed))
	if err != context.Canceled {
		t.Fatalf("second run: %v, want context.Canceled", err)
	}
	if len(resumed) != 1 || resumed[0] != 4 {
		t.Fatalf("second run did steps %v, want [4]", resumed)
	}
	resumed = nil
	got, err := TrainRL(context.Background(), st, tinyRLPolicy(t), prompts, targetRewards(), dir, stepsOf(&resumed))
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
	wl, _ := train.ReadLog[RLStepLog](filepath.Join(ref, rlCheckpointDir, grpo.LogFile))
	gl, _ := train.ReadLog[RLStepLog](filepath.Join(dir, rlCheckpointDir, grpo.LogFile))
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
	if len(wr) != 7*st.PromptsPerStep*st.NumGenerations || !reflect.DeepEqual(wr, gr) {
		t.Fatalf("rollouts: %d rows uninterrupted, %d resumed (equal: %v)", len(wr), len(gr), reflect.DeepEqual(wr, gr))
	}
	if r := wr[0]; r.Stage != st.Name || r.Step != 1 || len(r.Rewards) != 1 || r.Rewards[0].Name != "target_frac" || len(r.LogProbs) != len(r.TokenIDs) {
		t.Fatalf("rollout row %+v", r)
	}

	// A changed config does not resume silently.
	changed := st
	changed.Steps, changed.LR = 9, 5e-3
	_, err = TrainRL(context.Background(), changed, tinyRLPolicy(t), prompts, targetRewards(), ref, nil)
	for _, want := range []string{`lr was "0.01", now "0.005"`, `steps was "7", now "9"`, "remove " + ref} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("changed config: %v; want it to say %q", err, want)
		}
	}
	// The checkpoint interval is not a result setting: it may change.
	interval := st
	interval.CheckpointEvery++
	if _, err := TrainRL(context.Background(), interval, tinyRLPolicy(t), prompts, targetRewards(), ref, nil); err != nil {
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

// TestTagPRRewards: the named rewards and the presets' sums.
func TestTagPRRewards(t *testing.T) {
	tx := rewardmodel.DefaultTaxonomy()
	good := "<think>\n<recall_history>the user tagged romance</recall_history>\n<infer_preference>romance</infer_preference>\n<conclude>romance</conclude>\n</think>\n<answer>romance</answer>"
	p := &RLPrompt{ID: "q", Kind: rewardmodel.Classification, Gold: "romance", Profile: []string{"tag: romance"}}
	gp := &grpo.Prompt{ID: "q", Meta: p}
	samples := []grpo.Sample{{Prompt: gp, Text: good}, {Prompt: gp, Text: "romance"}}
	tag := rewardmodel.CheckTags(good, tx).Reward()
	score := func(r Rewards, name string) []float64 {
		t.Helper()
		v, err := r[name].Score(context.Background(), samples)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	// sum is what grpo makes of a stage's weights.
	sum := func(r Rewards, st RLStage) ([]float64, string) {
		t.Helper()
		sr, err := r.compose(st.WithDefaults())
		if err != nil {
			t.Fatal(err)
		}
		out := make([]float64, len(samples))
		for k, rw := range sr.rewards {
			v, err := rw.Score(context.Background(), samples)
			if err != nil {
				t.Fatal(err)
			}
			for i := range v {
				out[i] += sr.weights[k] * v[i]
			}
		}
		return out, sr.about
	}
	guided := RLStage{Name: "g", Reward: RewardGuided}
	exploratory := RLStage{Name: "e", Reward: RewardExploratory}

	noPRMU := TagPRRewards(tx, nil)
	if got := noPRMU.Names(); !reflect.DeepEqual(got, []string{"format", "tag", "task"}) {
		t.Fatalf("rewards without a PRMU: %v", got)
	}
	if task, format := score(noPRMU, RewardTask), score(noPRMU, RewardFormat); task[0] != 1 || format[0] != 1 || task[1] != 0 || format[1] != 0 {
		t.Fatalf("task %v format %v: an answer outside <answer> scores 0", task, format)
	}
	r, about := sum(noPRMU, guided)
	if math.Abs(r[0]-(1+0.3*tag)) > 1e-12 || !strings.Contains(about, "PRMU absent") {
		t.Fatalf("guided without PRMU: %v (tag %v), %q", r, tag, about)
	}

	prmu := &fixedPRMU{}
	with := TagPRRewards(tx, prmu)
	r, about = sum(with, guided)
	if math.Abs(r[0]-(1+0.3*tag+0.5*0.75)) > 1e-12 || about != "guided: R = 1·task + 0.3·tag + 0.5·prmu" {
		t.Fatalf("guided with PRMU: %v, %q", r, about)
	}
	if v := score(with, RewardPRMU); math.Abs(v[0]-0.75) > 1e-12 || v[1] != 0 {
		t.Fatalf("prmu %v", v)
	}
	if len(prmu.got) < 1 || prmu.got[0][0] != "romance" || prmu.got[0][1] != "tag: romance" {
		t.Fatalf("PRMU was asked %v; want only the parseable answer with its user's profile", prmu.got)
	}
	if r, _ := sum(with, exploratory); r[0] != 1 || r[1] != 0 {
		t.Fatalf("exploratory: %v", r)
	}
	own := RLStage{Name: "own", Rewards: map[string]float64{"tag": 2, "task": 0.5}}
	if r, about := sum(with, own); math.Abs(r[0]-(0.5+2*tag)) > 1e-12 || about != "R = 0.5·task + 2·tag" {
		t.Fatalf("own weights: %v, %q", r, about)
	}
	if _, err := noPRMU.compose(RLStage{Name: "x", Rewards: map[string]float64{"prmu": 1}}); err == nil ||
		!strings.Contains(err.Error(), `reward "prmu": unknown (have format, tag, task)`) {
		t.Fatalf("a stage naming a reward that is not there: %v", err)
	}
	if _, err := noPRMU[RewardTask].Score(context.Background(), []grpo.Sample{{Prompt: &grpo.Prompt{ID: "bare"}}}); err == nil ||
		!strings.Contains(err.Error(), "bare carries no RLPrompt") {
		t.Fatalf("a prompt without an RLPrompt: %v", err)
	}
}

func TestRLStageValidate(t *testing.T) {
	ok := tinyRLStage().WithDefaults()
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	if ok.LossType != "dapo" || ok.ScaleRewards != grpo.ScaleGroup || ok.Epsilon != 0.2 || ok.EpsilonHigh != 0.2 || ok.NumIterations != 1 ||
		ok.Temperature != 1 || ok.UseBiasCorrectionKL == nil || !*ok.UseBiasCorrectionKL {
		t.Fatalf("defaults %+v", ok)
	}
	for knob, edit := range map[string]func(*RLStage){
		"reward":                   func(s *RLStage) { s.Reward = "greedy" },
		"no reward":                func(s *RLStage) { s.Rewards = nil },
		"rewards":                  func(s *RLStage) { s.Rewards = map[string]float64{"task": math.NaN()} },
		"both set":                 func(s *RLStage) { s.Weights.Alpha = 1 },
		"num_generations":          func(s *RLStage) { s.NumGenerations = 1 },
		"loss_type":                func(s *RLStage) { s.LossType = "ppo" },
		"scale_rewards":            func(s *RLStage) { s.ScaleRewards = "std" },
		"beta":                     func(s *RLStage) { s.Beta = -1 },
		"temperature":              func(s *RLStage) { s.Temperature = -1 },
		"lr":                       func(s *RLStage) { s.LR = 0 },
		"clip":                     func(s *RLStage) { s.Clip = -1 },
		"top_p":                    func(s *RLStage) { s.TopP = 2 },
		"alpha":                    func(s *RLStage) { s.Rewards, s.Reward, s.Weights.Alpha = nil, RewardGuided, -1 },
		"weight_decay":             func(s *RLStage) { s.WeightDecay = math.Inf(1) },
		"clip ":                    func(s *RLStage) { s.Clip = math.NaN() },
		"lr ":                      func(s *RLStage) { s.LR = math.NaN() },
		"dynamic_sampling_rounds":  func(s *RLStage) { s.DynamicSamplingRounds = -2 },
		"dynamic_sampling_rounds ": func(s *RLStage) { s.DynamicSamplingRounds = 17 },
		// The exploratory preset is task alone: weights would be ignored.
		"weights": func(s *RLStage) { s.Rewards, s.Reward, s.Weights.Alpha = nil, RewardExploratory, 2 },
	} {
		s := ok
		edit(&s)
		err := s.Validate()
		if err == nil || !strings.Contains(err.Error(), knob) || !strings.Contains(err.Error(), `"target"`) {
			t.Errorf("%s: %v", knob, err)
		}
	}
	// The presets' weights, in summing order.
	g := RLStage{Reward: RewardGuided}.WithDefaults().RewardWeights()
	if want := []NamedWeight{{"task", 1}, {"format", 0}, {"tag", 0.3}, {"prmu", 0.5}}; !reflect.DeepEqual(g, want) {
		t.Errorf("guided weights %v, want %v", g, want)
	}
	own := RLStage{Rewards: map[string]float64{"zeta": 1, "prmu": 2, "alpha": 3, "task": 4}}.RewardWeights()
	if want := []NamedWeight{{"task", 4}, {"prmu", 2}, {"alpha", 3}, {"zeta", 1}}; !reflect.DeepEqual(own, want) {
		t.Errorf("own weights in order %v, want %v", own, want)
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

// TestRLBrokenSummary: a broken stage summary is an error naming the file.
func TestRLBrokenSummary(t *testing.T) {
	sum := filepath.Join(t.TempDir(), rlSummaryFile)
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
	st := tinyRLStage()
	st.Name, st.Steps, st.Temperature, st.CheckpointEvery = "hot", 3, 0.7, 0
	var first map[string]float64
	var steps []int
	p := tinyRLPipeline(t, st)
	p.Progress = func(pr train.Progress) {
		if pr.Note == "" {
			steps = append(steps, pr.Step)
			if pr.Task != "rl hot" {
				t.Errorf("progress task %q, want \"rl hot\"", pr.Task)
			}
			if pr.Step == 1 {
				first = pr.Metrics
			}
		}
	}
	sums, err := p.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(sums) != 1 || sums[0].Steps != 3 || len(steps) != 3 {
		t.Fatalf("summaries %+v, steps %v", sums, steps)
	}
	if kl, ok := first["kl"]; first["clip_ratio/region_mean"] != 0 || !ok || math.Abs(kl) > 1e-6 {
		t.Fatalf("step 1 of a tempered stage: %v; want no clipping and KL ≈ 0", first)
	}
	out, err := ir.Load(filepath.Join(p.Final(), "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range out.Graph.Node {
		if strings.HasPrefix(n.GetName(), "temperature/") {
			t.Fatalf("the exported model carries the stage's node %s", n.GetName())
		}
	}
	m, err := lm.Load(p.Final(), lm.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
}

// runtime.generation_dtype float16: the rollouts run device-resident (the
// CPU device here) from float16 copies of the trainer's float32 weights,
// the stage trains and exports float32 weights, and its recorded settings
// carry the dtype (a resume in float32 is refused).
func TestRLPipelineHalfRollouts(t *testing.T) {
	st := tinyRLStage()
	st.Name, st.Steps, st.CheckpointEvery = "half", 2, 1
	p := tinyRLPipeline(t, st)
	p.HalfRollouts = true
	sums, err := p.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(sums) != 1 || sums[0].Steps != 2 {
		t.Fatalf("summaries %+v", sums)
	}
	stamp, err := os.ReadFile(filepath.Join(p.Dir, st.Name, "checkpoints", train.SettingsFile))
	if err != nil || !strings.Contains(string(stamp), `"generation_dtype": "float16"`) {
		t.Fatalf("the stage's settings do not record float16 rollouts (%v):\n%s", err, stamp)
	}
	out, err := ir.Load(filepath.Join(p.Final(), "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	for _, init := range out.Graph.Initializer {
		if init.GetDataType() == ir.Float16 {
			t.Fatalf("the exported model holds float16 weight %s: the master weights must stay float32", init.GetName())
		}
	}
}

// tinyRLPipeline runs stage st from the tiny model, written to a fresh
// folder, on 8 prompts rewarded for the target token.
func tinyRLPipeline(t *testing.T, st RLStage) *RLPipeline {
	mustORT(t)
	dir := t.TempDir()
	start := filepath.Join(dir, "start")
	if _, err := lm.WriteModelDir(grpotest.Config, start, false); err != nil {
		t.Fatal(err)
	}
	return &RLPipeline{Stages: []RLStage{st}, Start: start, Dir: filepath.Join(dir, "rl"), EOS: []int64{rlEOS}, Pad: rlPad,
		Prompts: func(RLStage) ([]RLPrompt, error) { return tinyRLPrompts(8), nil },
		Rewards: func(RLStage) (Rewards, error) { return targetRewards(), nil }}
}

// runtime.max_memory_gb reaches every RL stage: the stage prints its
// peak-memory estimate and, past the limit, is refused before any step or
// file, naming the stage's own keys to reduce.
func TestRLRefusesPastItsMemory(t *testing.T) {
	st := tinyRLStage()
	st.Steps, st.CheckpointEvery = 2, 0
	p := tinyRLPipeline(t, st)
	var notes []string
	p.Progress = func(pr train.Progress) {
		if strings.HasPrefix(pr.Note, "memory estimate: ") {
			notes = append(notes, pr.Note)
		}
	}
	p.MaxMemoryGB = 1.0 / 1024 // 1 MiB
	_, err := p.Run(context.Background())
	var me *train.MemoryError
	if !errors.As(err, &me) {
		t.Fatalf("run at 1 MiB: %v; want a *train.MemoryError", err)
	}
	for _, want := range []string{`rl stage "target"`, "stages.rl.target.prompts_per_step or stages.rl.target.num_generations",
		"stages.rl.target.max_completion_length", "set stages.rl.target.beta 0", "runtime.max_memory_gb"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q does not name %q", err, want)
		}
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "generation ") {
		t.Errorf("estimate notes %q, want one with the rollouts' part", notes)
	}
	if _, err := os.Stat(filepath.Join(p.StageDir("target"), "checkpoints")); !os.IsNotExist(err) {
		t.Errorf("a refused stage left checkpoints (%v)", err)
	}
	p.MaxMemoryGB, notes = 0, nil // the machine's memory
	if _, err := p.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(notes) != 1 {
		t.Errorf("estimate notes %q, want one", notes)
	}
}
