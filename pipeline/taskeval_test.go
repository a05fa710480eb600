package pipeline

import (
	"fmt"
	"testing"
)

// RL stages that branch from one SFT model (from: start) are each compared
// with SFT, a stage that continues another with that stage, and a stage
// whose parent was not evaluated with its nearest evaluated ancestor; the
// models' column order does not matter.
func TestDifferencesAgainstFrom(t *testing.T) {
	r := &runEnv{cfg: RunConfig{Stages: StagesConfig{RL: []RLStage{
		{Name: "task_only", From: RLFromStart},
		{Name: "no_prmu", From: RLFromStart},
		{Name: "guided", From: RLFromStart},
		{Name: "exploratory", From: "guided"},
		{Name: "more"}, // "": continues exploratory
	}}}}
	names := []string{ModelBase, ModelSFT, "rl:task_only", "rl:no_prmu", "rl:guided", "rl:exploratory", "rl:more"}
	all := map[string]bool{}
	for _, n := range names {
		all[n] = true
	}
	want := map[string]string{ModelBase: "", ModelSFT: ModelBase, "rl:task_only": ModelSFT, "rl:no_prmu": ModelSFT, "rl:guided": ModelSFT,
		"rl:exploratory": "rl:guided", "rl:more": "rl:exploratory"}
	for _, n := range names {
		if got := r.trainedFrom(n, all); got != want[n] {
			t.Errorf("trainedFrom(%s) = %q, want %q", n, got, want[n])
		}
	}
	some := map[string]bool{ModelBase: true, "rl:task_only": true, "rl:more": true}
	for n, w := range map[string]string{"rl:task_only": ModelBase, "rl:more": ModelBase} {
		if got := r.trainedFrom(n, some); got != w {
			t.Errorf("without SFT and guided evaluated: trainedFrom(%s) = %q, want %q", n, got, w)
		}
	}

	// The differences table: each model against its from, then the rules.
	te := TaskEval{}
	var from []string
	resampled := make([][][]float64, len(names)+1)
	for k, n := range append(names, BaselineBlind) {
		v := float64(k) / 10
		te.Models = append(te.Models, ModelEval{Name: n, Baseline: n == BaselineBlind, Metrics: []Metric{{Name: "accuracy", Value: v}}})
		from = append(from, want[n])
		resampled[k] = [][]float64{{v, v + 0.01, v - 0.01}}
	}
	var got []string
	for _, d := range differences(te, from, resampled, 0) {
		got = append(got, d.Model+" − "+d.Against)
	}
	wantDiffs := []string{"sft − base", "rl:task_only − sft", "rl:no_prmu − sft", "rl:guided − sft", "rl:exploratory − rl:guided", "rl:more − rl:exploratory",
		"sft − profile_blind", "rl:task_only − profile_blind", "rl:no_prmu − profile_blind", "rl:guided − profile_blind", "rl:exploratory − profile_blind", "rl:more − profile_blind"}
	if fmt.Sprint(got) != fmt.Sprint(wantDiffs) {
		t.Errorf("differences:\n got %v\nwant %v", got, wantDiffs)
	}
	// Without from (LaMP's eval): each model against the one before it.
	got = got[:0]
	for _, d := range differences(te, make([]string, len(from)), resampled, 0)[:3] {
		got = append(got, d.Model+" − "+d.Against)
	}
	if fmt.Sprint(got) != fmt.Sprint([]string{"sft − base", "rl:task_only − sft", "rl:no_prmu − rl:task_only"}) {
		t.Errorf("differences without from: %v", got)
	}
}

// stages.predict.models in any order is evaluated in training order: with
// [rl:guided, sft, base] the report compared base with SFT ("base − sft")
// and never SFT with the base.
func TestEvalModelsTrainingOrder(t *testing.T) {
	r := &runEnv{cfg: RunConfig{Stages: StagesConfig{
		RL:      []RLStage{{Name: "guided"}, {Name: "exploratory"}},
		Predict: PredictStage{Models: []string{"rl:exploratory", "rl:guided", ModelSFT, ModelBase}},
	}}}
	var got []string
	for _, m := range r.evalModels() {
		got = append(got, m.name)
	}
	if want := []string{ModelBase, ModelSFT, "rl:guided", "rl:exploratory"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("evalModels = %v, want %v", got, want)
	}
}
