package pipeline

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/renameio/v2"
	"google.golang.org/protobuf/proto"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/onnx/hf"
	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/onnxpb"
	"github.com/tagpr/tagpr/onnx/ort"
	"github.com/tagpr/tagpr/onnx/train"
)

// RLPolicy is the model a stage starts from and how its completions are read.
type RLPolicy struct {
	// Model is the stage's starting point, and its frozen KL reference.
	Model *onnxpb.ModelProto
	EOS   []int64 // ids that end a completion
	Pad   int64
	// Detokenize turns completion ids into text for the scorer; nil leaves
	// RLSample.Text empty.
	Detokenize func(ids []int64) (string, error)
	// Load configures the generation model (config.json limits); its
	// Session options are replaced by Session.
	Load lm.LoadOptions
	// Session configures every ORT session of the stage: training,
	// generation and reference. Unless its ConfigEntries say otherwise, pool
	// threads do not spin after a run (see quietSessions).
	Session ort.Options
}

// RLHooks report progress; any may be nil.
type RLHooks struct {
	Log  func(stage, msg string)
	Step func(l RLStepLog, total int)
}

func (h RLHooks) log(stage, format string, a ...any) {
	if h.Log != nil {
		h.Log(stage, fmt.Sprintf(format, a...))
	}
}

// RLResult is what a finished stage leaves.
type RLResult struct {
	Weights map[string][]float32 // trained weights by initializer name
	Summary RLSummary
}

// Files of an RL stage directory.
const (
	rlCheckpointDir = "checkpoints"
	rlRolloutDir    = "rollouts"
	rlSummaryFile   = "summary.json"
)

// TrainRL runs one GRPO-family stage from pol.Model. Per step it samples
// PromptsPerStep prompts, generates NumGenerations completions each with the
// current weights (the generation session reads the trainer's weight
// tensors), scores them, computes group advantages, and applies
// NumIterations clipped policy-gradient updates on one [B,T] batch
// (B = prompts × G, T = longest prompt + MaxCompletionLength).
//
// Temperature τ defines the policy as softmax(logits/τ), as in TRL: the
// completions are sampled from it and the old, reference and current
// log-probabilities are all under it (the exported model is the plain one).
// TopK and TopP only restrict sampling.
//
// In dir it keeps checkpoints/ (weights, AdamW moments, prompt-sampler state),
// checkpoints/rl_log.jsonl (one RLStepLog per step) and rollouts/ (Arrow
// segments, one per checkpoint interval). A rerun resumes from the newest
// checkpoint and, generation being seeded per step, ends with the same
// weights bit for bit; cancelling ctx leaves a checkpoint of the last whole
// step and returns ctx.Err().
func TrainRL(ctx context.Context, st RLStage, pol RLPolicy, prompts []RLPrompt, scorer RLScorer, dir string, h RLHooks) (*RLResult, error) {
	st = st.WithDefaults()
	if err := st.Validate(); err != nil {
		return nil, err
	}
	if pol.Model == nil || scorer == nil {
		return nil, fmt.Errorf("rl stage %q: no model or no scorer", st.Name)
	}
	if len(prompts) == 0 {
		return nil, fmt.Errorf("rl stage %q: no prompts", st.Name)
	}
	longest := 0
	for i := range prompts {
		if len(prompts[i].IDs) == 0 {
			return nil, fmt.Errorf("rl stage %q: prompt %q is empty", st.Name, prompts[i].ID)
		}
		longest = max(longest, len(prompts[i].IDs))
	}
	T := longest + st.MaxCompletionLength
	if c := pol.Load.Config; c != nil {
		if maxPos := max(c.MaxPositions, c.NPositions); maxPos > 0 && T > maxPos {
			return nil, fmt.Errorf("rl stage %q: longest prompt %d + max_completion_length %d exceeds the model's %d positions",
				st.Name, longest, st.MaxCompletionLength, maxPos)
		}
	}
	lk, err := train.LockRunDir(dir) // one writer per stage folder
	if err != nil {
		return nil, fmt.Errorf("rl stage %q: %w", st.Name, err)
	}
	defer lk.Unlock()
	settings, err := rlSettings(st, pol.Model, prompts, scorer)
	if err != nil {
		return nil, err
	}
	run, err := newRLRun(st, pol, T, scorer)
	if err != nil {
		return nil, err
	}
	defer run.close()
	run.settings = settings
	h.log(st.Name, "%s; batch %d×%d (%d prompts × %d completions), %d steps", scorer.Describe(), run.B, run.T, st.PromptsPerStep, st.NumGenerations, st.Steps)
	return run.loop(ctx, prompts, dir, h)
}

