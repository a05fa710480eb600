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
	model := []Metric{{Name: "mae", Value: 0.5, Lower: true}, {Name: "rmse", Value: 2.5, Lower: true}}
	got, err := RelativeImprovement(model, base)
	if err != nil || !near(got.Value, (0.5+(-0.25))/2) || len(got.Absolute) != 0 {
		t.Fatalf("got %+v %v, want 0.125", got, err)
	}
	gen, _ := GenerationMetrics(pairs([]string{"the cat is on a mat"}, []string{"The cat sat on the mat!"}))
	if !near(gen[0].Value, 2.0/3) || !near(gen[1].Value, 2.0/3) {
		t.Fatalf("generation metrics %+v", gen)
	}
}

// A base of 0 never drops a metric or a task: its absolute gain enters.
func TestRelativeImprovementZeroBase(t *testing.T) {
	base := []Metric{{Name: "accuracy", Value: 0}, {Name: "f1_macro", Value: 0.2}}
	model := []Metric{{Name: "accuracy", Value: 0.4}, {Name: "f1_macro", Value: 0.3}}
	got, err := RelativeImprovement(model, base)
	if err != nil || !near(got.Value, (0.4+0.5)/2) || len(got.Absolute) != 1 || got.Absolute[0] != "accuracy" {
		t.Fatalf("got %+v %v, want 0.45 with accuracy absolute", got, err)
	}
	allZero, err := RelativeImprovement([]Metric{{Name: "rouge1", Value: 0.25}}, []Metric{{Name: "rouge1", Value: 0}})
	if err != nil || !near(allZero.Value, 0.25) {
		t.Fatalf("all-zero base: %+v %v", allZero, err)
	}
}

// The bootstrap is deterministic for a seed, its interval holds the value,
// and a paired difference of a model with itself is exactly 0.
func TestBootstrapIntervals(t *testing.T) {
	var preds, golds []string
	for i := range 60 {
		golds = append(golds, []string{"a", "b", "c"}[i%3])
		p := golds[i]
		if i%4 == 0 {
			p = "a"
		}
		preds = append(preds, p)
	}
	s, err := scoreExamples("classification", []string{"a", "b", "c"}, pairs(preds, golds))
	if err != nil {
		t.Fatal(err)
	}
	rs := resamples(60, 500, 7, "task/dev")
	again := resamples(60, 500, 7, "task/dev")
	other := resamples(60, 500, 7, "other/dev")
	if rs[3][5] != again[3][5] || rs[499][59] != again[499][59] {
		t.Fatal("the same seed and key drew different resamples")
	}
	same := 0
	for i := range rs[0] {
		if rs[0][i] == other[0][i] {
			same++
		}
	}
	if same > 10 {
		t.Errorf("another key drew %d of 60 identical indexes", same)
	}
	vals := resampledMetrics(s, rs)
	ci := percentileCI(vals[0])
	acc := s.metrics(nil)[0].Value
	if !(ci[0] < acc && acc < ci[1]) || ci[1]-ci[0] > 0.4 || ci[1]-ci[0] < 0.05 {
		t.Fatalf("accuracy %.3f, interval %v", acc, ci)
	}
	if got := percentileCI([]float64{4, 1, 3, 2, 5}); !near(got[0], 1.1) || !near(got[1], 4.9) {
		t.Fatalf("percentiles of 1..5: %v, want numpy's [1.1, 4.9]", got)
	}
}

