package pipeline

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/datasets"
)

func writeTestFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLaMPEvalRatingFiles(t *testing.T) {
	task, err := datasets.ParseTask("3")
	if err != nil {
		t.Fatal(err)
	}
	golds := "../datasets/testdata/lamp/user/LaMP_3/dev_outputs.json" // ids 100, 101, 102 → 1, 2, 3
	dir := t.TempDir()
	preds := writeTestFile(t, dir, "preds.json", `{"task":"LaMP_3","golds":[{"id":"100","output":"1"},{"id":"101","output":"3"},{"id":"102","output":"five"}]}`)
	base := writeTestFile(t, dir, "base.json", `{"task":"LaMP_3","golds":[{"id":"100","output":"5"},{"id":"101","output":"5"},{"id":"102","output":"5"}]}`)
	b := Bootstrap{Resamples: 200, Seed: 1}
	r, err := LaMPEval(task, golds, preds, base, "dev", b)
	if err != nil {
		t.Fatal(err)
	}
	// errors: 0, 1, and "five" is unparseable → the extreme farther from 3: both are 2 away, and LaMP takes 5
	// (1.0 if abs(1-3) > abs(5-3) else 5.0), an error of 2.
	if r.Examples != 3 || len(r.Models) != 2 || r.Models[0].Name != "base" || math.Abs(r.Models[1].Metrics[0].Value-1) > 1e-12 ||
		math.Abs(r.Models[0].Metrics[0].Value-(4+3+2)/3.0) > 1e-12 {
		t.Fatalf("models %+v", r.Models)
	}
	if u := r.Models[1].Unparseable; u == nil || *u != 1 || r.Models[0].Unparseable == nil || *r.Models[0].Unparseable != 0 {
		t.Fatalf("unparseable counts %v %v, want 1 and 0", r.Models[1].Unparseable, r.Models[0].Unparseable)
	}
	// The model's MAE of 1 against the base's 3 is a −2 difference and a 2/3 improvement.
	if len(r.Differences) != 1 || math.Abs(r.Differences[0].Value+2) > 1e-12 || !r.Differences[0].Better ||
		r.Models[1].Improvement == nil || math.Abs(r.Models[1].Improvement.Value-(2.0/3+1-math.Sqrt(5.0/29))/2) > 1e-12 {
		t.Fatalf("differences %+v improvement %+v", r.Differences, r.Models[1].Improvement)
	}
	missing := writeTestFile(t, dir, "missing.json", `{"task":"LaMP_3","golds":[{"id":"100","output":"1"}]}`)
	if _, err := LaMPEval(task, golds, missing, "", "dev", b); err == nil || !strings.Contains(err.Error(), "no prediction for 2 of the 3 ids") || !strings.Contains(err.Error(), "(first: 101, 102)") {
		t.Fatalf("missing prediction: %v", err)
	}
	extra := writeTestFile(t, dir, "extra.json", `{"task":"LaMP_3","golds":[{"id":"100","output":"1"},{"id":"101","output":"1"},{"id":"102","output":"1"},{"id":"999","output":"1"}]}`)
	if _, err := LaMPEval(task, golds, extra, "", "dev", b); err == nil || !strings.Contains(err.Error(), "999") {
		t.Fatalf("unknown id: %v", err)
	}
	broken := writeTestFile(t, dir, "broken.json", `{"task":"LaMP_3","golds":[{"id":"100",`)
	if _, err := LaMPEval(task, golds, broken, "", "dev", b); err == nil || !strings.Contains(err.Error(), broken) {
		t.Fatalf("truncated predictions: %v", err)
	}
}

