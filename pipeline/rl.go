package pipeline

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/google/renameio/v2"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/internal/buildinfo"
	"github.com/tagpr/tagpr/onnx/hf"
	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/onnxpb"
	"github.com/tagpr/tagpr/onnx/ort"
	"github.com/tagpr/tagpr/onnx/train"
	"github.com/tagpr/tagpr/pipeline/grpo"
)

// RLPolicy is the model a stage starts from and how its completions are read.
type RLPolicy struct {
	// Model is the stage's starting point, and its frozen KL reference.
	Model *onnxpb.ModelProto
	EOS   []int64 // ids that end a completion
	Pad   int64
	// Detokenize turns completion ids into text for the rewards; nil leaves
	// the text empty.
	Detokenize func(ids []int64) (string, error)
	// Load configures the generation model (config.json limits); its
	// Session options are replaced by Session.
	Load lm.LoadOptions
	// Session configures every ORT session of the stage: training,
	// generation and reference.
	Session ort.Options
	// MaxMemoryGB is runtime.max_memory_gb: the stage prints its
	// peak-memory estimate and refuses to start past this (0: the
	// memory free when it starts; -1: no check).
	MaxMemoryGB float64
}

// RLResult is what a finished stage leaves.
type RLResult struct {
	Weights map[string][]float32 // trained weights by initializer name
	// Adapters are a LoRA stage's: Weights hold their A and B, merged on export.
	Adapters []train.Adapter
	Summary  RLSummary
}

// Files of an RL stage directory.
const (
	rlCheckpointDir = grpo.CheckpointDir
	rlRolloutDir    = "rollouts"
	rlSummaryFile   = "summary.json"
)

// TrainRL runs one stage: a grpo run in dir whose reward is the stage's
// weights over rewards (RLStage.RewardWeights), with every step's
// completions kept in dir/rollouts/ (Parquet segments, one per checkpoint
// interval, written before the checkpoint that covers them). A rerun
// resumes from the newest checkpoint and ends with the same weights bit for
// bit; cancelling ctx leaves a checkpoint of the last whole step and returns
// ctx.Err(). progress hears of every step as Task "rl NAME".
func TrainRL(ctx context.Context, st RLStage, pol RLPolicy, prompts []RLPrompt, rewards Rewards, dir string, progress train.ProgressFunc) (*RLResult, error) {
	st = st.WithDefaults()
	if err := st.Validate(); err != nil {
		return nil, err
	}
	sr, err := rewards.compose(st)
	if err != nil {
		return nil, err
	}
	lk, err := train.LockRunDir(dir) // one writer per stage folder
	if err != nil {
		return nil, fmt.Errorf("rl stage %q: %w", st.Name, err)
	}
	defer lk.Unlock()
	settings, err := rlSettings(st, prompts, sr)
	if err != nil {
		return nil, err
	}
	if pol.Load.Half { // float16 rollouts change the run; float32 keeps older stamps valid
		settings["generation_dtype"] = "float16"
	}
	cfg := st.GRPO()
	cfg.RewardWeights, cfg.OutputDir = sr.weights, dir
	gp := make([]grpo.Prompt, len(prompts))
	for i := range prompts {
		gp[i] = grpo.Prompt{ID: prompts[i].ID, IDs: prompts[i].IDs, Meta: &prompts[i]}
	}
	ro := &rolloutWriter{dir: filepath.Join(dir, rlRolloutDir), stage: st.Name}
	for _, r := range sr.rewards {
		ro.names = append(ro.names, r.Name())
	}
	limit, check, err := train.MemoryLimit(pol.MaxMemoryGB)
	if err != nil {
		return nil, fmt.Errorf("rl stage %q: %w (runtime.max_memory_gb sets the limit; -1 skips the check)", st.Name, err)
	}
	if !check {
		limit = 0
	}
	t, err := grpo.New(pol.Model, sr.rewards, gp, cfg, grpo.Options{EOS: pol.EOS, Pad: pol.Pad, Detokenize: pol.Detokenize,
		Load: pol.Load, Session: pol.Session, Name: st.Name, Progress: rlProgress(progress, st.Name), Settings: settings,
		Callbacks:   grpo.Callbacks{OnStart: ro.start, OnStep: ro.add, OnSave: ro.flush},
		MemoryLimit: limit, MemoryKnobs: rlMemoryKnobs(st),
		ExportBytes: 2 * train.ModelBytes(pol.Model)}) // model.onnx(.data) and model.safetensors
	var me *train.MemoryError
	if errors.As(err, &me) {
		return nil, fmt.Errorf("rl stage %q: %w (runtime.max_memory_gb sets another limit; -1 skips the check)", st.Name, err)
	}
	if err != nil {
		return nil, fmt.Errorf("rl stage %q: %w", st.Name, err)
	}
	defer t.Close()
	// The sessions hold what the steps need: what building them left
	// behind (graph copies, serialized models) goes back to the system
	// before the first step instead of adding to its peak.
	pol.Model = nil
	debug.FreeOSMemory()
	progress.Report(train.Progress{Task: "rl " + st.Name, Note: sr.about})
	res, err := t.Train(ctx)
	var mm *train.SettingsMismatchError
	if errors.As(err, &mm) {
		return nil, fmt.Errorf("rl stage %q: %w; remove %s to start the stage over", st.Name, err, dir)
	}
	if err != nil {
		return nil, err
	}
	return &RLResult{Weights: res.Weights, Adapters: res.Adapters, Summary: summarize(st, sr.about, res.Logs)}, nil
}

