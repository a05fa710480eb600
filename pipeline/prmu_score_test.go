package pipeline

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/onnx/ort"
	"github.com/tagpr/tagpr/rewardmodel"
)

// PRMU scoring of a predictions file, whole and as two shard workers: the
// assembled shards are the whole run's bytes; an unparseable prediction gets
// r_prmu 0 and no raw score, as in RL.
func TestScorePRMUShardsMergeToTheWholeRun(t *testing.T) {
	cfg := datasets.DefaultSynthConfig()
	cfg.Users, cfg.Tasks = 16, []string{"synth_tag"}
	data, err := datasets.Synth(cfg)
	if err != nil {
		t.Fatal(err)
	}
	quiet := ort.Options{IntraOpThreads: 1, ConfigEntries: map[string]string{ort.SpinKey: "0"}}
	prmu, _, _, err := rewardmodel.TrainSynthPRMU(context.Background(), data, rewardmodel.PRMURecipe{
		Config: rewardmodel.PRMUConfig{Seed: 3}, Train: rewardmodel.PRMUTrainOptions{Steps: 5, Seed: 3, Session: quiet}})
	if err != nil {
		t.Fatal(err)
	}
	defer prmu.Close()
	dir := t.TempDir()
	set := data.Set("synth_tag", "dev")
	examples := filepath.Join(dir, "dev.arrow")
	if err := datasets.WriteRows(examples, set.Examples, func(p string) (*datasets.Writer[datasets.Example], error) {
		return datasets.CreateExamples(p, set.Task)
	}); err != nil {
		t.Fatal(err)
	}
	var preds []datasets.Prediction
	for i, e := range set.Examples {
		p := datasets.Prediction{ID: e.ID, Task: set.Task.Name, Model: "m", Completion: "<answer>" + e.Output + "</answer>", Prediction: e.Output,
			Metrics: []datasets.NamedValue{{Name: "accuracy", Value: 1}}}
		if i%4 == 1 {
			p.Prediction = ""
		}
		preds = append(preds, p)
	}
	predFile := filepath.Join(dir, "preds.arrow")
	if err := datasets.WriteRows(predFile, preds, datasets.CreatePredictions); err != nil {
		t.Fatal(err)
	}
	run := func(out string, sh datasets.Shard) PRMUScoreStats {
		st, err := ScorePRMU(context.Background(), PRMUScoreConfig{Examples: examples, Predictions: predFile, Out: out,
			PRMU: prmu, Prompt: PromptOptions{TopK: 4}, Batch: 5, Shard: sh})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	whole := filepath.Join(dir, "whole.arrow")
	if st := run(whole, datasets.Shard{}); !st.Merged || st.Done != len(preds) {
		t.Fatalf("whole run: %+v", st)
	}
	split := filepath.Join(dir, "split.arrow")
	for i := range 2 {
		if st := run(split, datasets.Shard{Index: i, Count: 2}); st.Merged || st.Done == 0 {
			t.Fatalf("shard %d: %+v", i, st)
		}
	}
	if st := run(split, datasets.Shard{Index: 1, Count: 2}); st.Done != 0 || st.Skipped == 0 {
		t.Fatalf("a rerun of a finished shard redid work: %+v", st)
	}
	if _, err := datasets.AssembleFile(split, predFile); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(whole)
	b, _ := os.ReadFile(split)
	if len(a) == 0 || string(a) != string(b) {
		t.Fatal("the assembled shards differ from the whole run")
	}
	rows, err := datasets.ReadPredictions(whole, datasets.ReadOptions{})
	if err != nil || len(rows) != len(preds) {
		t.Fatalf("%d rows, %v", len(rows), err)
	}
	for i, r := range rows {
		m := map[string]float64{}
		for _, v := range r.Metrics {
			m[v.Name] = v.Value
		}
		score, scored := m[MetricPRMUScore]
		switch {
		case r.ID != preds[i].ID || m["accuracy"] != 1:
			t.Fatalf("row %d: %+v (order or earlier metrics lost)", i, r)
		case r.Prediction == "" && (scored || m[MetricRPRMU] != 0):
			t.Fatalf("unparseable row %d: %+v", i, r.Metrics)
		case r.Prediction != "" && (!scored || math.Abs(m[MetricRPRMU]-rewardmodel.PRMUProbability(score)) > 1e-12):
			t.Fatalf("row %d: %+v", i, r.Metrics)
		}
	}
}
