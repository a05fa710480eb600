package pipeline

import (
	"fmt"
	"sort"
	"strings"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/rewardmodel"
)

// LaMPEval scores predictions in LaMP's outputs format against the golds of
// the same task: every gold id needs a prediction (a missing one is an error
// naming the id, as LaMP's evaluator would fail), predictions for unknown ids
// are an error too. A base model's predictions (basePath, optional) are
// scored on the same examples, for the differences and the relative
// improvement; b sets the bootstrap of the intervals. The examples are taken
// in the golds file's order and the resamples drawn for split, as a run's
// eval stage draws them (its split and seed are in its report, and LaMP's
// files list the questions and golds in one order): the same intervals.
func LaMPEval(task *datasets.Task, goldsPath, predsPath, basePath, split string, b Bootstrap) (TaskEval, error) {
	golds, err := datasets.ReadOutputs(goldsPath, task)
	if err != nil {
		return TaskEval{}, err
	}
	ids := make([]string, 0, len(golds))
	for id := range golds {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return golds[ids[i]].Index < golds[ids[j]].Index })
	examples := make([]datasets.Example, len(ids))
	pairs := make([]Pair, len(ids))
	for i, id := range ids {
		examples[i] = datasets.Example{ID: id, Output: golds[id].Output, HasOutput: true}
		pairs[i] = Pair{ID: id, Gold: golds[id].Output}
	}
	// Every gold is checked before any prediction is read: a wrong file or
	// --task is named as such.
	kind := RewardKind(task)
	if kind != rewardmodel.Generation {
		if err := checkGolds(kind, task.Labels, pairs); err != nil {
			return TaskEval{}, fmt.Errorf("golds %s (--task %s): %w", goldsPath, strings.TrimPrefix(task.Name, "LaMP_"), err)
		}
	}
	read := func(name, path string) (modelPredictions, error) {
		preds, err := datasets.ReadPredictionOutputs(path, task)
		if err != nil {
			return modelPredictions{}, err
		}
		m := modelPredictions{Name: name}
		var missing []string
		for _, id := range ids {
			p, ok := preds[id]
			if !ok {
				missing = append(missing, id)
				continue
			}
			m.Preds = append(m.Preds, datasets.Prediction{ID: id, Task: task.Name, Model: name, Prediction: p.Output, Gold: golds[id].Output, HasGold: true})
		}
		if len(missing) > 0 {
			first := missing[:min(len(missing), 3)]
			return m, fmt.Errorf("evaluate %s: no prediction for %d of the %d ids of %s (first: %s)", path, len(missing), len(ids), goldsPath, strings.Join(first, ", "))
		}
		for id := range preds {
			if _, ok := golds[id]; !ok {
				return m, fmt.Errorf("evaluate %s: prediction for id %s, which %s does not have", path, id, goldsPath)
			}
		}
		return m, nil
	}
	var models []modelPredictions
	if basePath != "" {
		m, err := read(ModelBase, basePath)
		if err != nil {
			return TaskEval{}, err
		}
		models = append(models, m)
	}
	m, err := read("model", predsPath)
	if err != nil {
		return TaskEval{}, err
	}
	models = append(models, m)
	return evaluateTask(task, split, examples, models, rewardmodel.DefaultTaxonomy(), evalOptions{Bootstrap: b})
}