// rlRun holds a stage's sessions: the trainer, the generation model bound to
// the trainer's weights, and the reference scorer.
type rlRun struct {
	st     RLStage
	pol    RLPolicy
	B, T   int
	tr     *train.Trainer
	gen    *lm.Model
	ref    *train.TokenScorer
	scorer RLScorer
	shared train.SharedPrefix // the batch: prompts × completions, their lengths
	// settings decide the stage's result; a resume must have the same.
	settings train.RunSettings
}

// rlSettings are the stage config (but its checkpoint interval), the
// starting model, the prompts and the scorer, by content.
func rlSettings(st RLStage, model *onnxpb.ModelProto, prompts []RLPrompt, scorer RLScorer) (train.RunSettings, error) {
	s, err := train.SettingsOf(st, "checkpoint_every")
	if err != nil {
		return nil, fmt.Errorf("rl stage %q: %w", st.Name, err)
	}
	if s["model_sha256"], err = train.ModelSHA256(model); err != nil {
		return nil, fmt.Errorf("rl stage %q: %w", st.Name, err)
	}
	js, err := json.Marshal(prompts)
	if err != nil {
		return nil, fmt.Errorf("rl stage %q: prompts: %w", st.Name, err)
	}
	sum := sha256.Sum256(js)
	s["prompts_sha256"] = hex.EncodeToString(sum[:])
	s["scorer"] = scorer.Describe()
	return s, nil
}

func newRLRun(st RLStage, pol RLPolicy, T int, scorer RLScorer) (*rlRun, error) {
	pol.Session = quietSessions(pol.Session)
	r := &rlRun{st: st, pol: pol, B: st.batchRows(), T: T, scorer: scorer}
	fail := func(err error) (*rlRun, error) {
		r.close()
		return nil, fmt.Errorf("rl stage %q: %w", st.Name, err)
	}
	policy, err := temperedModel(pol.Model, st.Temperature)
	if err != nil {
		return fail(err)
	}
	pl := train.PolicyLoss{Epsilon: st.Epsilon, EpsilonHigh: st.EpsilonHigh, Beta: st.Beta,
		LossType: st.LossType, MaxCompletionLength: st.MaxCompletionLength}
	// The model's own weights, not its rotary tables (fixed functions of
	// position): the same names the generation session takes as inputs.
	params := lm.TrainableNames(pol.Model)
	keep := []string{train.ClipFractionOutput}
	if st.Beta > 0 {
		keep = append(keep, train.PolicyKLOutput)
	}
	// Each prompt runs once for its G completions, in training as in generation.
	r.shared = train.SharedPrefix{Prompts: int64(st.PromptsPerStep), Generations: int64(st.NumGenerations),
		PromptLen: int64(T - st.MaxCompletionLength), CompletionLen: int64(st.MaxCompletionLength)}
	tg, err := train.BuildSharedPrefixPolicy(policy, train.PolicyTraining{Loss: pl, Shared: r.shared, Params: params, Keep: keep})
	if err != nil {
		return fail(err)
	}
	r.tr, err = train.NewTrainer(tg, train.TrainerOptions{
		Schedule:    train.Schedule{Peak: st.LR, Warmup: st.Warmup, Total: st.Steps * st.NumIterations, MinRatio: 0.1},
		WeightDecay: st.WeightDecay, ClipNorm: st.Clip, Session: pol.Session,
	})
	if err != nil {
		return fail(err)
	}
	var ws []lm.Weight
	lo := pol.Load
	lo.Session = pol.Session
	r.gen, ws, err = lm.OpenWithWeightInputs(proto.Clone(policy).(*onnxpb.ModelProto), "rl policy "+st.Name, params, lo)
	if err != nil {
		return fail(err)
	}
	// Generation reads the trainer's tensors: every update is seen by the
	// next rollout with no copy.
	shared := r.tr.ParamTensors()
	for _, w := range ws {
		err := r.gen.Bind(w.Name, shared[w.Name])
		w.Tensor.Destroy()
		if err != nil {
			return fail(err)
		}
	}
	if st.Beta > 0 {
		if r.ref, err = train.NewSharedPrefixScorer(policy, r.shared, pol.Session); err != nil {
			return fail(fmt.Errorf("reference model: %w", err))
		}
	}
	return r, nil
}

