package pipeline

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/lock"
	"github.com/tagpr/tagpr/onnx/ort"
	"github.com/tagpr/tagpr/onnx/train"
	"github.com/tagpr/tagpr/rewardmodel"
	"github.com/tagpr/tagpr/tokenize"
)

// Stages of a run, in order; RL stages run as "rl:NAME".
const (
	StageChains  = "chains"
	StageSFT     = "sft"
	StagePRMU    = "prmu"
	StageRL      = "rl"
	StagePredict = "predict"
	StageEval    = "eval"
	StageReport  = "report"
)

// note reports a stage's one-line message.
func note(h train.ProgressFunc, task, format string, a ...any) {
	h.Report(train.Progress{Task: task, Note: fmt.Sprintf(format, a...)})
}

// noteDone says that a stage found finished is skipped, where its output
// is and how to redo it (docs/run.md: delete the folder; the stages after
// it were made from it).
func (r *runEnv) noteDone(task, what, dir string, later bool) {
	after := ""
	if later {
		after = " (and the stages after it)"
	}
	note(r.h, task, "%s is already done in %s, so it is skipped; to redo it, delete that folder%s and rerun", what, dir, after)
}

// RunOptions choose what Run does.
type RunOptions struct {
	// Only runs these stages ("chains", "sft", "prmu", "rl:NAME", "predict",
	// "eval", "report"), each needing its inputs done; empty: every stage
	// in order, finished ones skipped, an unfinished one resumed.
	Only []string
	// Progress hears of every stage's steps (Task "sft", "prmu", "rl NAME",
	// "chains") and notes.
	Progress train.ProgressFunc
	// Shard, with Count > 1, runs the predict stage alone as one worker of
	// several (run_shard.go); MergeShards assembles their parts.
	Shard       datasets.Shard
	MergeShards bool
}

// Plan lists a config's stages in run order.
func (c *RunConfig) Plan() []string {
	var out []string
	if !c.Stages.Chains.Skip {
		out = append(out, StageChains)
	}
	if !c.Stages.SFT.Skip {
		out = append(out, StageSFT)
	}
	if !c.Stages.PRMU.Skip {
		out = append(out, StagePRMU)
	}
	for _, st := range c.Stages.RL {
		out = append(out, StageRL+":"+st.Name)
	}
	return append(out, StagePredict, StageEval, StageReport)
}

