package pipeline

import (
	"fmt"
	"strings"

	"github.com/tagpr/tagpr/datasets"
)

// ruleBaselines are the synthetic benchmark's two rules on exactly the
// given examples: the best rule that ignores the profile (fit on train) and
// a rule that reads it. They are scored beside the models, so the table
// shows how much of the profile's worth a model has learnt.
func ruleBaselines(task *datasets.Task, train, exs []datasets.Example, split string) ([]modelPredictions, error) {
	eval := &datasets.SynthSet{Task: task, Split: split, Examples: exs}
	blind, err := datasets.BlindBaseline(&datasets.SynthSet{Task: task, Split: "train", Examples: train}, eval)
	if err != nil {
		return nil, fmt.Errorf("%s baseline: %w", BaselineBlind, err)
	}
	reading, err := datasets.ProfileBaseline(eval)
	if err != nil {
		return nil, fmt.Errorf("%s baseline: %w", BaselineProfile, err)
	}
	rule := func(name string, answers []string) modelPredictions {
		m := modelPredictions{Name: name, Baseline: true}
		for i, e := range exs {
			m.Preds = append(m.Preds, datasets.Prediction{ID: e.ID, Task: task.Name, Model: name, Prediction: answers[i], Gold: e.Output, HasGold: e.HasOutput})
		}
		return m
	}
	return []modelPredictions{rule(BaselineBlind, blind), rule(BaselineProfile, reading)}, nil
}

func formatMetrics(ms []Metric) string {
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = fmt.Sprintf("%s %.3f", m.Name, m.Value)
	}
	return strings.Join(parts, ", ")
}
