package pipeline

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/ort"
	"github.com/tagpr/tagpr/onnx/train"
	"github.com/tagpr/tagpr/rewardmodel"
	"github.com/tagpr/tagpr/tokenize"
)

// predictDir holds one model's predictions: TASK_SPLIT.parquet (rows with
// completions and scores) and TASK_SPLIT.json (LaMP's outputs format).
func (r *runEnv) predictDir(model string) string {
	return r.dir("predictions", sanitizeModel(model))
}

// sanitizeModel turns rl:NAME into a folder name.
func sanitizeModel(model string) string {
	out := []rune(model)
	for i, c := range out {
		if c == ':' {
			out[i] = '_'
		}
	}
	return string(out)
}

func (r *runEnv) evalOptions() EvalOptions {
	p := r.cfg.Stages.Predict
	return EvalOptions{Examples: p.Examples, Batch: p.Batch, MaxNewTokens: p.MaxNewTokens, Prompt: r.prompt}
}

// predict writes every listed model's greedy predictions for every task
// and split, one file pair per model, task and split (the JSON last: its
// presence marks the pair done); predictions/MODEL/done.json ends a model.
// Each file is made as PredictFile makes one: batches of the examples
// written as parts (a killed run resumes), then assembled. A shard worker
// (run_shard.go) writes only its shard's parts and leaves the assembly to
// the merge, which generates nothing.
func (r *runEnv) predict(ctx context.Context) error {
	splits := r.cfg.Stages.Predict.Splits
	if len(splits) == 0 {
		splits = []string{"dev"}
	}
	for _, td := range r.data.Tasks {
		for _, split := range splits {
			if len(td.Splits[split]) == 0 {
				note(r.h, StagePredict, "%s: the %s split is skipped (stages.predict.splits lists it, but %s)", td.Task.Name, split, r.missingSplit(td.Task, split))
			}
		}
	}
	for _, m := range r.cfg.predictModels() {
		if err := r.predictModel(ctx, m, splits); err != nil {
			return err
		}
	}
	return nil
}

// predictModel writes one model's predictions and closes the model before
// it returns: predict holds one model in memory at a time.
func (r *runEnv) predictModel(ctx context.Context, m string, splits []string) error {
	dir := r.predictDir(m)
	done := filepath.Join(dir, "done.json")
	if err := r.checkStamp(dir, StagePredict+" "+m, r.predictSettings(m), exists(done)); err != nil {
		return err
	}
	if exists(done) {
		if err := r.checkPredictedWith(m); err != nil {
			return err
		}
		r.noteDone(StagePredict, "predicting with "+m, dir, false)
		return nil
	}
	// The model is opened only when a batch needs it (a resumed run or a
	// merge may have none to generate).
	var pol *Policy
	open := func() (Policy, error) {
		if pol == nil {
			p, err := r.openModelAs(m, r.cfg.Runtime.HalfGeneration())
			if err != nil {
				return Policy{}, fmt.Errorf("predict with %s: %w", m, err)
			}
			pol = &p
		}
		return *pol, nil
	}
	defer func() {
		if pol != nil {
			pol.Model.Close()
		}
	}()
	var files []string
	merged := true
	for _, td := range r.data.Tasks {
		for _, split := range splits {
			exs := td.Splits[split]
			if len(exs) == 0 {
				continue
			}
			base := filepath.Join(dir, td.Task.Name+"_"+split)
			files = append(files, base+".json")
			if exists(base + ".json") {
				continue
			}
			o := PredictFileOptions{Task: td.Task, Questions: fmt.Sprintf("the %s %s examples", td.Task.Name, split), Out: base + ".json",
				Taxonomy: r.tx, Eval: r.evalOptions(), Shard: r.shard, Progress: r.h}
			if n := o.Eval.Examples; n > 0 && n < len(exs) {
				exs = exs[:n]
			}
			if !r.mergeShards {
				note(r.h, StagePredict, "%s: %s on %d %s examples%s", m, td.Task.Name, len(exs), split, shardNote(r.shard))
				if _, err := predictBatches(ctx, open, o, exs); err != nil {
					return err
				}
			}
			if r.shard.Count > 1 {
				merged = false
				continue
			}
			if _, err := mergePredictionParts(o, exs); err != nil {
				return err
			}
		}
	}
	if !merged {
		return nil
	}
	return writeJSON(done, map[string]any{"model": m, "dir": r.modelDir(m), "files": files, "model_sha256": modelFileHashes(r.modelDir(m), r.fileHashes)})
}

