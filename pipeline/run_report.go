package pipeline

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/internal/buildinfo"
	"github.com/tagpr/tagpr/onnx/lock"
	"github.com/tagpr/tagpr/onnx/train"
	"github.com/tagpr/tagpr/pipeline/grpo"
	"github.com/tagpr/tagpr/rewardmodel"
)

// evalFile holds one task and split's scores of every predicted model.
func (r *runEnv) evalFile(task, split string) string {
	return r.dir("eval", task+"_"+split+".json")
}

// baselineFile holds a rule baseline's answers on the examples it was
// scored on, in the predictions table's schema, so its scores can be
// checked example by example as a model's can.
func (r *runEnv) baselineFile(rule, task, split string) string {
	return r.dir("eval", "baselines", rule, task+"_"+split+".parquet")
}

// evalModel is a predicted model under its report name (rl is reported
// as the last stage's rl:NAME) with the model name its predictions are
// filed under.
type evalModel struct{ name, model string }

// evalModels are the predicted models in training order (base, SFT, the
// RL stages in the config's order), each once, whatever order
// stages.predict.models lists them in: the differences compare a model
// without a from (the base) with the one before it.
func (r *runEnv) evalModels() []evalModel {
	var out []evalModel
	seen := map[string]bool{}
	for _, m := range r.cfg.predictModels() {
		name := m
		if m == ModelRL {
			name = ModelRL + ":" + r.rlStageOf(m)
		}
		if !seen[name] {
			seen[name] = true
			out = append(out, evalModel{name, m})
		}
	}
	rank := func(name string) int {
		switch name {
		case ModelBase:
			return 0
		case ModelSFT:
			return 1
		}
		stage := r.rlStageOf(name)
		for i, st := range r.cfg.Stages.RL {
			if st.Name == stage {
				return 2 + i
			}
		}
		return 2 + len(r.cfg.Stages.RL)
	}
	sort.SliceStable(out, func(i, j int) bool { return rank(out[i].name) < rank(out[j].name) })
	return out
}

// trainedFrom is the evaluated model that the named one was trained from,
// which the report compares it with: up an RL stage's chain of from, the
// nearest evaluated stage, else SFT, else the base; "" for the base.
func (r *runEnv) trainedFrom(name string, evaluated map[string]bool) string {
	var up []string // nearest first
	switch name {
	case ModelBase:
		return ""
	case ModelSFT:
		up = []string{ModelBase}
	default:
		chain := RLChain(r.cfg.Stages.RL, r.rlStageOf(name))
		for i := len(chain) - 2; i >= 0; i-- {
			up = append(up, ModelRL+":"+chain[i].Name)
		}
		up = append(up, ModelSFT, ModelBase)
	}
	for _, m := range up {
		if evaluated[m] {
			return m
		}
	}
	return ""
}

// evalOpts are the bootstrap and sample settings of the eval stage.
func (r *runEnv) evalOpts() evalOptions {
	e := r.cfg.Stages.Eval
	b := Bootstrap{Resamples: e.Bootstrap, Seed: r.cfg.stageSeed(e.Seed, seedEval)}
	if b.Resamples == 0 {
		b.Resamples = DefaultResamples
	}
	return evalOptions{Bootstrap: b, Samples: e.Samples}
}

// evalSplits are the splits the eval stage scores (those with golds among
// them get an eval file).
func (r *runEnv) evalSplits() []string {
	if splits := r.cfg.Stages.Predict.Splits; len(splits) > 0 {
		return splits
	}
	return []string{"dev"}
}

