package pipeline

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/renameio/v2"
)

// StageSummary is one training stage's headline numbers for the report.
type StageSummary struct {
	Name    string             `json:"name"`
	Steps   int                `json:"steps"`
	Seconds float64            `json:"seconds"`
	Final   map[string]float64 `json:"final"` // e.g. loss, reward means
	// Machine is where the stage ran (ort.Machine): its floats reproduce on
	// the same CPU kind, SIMD level, thread count and runtime.
	Machine string `json:"machine,omitempty"`
	// Tagpr is the build that trained the stage (buildinfo.String): its
	// version and commit.
	Tagpr string `json:"tagpr,omitempty"`
	// ResumedAfter are the steps the stage was resumed after; Started and
	// Finished when its first process began and its last ended (RFC 3339).
	ResumedAfter []int  `json:"resumed_after,omitempty"`
	Started      string `json:"started,omitempty"`
	Finished     string `json:"finished,omitempty"`
}

// Report is what a run tells the people who read its results. A run's is
// rebuilt from its folder alone (stage summaries, evaluation files, logs).
type Report struct {
	Title   string    `json:"title"`
	Created time.Time `json:"created"`
	// Tagpr is the build that wrote the report (buildinfo.String); a stage
	// trained by another one says so (MadeBy).
	Tagpr   string `json:"tagpr,omitempty"`
	Model   string `json:"model"` // the final model's file
	Dataset string `json:"dataset"`
	// BaseNote says plainly what the base model is (e.g. a built-in
	// architecture at its random initialization).
	BaseNote string `json:"base_note,omitempty"`
	// Models are the evaluated models in training order (base first); the
	// rule baselines follow them in each task's Models.
	Models []string       `json:"models"`
	Stages []StageSummary `json:"stages,omitempty"`
	Tasks  []TaskEval     `json:"tasks"`
	// MeanImprovement is each model's Improvement over the base, averaged
	// over every task (ImprovementFormula).
	MeanImprovement map[string]float64 `json:"mean_improvement,omitempty"`
	Notes           []string           `json:"notes,omitempty"`
	// Config is the effective config of the command that wrote the report
	// (after defaults, TAGPR_* variables and flags: what `tagpr config
	// print` shows); each stage's run.json holds the settings it was made with.
	Config map[string]any `json:"config,omitempty"`
	// Curves are the training logs the HTML report plots.
	Curves *Curves `json:"-"`
}

// trainedOnNote is what the reports say after TrainedOn's machines.
const trainedOnNote = "the numbers reproduce byte for byte on the same CPU kind, SIMD level, thread count and runtime; elsewhere the training is another draw"

// TrainedOn says where the training stages ran: their one machine, or each
// machine with the stages it ran ("" when no stage recorded one).
func (r *Report) TrainedOn() string {
	var machines []string
	stages := map[string][]string{}
	for _, s := range r.Stages {
		if s.Machine == "" {
			continue
		}
		if stages[s.Machine] == nil {
			machines = append(machines, s.Machine)
		}
		stages[s.Machine] = append(stages[s.Machine], s.Name)
	}
	if len(machines) == 1 {
		return machines[0]
	}
	parts := make([]string, len(machines))
	for i, m := range machines {
		parts[i] = m + " (" + strings.Join(stages[m], ", ") + ")"
	}
	return strings.Join(parts, "; ")
}

// MadeBy names the tagpr build that wrote the report and, where stages
// were trained by other builds (a run resumed or reported by another
// version or commit), each of those with its stages ("" when none is known).
func (r *Report) MadeBy() string {
	var builds []string
	stages := map[string][]string{}
	for _, s := range r.Stages {
		if s.Tagpr == "" || s.Tagpr == r.Tagpr {
			continue
		}
		if stages[s.Tagpr] == nil {
			builds = append(builds, s.Tagpr)
		}
		stages[s.Tagpr] = append(stages[s.Tagpr], s.Name)
	}
	out := r.Tagpr
	if len(builds) > 0 && out != "" {
		out += " (this report)"
	}
	for _, b := range builds {
		if out != "" {
			out += "; "
		}
		out += b + " (trained " + strings.Join(stages[b], ", ") + ")"
	}
	return out
}

