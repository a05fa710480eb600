package grpo

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/onnxpb"
	"github.com/tagpr/tagpr/onnx/ort"
	"github.com/tagpr/tagpr/onnx/train"
)

// Options say how completions are read and how the run reports; none is a
// training knob.
type Options struct {
	EOS []int64 // ids that end a completion
	Pad int64   // the id that pads prompts and finished rows
	// Detokenize turns completion ids into Sample.Text; nil leaves it empty.
	Detokenize func(ids []int64) (string, error)
	// Load configures the generation model (config.json's limits); its
	// Session is replaced by Session.
	Load lm.LoadOptions
	// Session configures every ORT session of the run: training,
	// generation and reference. Unless it says otherwise (runtime.spinning),
	// pool threads do not spin after a run: a step runs three sessions in
	// turn, and the pool of the one that just ran, spinning, starved the
	// next (BenchmarkRLStep: steps 1.5× faster on two busy cores; on two
	// idle ones spinning took 0.78–1.14× the time, spin_vs_default).
	Session ort.Options
	// Name names the run in the step log, checkpoints and progress
	// reports (default "grpo").
	Name      string
	Progress  train.ProgressFunc
	Callbacks Callbacks
	// Settings are a caller's own settings that decide the result (what
	// its rewards read, say), recorded with the run's (the config but its
	// output_dir and save_steps, the rewards' names, the model and the
	// prompt ids): a resume with other ones is refused with a
	// *train.SettingsMismatchError.
	Settings train.RunSettings
	// MemoryLimit, when > 0, refuses a run whose estimated peak memory
	// (Trainer.Memory, reported through Progress before the sessions open)
	// exceeds it, in bytes; MemoryKnobs name in that refusal what the
	// caller's user sets (default: this Config's JSON names).
	MemoryLimit int64
	MemoryKnobs train.MemoryKnobs
	// ExportBytes is what the caller writes beside the checkpoints after
	// training (the trained model), counted in the disk check before the
	// first step (train.Loop.ExportBytes).
	ExportBytes int64
}

// Callbacks let a caller keep its own per-step outputs in step with the
// checkpoints (TRL's TrainerCallback on_train_begin, on_step_end, on_save);
// any may be nil.
type Callbacks struct {
	// OnStart runs before the first step with the steps already done (the
	// resumed checkpoint's): drop outputs of later steps, they are redone.
	OnStart func(done int) error
	// OnStep runs after each step with its scored completions.
	OnStep func(step int, scored []Scored) error
	// OnSave runs before the checkpoint that covers steps ≤ step is
	// written: make their outputs durable.
	OnSave func(step int) error
}

// Scored is one completion of a step with its rewards and advantage.
type Scored struct {
	Sample
	LogProbs  []float32 // per completion token, under the sampling policy
	Rewards   []float64 // each reward's value, in the trainer's order
	Reward    float64   // Σ weight·reward
	Advantage float64
}

// Result is what a finished run leaves.
type Result struct {
	Weights map[string][]float32 // trained weights by initializer name
	// Adapters are a LoRA run's (Config.LoRA): Weights then hold only their
	// A and B, and train.Export or hf.WriteTrained merge them into the model.
	Adapters []train.Adapter
	Logs     []StepLog // every step's log line, resumed runs included
}

// CheckpointDir is where Train keeps checkpoints and LogFile, under OutputDir.
const CheckpointDir = "checkpoints"

// Trainer is TRL's GRPOTrainer for an ONNX causal LM on ONNX Runtime: per
// step it samples PromptsPerStep prompts, generates NumGenerations
// completions of each with the current weights (the generation session
// reads the trainer's weight tensors), scores them with the rewards,
// computes group advantages, and applies NumIterations clipped
// policy-gradient updates through onnx/train's Loop on one shared-prefix
// batch: each prompt (left-padded to the longest) runs once through the
// model for its G completions of up to MaxCompletionLength tokens.
type Trainer struct {
	cfg      Config
	opt      Options
	rewards  []Reward
	weights  []float64
	prompts  []Prompt
	settings train.RunSettings
	// B and T are the training batch's fixed shape, set by New: rows
	// (PromptsPerStep·NumGenerations) and tokens (the longest prompt plus
	// MaxCompletionLength). Read them; the sessions are built for them.
	B, T int
	tr   *train.Trainer
	gen  *lm.Model
	dev  *deviceRun // on a GPU (or Load.DeviceResident): weights and moments on the device
	ref  *train.TokenScorer
	// adapters are Config.LoRA's, injected into the trained policy.
	adapters []train.Adapter
	shared   train.SharedPrefix // the batch: prompts × completions, their lengths
	memory   train.MemoryEstimate
}