// eval scores every predicted model on every split with golds, on the
// examples all of them answered, and the rule baselines (the synthetic
// benchmark's, or LaMP's) on those same examples: eval/TASK_SPLIT.json
// (TaskEval).
func (r *runEnv) eval() error {
	models := r.evalModels()
	for _, td := range r.data.Tasks {
		for _, split := range r.evalSplits() {
			exs := td.Splits[split]
			if len(exs) == 0 || !exs[0].HasOutput {
				continue // test golds are withheld: predictions only
			}
			var mps []modelPredictions
			scored := map[string]string{}
			answered := map[string]bool{}
			evaluated := map[string]bool{}
			for _, m := range models {
				evaluated[m.name] = true
			}
			for _, m := range models {
				path := filepath.Join(r.predictDir(m.model), td.Task.Name+"_"+split+".parquet")
				preds, err := datasets.ReadPredictions(path, datasets.ReadOptions{})
				if err != nil {
					return fmt.Errorf("eval: %w (run `tagpr predict` with this config first)", err)
				}
				for _, p := range preds {
					answered[p.ID] = true
				}
				if scored[m.name], _, err = lock.HashFile(path); err != nil {
					return fmt.Errorf("eval: %w", err)
				}
				mps = append(mps, modelPredictions{Name: m.name, From: r.trainedFrom(m.name, evaluated), Preds: preds})
			}
			var asked []datasets.Example
			for _, e := range exs {
				if answered[e.ID] {
					asked = append(asked, e)
				}
			}
			var rules []modelPredictions
			if r.data.Synth {
				var err error
				if rules, err = ruleBaselines(td.Task, td.Splits["train"], asked, split, r.cfg.Teacher.Kind == TeacherGold); err != nil {
					return fmt.Errorf("eval %s: %w", td.Task.Name, err)
				}
			} else {
				rules = lampRuleBaselines(td.Task, td.Splits["train"], asked)
			}
			for _, rule := range rules {
				if err := datasets.WriteRows(r.baselineFile(rule.Name, td.Task.Name, split), rule.Preds, datasets.CreatePredictions); err != nil {
					return fmt.Errorf("eval %s: %w", td.Task.Name, err)
				}
			}
			mps = append(mps, rules...)
			te, err := evaluateTask(td.Task, split, exs, mps, r.tx, r.evalOpts())
			if err != nil {
				return err
			}
			te.Predictions = scored
			if n, err := r.profileNote(&td, exs, answered); err != nil {
				return fmt.Errorf("eval: %w", err)
			} else if n != "" {
				te.Notes = append(te.Notes, n)
				note(r.h, StageEval, "%s %s: %s", td.Task.Name, split, n)
			}
			if err := writeJSON(r.evalFile(td.Task.Name, split), te); err != nil {
				return err
			}
			var parts []string
			for _, m := range te.Models {
				if x, ok := m.Metric(te.Primary); ok {
					parts = append(parts, fmt.Sprintf("%s %.3f", m.Name, x.Value))
				}
			}
			note(r.h, StageEval, "%s %s (n=%d) %s: %s", td.Task.Name, split, te.Examples, te.Primary, strings.Join(parts, ", "))
		}
	}
	return nil
}