// Finalize averages each model's improvement over the base across tasks,
// each task counted once: a task evaluated on several splits enters with
// the mean over its splits.
func (r *Report) Finalize() {
	type acc struct {
		sum float64
		n   int
	}
	perTask := map[string]map[string]*acc{} // model → task → its splits
	for _, t := range r.Tasks {
		for _, m := range t.Models {
			if m.Improvement == nil {
				continue
			}
			if perTask[m.Name] == nil {
				perTask[m.Name] = map[string]*acc{}
			}
			a := perTask[m.Name][t.Task]
			if a == nil {
				a = &acc{}
				perTask[m.Name][t.Task] = a
			}
			a.sum += m.Improvement.Value
			a.n++
		}
	}
	r.MeanImprovement = nil
	for m, tasks := range perTask {
		if r.MeanImprovement == nil {
			r.MeanImprovement = map[string]float64{}
		}
		var s float64
		for _, a := range tasks {
			s += a.sum / float64(a.n)
		}
		r.MeanImprovement[m] = s / float64(len(tasks))
	}
}

// taskLabel names a task's results in a table: the task, with its split
// when the report holds the task on more than one split.
func (r *Report) taskLabel(t TaskEval) string {
	n := 0
	for _, u := range r.Tasks {
		if u.Task == t.Task {
			n++
		}
	}
	if n > 1 {
		return t.Task + " (" + t.Split + ")"
	}
	return t.Task
}

// columns are the model and rule names of the tasks, in order of first
// appearance (training order, then the rules).
func (r *Report) columns() []string {
	var out []string
	seen := map[string]bool{}
	for _, t := range r.Tasks {
		for _, m := range t.Models {
			if !seen[m.Name] {
				seen[m.Name] = true
				out = append(out, m.Name)
			}
		}
	}
	return out
}

// finalModel is the last trained model evaluated.
func (r *Report) finalModel() string {
	if len(r.Models) > 0 {
		return r.Models[len(r.Models)-1]
	}
	return ""
}

func dirArrow(lower bool) string {
	if lower {
		return "↓"
	}
	return "↑"
}

// formatCI writes a value with its interval: "0.412 [0.310, 0.520]".
func formatCI(m Metric) string {
	if m.CI95 == nil {
		return fmt.Sprintf("%.3f", m.Value)
	}
	return fmt.Sprintf("%.3f [%.3f, %.3f]", m.Value, m.CI95[0], m.CI95[1])
}

// describe says what a difference shows, plainly, on n examples: below
// minReliableExamples a "significant" says the interval is rough (a
// percentile bootstrap of 2 examples gives zero-width intervals).
func (d Difference) describe(n int) string {
	v := "worse, significant"
	switch {
	case !d.Significant:
		return "not significant"
	case d.Better:
		v = "better, significant"
	}
	if n < minReliableExamples {
		v += fmt.Sprintf(" (n = %d: rough)", n)
	}
	return v
}

// Markdown renders the report's summary for people; report.html has the
// charts, the confusion matrices and the sample chains.
func (r *Report) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n\n", r.Title)
	fmt.Fprintf(&b, "- created: %s\n- model: `%s`\n- dataset: `%s`\n", r.Created.UTC().Format(time.RFC3339), r.Model, r.Dataset)
	if m := r.MadeBy(); m != "" {
		fmt.Fprintf(&b, "- made by: %s\n", m)
	}
	if m := r.TrainedOn(); m != "" {
		fmt.Fprintf(&b, "- trained on: %s (%s: docs/report.md)\n", m, trainedOnNote)
	}
	if r.BaseNote != "" {
		fmt.Fprintf(&b, "- base: %s\n", r.BaseNote)
	}
	b.WriteString("\n")
	cols := r.columns()
	if len(r.Tasks) > 0 {
		bs := r.Tasks[0].Bootstrap
		fmt.Fprintf(&b, "## Results\n\nEvery model and rule is scored on the same examples of each task; each value has its bootstrap 95%% interval "+
			"(%d resamples of the examples, seed %d; percentile intervals).\n\n", bs.Resamples, bs.Seed)
		b.WriteString("| task | split | n | metric | " + strings.Join(cols, " | ") + " |\n|---|---|---:|---|" + strings.Repeat("---:|", len(cols)) + "\n")
		for _, t := range r.Tasks {
			r.metricRows(&b, t, cols, true)
		}
		b.WriteString("\n")
		r.differencesMarkdown(&b)
		b.WriteString("### Every metric\n\n| task | split | n | metric | " + strings.Join(cols, " | ") + " |\n|---|---|---:|---|" + strings.Repeat("---:|", len(cols)) + "\n")
		for _, t := range r.Tasks {
			r.metricRows(&b, t, cols, false)
		}
		b.WriteString("\n")
		r.improvementMarkdown(&b)
		r.tagsMarkdown(&b)
	}
	if len(r.Stages) > 0 {
		b.WriteString("## Training\n\n| stage | steps | seconds | final |\n|---|---:|---:|---|\n")
		for _, s := range r.Stages {
			fmt.Fprintf(&b, "| %s | %d | %.1f | %s |\n", s.Name, s.Steps, s.Seconds, formatKV(s.Final))
		}
		b.WriteString("\n")
	}
	r.samplesMarkdown(&b)
	if len(r.Notes) > 0 {
		b.WriteString("## Notes\n\n")
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	return b.String()
}

