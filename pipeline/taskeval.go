package pipeline

import (
	"fmt"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/rewardmodel"
)

// Rule baselines of the synthetic benchmark, scored beside the models.
const (
	BaselineBlind   = "profile_blind"   // the best rule that ignores the profile
	BaselineProfile = "profile_reading" // the rule that reads the profile (near 1.0)
	BaselineTeacher = "teacher"         // the answers of the gold chains SFT learns from
)

// TaskEval is one task split's evaluation: every model and rule baseline
// scored on the same examples, each metric with a bootstrap 95% interval,
// paired differences on the primary metric, and what the completions show
// (tag use, confusion matrices, sample chains).
type TaskEval struct {
	Task     string `json:"task"`
	Split    string `json:"split"`
	Kind     string `json:"kind"`
	Examples int    `json:"examples"` // every model is scored on these same examples
	Primary  string `json:"primary_metric"`
	Higher   bool   `json:"higher_is_better"`
	// Labels order the confusion matrices' rows (gold) and columns
	// (prediction; one more column: an answer outside the labels).
	Labels []string `json:"labels,omitempty"`
	// TagOrder is the taxonomy's tag order (the tag charts' order).
	TagOrder    []string     `json:"tag_order,omitempty"`
	Bootstrap   Bootstrap    `json:"bootstrap"`
	Models      []ModelEval  `json:"models"` // training order, then the rule baselines
	Differences []Difference `json:"differences,omitempty"`
	Notes       []string     `json:"notes,omitempty"`
	// Predictions are the sha256 of each model's predictions file the run's
	// eval stage scored (predictions/MODEL/TASK_SPLIT.parquet), by model
	// name: the report refuses an eval file whose predictions have changed
	// since (predicted again without `tagpr eval`).
	Predictions map[string]string `json:"predictions,omitempty"`
}

// minReliableExamples is where a task's notes stop warning that its
// intervals rest on too few examples (a percentile bootstrap of a handful
// gives zero-width intervals and "significant" differences at n = 2).
const minReliableExamples = 20

// ModelEval is one model's (or rule's) result on a task split.
type ModelEval struct {
	Name     string   `json:"name"`
	Baseline bool     `json:"baseline,omitempty"` // a rule, not a trained model
	Metrics  []Metric `json:"metrics"`
	// Improvement is over the base model (trained models after it).
	Improvement *Improvement `json:"improvement,omitempty"`
	Tags        *TagStats    `json:"tags,omitempty"`      // models that write chains
	Confusion   [][]int      `json:"confusion,omitempty"` // classification
	Samples     []Sample     `json:"samples,omitempty"`
	// Unparseable counts the predictions of a rating task that are not
	// numbers, scored as the extreme farther from the gold (absent for the
	// other task kinds).
	Unparseable *int `json:"unparseable,omitempty"`
}

// Metric returns the named metric.
func (m ModelEval) Metric(name string) (Metric, bool) {
	for _, x := range m.Metrics {
		if x.Name == name {
			return x, true
		}
	}
	return Metric{}, false
}

// TagStats is how a model's completions use the tags.
type TagStats struct {
	Completions int `json:"completions"`
	// Share is the fraction of completions with at least one closed span
	// of each tag (unknown tags included).
	Share map[string]float64 `json:"share"`
	// Pass is the tag-constraint pass rate: completions meeting every
	// constraint (R_tag = 1); Constraints is each constraint's rate.
	Pass        float64            `json:"pass_rate"`
	Constraints map[string]float64 `json:"constraints"`
	MeanReward  float64            `json:"mean_r_tag"`
	Format      float64            `json:"format"` // exactly one <answer> after </think>
}

// Tag constraints, in the order R_tag counts them.
var tagConstraints = []string{"well_formed", "known_tags", "required_tags", "required_order", "one_answer"}

// Difference is a paired bootstrap comparison of two models' primary
// metric on the same examples.
type Difference struct {
	Model   string     `json:"model"`
	Against string     `json:"against"`
	Metric  string     `json:"metric"`
	Value   float64    `json:"value"` // model − against
	CI95    [2]float64 `json:"ci95"`
	// Better says the model's value is the better one (by the metric's
	// direction); Significant that the interval excludes 0.
	Better      bool `json:"better"`
	Significant bool `json:"significant"`
}

// Sample is one shown completion: what was asked, what came back, the gold.
type Sample struct {
	ID         string  `json:"id"`
	Input      string  `json:"input"`
	Completion string  `json:"completion"`
	Answer     string  `json:"answer"`
	Gold       string  `json:"gold"`
	Reward     float64 `json:"reward"` // R_task·format
	Correct    bool    `json:"correct"`
}

// verdict is how a sample is labelled: correct (task reward 1), partly
// right (a rating or a text close to the gold) or wrong.
func (s Sample) verdict() string {
	switch {
	case s.Correct:
		return "correct"
	case s.Reward > 0:
		return "partly right"
	}
	return "wrong"
}