// spinKey is ORT's switch for intra-op pool threads that busy-wait after a run.
const spinKey = "session.intra_op.allow_spinning"

// quietSessions turns spinning off unless o sets it: an RL step runs three
// sessions in turn, and the pool of the one that just ran, spinning, starves
// the next (BenchmarkRLStep: steps 1.5× faster on two busy cores).
func quietSessions(o ort.Options) ort.Options {
	if _, set := o.ConfigEntries[spinKey]; set {
		return o
	}
	entries := map[string]string{spinKey: "0"}
	for k, v := range o.ConfigEntries {
		entries[k] = v
	}
	o.ConfigEntries = entries
	return o
}

// temperedModel returns m (τ = 1) or a copy whose logits output is the
// model's logits times 1/τ, so that every graph built from it — training,
// reference, generation — works on the tempered policy.
func temperedModel(m *onnxpb.ModelProto, tau float64) (*onnxpb.ModelProto, error) {
	if tau == 1 {
		return m, nil
	}
	m = proto.Clone(m).(*onnxpb.ModelProto)
	g := m.GetGraph()
	const raw, scale = "rl/untempered_logits", "rl/inverse_temperature"
	found := false
	for _, n := range g.GetNode() {
		for i, o := range n.Output {
			if o == lm.Logits {
				n.Output[i], found = raw, true
			}
		}
		for i, in := range n.Input {
			if in == lm.Logits {
				n.Input[i] = raw
			}
		}
	}
	if !found {
		return nil, fmt.Errorf("temperature %g: no node computes the %q output", tau, lm.Logits)
	}
	g.Initializer = append(g.Initializer, ir.Scalar(scale, float32(1/tau)))
	g.Node = append(g.Node, &onnxpb.NodeProto{Name: "rl/temperature", OpType: "Mul", Input: []string{raw, scale}, Output: []string{lm.Logits}})
	return m, nil
}

func (r *rlRun) close() {
	if r.gen != nil {
		r.gen.Close()
	}
	if r.ref != nil {
		r.ref.Close()
	}
	if r.tr != nil {
		r.tr.Close()
	}
}

// stepSeed fixes a step's sampling so a resumed run draws the same completions.
func stepSeed(seed uint64, step int) uint64 { return seed ^ (uint64(step) * 0x9e3779b97f4a7c15) }