func TestReportWritesReadableFiles(t *testing.T) {
	ci := func(lo, hi float64) *[2]float64 { return &[2]float64{lo, hi} }
	te := TaskEval{Task: "synth_rate", Split: "dev", Kind: "rating", Examples: 3, Primary: "mae", Bootstrap: Bootstrap{Resamples: 100, Seed: 1},
		Models: []ModelEval{
			{Name: "base", Metrics: []Metric{{Name: "mae", Value: 1, Lower: true, CI95: ci(0.5, 1.5)}}},
			{Name: "sft", Metrics: []Metric{{Name: "mae", Value: 0.75, Lower: true, CI95: ci(0.25, 1.25)}}, Improvement: &Improvement{Value: 0.25},
				Samples: []Sample{{ID: "x1", Completion: "<think><recall_history>a & b</recall_history></think><answer>4</answer>", Answer: "4", Gold: "5", Reward: 0.75}}},
			{Name: BaselineBlind, Baseline: true, Metrics: []Metric{{Name: "mae", Value: 0.8, Lower: true, CI95: ci(0.4, 1.2)}}},
		},
		Differences: []Difference{{Model: "sft", Against: "base", Metric: "mae", Value: -0.25, CI95: [2]float64{-0.6, 0.1}}}}
	r := &Report{Title: "demo", Model: "m.onnx", Dataset: "synth", Models: []string{"base", "sft"}, Tasks: []TaskEval{te}}
	r.Finalize()
	if !near(r.MeanImprovement["sft"], 0.25) {
		t.Fatalf("mean improvement %v, want sft 0.25", r.MeanImprovement)
	}
	dir := t.TempDir()
	if err := r.Write(dir); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(dir, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| base | sft | profile_blind |", "| synth_rate | dev | 3 | mae ↓ | 1.000 [0.500, 1.500] | 0.750 [0.250, 1.250] | 0.800 [0.400, 1.200] |",
		"| synth_rate | sft − base | mae ↓ | -0.250 | [-0.600, +0.100] | not significant |", "**Not significant**", "synth_rate: sft vs base", "**+25.0%**", "**x1** (partly right"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report.md lacks %q:\n%s", want, md)
		}
	}
	var back Report
	js, _ := os.ReadFile(filepath.Join(dir, "report.json"))
	if err := json.Unmarshal(js, &back); err != nil || len(back.Tasks) != 1 {
		t.Fatalf("report.json does not read back: %v", err)
	}
	var mf struct {
		Tasks map[string]struct {
			Metric         string
			HigherIsBetter bool `json:"higher_is_better"`
			N              int
			Models         map[string]struct {
				Value float64
				CI95  [2]float64
			}
		}
		Stages []string
	}
	js, _ = os.ReadFile(filepath.Join(dir, "metrics.json"))
	if err := json.Unmarshal(js, &mf); err != nil {
		t.Fatal(err)
	}
	tm := mf.Tasks["synth_rate"]
	if tm.Metric != "mae" || tm.HigherIsBetter || tm.N != 3 || len(tm.Models) != 3 || tm.Models["sft"].Value != 0.75 || tm.Models["sft"].CI95 != [2]float64{0.25, 1.25} ||
		strings.Join(mf.Stages, ",") != "base,sft" {
		t.Fatalf("metrics.json: %s", js)
	}
	page, _ := os.ReadFile(filepath.Join(dir, "report.html"))
	for _, want := range []string{`&lt;recall_history&gt;`, `a &amp; b`, `data-table="results"`, `data-model="profile_blind"`} {
		if !strings.Contains(string(page), want) {
			t.Errorf("report.html lacks %q", want)
		}
	}
	// A report that cannot be written whole (report.html's path is a
	// folder here; a full disk does the same) leaves none of its files,
	// new or old: they would be taken for one report, or block `eval --out`.
	os.Remove(filepath.Join(dir, "report.html"))
	if err := os.MkdirAll(filepath.Join(dir, "report.html", "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := r.Write(dir); err == nil {
		t.Fatal("report.html unwritable: no error")
	}
	for _, name := range []string{"report.json", "metrics.json", "report.md"} {
		if _, err := os.Stat(filepath.Join(dir, name)); !os.IsNotExist(err) {
			t.Errorf("%s is there after a failed write (%v)", name, err)
		}
	}
	// A NaN never reaches a file.
	r.Tasks[0].Models[0].Metrics[0].Value = math.NaN()
	if err := r.Write(t.TempDir()); err == nil {
		t.Error("a NaN metric was written")
	}
}

