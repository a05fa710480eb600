package pipeline

import (
	"fmt"
	"strings"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/rewardmodel"
)

// ruleBaselines are the synthetic benchmark's rules on exactly the given
// examples: the best rule that ignores the profile (fit on train), a rule
// that reads it and, with gold chains (teacher), what those chains answer.
// They are scored beside the models, so the table shows how much of the
// profile's worth a model has learnt, and whether RL went past the chains
// SFT imitated (the benchmark's teacher misses on purpose, SynthConfig).
func ruleBaselines(task *datasets.Task, train, exs []datasets.Example, split string, teacher bool) ([]modelPredictions, error) {
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
	rules := []modelPredictions{rule(BaselineBlind, blind), rule(BaselineProfile, reading)}
	if teacher {
		answers := make([]string, len(exs))
		for i, e := range exs {
			answer, ok := rewardmodel.ExtractAnswer(e.Chain)
			if !ok {
				return nil, fmt.Errorf("%s baseline: %s's gold chain has no answer", BaselineTeacher, e.ID)
			}
			answers[i] = answer
		}
		rules = append(rules, rule(BaselineTeacher, answers))
	}
	return rules, nil
}

func formatMetrics(ms []Metric) string {
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = fmt.Sprintf("%s %.3f", m.Name, m.Value)
	}
	return strings.Join(parts, ", ")
}