// rlMemoryKnobs name a stage's settings in its memory refusal.
func rlMemoryKnobs(st RLStage) train.MemoryKnobs {
	key := "stages.rl." + st.Name + "."
	k := train.MemoryKnobs{Batch: key + "prompts_per_step or " + key + "num_generations",
		SeqLen: key + "max_completion_length or " + key + "max_prompt_length", Reference: key + "beta 0"}
	if st.Rank == 0 {
		k.LoRA = key + "lora_rank"
	}
	return k
}

// rlSettings are what decide a stage's result besides what grpo records
// itself (its config, model and prompt ids): the stage config but its
// checkpoint interval, the prompts with what the rewards read, how the
// reward is made and the models of rewards that have a hash (the PRMU's).
func rlSettings(st RLStage, prompts []RLPrompt, sr stageReward) (train.RunSettings, error) {
	s, err := train.SettingsOf(st, "checkpoint_every")
	if err != nil {
		return nil, fmt.Errorf("rl stage %q: %w", st.Name, err)
	}
	js, err := json.Marshal(prompts)
	if err != nil {
		return nil, fmt.Errorf("rl stage %q: prompts: %w", st.Name, err)
	}
	sum := sha256.Sum256(js)
	s["prompts_sha256"] = hex.EncodeToString(sum[:])
	s["scorer"] = sr.about
	for _, r := range sr.rewards {
		if h, ok := r.(interface{ SHA256() string }); ok && h.SHA256() != "" {
			s["reward."+r.Name()+".sha256"] = h.SHA256()
		}
	}
	return s, nil
}

// rlProgress names a stage's reports "rl NAME".
func rlProgress(p train.ProgressFunc, stage string) train.ProgressFunc {
	if p == nil {
		return nil
	}
	return func(r train.Progress) {
		r.Task = "rl " + stage
		p(r)
	}
}

// rolloutWriter keeps a stage's completions as Arrow segments in step with
// its checkpoints.
type rolloutWriter struct {
	dir, stage string
	names      []string // the rewards, in the order of grpo.Scored.Rewards
	pending    []datasets.Rollout
	from       int // first step of the pending rows
}

// start drops segments a resumed checkpoint does not cover (written just
// before a checkpoint that never landed).
func (w *rolloutWriter) start(done int) error {
	w.pending, w.from = nil, done+1
	return dropRolloutsAfter(w.dir, done)
}

func (w *rolloutWriter) add(step int, scored []grpo.Scored) error {
	for _, s := range scored {
		nv := make([]datasets.NamedValue, len(s.Rewards))
		for k, v := range s.Rewards {
			nv[k] = datasets.NamedValue{Name: w.names[k], Value: v}
		}
		w.pending = append(w.pending, datasets.Rollout{PromptID: s.Prompt.ID, GroupIndex: int32(s.Index), Completion: s.Text,
			TokenIDs: s.Tokens, LogProbs: s.LogProbs, Rewards: nv, Reward: s.Reward, Advantage: s.Advantage, Stage: w.stage, Step: int64(step)})
	}
	return nil
}