// report rebuilds report.md, report.json, report.html and metrics.json
// from the run folder alone: every stage's summary and per-step log and
// every evaluation file, whichever process wrote them (a resumed run's
// report lists every stage).
func (r *runEnv) report() (*Report, error) {
	models := r.evalModels()
	// Each reported model's predictions, and each RL stage, still follow
	// from the models in the folder (a stage made again since is another run).
	for _, m := range models {
		if err := r.checkPredictedWith(m.model); err != nil {
			return nil, err
		}
	}
	for _, st := range r.cfg.Stages.RL {
		if exists(r.dir("rl", st.Name, rlSummaryFile)) {
			if err := r.checkRLFrom(st.Name); err != nil {
				return nil, err
			}
		}
	}
	final := models[len(models)-1]
	rep := &Report{Title: r.cfg.Stages.Report.Title, Created: time.Now(), Tagpr: buildinfo.String(), Model: filepath.Join(r.modelDir(final.model), "model.onnx"),
		Dataset: r.dir("data"), BaseNote: r.baseNote(), Curves: &Curves{}, Config: ConfigMap(r.cfg)}
	for _, m := range models {
		rep.Models = append(rep.Models, m.name)
	}
	var cs chainsSummary
	if err := readJSON(r.dir("chains", summaryFile), &cs); err == nil {
		final := map[string]float64{}
		for task, n := range cs.Tasks {
			final["rows_"+task], final["kept_"+task] = float64(n.Rows), float64(n.Kept)
		}
		rep.Stages = append(rep.Stages, StageSummary{Name: StageChains, Seconds: cs.Seconds, Final: final, Tagpr: cs.Tagpr})
		rep.Notes = append(rep.Notes, "chains: teacher "+cs.Teacher)
	} else if !os.IsNotExist(err) {
		return nil, err
	}
	for _, stage := range []string{StageSFT, StagePRMU} {
		var s StageSummary
		if err := readJSON(r.dir(stage, summaryFile), &s); err == nil {
			rep.Stages = append(rep.Stages, s)
			if l := r.cfg.Stages.SFT.lora(0, ""); stage == StageSFT && l != nil {
				rep.Notes = append(rep.Notes, loraNote(StageSFT, l, "sft"))
			}
		} else if !os.IsNotExist(err) {
			return nil, err
		}
	}
	var err error
	rep.Curves.SFTSource = filepath.ToSlash(filepath.Join("sft", "checkpoints", train.LogFile))
	if rep.Curves.SFT, err = train.ReadLog[train.StepLog](r.dir(rep.Curves.SFTSource)); err != nil {
		return nil, err
	}
	// Configured stages with no summary yet: a report made while a run is
	// interrupted, or of stages run one at a time, says they are not in it
	// (it read as the whole recipe).
	var unfinished []string
	for stage, skip := range map[string]bool{StageSFT: r.cfg.Stages.SFT.Skip, StagePRMU: r.cfg.Stages.PRMU.Skip} {
		if !skip && !exists(r.dir(stage, summaryFile)) {
			unfinished = append(unfinished, stage+" (not finished)")
		}
	}
	slices.Sort(unfinished)
	for _, st := range r.cfg.Stages.RL {
		src := filepath.ToSlash(filepath.Join("rl", st.Name, grpo.CheckpointDir, grpo.LogFile))
		lines, err := train.ReadLog[RLStepLog](r.dir(src))
		if err != nil {
			return nil, err
		}
		if len(lines) > 0 {
			rep.Curves.RL = append(rep.Curves.RL, RLCurve{Stage: st.Name, Source: src, Steps: lines})
		}
		path := r.dir("rl", st.Name, rlSummaryFile)
		if !exists(path) {
			if len(lines) > 0 {
				unfinished = append(unfinished, fmt.Sprintf("rl %s (%d of %d steps logged)", st.Name, len(lines), st.Steps))
			} else {
				unfinished = append(unfinished, "rl "+st.Name+" (not started)")
			}
			continue
		}
		s, err := readSummary(path)
		if err != nil {
			return nil, err
		}
		rep.Stages = append(rep.Stages, StageSummary{Name: "rl " + s.Stage, Steps: s.Steps, Seconds: s.Seconds, Final: s.final(), Machine: s.Machine, Tagpr: s.Tagpr,
			ResumedAfter: s.ResumedAfter, Started: s.Started, Finished: s.Finished})
		rep.Notes = append(rep.Notes, rlNote(s))
		if l := st.lora(0, ""); l != nil {
			rep.Notes = append(rep.Notes, loraNote("rl "+st.Name, l, filepath.ToSlash(filepath.Join("rl", st.Name))))
		}
	}
	if len(unfinished) > 0 {
		rep.Notes = append(rep.Notes, "configured stages this report does not cover: "+strings.Join(unfinished, ", ")+
			"; it reports the models evaluated so far, not the whole recipe (`tagpr run` with the same config finishes them)")
	}
	for _, s := range rep.Stages {
		if len(s.ResumedAfter) > 0 {
			steps := make([]string, len(s.ResumedAfter))
			for i, n := range s.ResumedAfter {
				steps[i] = strconv.Itoa(n)
			}
			rep.Notes = append(rep.Notes, fmt.Sprintf("%s was interrupted and resumed after step %s (on the same machine a resumed stage reproduces the uninterrupted one bit for bit; on another, \"trained on\" names each)",
				s.Name, strings.Join(steps, ", ")))
		}
	}
	// The eval files of the splits the eval stage scores: one of a split
	// an earlier config listed is another run's, and stays out.
	var splits []string
	for _, split := range datasets.Splits {
		if contains(r.evalSplits(), split) {
			splits = append(splits, split)
		}
	}
	for _, td := range r.data.Tasks {
		for _, split := range splits {
			var t TaskEval
			if err := readJSON(r.evalFile(td.Task.Name, split), &t); err == nil {
				if err := r.checkScored(t); err != nil {
					return nil, err
				}
				rep.Tasks = append(rep.Tasks, t)
				for _, n := range t.Notes {
					rep.Notes = append(rep.Notes, td.Task.Name+" "+split+": "+n)
				}
			} else if !os.IsNotExist(err) {
				return nil, fmt.Errorf("report: %w (run `tagpr eval` with this config to rewrite it)", err)
			}
		}
	}
	names := make([]string, len(models))
	for i, m := range models {
		names[i] = m.name
	}
	rep.Notes = append(rep.Notes, r.modelsNote(names), taxonomyNote(r.tx, r.cfg.Taxonomy))
	if n := r.olderStampsNote(); n != "" {
		rep.Notes = append(rep.Notes, n)
	}
	if r.data.Synth {
		rep.Notes = append(rep.Notes, BaselineBlind+" = the best rule that ignores the profile (fit on the training split); "+
			BaselineProfile+" = a rule that reads the profile as the benchmark's generator does: what personalization can reach")
		if r.cfg.Teacher.Kind == TeacherGold {
			sc := r.cfg.Data.Synth
			rep.Notes = append(rep.Notes, fmt.Sprintf("%s = the answers of the benchmark's gold chains on the same examples, what SFT imitates: "+
				"its teacher misses the closing word of %.0f%% of titles on purpose (data.synth.title_closer_miss), so what a model gains there "+
				"beyond SFT it learnt from its reward, not from imitation", BaselineTeacher, 100*sc.TitleCloserMiss))
		}
	}
	rep.Finalize()
	if err := rep.Write(r.cfg.Out); err != nil {
		return nil, err
	}
	return rep, nil
}