func shardNote(sh datasets.Shard) string {
	if sh.Count > 1 {
		return " (shard " + sh.String() + ")"
	}
	return ""
}

// PredictFileOptions is one model folder's predictions on one LaMP
// questions file.
type PredictFileOptions struct {
	Model     string // folder: model.onnx, config.json, tokenizer.json (+ tokenizer_config.json)
	Task      *datasets.Task
	Questions string // {split}_questions.json
	Out       string // LaMP outputs JSON to write; the rows (completions, scores) go beside it as .parquet
	Taxonomy  rewardmodel.Taxonomy
	// ChatTemplate overrides the tokenizer's (a tokenize.ChatFormatNames name; "" or auto: its own).
	ChatTemplate string
	Eval         EvalOptions // Prompt, Batch, MaxNewTokens; Examples 0 predicts every question
	Session      ort.Options
	Half         bool // float16 generation (runtime.generation_dtype)
	// Shard, with Count > 1, predicts only this shard's batches and leaves
	// Out to MergePredictions once every shard is done.
	Shard    datasets.Shard
	Progress train.ProgressFunc // hears of every batch written
}

// PredictFile renders every question through the model's chat template,
// generates greedily, extracts each answer and writes them in LaMP's outputs
// format ({"task": "LaMP_N", "golds": [{"id", "output"}]}). Each batch lands
// atomically as a part in Out's rows file's parts folder (predictionParts),
// so a killed run resumes where it stopped; without a shard the parts are
// then merged (MergePredictions).
func PredictFile(ctx context.Context, o PredictFileOptions) (PredictStats, error) {
	var st PredictStats
	if o.Task == nil || o.Model == "" || o.Questions == "" || o.Out == "" {
		return st, fmt.Errorf("predict: model, task, questions and out are required")
	}
	if filepath.Ext(o.Out) != ".json" {
		return st, fmt.Errorf("predict: out %s: want a .json file (LaMP's outputs format)", o.Out)
	}
	o.Eval = o.Eval.withDefaults()
	if o.Taxonomy == nil {
		o.Taxonomy = rewardmodel.DefaultTaxonomy()
	}
	exs, err := readQuestions(o)
	if err != nil {
		return st, err
	}
	settings, err := predictFileSettings(o)
	if err != nil {
		return st, err
	}
	if err := checkStamp(predictionParts(o.Out), StagePredict+" "+o.Out, settings, false); err != nil {
		return st, err
	}
	tok, err := tokenize.Load(filepath.Join(o.Model, "tokenizer.json"))
	if err != nil {
		return st, fmt.Errorf("predict: %w", err)
	}
	if err := setChatFormat(tok, o.ChatTemplate); err != nil {
		return st, fmt.Errorf("predict: chat template %w", err)
	}
	eos, _, err := ModelIDs(o.Model, tok)
	if err != nil {
		return st, fmt.Errorf("predict: %w", err)
	}
	m, err := lm.Load(o.Model, lm.LoadOptions{Session: o.Session, TokenizerVocab: tok.VocabSize(), Half: o.Half})
	if err != nil {
		return st, fmt.Errorf("predict: %w", err)
	}
	defer m.Close()
	pol := Policy{Model: m, Tok: tok, Name: o.Model, EOS: eos}
	if st.FanOutStats, err = predictBatches(ctx, func() (Policy, error) { return pol, nil }, o, exs); err != nil || o.Shard.Count > 1 {
		return st, err
	}
	if st.Predictions, err = MergePredictions(o); err != nil {
		return st, err
	}
	st.Merged = true
	return st, nil
}