// modelPredictions are one model's (or rule's) answers on a task split;
// rules have no completions.
type modelPredictions struct {
	Name     string
	Baseline bool
	// From names the model this one was trained from, which it is compared
	// with; "" compares it with the trained model before it.
	From  string
	Preds []datasets.Prediction
}

// evalOptions size an evaluation.
type evalOptions struct {
	Bootstrap Bootstrap
	Samples   int // correct and wrong chains shown per model (each)
}

// evaluateTask scores every model on the examples all of them answered,
// in the examples' order.
func evaluateTask(task *datasets.Task, split string, examples []datasets.Example, models []modelPredictions, tx rewardmodel.Taxonomy, o evalOptions) (TaskEval, error) {
	kind := RewardKind(task)
	if o.Bootstrap.Resamples <= 0 {
		o.Bootstrap.Resamples = DefaultResamples
	}
	te := TaskEval{Task: task.Name, Split: split, Kind: string(kind), Primary: PrimaryMetric(kind), Bootstrap: o.Bootstrap}
	for _, t := range tx {
		te.TagOrder = append(te.TagOrder, t.Name)
	}
	if len(models) == 0 {
		return te, fmt.Errorf("evaluate %s/%s: no models", task.Name, split)
	}
	byModel := make([]map[string]*datasets.Prediction, len(models))
	for k, m := range models {
		byModel[k] = map[string]*datasets.Prediction{}
		for i := range m.Preds {
			p := &m.Preds[i]
			if !p.HasGold {
				return te, fmt.Errorf("evaluate %s/%s: %s's prediction %s has no gold", task.Name, split, m.Name, p.ID)
			}
			byModel[k][p.ID] = p
		}
	}
	// The examples every model answered, in the split's order.
	var exs []*datasets.Example
	answered := 0
	for i := range examples {
		all, any := true, false
		for k := range models {
			_, ok := byModel[k][examples[i].ID]
			all, any = all && ok, any || ok
		}
		if any {
			answered++
		}
		if all {
			exs = append(exs, &examples[i])
		}
	}
	if len(exs) == 0 {
		return te, fmt.Errorf("evaluate %s/%s: no example was answered by every model", task.Name, split)
	}
	if answered > len(exs) {
		te.Notes = append(te.Notes, fmt.Sprintf("%d examples answered by only some models are left out: every model is scored on the same %d", answered-len(exs), len(exs)))
	}
	te.Examples = len(exs)
	if len(exs) < minReliableExamples {
		te.Notes = append(te.Notes, fmt.Sprintf("only %d examples: bootstrap intervals this small are rough, and \"significant\" here means little", len(exs)))
	}
	rs := resamples(len(exs), o.Bootstrap.Resamples, o.Bootstrap.Seed, task.Name+"/"+split)
	resampled := make([][][]float64, len(models))
	primary := -1
	for k, m := range models {
		pairs := make([]Pair, len(exs))
		for i, e := range exs {
			p := byModel[k][e.ID]
			pairs[i] = Pair{ID: e.ID, Prediction: p.Prediction, Gold: p.Gold}
		}
		s, err := scoreExamples(kind, task.Labels, pairs)
		if err != nil {
			return te, fmt.Errorf("evaluate %s with %s: %w", task.Name, m.Name, err)
		}
		me := ModelEval{Name: m.Name, Baseline: m.Baseline, Metrics: s.metrics(nil)}
		resampled[k] = resampledMetrics(s, rs)
		for j := range me.Metrics {
			ci := percentileCI(resampled[k][j])
			me.Metrics[j].CI95 = &ci
			if me.Metrics[j].Name == te.Primary {
				primary, te.Higher = j, !me.Metrics[j].Lower
			}
		}
		if kind == rewardmodel.Classification {
			te.Labels = s.labels
			me.Confusion = confusion(s)
		}
		if kind == rewardmodel.Rating {
			n := s.unparseable
			me.Unparseable = &n
			if n > 0 {
				te.Notes = append(te.Notes, fmt.Sprintf("%s: %d of %d predictions are not numbers, each scored as the rating farther from its gold (LaMP's rule)", m.Name, n, len(exs)))
			}
		}
		if !m.Baseline && hasCompletions(m.Preds) {
			me.Tags, me.Samples = completionStats(kind, exs, byModel[k], tx, o.Samples)
		}
		te.Models = append(te.Models, me)
	}
	if primary < 0 {
		return te, fmt.Errorf("evaluate %s: no %s metric", task.Name, te.Primary)
	}
	from := make([]string, len(models))
	for k, m := range models {
		from[k] = m.From
	}
	te.Differences = differences(te, from, resampled, primary)
	if base := te.model(ModelBase); base != nil {
		for i := range te.Models {
			m := &te.Models[i]
			if m.Baseline || m.Name == ModelBase {
				continue
			}
			imp, err := RelativeImprovement(m.Metrics, base.Metrics)
			if err != nil {
				return te, fmt.Errorf("evaluate %s: %s: %w", task.Name, m.Name, err)
			}
			m.Improvement = &imp
		}
	}
	return te, nil
}

