package pipeline

import (
	"fmt"
	"strings"

	"github.com/tagpr/tagpr/datasets"
)

// baselineNote scores the synthetic benchmark's rule baselines (learnt from
// train) on eval with the task's metrics: how much reading the profile is worth.
func baselineNote(train, eval *datasets.SynthSet) (string, error) {
	score := func(preds []string) ([]Metric, error) {
		pairs := make([]Pair, len(preds))
		for i, e := range eval.Examples {
			pairs[i] = Pair{ID: e.ID, Prediction: preds[i], Gold: e.Output}
		}
		return TaskMetrics(RewardKind(eval.Task), eval.Task.Labels, pairs)
	}
	bp, err := datasets.BlindBaseline(train, eval)
	if err != nil {
		return "", err
	}
	rp, err := datasets.ProfileBaseline(eval)
	if err != nil {
		return "", err
	}
	blind, err := score(bp)
	if err != nil {
		return "", err
	}
	reader, err := score(rp)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s: rule baselines on the %d %s examples: profile-blind %s; profile-reading %s",
		eval.Task.Name, len(eval.Examples), eval.Split, formatMetrics(blind), formatMetrics(reader)), nil
}

func formatMetrics(ms []Metric) string {
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = fmt.Sprintf("%s %.3f", m.Name, m.Value)
	}
	return strings.Join(parts, ", ")
}
