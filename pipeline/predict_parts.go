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
	"github.com/tagpr/tagpr/tokenize"
)

// PredictStats count one PredictFile run.
type PredictStats struct {
	FanOutStats      // questions done now, done before (in parts), rows written now
	Merged      bool // Out was written (an unsharded run, or MergePredictions)
	Predictions int  // rows in Out, when merged
}

// predictionRows is the rows file beside a predictions JSON (X.json →
// X.parquet); its parts folder (X.parquet.parts/) holds the work in
// progress: prediction rows, one part per generation batch.
func predictionRows(out string) string { return strings.TrimSuffix(out, ".json") + ".parquet" }

func predictionParts(out string) string {
	return datasets.PartsFor(predictionRows(out), datasets.Shard{}).Dir
}

// readQuestions reads the questions a PredictFile run predicts: the first
// Eval.Examples of the file (all when 0), in its order.
func readQuestions(o PredictFileOptions) ([]datasets.Example, error) {
	var exs []datasets.Example
	if _, _, err := datasets.ScanQuestions(o.Questions, o.Task, func(e *datasets.Example) error {
		exs = append(exs, *e)
		return nil
	}); err != nil {
		return nil, err
	}
	if o.Eval.Examples > 0 && o.Eval.Examples < len(exs) {
		exs = exs[:o.Eval.Examples]
	}
	if len(exs) == 0 {
		return nil, fmt.Errorf("predict: %s holds no questions", o.Questions)
	}
	return exs, nil
}

// predictFileSettings are what the parts of a PredictFile run depend on,
// recorded in the parts folder: a worker or a resumed run with other
// settings (another model, batch size, prompt budget, generation dtype…) is
// refused before it mixes its rows with theirs. The model's files and the
// questions count by content (a folder replaced under the same path is
// another model). The shard count is not among them: batches are cut the
// same for any count.
func predictFileSettings(o PredictFileOptions) (map[string]any, error) {
	dtype := "float32"
	if o.Half {
		dtype = "float16"
	}
	s := map[string]any{"model": o.Model, "task": o.Task.Name, "questions": o.Questions, "examples": o.Eval.Examples,
		"batch": o.Eval.Batch, "max_new_tokens": o.Eval.MaxNewTokens, "retrieval.top_k": o.Eval.Prompt.TopK,
		"retrieval.method": o.Eval.Prompt.Retrieval, "retrieval.max_prompt_tokens": o.Eval.Prompt.MaxTokens,
		"chat_template": o.ChatTemplate, "taxonomy": o.Taxonomy, "generation_dtype": dtype}
	mp, err := lm.ResolveModelPath(o.Model)
	if err != nil {
		return nil, fmt.Errorf("predict: %w", err)
	}
	// Every file the tokenizer is read from: tokenizer_config.json and
	// chat_template.jinja decide the prompts as much as tokenizer.json.
	files := append(append(lm.Files(mp), tokenize.Files(filepath.Join(o.Model, "tokenizer.json"))...), o.Questions)
	for _, f := range files {
		if _, err := os.Stat(f); err != nil {
			continue // optional (config.json, external data): lm.Load names what is missing
		}
		sum, _, err := lock.HashFile(f)
		if err != nil {
			return nil, fmt.Errorf("predict: %w", err)
		}
		s["sha256."+filepath.Base(f)] = sum
	}
	return s, nil
}

// predictBatches generates this shard's batches of exs (FanOut.RunBatches:
// the batches an unsharded run makes, so the same completions) and writes
// each as a part.
func predictBatches(ctx context.Context, open func() (Policy, error), o PredictFileOptions, exs []datasets.Example) (FanOutStats, error) {
	eo := o.Eval
	eo.Examples = 0
	fo := FanOut[datasets.Example, datasets.Prediction]{Name: StagePredict, In: o.Questions, Out: predictionRows(o.Out),
		Shard: o.Shard, Batch: eo.Batch, ID: func(e *datasets.Example) string { return e.ID },
		Create: datasets.CreatePredictions, Progress: o.Progress,
		Work: func(ctx context.Context, task *datasets.Task, batch []datasets.Example) ([]datasets.Prediction, error) {
			p, err := open()
			if err != nil {
				return nil, err
			}
			preds, _, err := PredictExamples(ctx, p, task, "predict", batch, o.Taxonomy, eo)
			return preds, err
		}}
	return fo.RunBatches(ctx, o.Task, exs)
}

// MergePredictions assembles the parts every PredictFile worker wrote into
// Out's rows file, in the questions' order, writes Out from it (LaMP's
// outputs format) and removes the parts: the same bytes as one unsharded
// run. It refuses while any question has no prediction (a worker not
// finished: run it again, it redoes only its missing batches). It returns
// the number of predictions.
func MergePredictions(o PredictFileOptions) (int, error) {
	if o.Task == nil || o.Questions == "" || o.Out == "" {
		return 0, fmt.Errorf("predict merge: task, questions and out are required")
	}
	exs, err := readQuestions(o)
	if err != nil {
		return 0, err
	}
	return mergePredictionParts(o, exs)
}

// mergePredictionParts is MergePredictions for the questions exs.
func mergePredictionParts(o PredictFileOptions, exs []datasets.Example) (int, error) {
	rows := predictionRows(o.Out)
	n, err := datasets.AssembleInOrder(rows, func() (*datasets.InputOrder, error) {
		order := datasets.NewInputOrder(o.Questions)
		for i := range exs {
			if err := order.Add(exs[i].ID); err != nil {
				return nil, err
			}
		}
		return order, nil
	})
	if err != nil {
		return 0, fmt.Errorf("predict: %w", err)
	}
	if err := datasets.ExportPredictions(rows, o.Task, o.Out); err != nil {
		return 0, err
	}
	if err := os.RemoveAll(predictionParts(o.Out)); err != nil {
		return 0, fmt.Errorf("predict: %w", err)
	}
	return int(n), nil
}