func (r *rlRun) loop(ctx context.Context, prompts []RLPrompt, dir string, h RLHooks) (*RLResult, error) {
	st, tr := r.st, r.tr
	ckDir := filepath.Join(dir, rlCheckpointDir)
	rollDir := filepath.Join(dir, rlRolloutDir)
	logPath := filepath.Join(ckDir, RLLogFile)
	if err := os.MkdirAll(ckDir, 0o755); err != nil {
		return nil, fmt.Errorf("rl stage %q: %w", st.Name, err)
	}
	if err := r.settings.CheckOrRecord(ckDir); err != nil {
		return nil, fmt.Errorf("rl stage %q: %w; remove %s to start the stage over", st.Name, err, dir)
	}
	pcg := rand.NewPCG(st.Seed, 0x7a9)
	rs, err := train.LoadCheckpoint(ckDir, tr.Params, tr.Opt)
	switch {
	case errors.Is(err, train.ErrNoCheckpoint):
		rs = train.RunState{Stage: st.Name}
		rs.RNG, _ = pcg.MarshalBinary()
	case err != nil:
		return nil, fmt.Errorf("rl stage %q: %w", st.Name, err)
	default:
		if err := pcg.UnmarshalBinary(rs.RNG); err != nil {
			return nil, fmt.Errorf("rl stage %q: checkpoint in %s: sampler state: %w", st.Name, ckDir, err)
		}
		h.log(st.Name, "resuming after step %d of %d", rs.Step, st.Steps)
	}
	tr.Steps = rs.Step * st.NumIterations
	if err := trimRLLog(logPath, rs.Step); err != nil {
		return nil, err
	}
	if err := dropRolloutsAfter(rollDir, rs.Step); err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("rl stage %q: %w", st.Name, err)
	}
	defer logf.Close()

	// The epoch's prompt order comes from the sampler state saved at the
	// epoch's start (rs.RNG), as in onnx/train's Loop.
	rng := rand.New(pcg)
	perm := rng.Perm(len(prompts))
	var pending []datasets.Rollout
	segFrom := rs.Step + 1
	save := func() error {
		if len(pending) > 0 {
			// Rollouts land before the checkpoint that covers them; a crash in
			// between leaves a segment past the checkpoint, dropped on resume.
			if err := datasets.WriteRows(rolloutSegment(rollDir, segFrom, rs.Step), pending, datasets.CreateRollouts); err != nil {
				return err
			}
			pending, segFrom = nil, rs.Step+1
		}
		return train.SaveCheckpoint(ckDir, tr.Params, tr.Opt, rs, 2)
	}
	for rs.Step < st.Steps {
		if ctx.Err() != nil {
			if err := save(); err != nil {
				return nil, err
			}
			return nil, ctx.Err()
		}
		next := rs
		batch := make([]*RLPrompt, 0, st.PromptsPerStep)
		for len(batch) < st.PromptsPerStep {
			if int(next.Cursor) >= len(perm) {
				next.Epoch++
				next.Cursor = 0
				next.RNG, _ = pcg.MarshalBinary()
				perm = rng.Perm(len(prompts))
			}
			batch = append(batch, &prompts[perm[next.Cursor]])
			next.Cursor++
		}
		sl, rows, err := r.step(ctx, rs.Step+1, batch)
		if err != nil {
			if ctx.Err() != nil {
				// Cancelled during generation or scoring: no weight changed yet,
				// so the checkpoint is the last whole step's.
				if err := save(); err != nil {
					return nil, err
				}
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("rl stage %q: step %d: %w", st.Name, rs.Step+1, err)
		}
		rs = next
		rs.Step++
		sl.Epoch = rs.Epoch
		js, err := json.Marshal(sl)
		if err != nil {
			return nil, fmt.Errorf("rl stage %q: log step %d: %w", st.Name, rs.Step, err)
		}
		if _, err := logf.Write(append(js, '\n')); err != nil {
			return nil, fmt.Errorf("rl stage %q: log: %w", st.Name, err)
		}
		pending = append(pending, rows...)
		if h.Step != nil {
			h.Step(sl, st.Steps)
		}
		if st.CheckpointEvery > 0 && rs.Step%st.CheckpointEvery == 0 && rs.Step < st.Steps {
			if err := save(); err != nil {
				return nil, err
			}
		}
	}
	if err := save(); err != nil {
		return nil, err
	}
	logs, err := readRLLog(logPath)
	if err != nil {
		return nil, err
	}
	return &RLResult{Weights: tr.Weights(), Summary: summarize(st, r.scorer.Describe(), logs)}, nil
}

