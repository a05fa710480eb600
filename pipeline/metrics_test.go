package pipeline

import (
	"math"
	"testing"
)

func pairs(preds, golds []string) []Pair {
	out := make([]Pair, len(preds))
	for i := range preds {
		out[i] = Pair{ID: string(rune('a' + i)), Prediction: preds[i], Gold: golds[i]}
	}
	return out
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-12 }

func TestClassificationMatchesSklearn(t *testing.T) {
	// Reference: sklearn accuracy_score and f1_score(average="macro",
	// labels=[0,1,2]) with unknown predictions mapped to -1, as LaMP does.
	p := pairs([]string{"a", "b", "b", "x", "c", "b", "c"}, []string{"a", "a", "b", "c", "c", "b", "a"})
	m, err := ClassificationMetrics(p, []string{"a", "b", "c"})
	if err != nil {
		t.Fatal(err)
	}
	if !near(m[0].Value, 0.5714285714285714) || !near(m[1].Value, 0.6) {
		t.Fatalf("got %+v, sklearn says accuracy 0.5714285714285714, f1_macro 0.6", m)
	}
	if _, err := ClassificationMetrics(pairs([]string{"a"}, []string{"zzz"}), []string{"a"}); err == nil {
		t.Fatal("gold outside the label set accepted")
	}
}

func TestRatingUnparseableCountsAsFartherExtreme(t *testing.T) {
	m, err := RatingMetrics(pairs([]string{"4", "oops", "oops"}, []string{"5", "2", "4"}))
	if err != nil {
		t.Fatal(err)
	}
	// errors: |4-5|=1, gold 2 → 5 → 3, gold 4 → 1 → 3.
	if !near(m[0].Value, 7.0/3) || !near(m[1].Value, math.Sqrt(19.0/3)) || !m[0].Lower {
		t.Fatalf("got %+v", m)
	}
}

func TestRelativeImprovementInvertsErrorMetrics(t *testing.T) {
	base := []Metric{{Name: "mae", Value: 1.0, Lower: true}, {Name: "rmse", Value: 2.0, Lower: true}}
	model := []Metric{{Name: "mae", Value: 0.5, Lower: true}, {Name: "rmse", Value: 2.5, Lower: true}}
	got, err := RelativeImprovement(model, base)
	if err != nil || !near(got, (0.5+(-0.25))/2) {
		t.Fatalf("got %v %v, want 0.125", got, err)
	}
	gen, _ := GenerationMetrics(pairs([]string{"the cat is on a mat"}, []string{"The cat sat on the mat!"}))
	if !near(gen[0].Value, 2.0/3) || !near(gen[1].Value, 2.0/3) {
		t.Fatalf("generation metrics %+v", gen)
	}
}