// metricRows writes a task's primary metric row (primary) or every metric's.
func (r *Report) metricRows(b *strings.Builder, t TaskEval, cols []string, primary bool) {
	if len(t.Models) == 0 {
		return
	}
	for _, m := range t.Models[0].Metrics {
		if primary && m.Name != t.Primary {
			continue
		}
		fmt.Fprintf(b, "| %s | %s | %d | %s %s |", t.Task, t.Split, t.Examples, m.Name, dirArrow(m.Lower))
		for _, c := range cols {
			cell := "—"
			if me := t.model(c); me != nil {
				if x, ok := me.Metric(m.Name); ok {
					cell = formatCI(x)
				}
			}
			fmt.Fprintf(b, " %s |", cell)
		}
		b.WriteString("\n")
	}
}

func (r *Report) differencesMarkdown(b *strings.Builder) {
	var notSig []string
	has := false
	for _, t := range r.Tasks {
		if len(t.Differences) > 0 {
			has = true
		}
	}
	if !has {
		return
	}
	b.WriteString("### Differences\n\nPaired bootstrap on the same examples (the same resamples for both models), on each task's primary metric: " +
		"a difference is significant when its 95% interval excludes 0.\n\n| task | comparison | metric | difference | 95% interval | verdict |\n|---|---|---|---:|---|---|\n")
	rough := false
	for _, t := range r.Tasks {
		for _, d := range t.Differences {
			rough = rough || t.Examples < minReliableExamples
			fmt.Fprintf(b, "| %s | %s − %s | %s %s | %s | [%s, %s] | %s |\n", r.taskLabel(t), d.Model, d.Against, d.Metric, dirArrow(!t.Higher),
				signed(d.Value), signed(d.CI95[0]), signed(d.CI95[1]), d.describe(t.Examples))
			if !d.Significant {
				notSig = append(notSig, fmt.Sprintf("%s: %s vs %s", r.taskLabel(t), d.Model, d.Against))
			}
		}
	}
	if len(notSig) > 0 {
		fmt.Fprintf(b, "\n**Not significant** (the interval contains 0, so these runs cannot tell the two apart): %s.\n\n", strings.Join(notSig, "; "))
	} else {
		b.WriteString("\nEvery difference above is significant" + roughNote(rough) + ".\n\n")
	}
}

// signed writes a difference or a bound of its interval to 3 decimals,
// with the sign; one that is not 0 but rounds to it gets 2 significant
// digits, so a significant interval never reads [+0.000, …].
func signed(v float64) string {
	s := fmt.Sprintf("%+.3f", v)
	if v != 0 && (s == "+0.000" || s == "-0.000") {
		s = fmt.Sprintf("%+.2g", v)
	}
	return s
}

// roughNote qualifies "every difference is significant" where a task rests
// on fewer than minReliableExamples examples.
func roughNote(rough bool) string {
	if !rough {
		return ""
	}
	return fmt.Sprintf(" (where a task has fewer than %d examples, only roughly: its intervals are rough)", minReliableExamples)
}

// meanImprovement is model name's mean improvement as the tables show it:
// a percentage where every task's is relative; where a task's base was 0
// its absolute gain entered the mean, and the mean says so (an absolute
// gain where every task's is one), rather than pass a gain in accuracy or
// ROUGE units off as a relative figure.
func (r *Report) meanImprovement(name string, mean float64) string {
	var abs []string
	tasks := 0
	for _, t := range r.Tasks {
		me := t.model(name)
		if me == nil || me.Improvement == nil {
			continue
		}
		tasks++
		if len(me.Improvement.Absolute) > 0 && !contains(abs, t.Task) {
			abs = append(abs, t.Task)
		}
	}
	switch {
	case len(abs) == 0:
		return fmt.Sprintf("%+.1f%%", 100*mean)
	case len(abs) == tasks:
		return fmt.Sprintf("%+.3f absolute (base 0)", mean)
	}
	return fmt.Sprintf("%+.1f%% (with absolute gains for %s: base 0)", 100*mean, strings.Join(abs, ", "))
}