// step generates, scores and trains on one batch of prompts.
func (r *rlRun) step(ctx context.Context, stepNo int, batch []*RLPrompt) (RLStepLog, []datasets.Rollout, error) {
	st, G := r.st, r.st.NumGenerations
	sl := RLStepLog{Stage: st.Name, Step: stepNo, Rewards: map[string]Stat{}}
	start := time.Now()
	ids := make([][]int64, len(batch))
	for i, p := range batch {
		ids[i] = p.IDs
	}
	pad := r.pol.Pad
	// The generation model divides its logits by τ itself (temperedModel):
	// sampling at 1 draws from the policy and reports its log-probs.
	comps, _, err := r.gen.Generate(ctx, ids, lm.GenerateOptions{MaxNewTokens: st.MaxCompletionLength, NumGenerations: G,
		Sampling: lm.Sampling{Temperature: 1, TopK: st.TopK, TopP: st.TopP},
		Seed:     stepSeed(st.Seed, stepNo), EOS: r.pol.EOS, Pad: &pad})
	if err != nil {
		return sl, nil, err
	}
	t := time.Now()
	sl.Seconds.Generate = t.Sub(start).Seconds()

	samples := make([]RLSample, len(comps))
	lens := make([]float64, len(comps))
	sl.Length.Min = math.MaxInt
	for i, c := range comps {
		samples[i] = RLSample{Prompt: batch[i/G], Tokens: c.Tokens, Finish: c.Finish}
		if r.pol.Detokenize != nil {
			if samples[i].Text, err = r.pol.Detokenize(c.Tokens); err != nil {
				return sl, nil, fmt.Errorf("decode a completion of %s: %w", batch[i/G].ID, err)
			}
		}
		lens[i] = float64(len(c.Tokens))
		sl.Length.Min, sl.Length.Max = min(sl.Length.Min, len(c.Tokens)), max(sl.Length.Max, len(c.Tokens))
		if c.Finish == lm.FinishLength {
			sl.Truncated += 1 / float64(len(comps))
		}
	}
	sl.Length.Mean = meanOf(lens)
	scores, err := r.scorer.Score(ctx, samples)
	if err != nil {
		return sl, nil, err
	}
	if t, ok := r.scorer.(prmuTimed); ok {
		sl.Seconds.PRMU = t.PRMUSeconds()
	}
	names := r.scorer.Components()
	if len(scores) != len(samples) {
		return sl, nil, fmt.Errorf("scorer gave %d scores for %d completions", len(scores), len(samples))
	}
	rewards := make([]float64, len(scores))
	parts := make([][]float64, len(names))
	for i, s := range scores {
		if math.IsNaN(s.Reward) || math.IsInf(s.Reward, 0) || len(s.Parts) != len(names) {
			return sl, nil, fmt.Errorf("scorer gave completion %d of %s reward %v with %d parts (want a finite reward and %d parts)",
				i%G, batch[i/G].ID, s.Reward, len(s.Parts), len(names))
		}
		rewards[i] = s.Reward
		for k, v := range s.Parts {
			parts[k] = append(parts[k], v)
		}
	}
	sl.Reward = statOf(rewards)
	for k, n := range names {
		sl.Rewards[n] = statOf(parts[k])
	}
	adv, zeroStd, err := Advantages(rewards, G, st.ScaleRewards)
	if err != nil {
		return sl, nil, err
	}
	sl.ZeroStdFraction, sl.Advantage = zeroStd, statOf(adv)
	t2 := time.Now()
	sl.Seconds.Score = t2.Sub(t).Seconds()

	// From here on the step runs to its end: weights change.
	b, err := buildRLBatch(r.shared, ids, comps, adv, pad, st.MaskTruncatedCompletions)
	if err != nil {
		return sl, nil, err
	}
	if r.ref != nil {
		if err := b.fillReference(r.ref); err != nil {
			return sl, nil, err
		}
	}
	t3 := time.Now()
	sl.Seconds.Reference = t3.Sub(t2).Seconds()
	if err := r.train(b, &sl); err != nil {
		return sl, nil, err
	}
	sl.Seconds.Total = time.Since(start).Seconds()

	rows := make([]datasets.Rollout, len(comps))
	for i, c := range comps {
		tok := make([]int32, len(c.Tokens))
		for j, v := range c.Tokens {
			tok[j] = int32(v)
		}
		nv := make([]datasets.NamedValue, len(names))
		for k, n := range names {
			nv[k] = datasets.NamedValue{Name: n, Value: scores[i].Parts[k]}
		}
		rows[i] = datasets.Rollout{PromptID: batch[i/G].ID, GroupIndex: int32(c.Sample), Completion: samples[i].Text,
			TokenIDs: tok, LogProbs: c.LogProbs, Rewards: nv, Reward: rewards[i], Advantage: adv[i], Stage: st.Name, Step: int64(stepNo)}
	}
	return sl, rows, nil
}

