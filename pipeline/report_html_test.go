package pipeline

import (
	"encoding/json"
	"math"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// An RL stage's section draws the reward, each component and their spread
// per step, KL and each reward's share and signal where logged, and a row
// per component and the total in the per-quarter table.
func TestReportHTMLRLStage(t *testing.T) {
	log := `{"stage":"guided","step":1,"reward":{"mean":0.5,"std":0.2},"rewards":{"r_task":{"mean":0.4,"std":0.3},"r_tag":{"mean":0.3,"std":0.1}},"reward_contributions":{"task":{"share":0.8,"signal":0.9},"tag":{"share":0.2,"signal":0.1}},"frac_reward_zero_std":0.25,"completion_length":{"mean":90,"min":50,"max":120},"kl":0.01}
{"stage":"guided","step":2,"reward":{"mean":0.6,"std":0.2},"rewards":{"r_task":{"mean":0.5,"std":0.3},"r_tag":{"mean":0.3,"std":0.1}},"reward_contributions":{"task":{"share":0.83,"signal":1},"tag":{"share":0.17,"signal":0}},"clip_ratio/region_mean":0.1,"frac_reward_zero_std":0,"completion_length":{"mean":80,"min":40,"max":110},"kl":0.02}
{"stage":"guided","step":3,"reward":{"mean":0.7,"std":0.1},"rewards":{"r_task":{"mean":0.6,"std":0.2},"r_tag":{"mean":0.3,"std":0.1}},"frac_reward_zero_std":0,"completion_length":{"mean":70,"min":30,"max":100}}`
	var lines []RLStepLog
	for _, l := range strings.Split(log, "\n") {
		var x RLStepLog
		if err := json.Unmarshal([]byte(l), &x); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, x)
	}
	r := &Report{Title: "rl", Curves: &Curves{RL: []RLCurve{{Stage: "guided", Source: "rl/guided/checkpoints/rl_log.jsonl", Steps: lines}}}}
	page, err := r.HTML()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`id="chart-rl-guided-reward"`, `id="chart-rl-guided-reward-std"`, `id="chart-rl-guided-kl"`, `id="chart-rl-guided-clip"`,
		`id="chart-rl-guided-length"`, `data-key="rewards.r_task.mean" data-n="3"`, `data-key="reward.std" data-n="3"`, `data-key="kl" data-n="2"`,
		`data-key="clip_ratio/region_mean" data-n="3"`, `id="chart-rl-guided-share"`, `id="chart-rl-guided-signal"`,
		`data-key="reward_contributions.task.share" data-n="2"`, `data-key="reward_contributions.tag.signal" data-n="2"`, `tag, step 2: 0.17`, `<td class="l">component r_tag</td>`, `<td><b>0.700</b> ± 0.100</td>`} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %s", want)
		}
	}
	for i := range lines {
		lines[i].Contributions = nil
	}
	if page, _ = r.HTML(); strings.Contains(page, "chart-rl-guided-share") || strings.Contains(page, "chart-rl-guided-signal") {
		t.Error("a log without reward_contributions: want no share or signal chart")
	}
}