// New prepares a run of model (its frozen KL reference too): it builds and
// opens the training graph, the generation session bound to its weights
// and, with Beta > 0, the reference scorer.
func New(model *onnxpb.ModelProto, rewards []Reward, prompts []Prompt, cfg Config, o Options) (*Trainer, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("grpo: %w", err)
	}
	if o.Name == "" {
		o.Name = "grpo"
	}
	fail := func(err error) (*Trainer, error) { return nil, fmt.Errorf("grpo %s: %w", o.Name, err) }
	switch {
	case model == nil:
		return fail(fmt.Errorf("no model"))
	case len(rewards) == 0:
		return fail(fmt.Errorf("no rewards"))
	case cfg.RewardWeights != nil && len(cfg.RewardWeights) != len(rewards):
		return fail(fmt.Errorf("%d reward_weights for %d rewards", len(cfg.RewardWeights), len(rewards)))
	case len(prompts) == 0:
		return fail(fmt.Errorf("no prompts"))
	}
	// Each reward is logged and weighed by its name (rewards/NAME/mean): a
	// second one of a name would overwrite the first's log entries.
	named := map[string]int{}
	for i, r := range rewards {
		if f, ok := r.(funcReward); r == nil || ok && f.f == nil {
			return fail(fmt.Errorf("reward %d is nil", i))
		}
		name := r.Name()
		if name == "" {
			return fail(fmt.Errorf("reward %d has no name (it names the reward in the log: rewards/NAME/mean)", i))
		}
		if j, dup := named[name]; dup {
			return fail(fmt.Errorf("rewards %d and %d are both named %q: give each its own name (rewards/NAME/mean in the log)", j, i, name))
		}
		named[name] = i
	}
	weights := cfg.RewardWeights
	if weights == nil {
		weights = make([]float64, len(rewards))
		for i := range weights {
			weights[i] = 1
		}
	}
	longest := 0
	for i := range prompts {
		n := len(prompts[i].IDs)
		if n == 0 {
			return fail(fmt.Errorf("prompt %q is empty", prompts[i].ID))
		}
		if cfg.MaxPromptLength > 0 && n > cfg.MaxPromptLength {
			return fail(fmt.Errorf("prompt %q has %d tokens, over max_prompt_length %d", prompts[i].ID, n, cfg.MaxPromptLength))
		}
		longest = max(longest, n)
	}
	T := longest + cfg.MaxCompletionLength
	maxPos := lm.TablePositions(model) // without a config, a built model's own table
	if c := o.Load.Config; c != nil {
		maxPos = max(c.MaxPositions, c.NPositions)
	}
	if maxPos > 0 && T > maxPos {
		return fail(fmt.Errorf("longest prompt %d + max_completion_length %d exceeds the model's %d positions", longest, cfg.MaxCompletionLength, maxPos))
	}
	o.Session = o.Session.DefaultSpinning(false)
	settings, err := cfg.settings(model, rewards, prompts, o.Settings)
	if err != nil {
		return fail(err)
	}
	t := &Trainer{cfg: cfg, opt: o, rewards: rewards, weights: weights, prompts: prompts, settings: settings, B: cfg.batchRows(), T: T}
	if err := t.open(model); err != nil {
		t.Close()
		return fail(err)
	}
	return t, nil
}

