package pipeline

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/renameio/v2"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/onnx/hf"
	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/ort"
	"github.com/tagpr/tagpr/onnx/train"
	"github.com/tagpr/tagpr/rewardmodel"
	"github.com/tagpr/tagpr/tokenize"
)

// Chat tokens of the demo's own tokenizer (ChatML, the default format).
const (
	padToken       = "<|endoftext|>"
	turnStartToken = "<|im_start|>"
	turnEndToken   = "<|im_end|>"
)

// DemoConfig is the built-in default job: synthetic data → tokenizer →
// small model → SFT on gold tagged chains → RL stages → evaluation of the
// base, SFT and RL models → report.
type DemoConfig struct {
	Dir    string
	Synth  datasets.SynthConfig
	Vocab  int // tokenizer vocabulary before the tag tokens
	Model  lm.Config
	SFT    SFTConfig
	RL     []RLStage // run in order after SFT on the training split's prompts; none: no RL
	Prompt PromptOptions
	Eval   EvalOptions
	// Session is the runtime every session of the demo runs on (provider,
	// device, threads: ort.Runtime.Options()).
	Session ort.Options
}

// DefaultDemoConfig sizes the demo to finish in minutes on two CPU cores.
func DefaultDemoConfig(dir string) DemoConfig {
	synth := datasets.DefaultSynthConfig()
	synth.Users = 200
	return DemoConfig{
		Dir:   dir,
		Synth: synth,
		Vocab: 1024,
		Model: lm.Config{Arch: lm.Llama, Layers: 4, DModel: 128, Heads: 4, KVHeads: 2, MaxPositions: 512, Seed: 7},
		SFT:   SFTConfig{Steps: 250, Batch: 8, SeqLen: 448, LR: 3e-3, Warmup: 20, WeightDecay: 0.01, Clip: 1, CheckpointEvery: 50, Seed: 11},
		RL:    DefaultDemoRL(),
		// The whole profile (gold chains count over all of it): prompts of the
		// default benchmark take ≤ 300 tokens, prompt + chain ≤ 420, so SFT
		// sees exactly what evaluation and RL see.
		Prompt: PromptOptions{MaxTokens: 320},
		Eval:   EvalOptions{Examples: 48, Batch: 16, MaxNewTokens: 160},
	}
}

// DefaultDemoRL is the demo's RL: a short guided stage (task, tag and PRMU
// rewards; the demo trains its PRMU first), then an exploratory one (task
// reward only).
func DefaultDemoRL() []RLStage {
	guided := RLStage{Name: "guided", Reward: RewardGuided, Weights: rewardmodel.DefaultWeights(),
		Steps: 30, PromptsPerStep: 4, NumGenerations: 4, MaxPromptLength: 320, MaxCompletionLength: 144,
		Temperature: 1, Beta: 0.04, Epsilon: 0.2, LossType: "dapo", ScaleRewards: ScaleGroup, NumIterations: 1,
		LR: 1e-4, Warmup: 2, Clip: 1, CheckpointEvery: 10, Seed: 21}
	exploratory := guided
	exploratory.Name, exploratory.Reward, exploratory.Weights, exploratory.Seed = "exploratory", RewardExploratory, rewardmodel.Weights{}, 22
	return []RLStage{guided, exploratory}
}

// Hooks let the caller show progress; any may be nil.
type Hooks struct {
	Stage   func(name, detail string)
	SFTStep func(train.StepLog, int) // the step and the total
	RLStep  func(RLStepLog, int)     // the step (its Stage names the stage) and the stage's total
}

func (h Hooks) stage(name, format string, a ...any) {
	if h.Stage != nil {
		h.Stage(name, fmt.Sprintf(format, a...))
	}
}

