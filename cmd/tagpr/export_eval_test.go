package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/datasets"
)

// A predictions table of two models (base and sft) is refused without
// --model, naming both and the flag; with --model it exports that model's
// predictions, one per id, which tagpr eval takes.
func TestExportPredictionsModelFlag(t *testing.T) {
	dir := t.TempDir()
	rows := []datasets.Prediction{
		{ID: "100", Task: "LaMP_3", Model: "base", Prediction: "3"},
		{ID: "101", Task: "LaMP_3", Model: "base", Prediction: "3"},
		{ID: "102", Task: "LaMP_3", Model: "base", Prediction: "3"},
		{ID: "100", Task: "LaMP_3", Model: "sft", Prediction: "1"},
		{ID: "101", Task: "LaMP_3", Model: "sft", Prediction: "2"},
		{ID: "102", Task: "LaMP_3", Model: "sft", Prediction: "3"},
	}
	preds := filepath.Join(dir, "preds.parquet")
	if err := datasets.WriteRows(preds, rows, datasets.CreatePredictions); err != nil {
		t.Fatal(err)
	}
	_, stderr, err := runTagpr(t, dir, nil, "data", "export-predictions", "--in", preds, "--task", "3", "--out", "x.json")
	if err == nil || !strings.Contains(stderr, `"base", "sft"`) || !strings.Contains(stderr, "--model") {
		t.Fatalf("two models without --model: err %v\n%s", err, stderr)
	}
	if fileExists(filepath.Join(dir, "x.json")) {
		t.Fatal("refused export left x.json")
	}
	if _, stderr, err := runTagpr(t, dir, nil, "data", "export-predictions", "--in", preds, "--task", "3", "--model", "sft", "--out", "x.json"); err != nil {
		t.Fatalf("--model sft: %v\n%s", err, stderr)
	}
	golds, _ := filepath.Abs("../../datasets/testdata/lamp/user/LaMP_3/dev_outputs.json") // 1, 2, 3
	out, stderr, err := runTagpr(t, dir, nil, "eval", "--task", "3", "--golds", golds, "--predictions", "x.json")
	if err != nil || !strings.Contains(out, "| LaMP_3 | dev | 3 | mae ↓ | 0.000 [0.000, 0.000] |") {
		t.Fatalf("eval of sft's export: %v\n%s%s", err, out, stderr)
	}
}

// tagpr eval reads LaMP-3 ratings as LaMP's evaluator does and says how many
// predictions were not numbers (report notes, report.json's "unparseable").
func TestEvalLaMP3CountsUnparseable(t *testing.T) {
	dir := t.TempDir()
	golds, _ := filepath.Abs("../../datasets/testdata/lamp/user/LaMP_3/dev_outputs.json") // 1, 2, 3
	preds := filepath.Join(dir, "p.json")
	// "10" counts as 10 (error 9), "２" as 2 (error 0), "five" as 5 (error 2): MAE 11/3.
	os.WriteFile(preds, []byte(`{"task":"LaMP_3","golds":[{"id":"100","output":"10"},{"id":"101","output":"２"},{"id":"102","output":"five"}]}`), 0o644)
	out, stderr, err := runTagpr(t, dir, nil, "eval", "--task", "3", "--golds", golds, "--predictions", preds, "--out", "rep")
	if err != nil {
		t.Fatalf("eval: %v\n%s", err, stderr)
	}
	for _, want := range []string{"| LaMP_3 | dev | 3 | mae ↓ | 3.667 ", "LaMP_3: model: 1 of 3 predictions are not numbers"} {
		if !strings.Contains(out, want) {
			t.Errorf("eval output lacks %q:\n%s", want, out)
		}
	}
	var rep struct {
		Tasks []struct {
			Models []struct {
				Name        string
				Unparseable *int `json:"unparseable"`
			}
		}
	}
	js, err := os.ReadFile(filepath.Join(dir, "rep", "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(js, &rep); err != nil || len(rep.Tasks) != 1 || len(rep.Tasks[0].Models) != 1 ||
		rep.Tasks[0].Models[0].Unparseable == nil || *rep.Tasks[0].Models[0].Unparseable != 1 {
		t.Fatalf("report.json unparseable: %v %+v", err, rep)
	}
}
