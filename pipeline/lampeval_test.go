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
	r, err := LaMPEval(task, golds, preds, base)
	if err != nil {
		t.Fatal(err)
	}
	// errors: 0, 1, and "five" is unparseable → the extreme farther from 3 … both are 2 away; LaMP takes 1 (gold ≥ 3).
	if r.Examples != 3 || math.Abs(r.Model[0].Value-1) > 1e-12 || math.Abs(r.Base[0].Value-(4+3+2)/3.0) > 1e-12 {
		t.Fatalf("metrics %+v base %+v", r.Model, r.Base)
	}
	missing := writeTestFile(t, dir, "missing.json", `{"task":"LaMP_3","golds":[{"id":"100","output":"1"}]}`)
	if _, err := LaMPEval(task, golds, missing, ""); err == nil || !strings.Contains(err.Error(), "no prediction for id 101") {
		t.Fatalf("missing prediction: %v", err)
	}
	extra := writeTestFile(t, dir, "extra.json", `{"task":"LaMP_3","golds":[{"id":"100","output":"1"},{"id":"101","output":"1"},{"id":"102","output":"1"},{"id":"999","output":"1"}]}`)
	if _, err := LaMPEval(task, golds, extra, ""); err == nil || !strings.Contains(err.Error(), "999") {
		t.Fatalf("unknown id: %v", err)
	}
	broken := writeTestFile(t, dir, "broken.json", `{"task":"LaMP_3","golds":[{"id":"100",`)
	if _, err := LaMPEval(task, golds, broken, ""); err == nil || !strings.Contains(err.Error(), broken) {
		t.Fatalf("truncated predictions: %v", err)
	}
}