// open builds the three sessions of a run.
func (t *Trainer) open(model *onnxpb.ModelProto) error {
	cfg, o := t.cfg, t.opt
	policy, err := lm.WithTemperature(model, cfg.Temperature)
	if err != nil {
		return err
	}
	// The model's own weights, not its rotary tables (fixed functions of
	// position): the same names the generation session takes as inputs.
	params := lm.TrainableNames(model)
	trained := policy // what trains and samples: the policy, with LoRA its adapters too
	if cfg.LoRA != nil {
		trained = ir.CloneSharingInitializers(policy) // AddLoRA adds weights, it changes none
		if t.adapters, err = train.AddLoRA(trained, *cfg.LoRA); err != nil {
			return err
		}
		params = train.AdapterParams(t.adapters)
	}
	keep := []string{train.ClipLowOutput, train.ClipHighOutput, train.ClipRegionOutput}
	if cfg.Beta > 0 {
		keep = append(keep, train.PolicyKLOutput)
	}
	// Each prompt runs once for its G completions, in training and in the
	// reference model as in generation.
	t.shared = train.SharedPrefix{Prompts: int64(cfg.PromptsPerStep), Generations: int64(cfg.NumGenerations),
		PromptLen: int64(t.T - cfg.MaxCompletionLength), CompletionLen: int64(cfg.MaxCompletionLength)}
	tg, err := train.BuildSharedPrefixPolicy(trained, train.PolicyTraining{Shared: t.shared, Params: params, Keep: keep, Recompute: cfg.GradientCheckpointing,
		Loss: train.PolicyLoss{Epsilon: cfg.Epsilon, EpsilonHigh: cfg.EpsilonHigh, Beta: cfg.Beta,
			BiasCorrectionKL: cfg.BiasCorrectionKL(), LossType: cfg.LossType, MaxCompletionLength: cfg.MaxCompletionLength}})
	if err != nil {
		return err
	}
	tg.ReleaseInitial = true // one trainer: its copy of the weights is the one kept
	genInputs := params
	if cfg.LoRA != nil {
		// The frozen base weights become inputs the generation session
		// binds too: one copy of them for both.
		if err := tg.FreezeToInputs(); err != nil {
			return err
		}
		genInputs = append(append([]string{}, params...), sameInitializers(trained, tg)...)
	}
	if err := t.checkMemory(model, policy, tg); err != nil {
		return err
	}
	t.tr, err = train.NewTrainer(tg, train.TrainerOptions{
		Schedule:    train.Schedule{Peak: cfg.LearningRate, Warmup: cfg.WarmupSteps, Total: cfg.Steps * cfg.NumIterations, MinRatio: 0.1},
		WeightDecay: cfg.WeightDecay, ClipNorm: cfg.MaxGradNorm, Session: o.Session,
	})
	if err != nil {
		return err
	}
	lo := o.Load
	lo.Session = o.Session
	var ws []lm.Weight
	genModel := trained
	if cfg.LoRA == nil {
		genModel = ir.CloneSharingInitializers(policy) // policy may be the caller's model: its graph stays as it is
	} // else trained is this run's own copy, built into tg already: generation takes it over
	t.gen, ws, err = lm.OpenWithWeightInputs(genModel, "rl policy "+o.Name, genInputs, lo)
	if err != nil {
		return err
	}
	// Generation reads the trainer's tensors: every update is seen by the
	// next rollout with no copy.
	shared := maps.Clone(t.tr.ParamTensors())
	maps.Copy(shared, t.tr.FrozenTensors())
	for _, w := range ws {
		if w.Tensor == nil {
			continue // read only as a float16 copy on the device (Load.Half)
		}
		err := t.gen.Bind(w.Name, shared[w.Name])
		w.Tensor.Destroy()
		if err != nil {
			return err
		}
	}
	if t.dev, err = openDevice(t.tr, t.gen, ws, o.Session); err != nil {
		return err
	}
	if cfg.Beta > 0 {
		// The policy without adapters: under LoRA the base is the reference,
		// and on the host it reads the trainer's frozen base weights too.
		var fed map[string]ort.Value
		if t.referenceReadsFrozen() {
			fed = t.tr.FrozenTensors()
		}
		if t.ref, err = train.NewSharedPrefixScorerFed(policy, t.shared, o.Session, fed); err != nil {
			return fmt.Errorf("reference model: %w", err)
		}
	}
	return nil
}

// sameInitializers are the frozen inputs of tg that m holds as initializers
// of the same shape: the weights a generation session of m can bind to the
// trainer's tensors.
func sameInitializers(m *onnxpb.ModelProto, tg *train.TrainingGraph) []string {
	dims := map[string][]int64{}
	for _, init := range m.GetGraph().GetInitializer() {
		dims[init.GetName()] = init.GetDims()
	}
	var out []string
	for _, name := range tg.Frozen {
		if d, ok := dims[name]; ok && len(d) > 0 && slices.Equal(d, tg.Initial[name].GetDims()) {
			out = append(out, name)
		}
	}
	return out
}

// referenceReadsFrozen: a LoRA run's reference model on the host reads the
// trainer's frozen base weights instead of a copy of its own (on a device
// it keeps its own there: feeding host tensors would copy them every step).
func (t *Trainer) referenceReadsFrozen() bool {
	return t.cfg.LoRA != nil && !t.opt.Load.DeviceResident && ort.DeviceFor(t.opt.Session).Provider != "cuda"
}

