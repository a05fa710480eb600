package pipeline

import (
	"fmt"
	"sort"

	"github.com/tagpr/tagpr/datasets"
)

// LaMPEval scores predictions in LaMP's outputs format against the golds of
// the same task: every gold id needs a prediction (a missing one is an error
// naming the id, as LaMP's evaluator would fail), predictions for unknown ids
// are an error too. Extra models (e.g. a base model) are scored the same way
// and reported as the base for the relative improvement.
func LaMPEval(task *datasets.Task, goldsPath, predsPath, basePath string) (TaskResult, error) {
	golds, err := datasets.ReadOutputs(goldsPath, task)
	if err != nil {
		return TaskResult{}, err
	}
	score := func(path string) ([]Metric, error) {
		preds, err := datasets.ReadOutputs(path, task)
		if err != nil {
			return nil, err
		}
		ids := make([]string, 0, len(golds))
		for id := range golds {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		pairs := make([]Pair, 0, len(ids))
		for _, id := range ids {
			p, ok := preds[id]
			if !ok {
				return nil, fmt.Errorf("evaluate %s: no prediction for id %s of %s", path, id, goldsPath)
			}
			pairs = append(pairs, Pair{ID: id, Prediction: p.Output, Gold: golds[id].Output})
		}
		for id := range preds {
			if _, ok := golds[id]; !ok {
				return nil, fmt.Errorf("evaluate %s: prediction for id %s, which %s does not have", path, id, goldsPath)
			}
		}
		return TaskMetrics(RewardKind(task), task.Labels, pairs)
	}
	r := TaskResult{Task: task.Name, Examples: len(golds)}
	if r.Model, err = score(predsPath); err != nil {
		return r, err
	}
	if basePath != "" {
		if r.Base, err = score(basePath); err != nil {
			return r, err
		}
	}
	return r, nil
}
