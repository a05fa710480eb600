package pipeline

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
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
	model := filepath.Join(dir, "prmu")
	if err := prmu.Save(model); err != nil {
		t.Fatal(err)
	}
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
			PRMU: prmu, Model: model, Prompt: PromptOptions{TopK: 4}, Batch: 5, Shard: sh})
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

// scoreFixture is a small predictions file, its examples and a PRMU saved
// in dir/NAME for each name (seeded differently: other weights).
func scoreFixture(t *testing.T, dir string, names ...string) (examples, predFile string, models map[string]*rewardmodel.PRMU) {
	t.Helper()
	cfg := datasets.DefaultSynthConfig()
	cfg.Users, cfg.Tasks = 12, []string{"synth_tag"}
	data, err := datasets.Synth(cfg)
	if err != nil {
		t.Fatal(err)
	}
	quiet := ort.Options{IntraOpThreads: 1, ConfigEntries: map[string]string{ort.SpinKey: "0"}}
	models = map[string]*rewardmodel.PRMU{}
	for i, name := range names {
		seed := uint64(3 + i)
		p, _, _, err := rewardmodel.TrainSynthPRMU(context.Background(), data, rewardmodel.PRMURecipe{
			Config: rewardmodel.PRMUConfig{Seed: seed}, Train: rewardmodel.PRMUTrainOptions{Steps: 3, Seed: seed, Session: quiet}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		if err := p.Save(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
		models[name] = p
	}
	set := data.Set("synth_tag", "dev")
	examples = filepath.Join(dir, "dev.arrow")
	if err := datasets.WriteRows(examples, set.Examples, func(p string) (*datasets.Writer[datasets.Example], error) {
		return datasets.CreateExamples(p, set.Task)
	}); err != nil {
		t.Fatal(err)
	}
	var preds []datasets.Prediction
	for _, e := range set.Examples {
		preds = append(preds, datasets.Prediction{ID: e.ID, Task: set.Task.Name, Model: "m", Prediction: e.Output})
	}
	predFile = filepath.Join(dir, "preds.arrow")
	if err := datasets.WriteRows(predFile, preds, datasets.CreatePredictions); err != nil {
		t.Fatal(err)
	}
	return examples, predFile, models
}

// A rerun into the same out with another PRMU, other profile retrieval or
// other predictions is refused, naming the setting: the parts of the first
// run are not taken as its scores.
func TestScorePRMURefusesPartsOfOtherSettings(t *testing.T) {
	dir := t.TempDir()
	examples, predFile, models := scoreFixture(t, dir, "p", "pf")
	out := filepath.Join(dir, "scored.parquet")
	cfg := func(name string) PRMUScoreConfig {
		return PRMUScoreConfig{Examples: examples, Predictions: predFile, Out: out, PRMU: models[name], Model: filepath.Join(dir, name),
			Prompt: PromptOptions{TopK: 8, Retrieval: "bm25"}, Batch: 4}
	}
	first, err := ScorePRMU(context.Background(), cfg("p"))
	if err != nil || !first.Merged || first.Done == 0 {
		t.Fatalf("first run: %+v, %v", first, err)
	}
	scored, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := ScorePRMU(context.Background(), cfg("p")); err != nil || st.Done != 0 || st.Skipped != first.Done {
		t.Fatalf("the same run again: %+v, %v; want every prediction skipped", st, err)
	}
	if st, err := ScorePRMU(context.Background(), PRMUScoreConfig{Examples: examples, Predictions: predFile, Out: out, PRMU: models["p"],
		Model: filepath.Join(dir, "p"), Prompt: PromptOptions{TopK: 8}, Batch: 7}); err != nil || st.Done != 0 {
		t.Fatalf("the same settings (default retrieval, another batch size): %+v, %v", st, err)
	}
	otherPreds := filepath.Join(dir, "preds2.arrow")
	if err := datasets.WriteRows(otherPreds, []datasets.Prediction{{ID: "x", Task: "synth_tag", Prediction: "comedy"}}, datasets.CreatePredictions); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		edit func(*PRMUScoreConfig)
		want string
	}{
		{"another PRMU", func(c *PRMUScoreConfig) { *c = cfg("pf") }, "sha256.model/model.onnx"},
		{"another profile-k", func(c *PRMUScoreConfig) { c.Prompt.TopK = 2 }, "retrieval.top_k"},
		{"another retrieval", func(c *PRMUScoreConfig) { c.Prompt.Retrieval = "recency" }, "retrieval.method"},
		{"other predictions", func(c *PRMUScoreConfig) { c.Predictions = otherPreds }, "sha256.predictions"},
	} {
		c2 := cfg("p")
		c.edit(&c2)
		st, err := ScorePRMU(context.Background(), c2)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s into the same out: %+v, %v; want a refusal naming %s", c.name, st, err, c.want)
		}
	}
	if after, _ := os.ReadFile(out); string(after) != string(scored) {
		t.Fatal("a refused run changed out")
	}
	// Parts made before the settings were recorded are not trusted either.
	if err := os.Remove(filepath.Join(out+".parts", "run.json")); err != nil {
		t.Fatal(err)
	}
	if _, err := ScorePRMU(context.Background(), cfg("p")); err == nil || !strings.Contains(err.Error(), out+".parts") {
		t.Fatalf("parts without a settings record: %v; want a refusal naming the folder", err)
	}
}

// A bad out extension or batch size is refused before any work: no parts
// folder is made.
func TestScorePRMURefusesBadOutAndBatchFirst(t *testing.T) {
	dir := t.TempDir()
	examples, predFile, models := scoreFixture(t, dir, "p")
	for _, c := range []struct {
		out   string
		batch int
		want  string
	}{
		{filepath.Join(dir, "s.json"), 4, "unknown extension"},
		{filepath.Join(dir, "s.parquet"), -1, "batch -1"},
	} {
		_, err := ScorePRMU(context.Background(), PRMUScoreConfig{Examples: examples, Predictions: predFile, Out: c.out, PRMU: models["p"],
			Model: filepath.Join(dir, "p"), Batch: c.batch})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("out %s, batch %d: %v; want an error naming %q", c.out, c.batch, err, c.want)
		}
		if _, err := os.Stat(c.out + ".parts"); !os.IsNotExist(err) {
			t.Errorf("out %s, batch %d: %s.parts was made (%v)", c.out, c.batch, c.out, err)
		}
	}
}