// RunDemo runs (or resumes) the demo in cfg.Dir and returns its report,
// also written to cfg.Dir/report.{md,json}. Every stage's output appears
// atomically, so a rerun after Ctrl-C skips what is done and resumes SFT from
// its last checkpoint.
func RunDemo(ctx context.Context, cfg DemoConfig, h Hooks) (*Report, error) {
	tx := rewardmodel.DefaultTaxonomy()
	data, err := datasets.Synth(cfg.Synth)
	if err != nil {
		return nil, err
	}
	dataDir := filepath.Join(cfg.Dir, "data")
	if !exists(filepath.Join(dataDir, datasets.SynthGen, "test_outputs.json")) {
		h.stage("data", "writing the synthetic benchmark to %s", dataDir)
		if err := data.Write(dataDir); err != nil {
			return nil, err
		}
	}
	tok, err := demoTokenizer(cfg, data, tx, h)
	if err != nil {
		return nil, err
	}
	baseDir, err := demoBaseModel(cfg, tok, h)
	if err != nil {
		return nil, err
	}
	sftDir := filepath.Join(cfg.Dir, "sft")
	sftStart := time.Now()
	sftRes, err := demoSFT(ctx, cfg, data, tok, tx, baseDir, sftDir, h)
	if err != nil {
		return nil, err
	}
	rep := &Report{Title: "tagpr demo: synthetic personalization benchmark", Created: time.Now(),
		Model: filepath.Join(sftDir, "model.onnx"), Dataset: dataDir}
	if sftRes != nil {
		rep.Stages = append(rep.Stages, StageSummary{Name: "sft", Steps: sftRes.Steps, Seconds: time.Since(sftStart).Seconds(),
			Final: map[string]float64{"loss": sftRes.FinalLoss}})
	}
	prmu, prmuStage, err := demoPRMU(ctx, cfg, data, h)
	if err != nil {
		return nil, err
	}
	defer prmu.Close()
	if prmuStage != nil {
		rep.Stages = append(rep.Stages, *prmuStage)
	}
	rl, err := demoRL(ctx, cfg, data, tok, tx, sftDir, prmu, h)
	if err != nil {
		return nil, err
	}
	finalDir := rl.Final()
	for _, s := range rl.summaries {
		rep.Stages = append(rep.Stages, StageSummary{Name: "rl " + s.Stage, Steps: s.Steps, Seconds: s.Seconds, Final: s.final()})
		rep.Notes = append(rep.Notes, rlNote(s))
	}
	models := []string{"base", "sft"}
	dirs := map[string]string{"base": baseDir, "sft": sftDir}
	if len(cfg.RL) > 0 {
		models = append(models, "rl")
		dirs["rl"] = finalDir
		rep.Model = filepath.Join(finalDir, "model.onnx")
	}
	policies := map[string]Policy{}
	for _, name := range models {
		p, err := openPolicy(dirs[name], tok, name, cfg.Session)
		if err != nil {
			return nil, err
		}
		defer p.Model.Close()
		policies[name] = p
	}
	final := models[len(models)-1]
	rep.ModelName = final
	eo := cfg.Eval
	eo.Prompt = cfg.Prompt
	for _, task := range cfg.Synth.Tasks {
		set := data.Set(task, "dev")
		h.stage("eval", "%s: %s models on %d dev examples", task, strings.Join(models, ", "), min(eo.Examples, len(set.Examples)))
		evals := map[string]*Evaluation{}
		var preds []datasets.Prediction
		for _, name := range models {
			ev, err := Evaluate(ctx, policies[name], set.Task, "dev", set.Examples, tx, eo)
			if err != nil {
				return nil, err
			}
			evals[name] = ev
			preds = append(preds, ev.Predictions...)
		}
		r := evals[final].Result
		r.Base = evals["base"].Result.Model
		for _, name := range models[1 : len(models)-1] {
			r.Intermediate = append(r.Intermediate, ModelMetrics{Name: name, Metrics: evals[name].Result.Model})
		}
		rep.Tasks = append(rep.Tasks, r)
		if err := datasets.WriteRows(filepath.Join(cfg.Dir, "predictions", task+"_dev.arrow"), preds, datasets.CreatePredictions); err != nil {
			return nil, err
		}
		note, err := baselineNote(data.Set(task, "train"), set)
		if err != nil {
			return nil, err
		}
		rep.Notes = append(rep.Notes, note)
	}
	note := "base = the same architecture at its random initialization, before SFT"
	if final == "rl" {
		note += "; model = after SFT and the RL stages (" + strings.Join(stageNames(cfg.RL), " → ") + "); the guided stage adds γ·R_PRMU from the PRMU in prmu/ (trained Bradley–Terry on the training users)"
	}
	rep.Notes = append(rep.Notes, note)
	if err := rep.Finalize(); err != nil {
		return nil, err
	}
	if err := rep.Write(cfg.Dir); err != nil {
		return nil, err
	}
	return rep, nil
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// demoTokenizer trains a byte-level BPE on the training split's prompts and
// chains, then registers the tag tokens so every tag is one id.
func demoTokenizer(cfg DemoConfig, data *datasets.SynthData, tx rewardmodel.Taxonomy, h Hooks) (*tokenize.Tokenizer, error) {
	path := filepath.Join(cfg.Dir, "tokenizer", "tokenizer.json")
	if exists(path) {
		return tokenize.Load(path)
	}
	var corpus []string
	for _, task := range cfg.Synth.Tasks {
		set := data.Set(task, "train")
		for i := range set.Examples {
			p := Parts(set.Task, &set.Examples[i], tx, cfg.Prompt, true)
			corpus = append(corpus, p.Instruction, p.Input, p.Answer)
			corpus = append(corpus, p.Profile...)
		}
	}
	h.stage("tokenizer", "training a %d-token byte-level BPE on %d texts", cfg.Vocab, len(corpus))
	tok, err := tokenize.Train(tokenize.TrainOptions{Corpus: corpus, VocabSize: cfg.Vocab, SpecialTokens: []string{padToken, turnStartToken, turnEndToken}})
	if err != nil {
		return nil, fmt.Errorf("demo tokenizer: %w", err)
	}
	names := make([]string, len(tx))
	for i, t := range tx {
		names[i] = t.Name
	}
	tok.RegisterTags(names)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	if err := tok.Save(path); err != nil {
		return nil, err
	}
	return tokenize.Load(path)
}

func tokenID(tok *tokenize.Tokenizer, s string) (int64, error) {
	id, ok := tok.TokenID(s)
	if !ok {
		return 0, fmt.Errorf("tokenizer %s has no %s token", tok.Path(), s)
	}
	return int64(id), nil
}

// demoBaseModel builds the randomly initialized model sized to the tokenizer.
func demoBaseModel(cfg DemoConfig, tok *tokenize.Tokenizer, h Hooks) (string, error) {
	dir := filepath.Join(cfg.Dir, "base")
	if exists(filepath.Join(dir, "model.onnx")) {
		return dir, nil
	}
	mc := cfg.Model
	mc.Vocab = tok.VocabSize()
	eos, err := tokenID(tok, turnEndToken)
	if err != nil {
		return "", err
	}
	pad, err := tokenID(tok, padToken)
	if err != nil {
		return "", err
	}
	mc.EOS, mc.BOS, mc.Pad = eos, eos, &pad
	h.stage("model", "building a %s model: %d layers, d_model %d, vocab %d, %d parameters", mc.Arch, mc.Layers, mc.DModel, mc.Vocab, mc.Defaults().Params())
	if _, err := lm.WriteModelDir(mc, dir, false); err != nil {
		return "", err
	}
	return dir, nil
}

// demoSFT fine-tunes the base model on the gold chains and exports the result
// to sftDir; nil result means it was already done.
func demoSFT(ctx context.Context, cfg DemoConfig, data *datasets.SynthData, tok *tokenize.Tokenizer, tx rewardmodel.Taxonomy, baseDir, sftDir string, h Hooks) (*SFTResult, error) {
	if exists(filepath.Join(sftDir, "model.onnx")) {
		return nil, nil
	}
	seqs, err := demoSFTSequences(cfg, data, tok, tx)
	if err != nil {
		return nil, err
	}
	base, err := ir.Load(filepath.Join(baseDir, "model.onnx"))
	if err != nil {
		return nil, err
	}
	pad, err := tokenID(tok, padToken)
	if err != nil {
		return nil, err
	}
	h.stage("sft", "%d steps of %d×%d tokens on %d gold tagged chains", cfg.SFT.Steps, cfg.SFT.Batch, cfg.SFT.SeqLen, len(seqs))
	var onStep func(train.StepLog)
	if h.SFTStep != nil {
		onStep = func(l train.StepLog) { h.SFTStep(l, cfg.SFT.Steps) }
	}
	sc := cfg.SFT
	sc.Session = cfg.Session
	res, err := TrainSFT(ctx, base, seqs, pad, sc, filepath.Join(sftDir, "checkpoints"), onStep)
	if err != nil {
		return nil, err
	}
	for _, f := range []string{"config.json", "generation_config.json"} {
		if err := copyFile(filepath.Join(baseDir, f), filepath.Join(sftDir, f)); err != nil {
			return nil, err
		}
	}
	// The model file comes last: its presence marks the stage done.
	if _, err := hf.WriteTrained(filepath.Join(sftDir, "model.onnx"), base, res.Weights, nil, baseDir); err != nil {
		return nil, err
	}
	return res, nil
}

// demoSFTSequences encodes the training split's gold chains for SFT.
func demoSFTSequences(cfg DemoConfig, data *datasets.SynthData, tok *tokenize.Tokenizer, tx rewardmodel.Taxonomy) ([]Sequence, error) {
	var seqs []Sequence
	for _, task := range cfg.Synth.Tasks {
		set := data.Set(task, "train")
		for i := range set.Examples {
			s, err := EncodeSFT(tok, set.Task, &set.Examples[i], tx, cfg.Prompt, cfg.SFT.SeqLen)
			if err != nil {
				return nil, err
			}
			seqs = append(seqs, s)
		}
	}
	return seqs, nil
}

// EncodeSFT encodes one example as prompt + gold chain within maxLen
// tokens; profile items are dropped to fit, never the answer.
func EncodeSFT(tok *tokenize.Tokenizer, task *datasets.Task, ex *datasets.Example, tx rewardmodel.Taxonomy, o PromptOptions, maxLen int) (Sequence, error) {
	enc, err := tok.EncodePrompt(Parts(task, ex, tx, o, true), tokenize.DefaultPromptLayout, maxLen)
	if err != nil {
		return Sequence{}, fmt.Errorf("encode %s for SFT: %w", ex.ID, err)
	}
	prompt := len(enc.IDs)
	for i, m := range enc.AssistantMask {
		if m {
			prompt = i
			break
		}
	}
	return Sequence{IDs: toInt64(enc.IDs), PromptLen: prompt}, nil
}

func openPolicy(dir string, tok *tokenize.Tokenizer, name string, so ort.Options) (Policy, error) {
	m, err := lm.Load(dir, lm.LoadOptions{Session: so})
	if err != nil {
		return Policy{}, err
	}
	eos, err := tokenID(tok, turnEndToken)
	if err != nil {
		m.Close()
		return Policy{}, err
	}
	return Policy{Model: m, Tok: tok, Name: name, EOS: []int64{eos}}, nil
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := renameio.WriteFile(dst, b, 0o644); err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return nil
}

// demoPRMU loads the reward model from cfg.Dir/prmu, or trains it on the
// training users' pairs (seconds) and saves it there. The stage summary is
// nil when it was loaded.
func demoPRMU(ctx context.Context, cfg DemoConfig, data *datasets.SynthData, h Hooks) (*rewardmodel.PRMU, *StageSummary, error) {
	dir := filepath.Join(cfg.Dir, "prmu")
	// One pool thread that does not spin: PRMU scores between generations.
	opts := cfg.Session
	opts.IntraOpThreads, opts.ConfigEntries = 1, map[string]string{"session.intra_op.allow_spinning": "0"}
	if exists(filepath.Join(dir, rewardmodel.PRMUConfigFile)) {
		p, err := rewardmodel.LoadPRMU(dir, opts)
		return p, nil, err
	}
	h.stage("prmu", "training the reward model on the training users' pairs")
	start := time.Now()
	p, res, accs, err := rewardmodel.TrainSynthPRMU(ctx, data, rewardmodel.PRMURecipe{TopK: cfg.Prompt.TopK,
		Config: rewardmodel.PRMUConfig{Seed: 31}, Train: rewardmodel.PRMUTrainOptions{Steps: 1000, Seed: 31, Session: opts}})
	if err != nil {
		return nil, nil, err
	}
	final := map[string]float64{"loss": p.Info.FinalLoss, "dev_pair_accuracy": p.Info.DevAccuracy}
	for _, a := range accs {
		h.stage("prmu", "%s dev pair accuracy %.3f (%d pairs)", a.Task, a.Accuracy, a.Pairs)
		final["dev_pair_accuracy_"+a.Task] = a.Accuracy
	}
	if err := p.Save(dir); err != nil {
		p.Close()
		return nil, nil, err
	}
	return p, &StageSummary{Name: "prmu", Steps: len(res.Losses), Seconds: time.Since(start).Seconds(), Final: final}, nil
}

// demoRLRun is the demo's RL pipeline and the summaries of its stages.
type demoRLRun struct {
	*RLPipeline
	summaries []RLSummary
}

// demoRL runs the RL stages from the SFT model on the training split's
// prompts (all tasks mixed), each stage in cfg.Dir/rl/<name>.
func demoRL(ctx context.Context, cfg DemoConfig, data *datasets.SynthData, tok *tokenize.Tokenizer, tx rewardmodel.Taxonomy, sftDir string, prmu PRMUScorer, h Hooks) (*demoRLRun, error) {
	eos, err := tokenID(tok, turnEndToken)
	if err != nil {
		return nil, err
	}
	pad, err := tokenID(tok, padToken)
	if err != nil {
		return nil, err
	}
	p := &RLPipeline{Stages: cfg.RL, Start: sftDir, Session: cfg.Session, Dir: filepath.Join(cfg.Dir, "rl"), EOS: []int64{eos}, Pad: pad,
		Detokenize: func(ids []int64) (string, error) { return tok.Decode(toInt(ids), true) },
		Prompts: func(st RLStage) ([]RLPrompt, error) {
			o := cfg.Prompt
			o.MaxTokens = st.MaxPromptLength
			var out []RLPrompt
			for _, task := range cfg.Synth.Tasks {
				set := data.Set(task, "train")
				for i := range set.Examples {
					p, err := EncodeRLPrompt(tok, set.Task, &set.Examples[i], tx, o)
					if err != nil {
						return nil, err
					}
					out = append(out, p)
				}
			}
			return out, nil
		},
		Scorer: func(st RLStage) (RLScorer, error) {
			return &TagPRReward{Mode: st.Reward, Weights: st.Weights, Taxonomy: tx, PRMU: prmu}, nil
		},
		Hooks: RLHooks{Log: func(stage, msg string) { h.stage("rl "+stage, "%s", msg) }, Step: h.RLStep},
	}
	if len(cfg.RL) > 0 {
		h.stage("rl", "stages %s from the SFT model, in %s", strings.Join(stageNames(cfg.RL), " → "), p.Dir)
	}
	sums, err := p.Run(ctx)
	if err != nil {
		return nil, err
	}
	return &demoRLRun{RLPipeline: p, summaries: sums}, nil
}

// EncodeRLPrompt encodes an example as an RL prompt (generation prompt
// within o.MaxTokens) with its gold and profile texts for the rewards.
func EncodeRLPrompt(tok *tokenize.Tokenizer, task *datasets.Task, ex *datasets.Example, tx rewardmodel.Taxonomy, o PromptOptions) (RLPrompt, error) {
	parts := Parts(task, ex, tx, o, false)
	enc, err := tok.EncodePrompt(parts, tokenize.DefaultPromptLayout, o.MaxTokens)
	if err != nil {
		return RLPrompt{}, fmt.Errorf("encode %s for RL: %w", ex.ID, err)
	}
	return RLPrompt{ID: ex.ID, IDs: toInt64(enc.IDs), Kind: RewardKind(task), Gold: ex.Output, Profile: parts.Profile}, nil
}

func stageNames(st []RLStage) []string {
	out := make([]string, len(st))
	for i, s := range st {
		out[i] = s.Name
	}
	return out
}

// rlNote is a stage's reward curve and time split for the report.
func rlNote(s RLSummary) string {
	curve := make([]string, len(s.Curve))
	for i, v := range s.Curve {
		curve[i] = fmt.Sprintf("%.3f", v)
	}
	t := s.Time
	return fmt.Sprintf("rl %s (%s): mean training reward over the stage, in %d runs of steps: %s; time: generate %.0fs, score %.0fs, reference %.0fs, forward-backward %.0fs, optimizer %.0fs",
		s.Stage, s.Scorer, len(s.Curve), strings.Join(curve, " → "), t.Generate, t.Score, t.Reference, t.ForwardBackward, t.Optimizer)
}
