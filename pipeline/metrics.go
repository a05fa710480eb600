package pipeline

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/rewardmodel"
)

// Metric is one named evaluation figure; Lower marks error metrics (MAE,
// RMSE). CI95 is its bootstrap 95% interval when one was computed.
type Metric struct {
	Name  string      `json:"name"`
	Value float64     `json:"value"`
	Lower bool        `json:"lower_is_better,omitempty"`
	CI95  *[2]float64 `json:"ci95,omitempty"`
}

// Pair is one prediction with its gold output.
type Pair struct{ ID, Prediction, Gold string }

// exampleScores are one model's per-example results on a task: its metrics
// are computed from them on all examples or on any resample of them (the
// bootstrap), so each metric is written once.
type exampleScores struct {
	kind   rewardmodel.TaskKind
	labels []string
	// Classification: label indexes of gold and prediction (-1: a
	// prediction outside the label set, which LaMP maps to no label).
	gold, pred []int
	absErr     []float64 // rating: |prediction − gold|
	// unparseable counts the rating predictions that are not numbers
	// (scored as the extreme farther from the gold).
	unparseable int
	r1, rl      []float64 // generation: ROUGE-1 and ROUGE-L F
}

// scoreExamples scores every pair once. A classification task with no
// declared labels takes the golds' (SortedLabels). A rating is read as LaMP's
// evaluator reads it (rewardmodel.ParseLaMPRating: any number Python's
// float() reads, in the 1–5 range or not); an unparseable one counts as the
// extreme farther from the gold: 1 when |1 − gold| > |5 − gold|, else 5
// (LaMP's create_mapping; a gold of 3 takes 5).
func scoreExamples(kind rewardmodel.TaskKind, labels []string, pairs []Pair) (*exampleScores, error) {
	if len(pairs) == 0 {
		return nil, fmt.Errorf("%s metrics: no predictions", kind)
	}
	s := &exampleScores{kind: kind}
	switch kind {
	case rewardmodel.Classification:
		if len(labels) == 0 {
			labels = SortedLabels(pairs)
		}
		if err := checkGolds(kind, labels, pairs); err != nil {
			return nil, fmt.Errorf("classification metrics: %w", err)
		}
		s.labels = labels
		index := map[string]int{}
		for i, l := range labels {
			index[l] = i
		}
		for _, p := range pairs {
			g := index[datasets.StripPython(p.Gold)]
			pr, ok := index[datasets.StripPython(p.Prediction)]
			if !ok {
				pr = -1
			}
			s.gold, s.pred = append(s.gold, g), append(s.pred, pr)
		}
	case rewardmodel.Rating:
		if err := checkGolds(kind, labels, pairs); err != nil {
			return nil, fmt.Errorf("rating metrics: %w", err)
		}
		for _, p := range pairs {
			g, _ := rewardmodel.ParseLaMPRating(p.Gold)
			v, ok := rewardmodel.ParseLaMPRating(p.Prediction)
			if !ok {
				v = fartherRating(g)
				s.unparseable++
			}
			s.absErr = append(s.absErr, math.Abs(v-g))
		}
	case rewardmodel.Generation:
		for _, p := range pairs {
			s.r1 = append(s.r1, rewardmodel.RougeN(p.Gold, p.Prediction, 1).F)
			s.rl = append(s.rl, rewardmodel.RougeL(p.Gold, p.Prediction).F)
		}
	default:
		return nil, fmt.Errorf("metrics: unknown task kind %q", kind)
	}
	return s, nil
}

// fartherRating is what LaMP's evaluator puts for an unparseable rating:
// 1.0 if abs(1 - gold) > abs(5 - gold) else 5.0.
func fartherRating(gold float64) float64 {
	if math.Abs(1-gold) > math.Abs(5-gold) {
		return 1
	}
	return 5
}

// checkGolds is datasets.CheckGolds on pairs' golds: every gold checked
// before any is scored (a classification gold one of the labels, a rating
// gold a number LaMP's evaluator reads).
func checkGolds(kind rewardmodel.TaskKind, labels []string, pairs []Pair) error {
	ids, golds := make([]string, len(pairs)), make([]string, len(pairs))
	for i, p := range pairs {
		ids[i], golds[i] = p.ID, p.Gold
	}
	dk := datasets.Classification
	switch kind {
	case rewardmodel.Rating:
		dk = datasets.Rating
	case rewardmodel.Generation:
		dk = datasets.Generation
	}
	return datasets.CheckGolds(dk, labels, ids, golds)
}

func (s *exampleScores) len() int { return max(len(s.gold), len(s.absErr), len(s.r1)) }

// metrics computes the task's metrics on the examples idx names (with
// repeats, as a bootstrap resample has them); nil means every example.
func (s *exampleScores) metrics(idx []int) []Metric {
	if idx == nil {
		idx = make([]int, s.len())
		for i := range idx {
			idx[i] = i
		}
	}
	n := float64(len(idx))
	switch s.kind {
	case rewardmodel.Classification:
		tp, fp, fn := make([]int, len(s.labels)), make([]int, len(s.labels)), make([]int, len(s.labels))
		correct := 0
		for _, i := range idx {
			g, p := s.gold[i], s.pred[i]
			if p == g {
				correct++
				tp[g]++
				continue
			}
			fn[g]++
			if p >= 0 {
				fp[p]++
			}
		}
		f1Sum := 0.0
		for l := range s.labels {
			// sklearn's convention: F1 of a label with no support and no predictions is 0.
			if d := 2*tp[l] + fp[l] + fn[l]; d > 0 {
				f1Sum += 2 * float64(tp[l]) / float64(d)
			}
		}
		return []Metric{{Name: "accuracy", Value: float64(correct) / n}, {Name: "f1_macro", Value: f1Sum / float64(len(s.labels))}}
	case rewardmodel.Rating:
		var abs, sq float64
		for _, i := range idx {
			abs += s.absErr[i]
			sq += s.absErr[i] * s.absErr[i]
		}
		return []Metric{{Name: "mae", Value: abs / n, Lower: true}, {Name: "rmse", Value: math.Sqrt(sq / n), Lower: true}}
	default:
		var r1, rl float64
		for _, i := range idx {
			r1 += s.r1[i]
			rl += s.rl[i]
		}
		return []Metric{{Name: "rouge1", Value: r1 / n}, {Name: "rougeL", Value: rl / n}}
	}
}

