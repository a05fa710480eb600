package pipeline

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/rewardmodel"
)

// evalFile holds one task and split's scores of every predicted model.
func (r *runEnv) evalFile(task, split string) string {
	return r.dir("eval", task+"_"+split+".json")
}

// eval scores every model's predictions on every split with golds: the
// last model is the one reported, the first (base) its baseline, those
// between are shown beside them.
func (r *runEnv) eval() error {
	models := r.cfg.predictModels()
	splits := r.cfg.Stages.Predict.Splits
	if len(splits) == 0 {
		splits = []string{"dev"}
	}
	for _, td := range r.data.Tasks {
		for _, split := range splits {
			exs := td.Splits[split]
			if len(exs) == 0 || !exs[0].HasOutput {
				continue // test golds are withheld: predictions only
			}
			var results []TaskResult
			for _, m := range models {
				path := filepath.Join(r.predictDir(m), td.Task.Name+"_"+split+".parquet")
				preds, err := datasets.ReadPredictions(path, datasets.ReadOptions{})
				if err != nil {
					return fmt.Errorf("eval: %w (run `tagpr predict` with this config first)", err)
				}
				res, _, _, err := ScorePredictions(td.Task, split, preds, exs, r.tx, r.cfg.Stages.Eval.Samples)
				if err != nil {
					return err
				}
				results = append(results, res)
			}
			final := results[len(results)-1]
			if len(results) > 1 {
				final.Base = results[0].Model
				for i := 1; i < len(results)-1; i++ {
					final.Intermediate = append(final.Intermediate, ModelMetrics{Name: models[i], Metrics: results[i].Model})
				}
			}
			if err := writeJSON(r.evalFile(td.Task.Name, split), final); err != nil {
				return err
			}
			note(r.h, StageEval, "%s %s: %s %s", td.Task.Name, split, models[len(models)-1], formatMetrics(final.Model))
		}
	}
	return nil
}

// report rebuilds report.md and report.json from the run folder alone:
// every finished stage's summary and every evaluation file.
func (r *runEnv) report() (*Report, error) {
	models := r.cfg.predictModels()
	final := models[len(models)-1]
	rep := &Report{Title: r.cfg.Stages.Report.Title, Created: time.Now(), ModelName: final,
		Model: filepath.Join(r.modelDir(final), "model.onnx"), Dataset: r.dir("data")}
	var cs chainsSummary
	if err := readJSON(r.dir("chains", summaryFile), &cs); err == nil {
		final := map[string]float64{}
		for task, n := range cs.Tasks {
			final["rows_"+task], final["kept_"+task] = float64(n.Rows), float64(n.Kept)
		}
		rep.Stages = append(rep.Stages, StageSummary{Name: StageChains, Seconds: cs.Seconds, Final: final})
		rep.Notes = append(rep.Notes, "chains: teacher "+cs.Teacher)
	} else if !os.IsNotExist(err) {
		return nil, err
	}
	for _, stage := range []string{StageSFT, StagePRMU} {
		var s StageSummary
		if err := readJSON(r.dir(stage, summaryFile), &s); err == nil {
			rep.Stages = append(rep.Stages, s)
		} else if !os.IsNotExist(err) {
			return nil, err
		}
	}
	for _, st := range r.cfg.Stages.RL {
		path := r.dir("rl", st.Name, rlSummaryFile)
		if !exists(path) {
			continue
		}
		s, err := readSummary(path)
		if err != nil {
			return nil, err
		}
		rep.Stages = append(rep.Stages, StageSummary{Name: "rl " + s.Stage, Steps: s.Steps, Seconds: s.Seconds, Final: s.final()})
		rep.Notes = append(rep.Notes, rlNote(s))
	}
	for _, td := range r.data.Tasks {
		for _, split := range datasets.Splits {
			var t TaskResult
			if err := readJSON(r.evalFile(td.Task.Name, split), &t); err == nil {
				rep.Tasks = append(rep.Tasks, t)
			} else if !os.IsNotExist(err) {
				return nil, err
			}
		}
		if r.data.Synth {
			note, err := baselineNote(&datasets.SynthSet{Task: td.Task, Split: "train", Examples: td.Splits["train"]},
				&datasets.SynthSet{Task: td.Task, Split: "dev", Examples: td.Splits["dev"]})
			if err != nil {
				return nil, err
			}
			rep.Notes = append(rep.Notes, note)
		}
	}
	rep.Notes = append(rep.Notes, r.modelsNote(models), taxonomyNote(r.tx, r.cfg.Taxonomy))
	if err := rep.Finalize(); err != nil {
		return nil, err
	}
	if err := rep.Write(r.cfg.Out); err != nil {
		return nil, err
	}
	return rep, nil
}

// modelsNote says what the reported models are.
func (r *runEnv) modelsNote(models []string) string {
	var parts []string
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
			var upTo []string
			for _, st := range r.cfg.Stages.RL {
				upTo = append(upTo, st.Name)
				if st.Name == name {
					break
				}
			}
			p := m + " = after the RL stages " + strings.Join(upTo, " → ")
			if !r.cfg.Stages.PRMU.Skip {
				p += "; guided stages add γ·R_PRMU from the PRMU in prmu/ (trained Bradley–Terry on the training users)"
			}
			parts = append(parts, p)
		}
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
	return fmt.Sprintf("tag taxonomy (%s): %s; required, in order: %s", file, strings.Join(tags, ", "), strings.Join(required, " → "))
}