// checkMemory estimates the run's peak memory before any session opens:
// the training steps' (train.EstimateMemory), the rollouts' KV cache and
// decode buffers, the reference model's copy of the weights and its
// forward working set, and the caller's model beside them. It reports the
// estimate and refuses one past Options.MemoryLimit.
func (t *Trainer) checkMemory(model, policy *onnxpb.ModelProto, tg *train.TrainingGraph) error {
	e := train.EstimateMemory(tg)
	held := train.ModelBytes(model)
	e.Weights += held - tg.SharedBytes(model) // what tg derives from model holds its weights, not copies
	vocab := 0
	if c := t.opt.Load.Config; c != nil {
		vocab = c.VocabSize
	}
	e.Generation = lm.GenerationMemory(policy, int64(t.B), int64(t.T), vocab)
	if t.cfg.Beta > 0 {
		e.Reference = held + e.Transient
		if t.referenceReadsFrozen() {
			for _, f := range tg.Frozen {
				e.Reference -= int64(4 * ir.NumElements(tg.Initial[f].GetDims()))
			}
		}
	}
	t.memory = e
	t.opt.Progress.Report(train.Progress{Task: t.opt.Name, Total: t.cfg.Steps, Note: "memory estimate: " + e.String()})
	if t.opt.MemoryLimit <= 0 {
		return nil
	}
	k := t.opt.MemoryKnobs
	if k == (train.MemoryKnobs{}) {
		k = train.MemoryKnobs{Batch: "prompts_per_step or num_generations", SeqLen: "max_completion_length", Reference: "beta 0"}
	}
	return e.Fits(t.opt.MemoryLimit, k)
}

// Memory is the run's peak-memory estimate, made before its sessions
// opened.
func (t *Trainer) Memory() train.MemoryEstimate { return t.memory }

// Close releases the sessions (the trained weights in Result stay valid).
func (t *Trainer) Close() {
	t.dev.close() // before the generation session its tensors came from
	if t.gen != nil {
		t.gen.Close()
	}
	if t.ref != nil {
		t.ref.Close()
	}
	if t.tr != nil {
		t.tr.Close()
	}
}

// Describe says in one line what a step does, for logs.
func (t *Trainer) Describe() string {
	terms := make([]string, len(t.rewards))
	for i, r := range t.rewards {
		terms[i] = fmt.Sprintf("%g·%s", t.weights[i], r.Name())
	}
	what := ""
	if l := t.cfg.LoRA; l != nil {
		what = fmt.Sprintf("; LoRA adapters of rank %d on %d layers", l.Rank, len(t.adapters))
	}
	return fmt.Sprintf("R = %s; batch %d×%d (%d prompts × %d completions), %d steps%s",
		strings.Join(terms, " + "), t.B, t.T, t.cfg.PromptsPerStep, t.cfg.NumGenerations, t.cfg.Steps, what)
}

// Train runs (or resumes) the run in cfg.OutputDir: checkpoints/ holds the
// checkpoints (weights, AdamW moments, prompt-sampler state) and LogFile.
// Generation is seeded per step, so a resumed run ends with the same
// weights bit for bit; cancelling ctx leaves a checkpoint of the last whole
// step and returns ctx.Err().
func (t *Trainer) Train(ctx context.Context) (*Result, error) {
	cfg, o := t.cfg, t.opt
	if cfg.OutputDir == "" {
		return nil, fmt.Errorf("grpo %s: output_dir is empty", o.Name)
	}
	dir := filepath.Join(cfg.OutputDir, CheckpointDir)
	o.Progress.Report(train.Progress{Task: o.Name, Total: cfg.Steps, Note: t.Describe()})
	loop := &train.Loop{Trainer: t.tr, Device: t.dev.trainer(), Examples: len(t.prompts), BatchSize: cfg.PromptsPerStep, Steps: cfg.Steps,
		Dir: dir, CheckpointEvery: cfg.SaveSteps, Seed: cfg.Seed, LogFile: LogFile, ExportBytes: o.ExportBytes,
		UpdatesPerStep: cfg.NumIterations, Stage: o.Name, Settings: t.settings,
		Progress: o.Progress,
		Step:     t.step,
		Hooks: train.Hooks{
			Start: func(st train.RunState) error { return call(o.Callbacks.OnStart, st.Step) },
			Checkpoint: func(st train.RunState) error {
				return call(o.Callbacks.OnSave, st.Step)
			},
		},
	}
	if _, err := loop.Run(ctx); err != nil {
		if ctx.Err() != nil && err == ctx.Err() {
			return nil, err
		}
		return nil, fmt.Errorf("grpo %s: %w", o.Name, err)
	}
	logs, err := train.ReadLog[StepLog](filepath.Join(dir, LogFile))
	if err != nil {
		return nil, err
	}
	return &Result{Weights: t.tr.Weights(), Adapters: t.adapters, Logs: logs}, nil
}

func call(f func(int) error, step int) error {
	if f == nil {
		return nil
	}
	return f(step)
}