func (te *TaskEval) model(name string) *ModelEval {
	for i := range te.Models {
		if te.Models[i].Name == name {
			return &te.Models[i]
		}
	}
	return nil
}

// differences compares, on the primary metric, each trained model with the
// one it was trained from (from[k], by name; "" or a model not evaluated:
// the trained model before it), and each trained model but the base with
// every rule. RL stages branching from one SFT model are each compared
// with that model, not with the ablation beside them.
func differences(te TaskEval, from []string, resampled [][][]float64, primary int) []Difference {
	var trained, rules []int
	index := map[string]int{}
	for k, m := range te.Models {
		if m.Baseline {
			rules = append(rules, k)
		} else {
			trained = append(trained, k)
			index[m.Name] = k
		}
	}
	diff := func(a, b int) Difference {
		ma, mb := te.Models[a].Metrics[primary], te.Models[b].Metrics[primary]
		ds := make([]float64, len(resampled[a][primary]))
		for r := range ds {
			ds[r] = resampled[a][primary][r] - resampled[b][primary][r]
		}
		d := Difference{Model: te.Models[a].Name, Against: te.Models[b].Name, Metric: ma.Name, Value: ma.Value - mb.Value, CI95: percentileCI(ds)}
		d.Better = d.Value != 0 && (d.Value > 0) != ma.Lower
		d.Significant = d.CI95[0] > 0 || d.CI95[1] < 0
		return d
	}
	var out []Difference
	for i := 1; i < len(trained); i++ {
		against := trained[i-1]
		if k, ok := index[from[trained[i]]]; ok && k != trained[i] {
			against = k
		}
		out = append(out, diff(trained[i], against))
	}
	for _, t := range trained {
		if te.Models[t].Name == ModelBase {
			continue
		}
		for _, r := range rules {
			out = append(out, diff(t, r))
		}
	}
	return out
}

// confusion counts gold (rows) against prediction (columns, the last one
// for answers outside the labels).
func confusion(s *exampleScores) [][]int {
	m := make([][]int, len(s.labels))
	for i := range m {
		m[i] = make([]int, len(s.labels)+1)
	}
	for i, g := range s.gold {
		p := s.pred[i]
		if p < 0 {
			p = len(s.labels)
		}
		m[g][p]++
	}
	return m
}

// completionStats checks every completion's tags and picks the sample
// chains: the first n correct and the first n wrong, in example order.
func completionStats(kind rewardmodel.TaskKind, exs []*datasets.Example, preds map[string]*datasets.Prediction, tx rewardmodel.Taxonomy, n int) (*TagStats, []Sample) {
	ts := &TagStats{Completions: len(exs), Share: map[string]float64{}, Constraints: map[string]float64{}}
	var right, wrong []Sample
	for _, e := range exs {
		p := preds[e.ID]
		c := rewardmodel.CheckTags(p.Completion, tx)
		seen := map[string]bool{}
		for _, s := range c.Spans {
			seen[s.Tag] = true
		}
		for t := range seen {
			ts.Share[t]++
		}
		for i, ok := range []bool{c.WellFormed, c.KnownTags, c.RequiredTags, c.RequiredOrder, c.OneAnswer} {
			if ok {
				ts.Constraints[tagConstraints[i]]++
			}
		}
		if c.Reward() == 1 {
			ts.Pass++
		}
		comp := rewardmodel.Score(kind, p.Completion, p.Gold, tx)
		ts.MeanReward += comp.Tag
		ts.Format += comp.Format
		s := Sample{ID: e.ID, Input: e.Input, Completion: p.Completion, Answer: p.Prediction, Gold: p.Gold, Reward: comp.Task * comp.Format}
		s.Correct = s.Reward == 1
		switch {
		case s.Correct && len(right) < n:
			right = append(right, s)
		case !s.Correct && len(wrong) < n:
			wrong = append(wrong, s)
		}
	}
	total := float64(len(exs))
	for t := range ts.Share {
		ts.Share[t] /= total
	}
	for _, c := range tagConstraints {
		ts.Constraints[c] /= total
	}
	ts.Pass /= total
	ts.MeanReward /= total
	ts.Format /= total
	return ts, append(right, wrong...)
}

// hasCompletions says the predictions carry generated text (LaMP outputs
// files hold the answers alone).
func hasCompletions(preds []datasets.Prediction) bool {
	for _, p := range preds {
		if p.Completion != "" {
			return true
		}
	}
	return false
}