// flush writes the pending rows, steps w.from..step, as one segment.
func (w *rolloutWriter) flush(step int) error {
	if len(w.pending) == 0 {
		return nil
	}
	if err := datasets.WriteRows(rolloutSegment(w.dir, w.from, step), w.pending, datasets.CreateRollouts); err != nil {
		return err
	}
	w.pending, w.from = nil, step+1
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
	// max_prompt_length); Rewards the rewards its weights may name.
	Prompts    func(RLStage) ([]RLPrompt, error)
	Rewards    func(RLStage) (Rewards, error)
	EOS        []int64
	Pad        int64
	Detokenize func(ids []int64) (string, error)
	Progress   train.ProgressFunc
	Session    ort.Options // every stage's sessions (RLPolicy.Session)
	// HalfRollouts generates rollouts in float16 (runtime.generation_dtype):
	// device-resident (on the CPU, through the same IO binding path), from
	// float16 copies the trainer's float32 weights are cast into.
	HalfRollouts bool
	// MaxMemoryGB is every stage's RLPolicy.MaxMemoryGB.
	MaxMemoryGB float64
	// KeepCheckpoints keeps a stage's checkpoints once its model is
	// written (stages.keep_checkpoints); otherwise they are deleted.
	KeepCheckpoints bool
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
		if s.From != "" && s.From != RLFromStart && !seen[s.From] {
			return fmt.Errorf("rl stages: stage %q: from %q: want %s or an earlier stage", s.Name, s.From, RLFromStart)
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
	prev := p.Start
	var out []RLSummary
	for _, st := range p.Stages {
		dir := p.StageDir(st.Name)
		from := prev
		switch st.From {
		case "":
		case RLFromStart:
			from = p.Start
		default:
			from = p.StageDir(st.From)
		}
		prev = dir
		if exists(filepath.Join(dir, "model.onnx")) {
			s, err := readSummary(filepath.Join(dir, rlSummaryFile))
			if err != nil {
				return nil, err
			}
			out = append(out, s)
			continue
		}
		s, err := p.runStage(ctx, st, from, dir)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func (p *RLPipeline) runStage(ctx context.Context, st RLStage, from, dir string) (RLSummary, error) {
	start, err := loadForTraining(filepath.Join(from, "model.onnx"))
	if err != nil {
		return RLSummary{}, err
	}
	lo := lm.LoadOptions{Half: p.HalfRollouts, DeviceResident: p.HalfRollouts}
	if cfgPath := filepath.Join(from, "config.json"); exists(cfgPath) {
		if lo.Config, err = lm.ReadHFConfig(cfgPath); err != nil {
			return RLSummary{}, err
		}
	}
	prompts, err := p.Prompts(st)
	if err != nil {
		return RLSummary{}, fmt.Errorf("rl stage %q: prompts: %w", st.Name, err)
	}
	rewards, err := p.Rewards(st)
	if err != nil {
		return RLSummary{}, fmt.Errorf("rl stage %q: reward: %w", st.Name, err)
	}
	ckDir := filepath.Join(dir, grpo.CheckpointDir)
	if err := recordMachine(ckDir, ort.Machine(p.Session)); err != nil {
		return RLSummary{}, fmt.Errorf("rl stage %q: %w", st.Name, err)
	}
	res, err := TrainRL(ctx, st, RLPolicy{Model: start, EOS: p.EOS, Pad: p.Pad, Detokenize: p.Detokenize, Load: lo, Session: p.Session, MaxMemoryGB: p.MaxMemoryGB}, prompts, rewards, dir, p.Progress)
	if err != nil {
		return RLSummary{}, err
	}
	runs, err := stageHistory(ckDir, res.Summary.Steps)
	if err != nil {
		return RLSummary{}, fmt.Errorf("rl stage %q: %w", st.Name, err)
	}
	res.Summary.Machine, res.Summary.ResumedAfter, res.Summary.Started = runs.Machine, runs.ResumedAfter, runs.Started
	res.Summary.Finished = time.Now().UTC().Format(time.RFC3339)
	res.Summary.Tagpr = buildinfo.String()
	res.Summary.FromSHA256 = modelFileHashes(from, hashFiles)
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
	// The model file comes last: its presence marks the stage done. The
	// start model is read again for it, not held through the steps.
	debug.FreeOSMemory()
	if start, err = loadForTraining(filepath.Join(from, "model.onnx")); err != nil {
		return RLSummary{}, err
	}
	if _, err := hf.WriteTrained(filepath.Join(dir, "model.onnx"), start, res.Weights, res.Adapters, from); err != nil {
		return RLSummary{}, err
	}
	if !p.KeepCheckpoints {
		if err := train.RemoveCheckpoints(ckDir); err != nil {
			return RLSummary{}, fmt.Errorf("rl stage %q: %w", st.Name, err)
		}
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
