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
	rules := []modelPredictions{baselinePredictions(task, exs, BaselineBlind, blind), baselinePredictions(task, exs, BaselineProfile, reading)}
	if teacher {
		answers := make([]string, len(exs))
		for i, e := range exs {
			answer, ok := rewardmodel.ExtractAnswer(e.Chain)
			if !ok {
				return nil, fmt.Errorf("%s baseline: %s's gold chain has no answer", BaselineTeacher, e.ID)
			}
			answers[i] = answer
		}
		rules = append(rules, baselinePredictions(task, exs, BaselineTeacher, answers))
	}
	return rules, nil
}

// lampRuleBaselines are LaMP's reference rules on exactly the given
// examples, those the task has: the training split's majority label or
// mean rating (profile_blind) and a rule that reads the user's profile
// (profile_reading: the better-matching reference, its majority label,
// its mean rating, or its most similar item's title), as
// datasets.LaMPBlindBaseline and LaMPProfileBaseline define them.
func lampRuleBaselines(task *datasets.Task, train, exs []datasets.Example) []modelPredictions {
	blind := datasets.LaMPBlindBaseline(task, train, exs)
	var rules []modelPredictions
	if blind != nil {
		rules = append(rules, baselinePredictions(task, exs, BaselineBlind, blind))
	}
	if reading := datasets.LaMPProfileBaseline(task, exs, blind); reading != nil {
		rules = append(rules, baselinePredictions(task, exs, BaselineProfile, reading))
	}
	return rules
}

// baselinePredictions are a rule's answers to exs as predictions.
func baselinePredictions(task *datasets.Task, exs []datasets.Example, name string, answers []string) modelPredictions {
	m := modelPredictions{Name: name, Baseline: true}
	for i, e := range exs {
		m.Preds = append(m.Preds, datasets.Prediction{ID: e.ID, Task: task.Name, Model: name, Prediction: answers[i], Gold: e.Output, HasGold: e.HasOutput})
	}
	return m
}

func formatMetrics(ms []Metric) string {
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = fmt.Sprintf("%s %.3f", m.Name, m.Value)
	}
	return strings.Join(parts, ", ")
}