// PrimaryMetric is the metric a task is ranked by: accuracy
// (classification), MAE (rating), ROUGE-1 (generation), as LaMP reports.
func PrimaryMetric(kind rewardmodel.TaskKind) string {
	switch kind {
	case rewardmodel.Classification:
		return "accuracy"
	case rewardmodel.Rating:
		return "mae"
	}
	return "rouge1"
}

// ClassificationMetrics are accuracy and macro-F1 over the label set (LaMP-1
// and LaMP-2). A prediction outside the label set counts as wrong for every
// label, as LaMP's evaluation maps it to no label.
func ClassificationMetrics(pairs []Pair, labels []string) ([]Metric, error) {
	return TaskMetrics(rewardmodel.Classification, labels, pairs)
}

// RatingMetrics are MAE and RMSE (LaMP-3), every rating read as LaMP's
// evaluator reads it (a number out of the 1–5 range counts as it is). An
// unparseable prediction counts as the extreme farther from the gold rating.
func RatingMetrics(pairs []Pair) ([]Metric, error) {
	return TaskMetrics(rewardmodel.Rating, nil, pairs)
}

// GenerationMetrics are the mean ROUGE-1 and ROUGE-L F-measures (LaMP-4..7).
// The mean over examples is reported (HF evaluate's default reports a
// bootstrap median, which is close to but not exactly the mean).
func GenerationMetrics(pairs []Pair) ([]Metric, error) {
	return TaskMetrics(rewardmodel.Generation, nil, pairs)
}

// TaskMetrics computes a task's LaMP metrics: accuracy and macro-F1 over the
// task's labels (classification), MAE and RMSE (rating), ROUGE-1/L (generation).
func TaskMetrics(kind rewardmodel.TaskKind, labels []string, pairs []Pair) ([]Metric, error) {
	s, err := scoreExamples(kind, labels, pairs)
	if err != nil {
		return nil, err
	}
	return s.metrics(nil), nil
}

// Improvement is a model's gain over the base model on one task.
type Improvement struct {
	// Value is the mean over the task's metrics of (model − base)/|base|,
	// or of the absolute gain model − base where the base is 0, with the
	// sign flipped for error metrics so that positive is always better.
	Value float64 `json:"value"`
	// Absolute names the metrics whose base is 0: they entered with their
	// absolute gain (a ratio to 0 is undefined).
	Absolute []string `json:"absolute,omitempty"`
	Metrics  int      `json:"metrics"` // how many were averaged
}

// String is the improvement as a report shows it: a percentage, or an
// absolute gain where every metric's base is 0.
func (imp Improvement) String() string {
	switch {
	case len(imp.Absolute) == 0:
		return fmt.Sprintf("%+.1f%%", 100*imp.Value)
	case len(imp.Absolute) == imp.Metrics:
		return fmt.Sprintf("%+.3f absolute (base 0)", imp.Value)
	}
	return fmt.Sprintf("%+.1f%% (absolute gain for %s: base 0)", 100*imp.Value, strings.Join(imp.Absolute, ", "))
}

// ImprovementFormula states how Improvement is computed, for reports.
const ImprovementFormula = "per task, the mean over its metrics of (model − base)/|base|, where the base is 0 the absolute gain " +
	"model − base instead (as if the base were 1, marked in the table), the sign flipped for error metrics (↓) so that positive is better; " +
	"the mean is over every task, none dropped"

// RelativeImprovement compares a model with the base model on one task (see
// Improvement); no task is ever dropped for a base of 0.
func RelativeImprovement(model, base []Metric) (Improvement, error) {
	baseBy := map[string]Metric{}
	for _, m := range base {
		baseBy[m.Name] = m
	}
	var imp Improvement
	n := 0
	for _, m := range model {
		b, ok := baseBy[m.Name]
		if !ok {
			return imp, fmt.Errorf("relative improvement: base has no %s", m.Name)
		}
		r := m.Value - b.Value
		if b.Value != 0 {
			r /= math.Abs(b.Value)
		} else {
			imp.Absolute = append(imp.Absolute, m.Name)
		}
		if m.Lower {
			r = -r
		}
		imp.Value += r
		n++
	}
	if n == 0 {
		return imp, fmt.Errorf("relative improvement: no metric to compare")
	}
	imp.Value /= float64(n)
	imp.Metrics = n
	return imp, nil
}

// SortedLabels returns the distinct gold outputs, sorted: the label set of a
// classification task when none is declared.
func SortedLabels(pairs []Pair) []string {
	seen := map[string]bool{}
	var out []string
	for _, p := range pairs {
		g := datasets.StripPython(p.Gold)
		if !seen[g] {
			seen[g] = true
			out = append(out, g)
		}
	}
	sort.Strings(out)
	return out
}