// LaMP-3 reads ratings as its official evaluator does: any number Python's
// float() reads counts as it is, in 1–5 or not; only text it rejects (and,
// tagpr's one deviation, a non-finite value) takes the extreme farther from
// the gold: 1.0 if abs(1-gold) > abs(5-gold) else 5.0.
func TestLaMPEvalRatingsAsOfficialScorer(t *testing.T) {
	task, err := datasets.ParseTask("3")
	if err != nil {
		t.Fatal(err)
	}
	golds := "../datasets/testdata/lamp/user/LaMP_3/dev_outputs.json" // ids 100, 101, 102 → 1, 2, 3
	dir := t.TempDir()
	b := Bootstrap{Resamples: 100, Seed: 1}
	cases := []struct {
		preds       [3]string
		errs        [3]float64
		unparseable int
	}{
		// "10" is 10 (error 9, not 4); full-width "２" is 2; "nan" is unparseable: gold 3 takes 5.
		{[3]string{"10", "２", "nan"}, [3]float64{9, 0, 2}, 1},
		// " -1 " is -1; "1_0" is 10; hexadecimal "0x1p1" is not a Python number (Go's ParseFloat reads 2).
		{[3]string{" -1 ", "1_0", "0x1p1"}, [3]float64{2, 8, 2}, 1},
		// "0" is 0; "inf" and "five" are unparseable: gold 2 takes 5, gold 3 takes 5.
		{[3]string{"0", "inf", "five"}, [3]float64{1, 3, 2}, 2},
	}
	for k, c := range cases {
		body := fmt.Sprintf(`{"task":"LaMP_3","golds":[{"id":"100","output":%q},{"id":"101","output":%q},{"id":"102","output":%q}]}`, c.preds[0], c.preds[1], c.preds[2])
		preds := writeTestFile(t, dir, fmt.Sprintf("p%d.json", k), body)
		r, err := LaMPEval(task, golds, preds, "", "dev", b)
		if err != nil {
			t.Fatal(err)
		}
		mae := (c.errs[0] + c.errs[1] + c.errs[2]) / 3
		rmse := math.Sqrt((c.errs[0]*c.errs[0] + c.errs[1]*c.errs[1] + c.errs[2]*c.errs[2]) / 3)
		m := r.Models[0]
		if !near(m.Metrics[0].Value, mae) || !near(m.Metrics[1].Value, rmse) || math.IsNaN(m.Metrics[1].Value) {
			t.Errorf("%q: %+v, want MAE %v, RMSE %v", c.preds, m.Metrics, mae, rmse)
		}
		if m.Unparseable == nil || *m.Unparseable != c.unparseable {
			t.Errorf("%q: unparseable %v, want %d", c.preds, m.Unparseable, c.unparseable)
		}
		if note := fmt.Sprintf("model: %d of 3 predictions are not numbers", c.unparseable); len(r.Notes) != 2 || !strings.Contains(r.Notes[1], note) ||
			!strings.HasPrefix(r.Notes[0], "only 3 examples") {
			t.Errorf("%q: notes %q lack %q", c.preds, r.Notes, note)
		}
	}
	if v := fartherRating(3); v != 5 {
		t.Errorf("gold 3 takes %v, LaMP takes 5", v)
	}
	if fartherRating(3.5) != 1 || fartherRating(2) != 5 || fartherRating(0) != 5 {
		t.Error("fartherRating is not 1.0 if abs(1-gold) > abs(5-gold) else 5.0")
	}
}

// Golds that are not the task's are refused by file name, with the labels
// quoted and the --task that reads them.
func TestLaMPEvalWrongGolds(t *testing.T) {
	dir := t.TempDir()
	b := Bootstrap{Resamples: 100, Seed: 1}
	m, _ := datasets.ParseTask("2")
	n, _ := datasets.ParseTask("2N")
	r3, _ := datasets.ParseTask("3")
	news := writeTestFile(t, dir, "LaMP_2N_dev_outputs.json", `{"task":"LaMP_2","golds":[{"id":"1000","output":"religion"},{"id":"1001","output":"sports"}]}`)
	movies := writeTestFile(t, dir, "LaMP_2M_dev_outputs.json", `{"task":"LaMP_2","golds":[{"id":"1","output":"comedy"},{"id":"2","output":"true story"}]}`)
	labelled := writeTestFile(t, dir, "mislabelled.json", `{"task":"LaMP_3","golds":[{"id":"1000","output":"religion"}]}`)
	ratings := writeTestFile(t, dir, "LaMP_3_dev_outputs.json", `{"task":"LaMP_3","golds":[{"id":"1","output":"4"},{"id":"2","output":"five"}]}`)
	cases := []struct {
		task  *datasets.Task
		golds string
		want  []string
	}{
		{m, news, []string{news, `gold "religion" of 1000 is not one of the labels ["sci-fi" "based on a book" "comedy"`, "--task 2N"}},
		{n, movies, []string{movies, `gold "comedy" of 1 is not one of the labels ["travel" "education"`, "--task 2M"}},
		{r3, labelled, []string{labelled, `gold "religion" of 1000 is not a number`, "--task 2N"}},
		{r3, news, []string{news, `task is "LaMP_2"`, "--task 2M or --task 2N"}},
		{r3, ratings, []string{ratings, `gold "five" of 2 is not a number`}},
	}
	for _, c := range cases {
		preds := writeTestFile(t, dir, "preds.json", `{"task":"LaMP_2","golds":[]}`)
		_, err := LaMPEval(c.task, c.golds, preds, "", "dev", b)
		if err == nil {
			t.Errorf("%s with %s: no error", c.task.Name, c.golds)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s with %s: error %q lacks %q", c.task.Name, c.golds, err, w)
			}
		}
	}
	// A predictions file with an id twice is called so, not a golds file.
	golds := "../datasets/testdata/lamp/user/LaMP_3/dev_outputs.json"
	dup := writeTestFile(t, dir, "dup.json", `{"task":"LaMP_3","golds":[{"id":"100","output":"1"},{"id":"100","output":"2"}]}`)
	if _, err := LaMPEval(r3, golds, dup, "", "dev", b); err == nil || !strings.Contains(err.Error(), "read predictions "+dup+": prediction 1: duplicate id") {
		t.Fatalf("duplicate prediction id: %v", err)
	}
}