func (r *Report) improvementMarkdown(b *strings.Builder) {
	if len(r.MeanImprovement) == 0 {
		return
	}
	b.WriteString("### Improvement over the base model\n\nFormula: " + ImprovementFormula + ".\n\n| model |")
	for _, t := range r.Tasks {
		b.WriteString(" " + r.taskLabel(t) + " |")
	}
	b.WriteString(" mean |\n|---|" + strings.Repeat("---:|", len(r.Tasks)+1) + "\n")
	for _, name := range r.columns() {
		mean, ok := r.MeanImprovement[name]
		if !ok {
			continue
		}
		fmt.Fprintf(b, "| %s |", name)
		for _, t := range r.Tasks {
			me := t.model(name)
			if me == nil || me.Improvement == nil {
				b.WriteString(" — |")
				continue
			}
			fmt.Fprintf(b, " %s |", me.Improvement)
		}
		fmt.Fprintf(b, " **%s** |\n", r.meanImprovement(name, mean))
	}
	b.WriteString("\n")
}

func (r *Report) tagsMarkdown(b *strings.Builder) {
	header := false
	for _, t := range r.Tasks {
		for _, m := range t.Models {
			if m.Tags == nil {
				continue
			}
			if !header {
				b.WriteString("### Tags\n\nTag-constraint pass rate (every constraint met, R_tag = 1) and each constraint's rate, over the same completions.\n\n" +
					"| task | model | pass rate | " + strings.Join(tagConstraints, " | ") + " | mean R_tag | format |\n|---|---|---:|" + strings.Repeat("---:|", len(tagConstraints)+2) + "\n")
				header = true
			}
			fmt.Fprintf(b, "| %s | %s | %.3f |", r.taskLabel(t), m.Name, m.Tags.Pass)
			for _, c := range tagConstraints {
				fmt.Fprintf(b, " %.3f |", m.Tags.Constraints[c])
			}
			fmt.Fprintf(b, " %.3f | %.3f |\n", m.Tags.MeanReward, m.Tags.Format)
		}
	}
	if header {
		b.WriteString("\n")
	}
}

func (r *Report) samplesMarkdown(b *strings.Builder) {
	final := r.finalModel()
	for _, t := range r.Tasks {
		me := t.model(final)
		if me == nil || len(me.Samples) == 0 {
			continue
		}
		fmt.Fprintf(b, "## Samples: %s (%s)\n\n", r.taskLabel(t), final)
		for _, s := range me.Samples {
			text := strings.TrimSpace(s.Completion)
			fence := strings.Repeat("`", max(3, longestBacktickRun(text)+1))
			fmt.Fprintf(b, "**%s** (%s, reward %.2f) — gold %s, answer %s\n\n%s\n%s\n%s\n\n", s.ID, s.verdict(), s.Reward, mdCode(s.Gold), mdCode(s.Answer), fence, text, fence)
		}
	}
}