// train applies NumIterations updates on b through Trainer.Step: an update
// whose loss or gradient is not finite is skipped, leaving weights and
// moments untouched, and too many in a row stop the stage.
func (r *rlRun) train(b *rlBatch, sl *RLStepLog) error {
	tr := r.tr
	in, err := b.Values(tr.Graph)
	if err != nil {
		return err
	}
	defer func() {
		for _, v := range in {
			v.Destroy()
		}
	}()
	var kl float64
	applied := 0
	for it := 0; it < r.st.NumIterations; it++ {
		res, err := tr.Step(in)
		if err != nil {
			return err
		}
		sl.Seconds.ForwardBackward += res.ForwardBackward.Seconds()
		if res.Skipped {
			sl.Skipped++
			continue
		}
		sl.Seconds.Optimizer += res.Optimizer.Seconds()
		applied++
		sl.Loss += res.Loss
		sl.GradNorm += res.GradNorm
		sl.LR = res.LR
		if v := res.Outputs[train.ClipFractionOutput]; len(v) == 1 {
			sl.ClipFraction += float64(v[0])
		}
		if v := res.Outputs[train.PolicyKLOutput]; len(v) == 1 {
			kl += float64(v[0])
		}
	}
	if applied > 0 {
		n := float64(applied)
		sl.Loss, sl.GradNorm, sl.ClipFraction = sl.Loss/n, sl.GradNorm/n, sl.ClipFraction/n
		if r.st.Beta > 0 {
			kl /= n
			sl.KL = &kl
		}
	}
	return nil
}

// RLPipeline runs RL stages in order: each in Dir/<name>, from the model the
// previous stage exported (the first from Start). A stage whose directory
// holds model.onnx is done and is skipped on rerun (its summary is read
// back); an interrupted one resumes from its checkpoint.
type RLPipeline struct {
	Stages []RLStage
	Start  string // model directory: model.onnx, config.json, generation_config.json
	Dir    string
	// Prompts builds a stage's prompt pool (the encoding depends on its
	// max_prompt_length); Scorer its reward.
	Prompts    func(RLStage) ([]RLPrompt, error)
	Scorer     func(RLStage) (RLScorer, error)
	EOS        []int64
	Pad        int64
	Detokenize func(ids []int64) (string, error)
	Hooks      RLHooks
	Session    ort.Options // every stage's sessions (RLPolicy.Session)
}