func TestHighlightChain(t *testing.T) {
	got := highlightChain("<think>\n<recall_history>a < b & c</recall_history>\n</think>\n<answer>x</answer>")
	for _, want := range []string{`&lt;recall_history&gt;</span>`, `a &lt; b &amp; c</span>`, `<span class="ans">x</span>`} {
		if !strings.Contains(got, want) {
			t.Errorf("highlighted chain lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "<recall_history>") || strings.Contains(got, "<think>") {
		t.Errorf("a tag reached the page unescaped:\n%s", got)
	}
}

// Every column that ties for the best value is bold, not only the first:
// the demo's tag row had profile_reading bold and teacher, also 1.000, not.
func TestReportHTMLBoldsTies(t *testing.T) {
	ci := &[2]float64{0.9, 1}
	te := TaskEval{Task: "synth_tag", Split: "dev", Examples: 240, Primary: "accuracy", Higher: true, Models: []ModelEval{
		{Name: "sft", Metrics: []Metric{{Name: "accuracy", Value: 0.9, CI95: ci}}},
		{Name: BaselineProfile, Baseline: true, Metrics: []Metric{{Name: "accuracy", Value: 1, CI95: ci}}},
		{Name: BaselineTeacher, Baseline: true, Metrics: []Metric{{Name: "accuracy", Value: 1, CI95: ci}}},
	}}
	page, err := (&Report{Title: "ties", Tasks: []TaskEval{te}}).HTML()
	if err != nil {
		t.Fatal(err)
	}
	results := page[strings.Index(page, `data-table="results"`):]
	results = results[:strings.Index(results, "</table>")]
	if n := strings.Count(results, `<td class="best">1.000`); n != 2 {
		t.Errorf("%d cells of 1.000 bold in the results table, want 2 (profile_reading and teacher tie):\n%s", n, results)
	}
}

// The per-stage charts are headed by no split: make experiment's report
// scores the test split, and its page said "Dev metrics per stage".
func TestReportHTMLChartsNameNoSplit(t *testing.T) {
	ci := &[2]float64{0.4, 0.6}
	te := TaskEval{Task: "synth_tag", Split: "test", Examples: 240, Primary: "accuracy", Higher: true, Models: []ModelEval{
		{Name: "sft", Metrics: []Metric{{Name: "accuracy", Value: 0.5, CI95: ci}}}}}
	page, err := (&Report{Title: "test split", Tasks: []TaskEval{te}}).HTML()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(page, "Dev metrics") || !strings.Contains(page, "synth_tag (test, n=240)") {
		t.Errorf("the test split's charts are headed as dev's, or do not name test")
	}
}

// A chart whose values differ only by rounding (a one-reward stage's signal,
// Σcov/Σvar, is 1 ± a few ulps) is drawn as a constant with distinct tick
// labels: its axis hung the report (a tick step below the values' ulp never
// advanced), or labelled every tick "1".
func TestChartAxisRangeWithinRounding(t *testing.T) {
	for _, c := range [][2]float64{{0.9999999999999999, 1}, {1, 1.0000000000000002}, {0.003, 0.0030000000000000005},
		{0.9999999999999988, 1.000000000000001}, {1e17, 1e17}, {-1e300, 1e300}} {
		done := make(chan axis, 1)
		go func() { done <- newAxis(c[0], c[1], 200, 10, 4, false) }()
		select {
		case a := <-done:
			labels := map[string]bool{}
			for _, l := range tickLabels(a.ticks) {
				labels[l] = true
			}
			if len(a.ticks) < 2 || len(labels) != len(a.ticks) || a.ticks[0] > c[0] || a.ticks[len(a.ticks)-1] < c[1] {
				t.Errorf("values %v: ticks %v (labels %v): want distinct labels spanning the values", c, a.ticks, labels)
			}
			if p := a.px(c[0]); math.IsNaN(p) || p < 10 || p > 200 {
				t.Errorf("values %v: drawn at %v, outside the plot", c, p)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("values %v: the axis never finished", c)
		}
	}
}

// Rules that tie (the demo's profile_reading and teacher at accuracy 1)
// get their names on separate lines beside the chart, not one over the other.
func TestIntervalChartTiedRuleNamesApart(t *testing.T) {
	c := intervalChart{ID: "c", Title: "t", Source: "metrics.json",
		Models: []intervalPoint{{Model: "sft", Value: 0.5, CI: [2]float64{0.4, 0.6}}},
		Rules:  []intervalPoint{{Model: "profile_reading", Value: 1, CI: [2]float64{1, 1}}, {Model: "teacher", Value: 1, CI: [2]float64{1, 1}}, {Model: "profile_blind", Value: 0.2, CI: [2]float64{0.1, 0.3}}}}
	var b strings.Builder
	c.render(&b)
	ys := map[string]float64{}
	for _, m := range regexp.MustCompile(`<text class="tick" x="\d+" y="([\d.]+)" fill="[^"]+">(\w+) `).FindAllStringSubmatch(b.String(), -1) {
		v, _ := strconv.ParseFloat(m[1], 64)
		ys[m[2]] = v
	}
	if len(ys) != 3 {
		t.Fatalf("rule names: %v; want 3", ys)
	}
	if d := math.Abs(ys["profile_reading"] - ys["teacher"]); d < 10 {
		t.Errorf("tied rules' names %v px apart: want a line apart", d)
	}
	if ys["profile_blind"] < ys["teacher"] {
		t.Errorf("profile_blind (0.2) named above teacher (1): %v", ys)
	}
}

// A task evaluated on two splits (stages.predict.splits: [dev, test]) names
// the split in its tag chart, tag table rows and samples, on the page and in
// report.md, as the other tables do: both splits' rows read "synth_tag | sft".
func TestReportTagsAndSamplesNameTheSplit(t *testing.T) {
	te := func(split string, pass float64) TaskEval {
		return TaskEval{Task: "synth_tag", Split: split, Examples: 4, Primary: "accuracy", Higher: true, TagOrder: []string{"draft"},
			Models: []ModelEval{{Name: "sft", Metrics: []Metric{{Name: "accuracy", Value: 0.5}},
				Tags:    &TagStats{Completions: 4, Share: map[string]float64{"draft": 1}, Pass: pass, Constraints: map[string]float64{}},
				Samples: []Sample{{ID: split + "-1", Completion: "<answer>x</answer>", Answer: "x", Gold: "y"}}}}}
	}
	r := &Report{Title: "splits", Models: []string{"sft"}, Tasks: []TaskEval{te("dev", 0.25), te("test", 0.5)}}
	page, err := r.HTML()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<figcaption>synth_tag (dev): share of completions using each tag</figcaption>", "<figcaption>synth_tag (test): share",
		`<td class="l">synth_tag (dev)</td><td class="l">sft</td><td class="best">0.250</td>`, `<td class="l">synth_tag (test)</td><td class="l">sft</td><td class="best">0.500</td>`,
		"<summary>synth_tag (dev) — sft</summary>", "<summary>synth_tag (test) — sft</summary>"} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %s", want)
		}
	}
	md := r.Markdown()
	for _, want := range []string{"| synth_tag (dev) | sft | 0.250 |", "| synth_tag (test) | sft | 0.500 |", "## Samples: synth_tag (dev) (sft)", "## Samples: synth_tag (test) (sft)"} {
		if !strings.Contains(md, want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
}

// MadeBy names the build that wrote the report and, apart, each other build
// that trained stages (a run resumed or reported by another commit).
func TestReportMadeByNamesEveryBuild(t *testing.T) {
	r := &Report{Tagpr: "tagpr 1 (commit b)", Stages: []StageSummary{{Name: "sft", Tagpr: "tagpr 1 (commit a)"},
		{Name: "prmu", Tagpr: "tagpr 1 (commit b)"}, {Name: "rl guided", Tagpr: "tagpr 1 (commit a)"}, {Name: "chains"}}}
	want := "tagpr 1 (commit b) (this report); tagpr 1 (commit a) (trained sft, rl guided)"
	if got := r.MadeBy(); got != want {
		t.Errorf("MadeBy = %q, want %q", got, want)
	}
	if !strings.Contains(r.Markdown(), "- made by: "+want+"\n") {
		t.Errorf("report.md's header lacks the builds:\n%s", r.Markdown())
	}
	if r := (&Report{Tagpr: "tagpr 1 (commit b)", Stages: []StageSummary{{Name: "sft", Tagpr: "tagpr 1 (commit b)"}}}); r.MadeBy() != "tagpr 1 (commit b)" {
		t.Errorf("one build: MadeBy = %q", r.MadeBy())
	}
}

// The mean improvement says when absolute gains (a task whose base was 0)
// entered it: before, it was printed as a plain percentage, so the demo's
// accuracy and ROUGE gains over a base of 0 read as "+89.7%" relative.
func TestMeanImprovementSaysAbsoluteGains(t *testing.T) {
	task := func(name string, imp Improvement) TaskEval {
		return TaskEval{Task: name, Split: "dev", Models: []ModelEval{{Name: "sft", Improvement: &imp}}}
	}
	r := &Report{Tasks: []TaskEval{task("tag", Improvement{Value: 0.996, Absolute: []string{"accuracy"}, Metrics: 1}),
		task("rate", Improvement{Value: 0.908, Metrics: 2})}, MeanImprovement: map[string]float64{"sft": 0.952}}
	want := "**+95.2% (with absolute gains for tag: base 0)**"
	if md := r.Markdown(); !strings.Contains(md, want) {
		t.Errorf("report.md's mean improvement lacks %q:\n%s", want, md)
	}
	page, err := r.HTML()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(page, `<td class="best">+95.2% (with absolute gains for tag: base 0)</td>`) {
		t.Errorf("report.html's mean improvement does not say it holds absolute gains")
	}
	r.Tasks = r.Tasks[:1]
	r.MeanImprovement["sft"] = 0.996
	if md := r.Markdown(); !strings.Contains(md, "**+0.996 absolute (base 0)**") {
		t.Errorf("an all-absolute mean is not shown as an absolute gain:\n%s", md)
	}
	r.Tasks = []TaskEval{task("rate", Improvement{Value: 0.908, Metrics: 2})}
	r.MeanImprovement["sft"] = 0.908
	if md := r.Markdown(); !strings.Contains(md, "**+90.8%**") {
		t.Errorf("a relative mean lost its plain percentage:\n%s", md)
	}
}
