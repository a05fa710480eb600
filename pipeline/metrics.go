package pipeline

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/tagpr/tagpr/rewardmodel"
)

// Metric is one named evaluation figure; Lower marks error metrics (MAE,
// RMSE); Diagnostic marks figures shown for insight (tag reward, format
// rate) that are not task metrics and stay out of the relative improvement.
type Metric struct {
	Name       string  `json:"name"`
	Value      float64 `json:"value"`
	Lower      bool    `json:"lower_is_better,omitempty"`
	Diagnostic bool    `json:"diagnostic,omitempty"`
}

// Pair is one prediction with its gold output.
type Pair struct{ ID, Prediction, Gold string }

// ClassificationMetrics are accuracy and macro-F1 over the label set (LaMP-1
// and LaMP-2). A prediction outside the label set counts as wrong for every
// label, as LaMP's evaluation maps it to no label.
func ClassificationMetrics(pairs []Pair, labels []string) ([]Metric, error) {
	if len(pairs) == 0 {
		return nil, fmt.Errorf("classification metrics: no predictions")
	}
	known := map[string]bool{}
	for _, l := range labels {
		known[l] = true
	}
	tp, fp, fn := map[string]int{}, map[string]int{}, map[string]int{}
	correct := 0
	for _, p := range pairs {
		pred, gold := strings.TrimSpace(p.Prediction), strings.TrimSpace(p.Gold)
		if !known[gold] {
			return nil, fmt.Errorf("classification metrics: gold %q of %s is not one of the labels %v", gold, p.ID, labels)
		}
		if pred == gold {
			correct++
			tp[gold]++
			continue
		}
		fn[gold]++
		if known[pred] {
			fp[pred]++
		}
	}
	f1Sum := 0.0
	for _, l := range labels {
		// sklearn's convention: F1 of a label with no support and no predictions is 0.
		if d := 2*tp[l] + fp[l] + fn[l]; d > 0 {
			f1Sum += 2 * float64(tp[l]) / float64(d)
		}
	}
	return []Metric{
		{Name: "accuracy", Value: float64(correct) / float64(len(pairs))},
		{Name: "f1_macro", Value: f1Sum / float64(len(labels))},
	}, nil
}

// RatingMetrics are MAE and RMSE on a 1–5 scale (LaMP-3). An unparseable
// prediction counts as the extreme farther from the gold rating.
func RatingMetrics(pairs []Pair) ([]Metric, error) {
	if len(pairs) == 0 {
		return nil, fmt.Errorf("rating metrics: no predictions")
	}
	var abs, sq float64
	for _, p := range pairs {
		g, ok := rewardmodel.ParseRating(p.Gold)
		if !ok {
			return nil, fmt.Errorf("rating metrics: gold %q of %s is not a 1-5 rating", p.Gold, p.ID)
		}
		v, ok := rewardmodel.ParseRating(p.Prediction)
		if !ok {
			v = 1
			if g < 3 {
				v = 5
			}
		}
		d := math.Abs(v - g)
		abs += d
		sq += d * d
	}
	n := float64(len(pairs))
	return []Metric{{Name: "mae", Value: abs / n, Lower: true}, {Name: "rmse", Value: math.Sqrt(sq / n), Lower: true}}, nil
}

// GenerationMetrics are the mean ROUGE-1 and ROUGE-L F-measures (LaMP-4..7).
// The mean over examples is reported (HF evaluate's default reports a
// bootstrap median, which is close to but not exactly the mean).
func GenerationMetrics(pairs []Pair) ([]Metric, error) {
	if len(pairs) == 0 {
		return nil, fmt.Errorf("generation metrics: no predictions")
	}
	var r1, rl float64
	for _, p := range pairs {
		r1 += rewardmodel.RougeN(p.Gold, p.Prediction, 1).F
		rl += rewardmodel.RougeL(p.Gold, p.Prediction).F
	}
	n := float64(len(pairs))
	return []Metric{{Name: "rouge1", Value: r1 / n}, {Name: "rougeL", Value: rl / n}}, nil
}

// ErrNoBaseline says every task metric of the base is 0, so no ratio exists.
var ErrNoBaseline = errors.New("relative improvement: no task metric with a non-zero base")

// RelativeImprovement compares a model with the base model on one task: the
// mean over the task's metrics of (m − base)/|base|, with the sign flipped for
// error metrics so that positive is always better. Metrics whose base is 0
// are skipped (the ratio is undefined).
func RelativeImprovement(model, base []Metric) (float64, error) {
	baseBy := map[string]Metric{}
	for _, m := range base {
		baseBy[m.Name] = m
	}
	sum, n := 0.0, 0
	for _, m := range model {
		if m.Diagnostic {
			continue
		}
		b, ok := baseBy[m.Name]
		if !ok {
			return 0, fmt.Errorf("relative improvement: base has no %s", m.Name)
		}
		if b.Value == 0 {
			continue
		}
		r := (m.Value - b.Value) / math.Abs(b.Value)
		if m.Lower {
			r = -r
		}
		sum += r
		n++
	}
	if n == 0 {
		return 0, ErrNoBaseline
	}
	return sum / float64(n), nil
}

// SortedLabels returns the distinct gold outputs, sorted: the label set of a
// classification task when none is declared.
func SortedLabels(pairs []Pair) []string {
	seen := map[string]bool{}
	var out []string
	for _, p := range pairs {
		g := strings.TrimSpace(p.Gold)
		if !seen[g] {
			seen[g] = true
			out = append(out, g)
		}
	}
	sort.Strings(out)
	return out
}

// TaskMetrics computes a task's LaMP metrics: accuracy and macro-F1 over the
// task's labels (classification), MAE and RMSE (rating), ROUGE-1/L (generation).
func TaskMetrics(kind rewardmodel.TaskKind, labels []string, pairs []Pair) ([]Metric, error) {
	switch kind {
	case rewardmodel.Classification:
		if len(labels) == 0 {
			labels = SortedLabels(pairs)
		}
		return ClassificationMetrics(pairs, labels)
	case rewardmodel.Rating:
		return RatingMetrics(pairs)
	case rewardmodel.Generation:
		return GenerationMetrics(pairs)
	}
	return nil, fmt.Errorf("metrics: unknown task kind %q", kind)
}