// Validate refuses empty, duplicate or path-unsafe stage names.
func (p *RLPipeline) Validate() error {
	seen := map[string]bool{}
	for _, s := range p.Stages {
		if s.Name == "" || s.Name == "." || s.Name == ".." || strings.ContainsAny(s.Name, `/\`) {
			return fmt.Errorf("rl stages: name %q: want a plain directory name", s.Name)
		}
		if seen[s.Name] {
			return fmt.Errorf("rl stages: stage %q named twice", s.Name)
		}
		seen[s.Name] = true
		if err := s.WithDefaults().Validate(); err != nil {
			return err
		}
	}
	return nil
}

// StageDir is where stage name runs and exports its model.
func (p *RLPipeline) StageDir(name string) string { return filepath.Join(p.Dir, name) }

// Final is the model directory the pipeline ends with.
func (p *RLPipeline) Final() string {
	if len(p.Stages) == 0 {
		return p.Start
	}
	return p.StageDir(p.Stages[len(p.Stages)-1].Name)
}

// Run runs (or resumes) every stage and returns their summaries.
func (p *RLPipeline) Run(ctx context.Context) ([]RLSummary, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	from := p.Start
	var out []RLSummary
	for _, st := range p.Stages {
		dir := p.StageDir(st.Name)
		if exists(filepath.Join(dir, "model.onnx")) {
			s, err := readSummary(filepath.Join(dir, rlSummaryFile))
			if err != nil {
				return nil, err
			}
			out = append(out, s)
			from = dir
			continue
		}
		s, err := p.runStage(ctx, st, from, dir)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
		from = dir
	}
	return out, nil
}

func (p *RLPipeline) runStage(ctx context.Context, st RLStage, from, dir string) (RLSummary, error) {
	start, err := ir.Load(filepath.Join(from, "model.onnx"))
	if err != nil {
		return RLSummary{}, err
	}
	var lo lm.LoadOptions
	if cfgPath := filepath.Join(from, "config.json"); exists(cfgPath) {
		if lo.Config, err = lm.ReadHFConfig(cfgPath); err != nil {
			return RLSummary{}, err
		}
	}
	prompts, err := p.Prompts(st)
	if err != nil {
		return RLSummary{}, fmt.Errorf("rl stage %q: prompts: %w", st.Name, err)
	}
	scorer, err := p.Scorer(st)
	if err != nil {
		return RLSummary{}, fmt.Errorf("rl stage %q: reward: %w", st.Name, err)
	}
	res, err := TrainRL(ctx, st, RLPolicy{Model: start, EOS: p.EOS, Pad: p.Pad, Detokenize: p.Detokenize, Load: lo, Session: p.Session}, prompts, scorer, dir, p.Hooks)
	if err != nil {
		return RLSummary{}, err
	}
	js, err := json.MarshalIndent(res.Summary, "", "  ")
	if err != nil {
		return RLSummary{}, fmt.Errorf("rl stage %q: summary: %w", st.Name, err)
	}
	if err := renameio.WriteFile(filepath.Join(dir, rlSummaryFile), append(js, '\n'), 0o644); err != nil {
		return RLSummary{}, fmt.Errorf("rl stage %q: summary: %w", st.Name, err)
	}
	for _, f := range []string{"config.json", "generation_config.json"} {
		if src := filepath.Join(from, f); exists(src) {
			if err := copyFile(src, filepath.Join(dir, f)); err != nil {
				return RLSummary{}, err
			}
		}
	}
	// The model file comes last: its presence marks the stage done.
	if _, err := hf.WriteTrained(filepath.Join(dir, "model.onnx"), start, res.Weights, nil, from); err != nil {
		return RLSummary{}, err
	}
	return res.Summary, nil
}

func readSummary(path string) (RLSummary, error) {
	var s RLSummary
	b, err := os.ReadFile(path)
	if err != nil {
		return s, fmt.Errorf("rl summary: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return s, fmt.Errorf("rl summary %s: %w", path, err)
	}
	return s, nil
}
