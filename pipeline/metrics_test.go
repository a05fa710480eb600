package pipeline

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
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
	model := []Metric{{Name: "mae", Value: 0.5, Lower: true}, {Name: "rmse", Value: 2.5, Lower: true}, {Name: "format", Value: 1, Diagnostic: true}}
	got, err := RelativeImprovement(model, base)
	if err != nil || !near(got, (0.5+(-0.25))/2) {
		t.Fatalf("got %v %v, want 0.125", got, err)
	}
	gen, _ := GenerationMetrics(pairs([]string{"the cat is on a mat"}, []string{"The cat sat on the mat!"}))
	if !near(gen[0].Value, 2.0/3) || !near(gen[1].Value, 2.0/3) {
		t.Fatalf("generation metrics %+v", gen)
	}
}

func TestReportWritesReadableFiles(t *testing.T) {
	r := &Report{Title: "demo", Model: "m.onnx", Dataset: "synth", Tasks: []TaskResult{{
		Task: "synth_rating", Split: "dev", Examples: 3,
		Model: []Metric{{Name: "mae", Value: 0.5, Lower: true}}, Base: []Metric{{Name: "mae", Value: 1, Lower: true}},
		Intermediate: []ModelMetrics{{Name: "sft", Metrics: []Metric{{Name: "mae", Value: 0.75, Lower: true}}}},
		Samples:      []Sample{{ID: "x1", Completion: "<think>…</think><answer>4</answer>", Answer: "4", Gold: "5", Reward: 0.75}},
	}}}
	if err := r.Finalize(); err != nil {
		t.Fatal(err)
	}
	if r.MeanRelI == nil || !near(*r.MeanRelI, 0.5) {
		t.Fatalf("mean relative improvement %v, want 0.5", r.MeanRelI)
	}
	dir := t.TempDir()
	if err := r.Write(dir); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(dir, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| base | sft | model |", "| synth_rating | dev | 3 | mae ↓ | 1.0000 | 0.7500 | **0.5000** |", "mean: +50.0%", "**x1**"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report.md lacks %q:\n%s", want, md)
		}
	}
	var back Report
	js, _ := os.ReadFile(filepath.Join(dir, "report.json"))
	if err := json.Unmarshal(js, &back); err != nil || len(back.Tasks) != 1 {
		t.Fatalf("report.json does not read back: %v", err)
	}
}