// A task evaluated on several splits: its tables name the split, and its
// improvement enters the mean once (not once per split).
func TestReportSeveralSplits(t *testing.T) {
	ci := func(v float64) *[2]float64 { return &[2]float64{v - 0.1, v + 0.1} }
	task := func(name, split string, base, sft, imp float64) TaskEval {
		return TaskEval{Task: name, Split: split, Kind: "classification", Examples: 30, Primary: "accuracy", Higher: true, Bootstrap: Bootstrap{Resamples: 100, Seed: 1},
			Models: []ModelEval{
				{Name: "base", Metrics: []Metric{{Name: "accuracy", Value: base, CI95: ci(base)}}},
				{Name: "sft", Metrics: []Metric{{Name: "accuracy", Value: sft, CI95: ci(sft)}}, Improvement: &Improvement{Value: imp, Metrics: 1}},
			},
			Differences: []Difference{{Model: "sft", Against: "base", Metric: "accuracy", Value: sft - base, CI95: [2]float64{-0.1, 0.3}}}}
	}
	r := &Report{Title: "splits", Models: []string{"base", "sft"}, Tasks: []TaskEval{
		task("a", "train", 0.5, 0.9, 0.8), task("a", "dev", 0.5, 0.6, 0.2), task("b", "dev", 0.5, 0.55, 0.1)}}
	r.Finalize()
	// a: (0.8 + 0.2)/2 = 0.5, b: 0.1 → 0.3 (not (0.8 + 0.2 + 0.1)/3).
	if !near(r.MeanImprovement["sft"], 0.3) {
		t.Errorf("mean improvement %v, want sft 0.3 (each task once)", r.MeanImprovement["sft"])
	}
	md := r.Markdown()
	for _, want := range []string{"| a (train) | sft − base |", "| a (dev) | sft − base |", "| b | sft − base |",
		"a (train): sft vs base; a (dev): sft vs base; b: sft vs base", "| model | a (train) | a (dev) | b | mean |"} {
		if !strings.Contains(md, want) {
			t.Errorf("report.md lacks %q:\n%s", want, md)
		}
	}
	page, err := r.HTML()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`<td class="l">a (train)</td><td class="l">sft − base</td>`, `<th>a (dev)</th>`, `<td class="l">a (dev)</td><td class="l">accuracy ↑</td>`} {
		if !strings.Contains(page, want) {
			t.Errorf("report.html lacks %q", want)
		}
	}
}

// metrics.json keys a task's dev split by the task's name, even when
// train comes first in the report.
func TestMetricsJSONKeysDev(t *testing.T) {
	r := &Report{Tasks: []TaskEval{{Task: "a", Split: "train"}, {Task: "a", Split: "dev"}, {Task: "b", Split: "test"}, {Task: "b", Split: "dev"}}}
	mf := r.MetricsJSON()
	if mf.Tasks["a"].Split != "dev" || mf.Tasks["a/train"].Split != "train" || mf.Tasks["b"].Split != "dev" || mf.Tasks["b/test"].Split != "test" {
		t.Errorf("metrics.json keys: %v; want a and b dev, a/train, b/test", mf.Tasks)
	}
}

// On fewer than 20 examples a significant difference says its interval is
// rough where it is stated, not only in a note at the end: at n = 2 the
// tables read "better, significant" and "Every difference above is
// significant." plainly.
func TestReportSmallNSignificanceIsRough(t *testing.T) {
	ci := func(v float64) *[2]float64 { return &[2]float64{v, v} }
	te := TaskEval{Task: "LaMP_3", Split: "dev", Examples: 2, Primary: "mae", Bootstrap: Bootstrap{Resamples: 100, Seed: 1},
		Models: []ModelEval{
			{Name: "base", Metrics: []Metric{{Name: "mae", Value: 3, Lower: true, CI95: ci(3)}}},
			{Name: "model", Metrics: []Metric{{Name: "mae", Value: 0.5, Lower: true, CI95: ci(0.5)}}},
		},
		Differences: []Difference{{Model: "model", Against: "base", Metric: "mae", Value: -2.5, CI95: [2]float64{-4, -1}, Better: true, Significant: true}}}
	r := &Report{Title: "n=2", Tasks: []TaskEval{te}}
	md := r.Markdown()
	for _, want := range []string{"| better, significant (n = 2: rough) |", "Every difference above is significant (where a task has fewer than 20 examples, only roughly"} {
		if !strings.Contains(md, want) {
			t.Errorf("report.md lacks %q:\n%s", want, md)
		}
	}
	page, err := r.HTML()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{">better, significant (n = 2: rough)</td>", "only roughly"} {
		if !strings.Contains(page, want) {
			t.Errorf("report.html lacks %q", want)
		}
	}
}

