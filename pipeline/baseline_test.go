package pipeline

import (
	"strings"
	"testing"

	"github.com/tagpr/tagpr/datasets"
)

// baselineMetrics scores the synthetic benchmark's rule baselines with the
// task's LaMP metrics.
func baselineMetrics(t testing.TB, d *datasets.SynthData, task string) (blind, reader []Metric) {
	train, test := d.Set(task, "train"), d.Set(task, "test")
	bp, err := datasets.BlindBaseline(train, test)
	if err != nil {
		t.Fatal(err)
	}
	rp, err := datasets.ProfileBaseline(test)
	if err != nil {
		t.Fatal(err)
	}
	score := func(preds []string) []Metric {
		pairs := make([]Pair, len(preds))
		for i, e := range test.Examples {
			pairs[i] = Pair{ID: e.ID, Prediction: preds[i], Gold: e.Output}
		}
		m, err := TaskMetrics(RewardKind(test.Task), test.Task.Labels, pairs)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	return score(bp), score(rp)
}

// The profile is worth a lot on the built-in benchmark: the best
// profile-blind rule is capped far below a simple rule that reads it.
func TestSynthProfileGap(t *testing.T) {
	cfg := datasets.DefaultSynthConfig()
	cfg.Users = 3000 // 300 test users: a stable estimate
	d, err := datasets.Synth(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range []string{datasets.SynthTag, datasets.SynthRate, datasets.SynthGen} {
		blind, reader := baselineMetrics(t, d, task)
		t.Logf("%s test: profile-blind %s; profile-reading %s", task, formatMetrics(blind), formatMetrics(reader))
		ri, err := RelativeImprovement(reader, blind)
		if err != nil {
			t.Fatal(err)
		}
		// Reading the profile must beat ignoring it by a wide margin on every metric.
		if ri.Value < 0.5 {
			t.Errorf("%s: reading the profile improves on the blind rule by only %.0f%%", task, 100*ri.Value)
		}
		for i := range reader {
			better := reader[i].Value > blind[i].Value
			if reader[i].Lower {
				better = reader[i].Value < blind[i].Value
			}
			if !better {
				t.Errorf("%s %s: profile-reading %.3f is not better than blind %.3f", task, reader[i].Name, reader[i].Value, blind[i].Value)
			}
		}
	}
}

// BenchmarkSynthBaselines reports the gap as bench figures.
func BenchmarkSynthBaselines(b *testing.B) {
	var d *datasets.SynthData
	var err error
	for i := 0; i < b.N; i++ {
		if d, err = datasets.Synth(datasets.DefaultSynthConfig()); err != nil {
			b.Fatal(err)
		}
	}
	for _, task := range []string{datasets.SynthTag, datasets.SynthRate, datasets.SynthGen} {
		blind, reader := baselineMetrics(b, d, task)
		for i := range blind {
			b.ReportMetric(blind[i].Value, task+"_blind_"+blind[i].Name)
			b.ReportMetric(reader[i].Value, task+"_profile_"+reader[i].Name)
		}
	}
}

// The teacher rule answers what each example's gold chain answers: the gold,
// except where the benchmark's teacher misses; a chain without an answer is
// refused by name.
func TestTeacherBaseline(t *testing.T) {
	cfg := datasets.DefaultSynthConfig()
	cfg.Users = 60
	d, err := datasets.Synth(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range []string{datasets.SynthTag, datasets.SynthRate, datasets.SynthGen} {
		train, dev := d.Set(task, "train"), d.Set(task, "dev")
		rules, err := ruleBaselines(dev.Task, train.Examples, dev.Examples, "dev", true)
		if err != nil || len(rules) != 3 || rules[2].Name != BaselineTeacher {
			t.Fatalf("%s: %v, %d rules", task, err, len(rules))
		}
		for i, p := range rules[2].Preds {
			if p.Prediction != dev.Chains[i].Answer || p.Gold != dev.Examples[i].Output {
				t.Fatalf("%s: teacher answers %q for %s, its chain %q", task, p.Prediction, p.ID, dev.Chains[i].Answer)
			}
		}
		if rules, _ := ruleBaselines(dev.Task, train.Examples, dev.Examples, "dev", false); len(rules) != 2 {
			t.Fatalf("%s: without gold chains, %d rules", task, len(rules))
		}
	}
	exs := append([]datasets.Example(nil), d.Set(datasets.SynthGen, "dev").Examples...)
	exs[1].Chain = "<think>no answer</think>"
	if _, err := ruleBaselines(d.Set(datasets.SynthGen, "dev").Task, d.Set(datasets.SynthGen, "train").Examples, exs, "dev", true); err == nil ||
		!strings.Contains(err.Error(), exs[1].ID) {
		t.Fatalf("a chain without an answer: %v", err)
	}
}