// profileNote says how much of the retrieved profile the answered
// examples' prompts held (the predict stage's prompts, encoded again), or
// "" without a tokenizer.
func (r *runEnv) profileNote(td *TaskData, exs []datasets.Example, answered map[string]bool) (string, error) {
	if r.tok == nil {
		return "", nil
	}
	var asked []*datasets.Example
	for i := range exs {
		if answered[exs[i].ID] {
			asked = append(asked, &exs[i])
		}
	}
	u, err := MeasureProfileUse(r.tok, td.Task, asked, r.tx, r.prompt)
	if err != nil {
		return "", err
	}
	return u.Note("prompts", "retrieval.max_prompt_tokens", r.prompt.MaxTokens), nil
}

// checkScored refuses an eval file whose models' predictions have changed
// since it was written (the predict stage run again, the eval stage not):
// a report of it would give the old predictions' numbers as the new ones'.
func (r *runEnv) checkScored(t TaskEval) error {
	for _, m := range r.evalModels() {
		want, ok := t.Predictions[m.name]
		if !ok {
			continue // an eval file of an older tagpr, or of another model list
		}
		path := filepath.Join(r.predictDir(m.model), t.Task+"_"+t.Split+".parquet")
		if got, _, err := lock.HashFile(path); err != nil || got != want {
			return fmt.Errorf("report: %s scored other predictions than %s holds now (predicted again since): run `tagpr eval` with this config first, then `tagpr report`",
				r.evalFile(t.Task, t.Split), path)
		}
	}
	return nil
}

// baseNote says plainly what the base model is.
func (r *runEnv) baseNote() string {
	if b := r.cfg.Policy.Builtin; b != nil {
		return fmt.Sprintf("the built-in %s architecture (%d layers, d_model %d) at its random initialization (seed %d): it has learnt nothing before SFT, so its scores are a floor, not a pretrained model's",
			b.Arch, b.Layers, b.DModel, b.Seed)
	}
	return "the starting policy as given (" + r.cfg.Policy.Dir + "), before any training in this run"
}

// modelsNote says what the reported models are.
func (r *runEnv) modelsNote(models []string) string {
	var parts []string
	prmu := false
	for _, m := range models {
		switch {
		case m == ModelBase && r.cfg.Policy.Builtin != nil:
			parts = append(parts, "base = the built-in architecture at its random initialization, before SFT")
		case m == ModelBase:
			parts = append(parts, "base = "+r.cfg.Policy.Dir+" as given")
		case m == ModelSFT:
			parts = append(parts, "sft = after SFT on the kept chains")
		default:
			name := r.rlStageOf(m)
			chain := RLChain(r.cfg.Stages.RL, name)
			for _, st := range chain {
				prmu = prmu || st.Reward == RewardGuided || st.Rewards[RewardPRMU] != 0
			}
			parts = append(parts, m+" = after the RL stages "+strings.Join(stageNames(chain), " → "))
		}
	}
	if prmu && !r.cfg.Stages.PRMU.Skip {
		parts = append(parts, "guided stages add γ·R_PRMU from the PRMU in prmu/ (trained Bradley–Terry on the training users)")
	}
	return strings.Join(parts, "; ")
}

// taxonomyNote names the tags chains, R_tag and r_tag were checked against.
func taxonomyNote(tx rewardmodel.Taxonomy, file string) string {
	if file == "" {
		file = "the built-in default"
	}
	var tags, required []string
	for _, t := range tx {
		tags = append(tags, t.Name)
		if t.Required {
			required = append(required, t.Name)
		}
	}
	note := fmt.Sprintf("tag taxonomy (%s): %s; required: %s", file, strings.Join(tags, ", "), strings.Join(required, ", "))
	if ordered := tx.Ordered(); len(ordered) > 1 {
		note += "; in order: " + strings.Join(ordered, " → ")
	}
	return note
}