// longestBacktickRun is the length of the longest run of backticks in s.
func longestBacktickRun(s string) int {
	longest, run := 0, 0
	for _, c := range s {
		if c == '`' {
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	return longest
}

// mdCode is s as a Markdown code span: delimited by more backticks than any
// run inside it (CommonMark), so a model's text with backticks (``` of a
// code answer) neither ends the span nor the sample's code block early.
func mdCode(s string) string {
	n := longestBacktickRun(s)
	if n == 0 {
		return "`" + s + "`"
	}
	d := strings.Repeat("`", n+1)
	return d + " " + s + " " + d
}

func formatKV(m map[string]float64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%.4g", k, m[k])
	}
	return strings.Join(parts, ", ")
}

// ValueCI is a metric's value with its bootstrap 95% interval.
type ValueCI struct {
	Value float64    `json:"value"`
	CI95  [2]float64 `json:"ci95"`
}

// TaskMetricsFile is one task's entry of metrics.json: its primary metric
// for every model and rule.
type TaskMetricsFile struct {
	Metric         string             `json:"metric"`
	HigherIsBetter bool               `json:"higher_is_better"`
	N              int                `json:"n"`
	Split          string             `json:"split"`
	Models         map[string]ValueCI `json:"models"`
	Differences    []Difference       `json:"differences,omitempty"`
}

// MetricsFile is metrics.json: per task the primary metric of every model
// and rule on the same examples, and the models in training order.
type MetricsFile struct {
	Tasks     map[string]TaskMetricsFile `json:"tasks"`
	Stages    []string                   `json:"stages"`
	Baselines []string                   `json:"baselines,omitempty"`
	Bootstrap Bootstrap                  `json:"bootstrap"`
	// RelativeImprovement is each model's mean improvement over the base.
	RelativeImprovement map[string]float64 `json:"relative_improvement,omitempty"`
	Formula             string             `json:"relative_improvement_formula,omitempty"`
}

// MetricsJSON builds metrics.json. A task evaluated on several splits is
// keyed by its name for the first (dev when there) and "TASK/SPLIT" for
// the others.
func (r *Report) MetricsJSON() MetricsFile {
	mf := MetricsFile{Tasks: map[string]TaskMetricsFile{}, Stages: r.Models, RelativeImprovement: r.MeanImprovement}
	if mf.Stages == nil {
		mf.Stages = []string{}
	}
	if len(r.MeanImprovement) > 0 {
		mf.Formula = ImprovementFormula
	}
	seenRule := map[string]bool{}
	// The split keyed by the task's name alone: dev when the task has it,
	// else the first.
	plain := map[string]string{}
	for _, t := range r.Tasks {
		if s, ok := plain[t.Task]; !ok || (t.Split == "dev" && s != "dev") {
			plain[t.Task] = t.Split
		}
	}
	for _, t := range r.Tasks {
		key := t.Task
		if t.Split != plain[t.Task] {
			key = t.Task + "/" + t.Split
		}
		tm := TaskMetricsFile{Metric: t.Primary, HigherIsBetter: t.Higher, N: t.Examples, Split: t.Split, Models: map[string]ValueCI{}, Differences: t.Differences}
		for _, m := range t.Models {
			x, ok := m.Metric(t.Primary)
			if !ok || x.CI95 == nil {
				continue
			}
			tm.Models[m.Name] = ValueCI{Value: x.Value, CI95: *x.CI95}
			if m.Baseline && !seenRule[m.Name] {
				seenRule[m.Name] = true
				mf.Baselines = append(mf.Baselines, m.Name)
			}
		}
		mf.Tasks[key] = tm
		mf.Bootstrap = t.Bootstrap
	}
	return mf
}

// ReportFiles are the files Write stores in its folder.
var ReportFiles = []string{"report.json", "metrics.json", "report.md", "report.html"}

// Write stores report.json, metrics.json, report.md and report.html in
// dir, each atomically; no figure in them is NaN or infinite. They are
// one report: when one cannot be written (a full disk), none of the four
// is left, neither new nor an earlier report's.
func (r *Report) Write(dir string) error {
	if err := r.checkFinite(); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	html, err := r.HTML()
	if err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if err := r.write(dir, html); err != nil {
		for _, name := range ReportFiles {
			os.Remove(filepath.Join(dir, name))
		}
		return err
	}
	return nil
}

func (r *Report) write(dir, html string) error {
	for _, f := range []struct {
		name string
		v    any
	}{{"report.json", r}, {"metrics.json", r.MetricsJSON()}} {
		js, err := json.MarshalIndent(f.v, "", "  ")
		if err != nil {
			return fmt.Errorf("write report %s: %w", f.name, err)
		}
		if err := renameio.WriteFile(filepath.Join(dir, f.name), append(js, '\n'), 0o644); err != nil {
			return fmt.Errorf("write report %s: %w", dir, err)
		}
	}
	for name, body := range map[string]string{"report.md": r.Markdown(), "report.html": html} {
		if err := renameio.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			return fmt.Errorf("write report %s: %w", dir, err)
		}
	}
	return nil
}

// checkFinite refuses a report with a NaN or infinite metric or interval.
func (r *Report) checkFinite() error {
	bad := func(v float64) bool { return math.IsNaN(v) || math.IsInf(v, 0) }
	for _, t := range r.Tasks {
		for _, m := range t.Models {
			for _, x := range m.Metrics {
				if bad(x.Value) || (x.CI95 != nil && (bad(x.CI95[0]) || bad(x.CI95[1]))) {
					return fmt.Errorf("%s %s: %s of %s is not finite", t.Task, t.Split, x.Name, m.Name)
				}
			}
		}
	}
	return nil
}
