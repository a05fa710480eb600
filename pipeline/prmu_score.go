package pipeline

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/onnx/lock"
	"github.com/tagpr/tagpr/rewardmodel"
)

// Metric names the PRMU scoring stage appends to each prediction.
const (
	MetricPRMUScore = "prmu_score" // the raw score; absent for an unparseable prediction
	MetricRPRMU     = "r_prmu"     // sigmoid(score); 0 for an unparseable prediction, as in RL
)

// PRMUScoreConfig scores the answers of a predictions file with PRMU, each
// for the user of its example (profile items chosen as the prompts choose
// them). It fans out over the predictions (FanOut), so it runs sharded.
type PRMUScoreConfig struct {
	Examples    string // lamp_example file: the users' profiles, by example id
	Predictions string // prediction file: the answers to score
	Out         string // prediction file: the same rows, prmu_score and r_prmu appended to their metrics
	PRMU        PRMUScorer
	// Model is PRMU's directory (rewardmodel.LoadPRMU's): its files, by
	// content, are recorded with the parts (prmuScoreSettings).
	Model  string
	Prompt PromptOptions // profile retrieval: TopK and Retrieval as the prompts used
	Batch  int           // predictions per batch and part (0: 64)
	Shard  datasets.Shard
}

// PRMUScoreStats count one run.
type PRMUScoreStats struct {
	FanOutStats
	Merged bool // Out was written (an unsharded run, or every shard done)
}

// ScorePRMU scores this worker's shard of the predictions; without a shard
// it then assembles Out, in the predictions' order.
func ScorePRMU(ctx context.Context, cfg PRMUScoreConfig) (PRMUScoreStats, error) {
	var st PRMUScoreStats
	if cfg.PRMU == nil {
		return st, fmt.Errorf("prmu score: no PRMU")
	}
	if cfg.Model == "" {
		return st, fmt.Errorf("prmu score: the PRMU's directory is required (its files are recorded with the parts)")
	}
	if cfg.Examples == "" || cfg.Predictions == "" || cfg.Out == "" {
		return st, fmt.Errorf("prmu score: examples, predictions and out files are required")
	}
	// Out's format is its extension: checked before any work.
	if _, err := datasets.FormatOf(cfg.Out); err != nil {
		return st, fmt.Errorf("prmu score: out %w", err)
	}
	if err := cfg.Prompt.Validate(); err != nil {
		return st, fmt.Errorf("prmu score: %w", err)
	}
	switch {
	case cfg.Batch < 0:
		return st, fmt.Errorf("prmu score: batch %d, want > 0 (0: 64)", cfg.Batch)
	case cfg.Batch == 0:
		cfg.Batch = 64
	}
	settings, err := prmuScoreSettings(cfg)
	if err != nil {
		return st, err
	}
	parts := datasets.PartsFor(cfg.Out, datasets.Shard{})
	groups, err := parts.Groups()
	if err != nil {
		return st, fmt.Errorf("prmu score: %w", err)
	}
	if err := checkStamp(parts.Dir, "prmu score "+cfg.Out, settings, len(groups) > 0); err != nil {
		return st, err
	}
	// Only this shard's examples: predictions share their example's id.
	exs, task, err := datasets.ReadExamples(cfg.Examples, datasets.ReadOptions{Shard: cfg.Shard})
	if err != nil {
		return st, fmt.Errorf("prmu score: %w", err)
	}
	byID := make(map[string]*datasets.Example, len(exs))
	for i := range exs {
		byID[exs[i].ID] = &exs[i]
	}
	tx := rewardmodel.DefaultTaxonomy()
	fo := FanOut[datasets.Prediction, datasets.Prediction]{Name: "prmu score", In: cfg.Predictions, Out: cfg.Out,
		Kind: datasets.KindPrediction, Shard: cfg.Shard, Batch: cfg.Batch, Decode: datasets.DecodePredictions,
		ID: func(p *datasets.Prediction) string { return p.ID }, Create: datasets.CreatePredictions,
		Work: func(ctx context.Context, _ *datasets.Task, preds []datasets.Prediction) ([]datasets.Prediction, error) {
			var profiles [][]string
			var answers []string
			var asked []int
			for i := range preds {
				ex := byID[preds[i].ID]
				if ex == nil {
					return nil, fmt.Errorf("prmu score: prediction %q has no example in %s", preds[i].ID, cfg.Examples)
				}
				if preds[i].Prediction == "" {
					continue
				}
				profiles = append(profiles, Parts(task, ex, tx, cfg.Prompt, false).Profile)
				answers = append(answers, preds[i].Prediction)
				asked = append(asked, i)
			}
			out := append([]datasets.Prediction(nil), preds...)
			for i := range out {
				out[i].Metrics = append(append([]datasets.NamedValue(nil), out[i].Metrics...), datasets.NamedValue{Name: MetricRPRMU})
			}
			if len(asked) == 0 {
				return out, nil
			}
			scores, err := cfg.PRMU.Score(ctx, profiles, answers)
			if err != nil {
				return nil, fmt.Errorf("prmu score: %w", err)
			}
			if len(scores) != len(asked) {
				return nil, fmt.Errorf("prmu score: %d scores for %d answers", len(scores), len(asked))
			}
			for j, i := range asked {
				if math.IsNaN(scores[j]) || math.IsInf(scores[j], 0) {
					return nil, fmt.Errorf("prmu score: the score of prediction %q is %v", preds[i].ID, scores[j])
				}
				m := out[i].Metrics
				m[len(m)-1].Value = rewardmodel.PRMUProbability(scores[j])
				out[i].Metrics = append(m[:len(m)-1], datasets.NamedValue{Name: MetricPRMUScore, Value: scores[j]}, m[len(m)-1])
			}
			return out, nil
		}}
	fs, err := fo.Run(ctx)
	st.FanOutStats = fs
	if err != nil || cfg.Shard.Count > 1 {
		return st, err
	}
	if _, err := datasets.AssembleFile(cfg.Out, cfg.Predictions); err != nil {
		return st, fmt.Errorf("prmu score: %w", err)
	}
	st.Merged = true
	return st, nil
}

