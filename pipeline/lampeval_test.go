package pipeline

import (
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
	r, err := LaMPEval(task, golds, preds, base, b)
	if err != nil {
		t.Fatal(err)
	}
	// errors: 0, 1, and "five" is unparseable → the extreme farther from 3 … both are 2 away; LaMP takes 1 (gold ≥ 3).
	if r.Examples != 3 || len(r.Models) != 2 || r.Models[0].Name != "base" || math.Abs(r.Models[1].Metrics[0].Value-1) > 1e-12 ||
		math.Abs(r.Models[0].Metrics[0].Value-(4+3+2)/3.0) > 1e-12 {
		t.Fatalf("models %+v", r.Models)
	}
	// The model's MAE of 1 against the base's 3 is a −2 difference and a 2/3 improvement.
	if len(r.Differences) != 1 || math.Abs(r.Differences[0].Value+2) > 1e-12 || !r.Differences[0].Better ||
		r.Models[1].Improvement == nil || math.Abs(r.Models[1].Improvement.Value-(2.0/3+1-math.Sqrt(5.0/29))/2) > 1e-12 {
		t.Fatalf("differences %+v improvement %+v", r.Differences, r.Models[1].Improvement)
	}
	missing := writeTestFile(t, dir, "missing.json", `{"task":"LaMP_3","golds":[{"id":"100","output":"1"}]}`)
	if _, err := LaMPEval(task, golds, missing, "", b); err == nil || !strings.Contains(err.Error(), "no prediction for id 101") {
		t.Fatalf("missing prediction: %v", err)
	}
	extra := writeTestFile(t, dir, "extra.json", `{"task":"LaMP_3","golds":[{"id":"100","output":"1"},{"id":"101","output":"1"},{"id":"102","output":"1"},{"id":"999","output":"1"}]}`)
	if _, err := LaMPEval(task, golds, extra, "", b); err == nil || !strings.Contains(err.Error(), "999") {
		t.Fatalf("unknown id: %v", err)
	}
	broken := writeTestFile(t, dir, "broken.json", `{"task":"LaMP_3","golds":[{"id":"100",`)
	if _, err := LaMPEval(task, golds, broken, "", b); err == nil || !strings.Contains(err.Error(), broken) {
		t.Fatalf("truncated predictions: %v", err)
	}
}