// Run runs (or resumes) the recipe as cfg describes it, in cfg.Out. Every
// check that needs no work (settings, input files and their pins, the
// settings finished stages were made with) happens before any stage starts.
// It returns the report when the report stage ran.
func Run(ctx context.Context, cfg RunConfig, o RunOptions) (*Report, error) {
	r, err := openRun(cfg, o.Progress)
	if err != nil {
		return nil, err
	}
	defer r.close()
	plan := cfg.Plan()
	only := map[string]bool{}
	for _, s := range o.Only {
		if !contains(plan, s) {
			return nil, fmt.Errorf("stage %q is not in this config's plan (%s)", s, strings.Join(plan, ", "))
		}
		only[s] = true
	}
	if err := r.checkStamps(); err != nil {
		return nil, err
	}
	// A stage run alone is refused before the data, tokenizer and base
	// model are built when a stage it reads is not done (what the stages
	// run here make is checked again before each one starts).
	ahead := map[string]bool{}
	for _, s := range plan {
		if only[s] {
			if err := r.requireInputs(s, ahead); err != nil {
				return nil, err
			}
			ahead[s] = true
		}
	}
	// One run per folder: a second process is refused, naming the first
	// (predict's shard workers share it, see lockRun).
	lk, err := r.lockRun(ctx, o)
	if err != nil {
		return nil, err
	}
	defer lk.Unlock()
	if err := r.prepare(ctx); err != nil {
		return nil, err
	}
	if r.sharded() {
		lk.Unlock()
	}
	var rep *Report
	for _, s := range plan {
		if len(only) > 0 && !only[s] {
			continue
		}
		if len(only) > 0 {
			if err := r.requireInputs(s, nil); err != nil {
				return nil, err
			}
		}
		// Ctrl-C during a stage that does not hear it (data, gold chains,
		// eval) stops the run before the next one starts.
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if rep, err = r.runStage(ctx, s); err != nil {
			return nil, err
		}
	}
	if only[StageEval] && !only[StageReport] {
		// The report files are the report stage's: eval alone leaves them
		// as they were.
		note(r.h, StageEval, "%s rebuilt; %s in %s are rebuilt from it by the report stage: run `tagpr report` with this config",
			r.dir("eval"), strings.Join(ReportFiles, ", "), r.cfg.Out)
	}
	return rep, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// runEnv is one run's resolved inputs, shared by its stages.
type runEnv struct {
	cfg     RunConfig
	h       train.ProgressFunc
	tx      rewardmodel.Taxonomy
	txHash  string
	sources []dataSource
	sess    ort.Options
	prompt  PromptOptions

	// Set by prepare.
	data *RunData
	tok  *tokenize.Tokenizer
	base string // the policy before training
	eos  []int64
	pad  int64

	flat    map[string]any    // the config, flattened
	hashes  map[string]string // input files' sha256 (fileHashes)
	policy  []string          // policyFiles, found once
	teacher []string          // teacherFiles, found once
	encoder []string          // encoderFiles, found once
	prmu    *rewardmodel.PRMU
	events  *runEvents // TensorBoard files of the training stages

	shard       datasets.Shard // predict's worker (run_shard.go)
	mergeShards bool

	olderNoted  map[string]bool // stage folders noted as recorded by an older tagpr (runstamp.go)
	chatLlama32 *bool           // the policy's chats are Llama 3.2's (llama32Chat)
}

// openRun validates cfg and checks every input file before any work.
func openRun(cfg RunConfig, h train.ProgressFunc) (*runEnv, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	r := &runEnv{cfg: cfg, sess: cfg.Runtime.Session(), prompt: cfg.Retrieval.promptOptions()}
	r.events = &runEvents{out: cfg.Out, warn: func(msg string) { note(h, "tensorboard", "%s", msg) }}
	r.h = r.events.wrap(h)
	var err error
	if r.tx, err = LoadTaxonomy(cfg.Taxonomy); err != nil {
		return nil, err
	}
	if cfg.Taxonomy != "" {
		if err := lock.VerifyIfPinned(cfg.Taxonomy); err != nil {
			return nil, fmt.Errorf("taxonomy: %w", err)
		}
		r.txHash, _, _ = lock.HashFile(cfg.Taxonomy)
	}
	if r.sources, err = dataSources(cfg.Data); err != nil {
		return nil, err
	}
	if err := r.checkPolicyFiles(); err != nil {
		return nil, err
	}
	if !cfg.Stages.Chains.Skip && cfg.Teacher.Kind == TeacherOpenAI && cfg.Teacher.APIKeyEnv != "" && os.Getenv(cfg.Teacher.APIKeyEnv) == "" {
		return nil, fmt.Errorf("teacher.api_key_env: the environment variable %s (the API key) is empty or unset", cfg.Teacher.APIKeyEnv)
	}
	r.flat = map[string]any{}
	flatten("", ConfigMap(cfg), r.flat)
	return r, nil
}

// checkPolicyFiles checks that the model, tokenizer and teacher files the
// config names exist and match their pins.
func (r *runEnv) checkPolicyFiles() error {
	c := &r.cfg
	var files []struct{ key, path string }
	add := func(key, path string, required bool) error {
		if _, err := os.Stat(path); err != nil {
			if required {
				return fmt.Errorf("%s: %w", key, err)
			}
			return nil
		}
		files = append(files, struct{ key, path string }{key, path})
		return nil
	}
	if c.Policy.Dir != "" {
		files, err := r.policyFiles()
		if err != nil {
			return fmt.Errorf("policy.dir: %w", err)
		}
		for _, f := range files {
			if err := add("policy.dir", f, false); err != nil {
				return err
			}
		}
	}
	if tp := r.tokenizerPath(); tp != "" {
		if err := add("tokenizer.path", tp, true); err != nil {
			if c.Tokenizer.Path == "" {
				return fmt.Errorf("policy.dir: %s has no tokenizer.json (set tokenizer.path%s): %w", c.Policy.Dir, tokenize.SentencepieceHint(c.Policy.Dir), err)
			}
			return err
		}
		for _, f := range tokenize.Files(tp)[1:] { // tokenizer_config.json, chat_template.jinja when there
			if err := add("tokenizer.path", f, false); err != nil {
				return err
			}
		}
	}
	if e := c.Stages.PRMU.Encoder; e != nil && !c.Stages.PRMU.Skip {
		if _, err := r.encoderFiles(); err != nil {
			return fmt.Errorf("stages.prmu.encoder.dir: %w", err)
		}
	}
	if !c.Stages.Chains.Skip && c.Teacher.Kind == TeacherLocal {
		files, err := r.teacherFiles()
		if err != nil {
			return fmt.Errorf("teacher.dir: %w", err)
		}
		for _, f := range append(files, filepath.Join(c.Teacher.Dir, "tokenizer.json")) {
			if err := add("teacher.dir", f, true); err != nil {
				return err
			}
		}
	}
	for _, f := range files {
		if err := lock.VerifyIfPinned(f.path); err != nil {
			return fmt.Errorf("%s: %w", f.key, err)
		}
	}
	return nil
}

// tokenizerPath is the tokenizer.json the config names ("" when trained).
func (r *runEnv) tokenizerPath() string {
	switch {
	case r.cfg.Tokenizer.Path != "":
		return r.cfg.Tokenizer.Path
	case r.cfg.Policy.Dir != "":
		return filepath.Join(r.cfg.Policy.Dir, "tokenizer.json")
	}
	return ""
}

func (r *runEnv) close() {
	if r.prmu != nil {
		r.prmu.Close()
	}
	r.events.close()
}

// Folders of the run.
func (r *runEnv) dir(parts ...string) string {
	return filepath.Join(append([]string{r.cfg.Out}, parts...)...)
}

// settings selects the flattened config keys under the given prefixes.
func (r *runEnv) settings(prefixes ...string) map[string]any {
	out := map[string]any{}
	for k, v := range r.flat {
		for _, p := range prefixes {
			if k == p || strings.HasPrefix(k, p+".") {
				out[k] = v
			}
		}
	}
	return out
}

// merge adds b's entries to a.
func merge(a map[string]any, bs ...map[string]any) map[string]any {
	for _, b := range bs {
		for k, v := range b {
			a[k] = v
		}
	}
	return a
}

// Settings each stage's output depends on (upstream stages' included), for
// its stamp. Runtime, logging and checkpoint cadence are left out: they do
// not change results a resume must match.
func (r *runEnv) dataSettings() map[string]any {
	s := r.settings("data")
	var files []string
	for _, src := range r.sources {
		for _, m := range []map[string]string{src.questions, src.outputs, src.examples} {
			for _, p := range m {
				files = append(files, p)
			}
		}
	}
	s["data.files"] = fileFacts(files...)
	s["data.sha256"] = r.fileHashes(files...)
	return s
}

func (r *runEnv) promptSettings() map[string]any {
	return merge(r.settings("retrieval"), map[string]any{"taxonomy": r.cfg.Taxonomy, "taxonomy.sha256": r.txHash})
}

func (r *runEnv) policySettings() map[string]any {
	s := merge(r.dataSettings(), r.promptSettings(), r.settings("policy", "tokenizer"))
	if tp := r.tokenizerPath(); tp != "" {
		s["tokenizer.files"] = fileFacts(tokenize.Files(tp)...)
		s["tokenizer.sha256"] = r.fileHashes(tokenize.Files(tp)...)
	}
	if r.cfg.Policy.Dir != "" {
		if files, err := r.policyFiles(); err == nil && len(files) > 0 {
			s["policy.files"] = fileFacts(files[0])
			s["policy.sha256"] = r.fileHashes(files...)
		}
	}
	if r.llama32Chat() { // its prompts' date is fixed (revision.llama32_date)
		withRevision(s, revisionLlama32Date)
	}
	return s
}

// runSeed adds the run's seed to a stage's settings when the stage derives
// its own from it (own left at 0): a changed seed changes what the stage
// makes. Runs recorded at the default seed before it was stamped resume
// as before.
func (r *runEnv) runSeed(s map[string]any, own uint64) {
	if own == 0 && r.cfg.Seed != DefaultRunConfig().Seed {
		s["seed"] = r.cfg.Seed
	}
}

func (r *runEnv) chainsSettings() map[string]any {
	s := merge(r.dataSettings(), r.promptSettings(), r.settings("teacher", "stages.chains"))
	for _, k := range []string{"teacher.timeout", "teacher.max_retries", "teacher.concurrency", "teacher.api_key_env", "stages.chains.batch"} {
		delete(s, k)
	}
	if u, ok := s["teacher.base_url"].(string); ok {
		s["teacher.base_url"] = RedactURL(u) // every later stage's run.json holds these
	}
	if r.cfg.Teacher.Kind == TeacherLocal { // the one teacher that samples with the seed
		r.runSeed(s, r.cfg.Teacher.Seed)
		// By content, as the policy: another model exported into the same
		// folder is another teacher.
		if files, err := r.teacherFiles(); err == nil {
			s["teacher.sha256"] = r.fileHashes(append(files, filepath.Join(r.cfg.Teacher.Dir, "tokenizer.json"))...)
		}
	}
	return withRevision(s, revisionRTag) // the filter reads R_tag's constraints
}

func (r *runEnv) sftSettings() map[string]any {
	s := merge(r.policySettings(), r.chainsSettings(), r.settings("stages.sft"))
	delete(s, "stages.sft.checkpoint_every")
	dropUnsetLoRA(s, "stages.sft", r.cfg.Stages.SFT.LoRASettings)
	if !r.cfg.Stages.SFT.GradientCheckpointing {
		delete(s, "stages.sft.gradient_checkpointing") // runs recorded before the key resume as before
	}
	r.runSeed(s, r.cfg.Stages.SFT.Seed)
	if len(r.cfg.Stages.SFT.TaskWeights) == 0 {
		// Runs recorded before task weights existed resume as before.
		delete(s, "stages.sft.task_weights")
	}
	return s
}

func (r *runEnv) prmuSettings() map[string]any {
	s := merge(r.dataSettings(), r.promptSettings(), r.settings("stages.prmu"))
	r.runSeed(s, r.cfg.Stages.PRMU.Seed)
	if e := r.cfg.Stages.PRMU.Encoder; e != nil {
		// The encoder's files, as policy.files: another export in the same
		// folder is a changed setting, not the encoder the PRMU was trained with.
		files, _ := r.encoderFiles()
		s["stages.prmu.encoder.files"] = fileFacts(files...)
		s["stages.prmu.encoder.sha256"] = r.fileHashes(files...)
	}
	if r.cfg.Stages.PRMU.PolicySamples > 0 {
		merge(s, r.sftSettings())
	}
	return s
}

// rlSettings are stage name's, which depend on every stage before it.
func (r *runEnv) rlSettings(name string) map[string]any {
	s := merge(map[string]any{}, r.policySettings())
	if !r.cfg.Stages.SFT.Skip {
		merge(s, r.sftSettings())
	}
	if !r.cfg.Stages.PRMU.Skip {
		merge(s, r.prmuSettings())
	}
	for _, st := range RLChain(r.cfg.Stages.RL, name) {
		key := "stages.rl." + st.Name
		merge(s, r.settings(key))
		delete(s, key+".checkpoint_every")
		r.runSeed(s, st.Seed)
		// Runs recorded before these knobs existed resume as before.
		if len(st.TaskWeights) == 0 {
			delete(s, key+".task_weights")
		}
		if st.DynamicSamplingRounds == 0 {
			delete(s, key+".dynamic_sampling_rounds")
		}
		dropUnsetLoRA(s, key, st.LoRASettings)
		if !st.GradientCheckpointing {
			delete(s, key+".gradient_checkpointing")
		}
	}
	if r.cfg.Runtime.HalfGeneration() { // float16 rollouts change the stage; float32 keeps older stamps valid
		s["runtime.generation_dtype"] = "float16"
	}
	return withRevision(s, revisionRTag) // every stage's reward may read R_tag (the guided preset does)
}

// modelSettings are what the named model depends on.
func (r *runEnv) modelSettings(model string) map[string]any {
	switch {
	case model == ModelBase:
		return r.policySettings()
	case model == ModelSFT:
		return r.sftSettings()
	default:
		return r.rlSettings(r.rlStageOf(model))
	}
}

func (r *runEnv) predictSettings(model string) map[string]any {
	s := merge(r.modelSettings(model), r.promptSettings(), r.settings("stages.predict"))
	delete(s, "stages.predict.models")
	delete(s, "stages.predict.splits")
	if r.cfg.Runtime.HalfGeneration() { // float16 changes the predictions; float32 keeps older stamps valid
		s["runtime.generation_dtype"] = "float16"
	}
	return s
}

// rlStageOf is the RL stage a model name (rl or rl:NAME) stands for.
func (r *runEnv) rlStageOf(model string) string {
	if model == ModelRL {
		return r.cfg.Stages.RL[len(r.cfg.Stages.RL)-1].Name
	}
	return strings.TrimPrefix(model, ModelRL+":")
}

// modelDir is where the named model lives.
func (r *runEnv) modelDir(model string) string {
	switch model {
	case ModelBase:
		return r.base
	case ModelSFT:
		return r.dir("sft")
	}
	return r.dir("rl", r.rlStageOf(model))
}

// checkStamps compares the settings of every stage folder that exists with
// the config's, so a changed setting is refused before any work.
func (r *runEnv) checkStamps() error {
	type check struct {
		dir, stage string
		settings   func() map[string]any
		done       string
	}
	checks := []check{{r.dir("data"), "data", r.dataSettings, "done.json"}}
	if r.cfg.Tokenizer.Train != nil {
		checks = append(checks, check{r.dir("tokenizer"), "tokenizer", r.policySettings, "tokenizer.json"})
	}
	if r.cfg.Policy.Builtin != nil {
		checks = append(checks, check{r.dir("base"), "base", r.policySettings, "model.onnx"})
	}
	checks = append(checks, check{r.dir("chains"), StageChains, r.chainsSettings, "summary.json"},
		check{r.dir("sft"), StageSFT, r.sftSettings, "model.onnx"},
		check{r.dir("prmu"), StagePRMU, r.prmuSettings, "summary.json"})
	for _, st := range r.cfg.Stages.RL {
		name := st.Name
		checks = append(checks, check{r.dir("rl", name), StageRL + ":" + name, func() map[string]any { return r.rlSettings(name) }, "model.onnx"})
	}
	for _, m := range r.cfg.predictModels() {
		m := m
		checks = append(checks, check{r.predictDir(m), StagePredict + " " + m, func() map[string]any { return r.predictSettings(m) }, ""})
	}
	for _, c := range checks {
		if _, err := os.Stat(filepath.Join(c.dir, train.SettingsFile)); err != nil {
			continue // not started: stamped when it starts
		}
		if c.stage == "data" && !exists(filepath.Join(c.dir, c.done)) {
			continue // unfinished (an older tagpr's): prepareData rebuilds it whole
		}
		if err := r.checkStamp(c.dir, c.stage, c.settings(), c.done != "" && exists(filepath.Join(c.dir, c.done))); err != nil {
			return err
		}
	}
	return nil
}

// prepare builds (or reloads) what every stage reads: the examples, the
// tokenizer and the base model.
// Ctrl-C (ctx) is heard between these steps and between the questions of
// the data step's LaMP imports; the other steps do not check it.
func (r *runEnv) prepare(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := r.prepareData(ctx); err != nil {
		return err
	}
	for _, td := range r.data.Tasks {
		if len(td.Splits["train"]) == 0 {
			return fmt.Errorf("data: task %s has no training examples", td.Task.Name)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := r.prepareTokenizer(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := r.prepareBase(); err != nil {
		return err
	}
	if err := r.checkLoRATargets(); err != nil {
		return err
	}
	return r.checkPromptsFit(ctx)
}

// checkPromptsFit refuses, before any stage runs, examples whose prompt
// exceeds its budget even without profile items (the instruction and the
// question are never cut, only profile items are dropped): the predict
// stage's (retrieval.max_prompt_tokens, on stages.predict.splits) and each
// RL stage's (its max_prompt_length, on the training examples with golds).
// Those stages failed on the first such example, after the stages before
// them had run, and raising the budget then changes settings they stamped.
func (r *runEnv) checkPromptsFit(ctx context.Context) error {
	if r.tok == nil {
		return nil
	}
	type budget struct {
		key    string
		tokens int
		splits []string
		golds  bool
	}
	// A prompt of the full budget must leave room for the completion in
	// the policy's positions, or generation fails on the longest prompts.
	positions := 0
	if hc, err := lm.ReadHFConfig(filepath.Join(r.base, "config.json")); err == nil && hc != nil {
		positions = max(hc.MaxPositions, hc.NPositions)
	}
	room := func(prompt int, promptKey string, completion int, completionKey string) error {
		if positions > 0 && prompt+completion > positions {
			return fmt.Errorf("prompts: %s %d + %s %d exceed the policy's %d positions (max_position_embeddings in %s): a prompt of the full budget could not be completed; lower %s to %d or less",
				promptKey, prompt, completionKey, completion, positions, filepath.Join(r.base, "config.json"), promptKey, positions-completion)
		}
		return nil
	}
	var budgets []budget
	if r.prompt.MaxTokens > 0 {
		splits := r.cfg.Stages.Predict.Splits
		if len(splits) == 0 {
			splits = []string{"dev"}
		}
		if err := room(r.prompt.MaxTokens, "retrieval.max_prompt_tokens", r.cfg.Stages.Predict.MaxNewTokens, "stages.predict.max_new_tokens"); err != nil {
			return err
		}
		budgets = append(budgets, budget{"retrieval.max_prompt_tokens (the predict stage's prompts)", r.prompt.MaxTokens, splits, false})
	}
	for i, st := range r.cfg.Stages.RL {
		if st.MaxPromptLength > 0 {
			key := fmt.Sprintf("stages.rl[%d] (%s) max_prompt_length", i, st.Name)
			if err := room(st.MaxPromptLength, key, st.MaxCompletionLength, "max_completion_length"); err != nil {
				return err
			}
			budgets = append(budgets, budget{key, st.MaxPromptLength, []string{"train"}, true})
		}
	}
	if len(budgets) == 0 {
		return nil
	}
	// Each example's bare prompt (instruction and question) is encoded once.
	bare := map[*datasets.Example]int{}
	length := func(td *TaskData, ex *datasets.Example) (int, error) {
		if n, ok := bare[ex]; ok {
			return n, nil
		}
		enc, err := r.tok.EncodePrompt(tokenize.PromptParts{Instruction: Instruction(td.Task, r.tx), Input: ex.Input}, tokenize.DefaultPromptLayout, 0)
		if err != nil {
			return 0, fmt.Errorf("encode %s %s: %w", td.Task.Name, ex.ID, err)
		}
		bare[ex] = len(enc.IDs)
		return len(enc.IDs), nil
	}
	for _, b := range budgets {
		over, longest, first, firstLen := 0, 0, "", 0
		for _, td := range r.data.Tasks {
			for _, split := range b.splits {
				exs := td.Splits[split]
				if n := r.cfg.Stages.Predict.Examples; !b.golds && n > 0 && n < len(exs) {
					exs = exs[:n]
				}
				for i := range exs {
					if b.golds && !exs[i].HasOutput {
						continue
					}
					if err := ctx.Err(); err != nil {
						return err
					}
					n, err := length(&td, &exs[i])
					if err != nil {
						return err
					}
					if n > b.tokens {
						if over == 0 {
							first, firstLen = fmt.Sprintf("%s %s example %s", td.Task.Name, split, exs[i].ID), n
						}
						over++
						longest = max(longest, n)
					}
				}
			}
		}
		if over > 0 {
			return fmt.Errorf("prompts: %d examples do not fit %s %d even without profile items (e.g. the %s: %d tokens); tagpr never cuts the instruction or the question: raise it to at least %d, or leave those examples out of the data",
				over, b.key, b.tokens, first, firstLen, longest)
		}
	}
	return nil
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// runStage runs (or skips, when finished) one stage of the plan.
func (r *runEnv) runStage(ctx context.Context, s string) (*Report, error) {
	switch {
	case s == StageChains:
		return nil, r.chains(ctx)
	case s == StageSFT:
		return nil, r.sft(ctx)
	case s == StagePRMU:
		return nil, r.trainPRMU(ctx)
	case strings.HasPrefix(s, StageRL+":"):
		return nil, r.rl(ctx, strings.TrimPrefix(s, StageRL+":"))
	case s == StagePredict:
		return nil, r.predict(ctx)
	case s == StageEval:
		return nil, r.eval()
	case s == StageReport:
		return r.report()
	}
	return nil, fmt.Errorf("unknown stage %q", s)
}

// requireInputs refuses to run stage s alone before the stages it reads;
// the stages in ahead (run before s in this run) count as done. Before
// prepare (r.data nil) it checks what needs no data.
func (r *runEnv) requireInputs(s string, ahead map[string]bool) error {
	need := func(stage, marker string) error {
		if ahead[stage] || exists(marker) {
			return nil
		}
		cmd := stage
		if strings.HasPrefix(stage, StageRL+":") {
			cmd = "rl --stage " + strings.TrimPrefix(stage, StageRL+":")
		}
		return fmt.Errorf("stage %s needs the %s stage's output (%s is missing): run `tagpr %s` with this config first, or `tagpr run`", s, stage, marker, cmd)
	}
	switch {
	case s == StageSFT:
		return need(StageChains, r.dir("chains", "summary.json"))
	case s == StagePRMU && r.cfg.Stages.PRMU.PolicySamples > 0:
		return need(StageSFT, r.dir("sft", "model.onnx"))
	case strings.HasPrefix(s, StageRL+":"):
		name := strings.TrimPrefix(s, StageRL+":")
		if !r.cfg.Stages.SFT.Skip {
			if err := need(StageSFT, r.dir("sft", "model.onnx")); err != nil {
				return err
			}
		}
		if !r.cfg.Stages.PRMU.Skip {
			if err := need(StagePRMU, r.dir("prmu", "summary.json")); err != nil {
				return err
			}
		}
		for _, st := range r.cfg.Stages.RL {
			if st.Name == name {
				break
			}
			if err := need(StageRL+":"+st.Name, r.dir("rl", st.Name, "model.onnx")); err != nil {
				return err
			}
		}
	case s == StagePredict:
		for _, m := range r.cfg.predictModels() {
			if m == ModelBase {
				continue
			}
			stage := StageSFT
			if m != ModelSFT {
				stage = StageRL + ":" + r.rlStageOf(m)
			}
			if err := need(stage, filepath.Join(r.modelDir(m), "model.onnx")); err != nil {
				return err
			}
		}
	case s == StageEval || s == StageReport:
		for _, m := range r.cfg.predictModels() {
			if err := need(StagePredict, filepath.Join(r.predictDir(m), "done.json")); err != nil {
				return err
			}
		}
		if s == StageEval || r.data == nil {
			return nil
		}
		// The report reads the eval files: without them it would list no
		// results (and name a final model that may not exist) yet exit 0.
		for _, td := range r.data.Tasks {
			for _, split := range r.evalSplits() {
				if exs := td.Splits[split]; len(exs) > 0 && exs[0].HasOutput {
					if err := need(StageEval, r.evalFile(td.Task.Name, split)); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}