// prmuScoreSettings are what the scores in Out's parts depend on, recorded
// in the parts folder (checkStamp): a worker or a rerun with another PRMU,
// other profile retrieval, or other examples or predictions is refused,
// naming the setting, before it mixes its scores with theirs or takes
// theirs as its own. The PRMU's files (model.onnx, prmu.json and, for a bag
// of tokens, tokenizer.json), the examples and the predictions count by
// content. A text encoder is pinned by its sha256 in prmu.json (LoadPRMU
// refuses another); its embedding cache is not recorded (scoring extends
// it). The batch size and the shard count are not settings: a row's score
// does not depend on its batch.
func prmuScoreSettings(cfg PRMUScoreConfig) (map[string]any, error) {
	retrieval := cfg.Prompt.Retrieval
	if retrieval == "" {
		retrieval = "bm25"
	}
	s := map[string]any{"retrieval.top_k": cfg.Prompt.TopK, "retrieval.method": retrieval,
		"retrieval.max_prompt_tokens": cfg.Prompt.MaxTokens}
	files := map[string]string{"examples": cfg.Examples, "predictions": cfg.Predictions}
	for _, f := range []string{rewardmodel.PRMUModelFile, rewardmodel.PRMUConfigFile, rewardmodel.PRMUTokenizerFile} {
		files["model/"+f] = filepath.Join(cfg.Model, f)
	}
	for name, f := range files {
		if _, err := os.Stat(f); errors.Is(err, os.ErrNotExist) && strings.HasPrefix(name, "model/") {
			continue // tokenizer.json is the bag's only; LoadPRMU named any other missing file
		}
		sum, _, err := lock.HashFile(f)
		if err != nil {
			return nil, fmt.Errorf("prmu score: %w", err)
		}
		s["sha256."+name] = sum
	}
	return s, nil
}