// A significant difference whose lower bound is above 0 but under 0.0005
// (0.975/n at LaMP's n ≈ 2000) read "[+0.000, +0.004] better, significant":
// the bound now shows its digits.
func TestReportSmallBoundsNotShownAsZero(t *testing.T) {
	ci := &[2]float64{0.5, 0.6}
	te := TaskEval{Task: "LaMP_1", Split: "dev", Examples: 2000, Primary: "accuracy", Higher: true,
		Models:      []ModelEval{{Name: "base", Metrics: []Metric{{Name: "accuracy", Value: 0.55, CI95: ci}}}, {Name: "sft", Metrics: []Metric{{Name: "accuracy", Value: 0.552, CI95: ci}}}},
		Differences: []Difference{{Model: "sft", Against: "base", Metric: "accuracy", Value: 0.002, CI95: [2]float64{0.0004875, 0.004}, Better: true, Significant: true}}}
	r := &Report{Title: "bounds", Tasks: []TaskEval{te}}
	want := "| +0.002 | [+0.00049, +0.004] | better, significant |"
	if md := r.Markdown(); !strings.Contains(md, want) {
		t.Errorf("report.md lacks %q:\n%s", want, md)
	}
	if page, _ := r.HTML(); !strings.Contains(page, "<td>[+0.00049, +0.004]</td>") {
		t.Errorf("report.html shows the bound as 0")
	}
}

// A sample whose completion holds a code fence (a model answering with
// ```) stays inside its code block in report.md, and a gold or answer with
// backticks inside its code span: the fixed ``` fence closed at the
// model's first fence and the rest of the page rendered as Markdown.
func TestReportMarkdownSampleWithBackticks(t *testing.T) {
	completion := "<think>\n<draft>```python\nprint(1)\n```</draft>\n</think>\n<answer>`x` ````</answer>"
	te := TaskEval{Task: "LaMP_5", Split: "dev", Examples: 1, Primary: "rouge1", Higher: true,
		Models: []ModelEval{{Name: "sft", Metrics: []Metric{{Name: "rouge1", Value: 0}},
			Samples: []Sample{{ID: "q1", Completion: completion, Answer: "`x` ````", Gold: "a ` b"}}}}}
	r := &Report{Title: "fences", Models: []string{"sft"}, Tasks: []TaskEval{te}}
	md := r.Markdown()
	for _, want := range []string{"— gold `` a ` b ``, answer ````` `x` ```` `````", "\n`````\n" + completion + "\n`````\n"} {
		if !strings.Contains(md, want) {
			t.Errorf("report.md lacks %q:\n%s", want, md)
		}
	}
}

// report.md's tag table has the page's columns: the format rate (exactly
// one <answer> after </think>) was on the page only.
func TestReportMarkdownTagTableHasFormat(t *testing.T) {
	te := TaskEval{Task: "LaMP_1", Split: "dev", Examples: 4, Primary: "accuracy", Higher: true,
		Models: []ModelEval{{Name: "sft", Metrics: []Metric{{Name: "accuracy", Value: 0.5}},
			Tags: &TagStats{Completions: 4, Pass: 0.25, Constraints: map[string]float64{"well_formed": 1}, MeanReward: 0.6, Format: 0.75}}}}
	r := &Report{Title: "tags", Models: []string{"sft"}, Tasks: []TaskEval{te}}
	md := r.Markdown()
	for _, want := range []string{"| mean R_tag | format |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n", "| LaMP_1 | sft | 0.250 | 1.000 | 0.000 | 0.000 | 0.000 | 0.000 | 0.600 | 0.750 |"} {
		if !strings.Contains(md, want) {
			t.Errorf("report.md lacks %q:\n%s", want, md)
		}
	}
}
