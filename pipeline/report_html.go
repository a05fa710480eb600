package pipeline

import (
	"fmt"
	"hash/fnv"
	"html"
	"math"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/tagpr/tagpr/onnx/train"
	"github.com/tagpr/tagpr/pipeline/grpo"
)

// Curves are a run's per-step training logs, which report.html plots.
// Sources are the logs' paths relative to the run folder.
type Curves struct {
	SFT       []train.StepLog
	SFTSource string
	RL        []RLCurve
}

// RLCurve is one RL stage's per-step log.
type RLCurve struct {
	Stage  string
	Source string
	Steps  []RLStepLog
}

// HTML renders the whole report as one self-contained page: inline CSS
// and SVG, no script, nothing fetched.
func (r *Report) HTML() (string, error) {
	var b strings.Builder
	esc := html.EscapeString
	fmt.Fprintf(&b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"+
		"<title>%s</title><style>%s</style></head><body>\n", esc(r.Title), reportCSS)
	fmt.Fprintf(&b, "<header><h1>%s</h1><p class=\"meta\">created %s · final model <code>%s</code> · data <code>%s</code></p>", esc(r.Title),
		esc(r.Created.UTC().Format(time.RFC3339)), esc(r.Model), esc(r.Dataset))
	if m := r.MadeBy(); m != "" {
		fmt.Fprintf(&b, "<p class=\"base\"><b>Made by:</b> %s</p>", esc(m))
	}
	if r.BaseNote != "" {
		fmt.Fprintf(&b, "<p class=\"base\"><b>Base model:</b> %s</p>", esc(r.BaseNote))
	}
	if m := r.TrainedOn(); m != "" {
		fmt.Fprintf(&b, "<p class=\"base\"><b>Trained on:</b> %s (%s)</p>", esc(m), esc(trainedOnNote))
	}
	b.WriteString("</header>\n<nav>")
	for _, s := range [][2]string{{"results", "Results"}, {"training", "Training"}, {"tags", "Tags"}, {"confusion", "Confusion"}, {"samples", "Samples"}, {"notes", "Notes"}} {
		fmt.Fprintf(&b, `<a href="#%s">%s</a>`, s[0], s[1])
	}
	b.WriteString("</nav>\n<main>\n")
	r.htmlResults(&b)
	r.htmlTraining(&b)
	r.htmlTags(&b)
	r.htmlConfusion(&b)
	r.htmlSamples(&b)
	if len(r.Notes) > 0 {
		b.WriteString(`<section id="notes"><h2>Notes</h2><ul>`)
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "<li>%s</li>", esc(n))
		}
		b.WriteString("</ul></section>\n")
	}
	b.WriteString("</main></body></html>\n")
	return b.String(), nil
}

const reportCSS = `
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2330;margin:0;background:#f6f7f9}
header{background:#1d2b45;color:#fff;padding:18px 28px}header h1{margin:0 0 4px;font-size:22px}
header code{color:#cfe0ff}.meta{margin:0;opacity:.85;font-size:12.5px}.base{margin:8px 0 0;background:#2c3d5e;padding:6px 10px;border-radius:4px}
nav{position:sticky;top:0;background:#fff;border-bottom:1px solid #dde1e8;padding:6px 28px;z-index:1}nav a{margin-right:16px;color:#1d5fbf;text-decoration:none}
main{padding:8px 28px 40px;max-width:1280px}section{margin-top:18px}h2{font-size:19px;border-bottom:2px solid #1d2b45;padding-bottom:3px}h3{font-size:15.5px;margin:18px 0 6px}
table{border-collapse:collapse;background:#fff;margin:6px 0 12px;font-size:13px}th,td{border:1px solid #dde1e8;padding:4px 8px;text-align:right;white-space:nowrap}
th{background:#eef1f6}td.l,th.l{text-align:left}td.wrap{white-space:normal;min-width:420px;max-width:760px}.ci{color:#667;font-size:11.5px}.best{font-weight:600}
.sig-better{background:#e3f4e6}.sig-worse{background:#fbe3e1}.nsig{background:#f3f3f3;color:#555}
.verdict{font-size:14px;background:#fff;border-left:4px solid #d08a00;padding:6px 10px;margin:8px 0}
.grid-charts{display:flex;flex-wrap:wrap;gap:12px}figure.chart{background:#fff;border:1px solid #dde1e8;border-radius:6px;margin:0;padding:8px 10px}
figcaption{font-weight:600;font-size:13px;margin-bottom:2px}svg.chart{display:block;max-width:100%;height:auto}
svg .grid{stroke:#e6e9ef}svg .axis{stroke:#8a93a3}svg .tick{font-size:10.5px;fill:#4a5262}svg .label{font-size:11px;fill:#4a5262}
.legend{font-size:12px;margin-top:2px}.legend span{margin-right:12px;white-space:nowrap}.legend i{display:inline-block;width:14px;height:8px;margin-right:4px;vertical-align:middle}
.note{font-size:12px;color:#555;margin:4px 0 0;max-width:560px}
td.cm{min-width:26px}details{margin:6px 0}summary{cursor:pointer;font-weight:600}
.chain{background:#fff;border:1px solid #dde1e8;border-radius:6px;padding:8px 10px;margin:8px 0;max-width:1100px}
.chain.ok{border-left:5px solid #2e9d47}.chain.bad{border-left:5px solid #c8382c}.chain.part{border-left:5px solid #d08a00}.chain .head{font-size:12.5px;margin-bottom:4px}
.chain pre{white-space:pre-wrap;word-break:break-word;margin:0;font:12.5px/1.5 ui-monospace,SFMono-Regular,Menlo,monospace}
.tk{font-weight:700;border-radius:3px;padding:0 2px}.seg{border-radius:3px}.ans{outline:2px solid #2e9d47;border-radius:3px}.chain.bad .ans{outline-color:#c8382c}.chain.part .ans{outline-color:#d08a00}
`

// modelCell is one model's value of a metric as a table cell.
func modelCell(me *ModelEval, metric string, best bool) string {
	if me == nil {
		return "<td>—</td>"
	}
	x, ok := me.Metric(metric)
	if !ok {
		return "<td>—</td>"
	}
	cls := ""
	if best {
		cls = ` class="best"`
	}
	ci := ""
	if x.CI95 != nil {
		ci = fmt.Sprintf(`<br><span class="ci">[%.3f, %.3f]</span>`, x.CI95[0], x.CI95[1])
	}
	return fmt.Sprintf(`<td%s>%.3f%s</td>`, cls, x.Value, ci)
}

// bestOf names the columns with the best value of a metric: every one
// that ties for it as the table shows it (3 decimals).
func bestOf(t TaskEval, metric string, lower bool) map[string]bool {
	bv := math.NaN()
	for _, m := range t.Models {
		if x, ok := m.Metric(metric); ok && (math.IsNaN(bv) || (lower && x.Value < bv) || (!lower && x.Value > bv)) {
			bv = x.Value
		}
	}
	best := map[string]bool{}
	for _, m := range t.Models {
		if x, ok := m.Metric(metric); ok && fmt.Sprintf("%.3f", x.Value) == fmt.Sprintf("%.3f", bv) {
			best[m.Name] = true
		}
	}
	return best
}

func (r *Report) htmlResults(b *strings.Builder) {
	esc := html.EscapeString
	b.WriteString(`<section id="results"><h2>Results</h2>`)
	if len(r.Tasks) == 0 {
		b.WriteString("<p>No evaluation in this run folder yet (run the eval stage).</p></section>\n")
		return
	}
	cols := r.columns()
	bs := r.Tasks[0].Bootstrap
	fmt.Fprintf(b, `<p>Every model and rule is scored on the <b>same examples</b> of each task (n below). Values are the task's primary metric with its bootstrap 95%% interval (%d resamples of the examples, seed %d, percentile intervals); the best value is bold (every one that ties for it).</p>`, bs.Resamples, bs.Seed)
	fmt.Fprintf(b, `<table data-table="results"><thead><tr><th class="l">task</th><th class="l">split</th><th>n</th><th class="l">metric</th>`)
	for _, c := range cols {
		fmt.Fprintf(b, "<th>%s</th>", esc(c))
	}
	b.WriteString("</tr></thead><tbody>")
	for _, t := range r.Tasks {
		best := bestOf(t, t.Primary, !t.Higher)
		fmt.Fprintf(b, `<tr><td class="l">%s</td><td class="l">%s</td><td>%d</td><td class="l">%s %s</td>`, esc(t.Task), esc(t.Split), t.Examples, esc(t.Primary), dirArrow(!t.Higher))
		for _, c := range cols {
			b.WriteString(modelCell(t.model(c), t.Primary, best[c]))
		}
		b.WriteString("</tr>")
	}
	b.WriteString("</tbody></table>")
	r.htmlDifferences(b)
	b.WriteString(`<h3>Metrics per stage</h3><div class="grid-charts">`)
	for _, t := range r.Tasks {
		c := intervalChart{ID: "chart-stages-" + t.Task + "-" + t.Split, Title: fmt.Sprintf("%s (%s, n=%d): %s %s per stage, with 95%% intervals", t.Task, t.Split, t.Examples, t.Primary, dirArrow(!t.Higher)),
			YLabel: t.Primary, Source: "metrics.json"}
		for _, m := range t.Models {
			x, ok := m.Metric(t.Primary)
			if !ok || x.CI95 == nil {
				continue
			}
			p := intervalPoint{Model: m.Name, Value: x.Value, CI: *x.CI95}
			if m.Baseline {
				c.Rules = append(c.Rules, p)
			} else {
				c.Models = append(c.Models, p)
			}
		}
		c.render(b)
	}
	b.WriteString(`</div><h3>Every metric</h3><table data-table="metrics"><thead><tr><th class="l">task</th><th class="l">metric</th>`)
	for _, c := range cols {
		fmt.Fprintf(b, "<th>%s</th>", esc(c))
	}
	b.WriteString("</tr></thead><tbody>")
	for _, t := range r.Tasks {
		if len(t.Models) == 0 {
			continue
		}
		for _, m := range t.Models[0].Metrics {
			best := bestOf(t, m.Name, m.Lower)
			fmt.Fprintf(b, `<tr><td class="l">%s</td><td class="l">%s %s</td>`, esc(r.taskLabel(t)), esc(m.Name), dirArrow(m.Lower))
			for _, c := range cols {
				b.WriteString(modelCell(t.model(c), m.Name, best[c]))
			}
			b.WriteString("</tr>")
		}
	}
	b.WriteString("</tbody></table>")
	r.htmlImprovement(b)
	b.WriteString("</section>\n")
}

func (r *Report) htmlDifferences(b *strings.Builder) {
	esc := html.EscapeString
	var rows []string
	var notSig []string
	rough := false
	for _, t := range r.Tasks {
		for _, d := range t.Differences {
			rough = rough || t.Examples < minReliableExamples
			cls := "nsig"
			if d.Significant && d.Better {
				cls = "sig-better"
			} else if d.Significant {
				cls = "sig-worse"
			}
			rows = append(rows, fmt.Sprintf(`<tr class="%s"><td class="l">%s</td><td class="l">%s − %s</td><td class="l">%s %s</td><td>%s</td><td>[%s, %s]</td><td class="l">%s</td></tr>`,
				cls, esc(r.taskLabel(t)), esc(d.Model), esc(d.Against), esc(d.Metric), dirArrow(!t.Higher), signed(d.Value), signed(d.CI95[0]), signed(d.CI95[1]), d.describe(t.Examples)))
			if !d.Significant {
				notSig = append(notSig, fmt.Sprintf("%s: %s vs %s", r.taskLabel(t), d.Model, d.Against))
			}
		}
	}
	if len(rows) == 0 {
		return
	}
	b.WriteString(`<h3>Differences</h3>`)
	if len(notSig) > 0 {
		fmt.Fprintf(b, `<p class="verdict"><b>Not significant</b> — the 95%% interval of the difference contains 0, so this evaluation cannot tell these apart: %s.</p>`, esc(strings.Join(notSig, "; ")))
	} else {
		fmt.Fprintf(b, `<p class="verdict">Every difference below is significant (its 95%% interval excludes 0)%s.</p>`, esc(roughNote(rough)))
	}
	b.WriteString(`<p>Paired bootstrap: both models on the same resamples of the same examples; primary metric; green = significantly better, red = significantly worse, grey = not significant.</p>`)
	b.WriteString(`<table data-table="differences"><thead><tr><th class="l">task</th><th class="l">comparison</th><th class="l">metric</th><th>difference</th><th>95% interval</th><th class="l">verdict</th></tr></thead><tbody>`)
	b.WriteString(strings.Join(rows, ""))
	b.WriteString("</tbody></table>")
}

func (r *Report) htmlImprovement(b *strings.Builder) {
	if len(r.MeanImprovement) == 0 {
		return
	}
	esc := html.EscapeString
	fmt.Fprintf(b, `<h3>Improvement over the base model</h3><p>Formula: %s.</p><table data-table="improvement"><thead><tr><th class="l">model</th>`, esc(ImprovementFormula))
	for _, t := range r.Tasks {
		fmt.Fprintf(b, "<th>%s</th>", esc(r.taskLabel(t)))
	}
	b.WriteString("<th>mean</th></tr></thead><tbody>")
	for _, name := range r.columns() {
		mean, ok := r.MeanImprovement[name]
		if !ok {
			continue
		}
		fmt.Fprintf(b, `<tr><td class="l">%s</td>`, esc(name))
		for _, t := range r.Tasks {
			if me := t.model(name); me != nil && me.Improvement != nil {
				fmt.Fprintf(b, "<td>%s</td>", esc(me.Improvement.String()))
			} else {
				b.WriteString("<td>—</td>")
			}
		}
		fmt.Fprintf(b, `<td class="best">%s</td></tr>`, esc(r.meanImprovement(name, mean)))
	}
	b.WriteString("</tbody></table>")
}

func (r *Report) htmlTraining(b *strings.Builder) {
	esc := html.EscapeString
	b.WriteString(`<section id="training"><h2>Training</h2>`)
	if len(r.Stages) > 0 {
		b.WriteString(`<table data-table="stages"><thead><tr><th class="l">stage</th><th>steps</th><th>seconds</th><th class="l">final</th></tr></thead><tbody>`)
		for _, s := range r.Stages {
			fmt.Fprintf(b, `<tr><td class="l">%s</td><td>%d</td><td>%.1f</td><td class="l wrap">%s</td></tr>`, esc(s.Name), s.Steps, s.Seconds, esc(formatKV(s.Final)))
		}
		b.WriteString("</tbody></table>")
	}
	cv := r.Curves
	if cv == nil {
		b.WriteString("</section>\n")
		return
	}
	if len(cv.SFT) > 0 {
		var loss, gn lineSeries
		loss, gn = lineSeries{Name: "loss", Key: "loss"}, lineSeries{Name: "grad norm", Key: "grad_norm", Dashed: true}
		for _, l := range cv.SFT {
			if l.Skipped {
				continue
			}
			loss.X, loss.Y = append(loss.X, float64(l.Step)), append(loss.Y, l.Loss)
			gn.X, gn.Y = append(gn.X, float64(l.Step)), append(gn.Y, l.GradNorm)
		}
		b.WriteString(`<h3>SFT</h3><div class="grid-charts">`)
		lineChart{ID: "chart-sft-loss", Title: "SFT: training loss per step", XLabel: "step", YLabel: "loss", Source: cv.SFTSource, Series: []lineSeries{loss}}.render(b)
		lineChart{ID: "chart-sft-gradnorm", Title: "SFT: gradient norm per step (before clipping)", XLabel: "step", YLabel: "grad norm", Source: cv.SFTSource, Series: []lineSeries{gn}}.render(b)
		b.WriteString(`</div>`)
	}
	for _, c := range cv.RL {
		r.htmlRLStage(b, c)
	}
	b.WriteString("</section>\n")
}

// stepSeries collects one value per log line.
func stepSeries(name, key string, lines []RLStepLog, v func(l RLStepLog) (float64, bool)) lineSeries {
	s := lineSeries{Name: name, Key: key}
	for _, l := range lines {
		if y, ok := v(l); ok && !math.IsNaN(y) && !math.IsInf(y, 0) {
			s.X, s.Y = append(s.X, float64(l.Step)), append(s.Y, y)
		}
	}
	return s
}

func (r *Report) htmlRLStage(b *strings.Builder, c RLCurve) {
	esc := html.EscapeString
	id := "chart-rl-" + c.Stage
	fmt.Fprintf(b, `<h3>RL stage %s</h3><div class="grid-charts">`, esc(c.Stage))
	var rewards []lineSeries
	for _, comp := range sortedKeys(c.Steps, func(l RLStepLog) []string { return mapKeys(l.Rewards) }) {
		comp := comp
		rewards = append(rewards, stepSeries(comp, "rewards."+comp+".mean", c.Steps, func(l RLStepLog) (float64, bool) { s, ok := l.Rewards[comp]; return s.Mean, ok }))
	}
	total := stepSeries("reward (total)", "reward.mean", c.Steps, func(l RLStepLog) (float64, bool) { return l.Reward.Mean, true })
	total.Bold = true
	rewards = append(rewards, total) // drawn last, on top of the parts it is made of
	lineChart{ID: id + "-reward", Title: "reward and each component per step (mean over the step's completions)", XLabel: "step", YLabel: "reward", Source: c.Source, Series: rewards}.render(b)
	lineChart{ID: id + "-reward-std", Title: "spread of the reward and each component per step (std over the step's completions)", XLabel: "step", YLabel: "std",
		Source: c.Source, Series: stdSeries(c.Steps)}.render(b)
	contributionCharts(b, id, c)
	if kl := stepSeries("KL", "kl", c.Steps, func(l RLStepLog) (float64, bool) {
		if l.KL == nil {
			return 0, false
		}
		return *l.KL, true
	}); len(kl.X) > 0 {
		lineChart{ID: id + "-kl", Title: "KL to the reference model per step (k3)", XLabel: "step", YLabel: "KL", Source: c.Source, Series: []lineSeries{kl}}.render(b)
	}
	lineChart{ID: id + "-clip", Title: "clipped token ratio (region, low, high) and groups with zero reward std per step", XLabel: "step", YLabel: "fraction", Source: c.Source, Series: []lineSeries{
		stepSeries("clip region", "clip_ratio/region_mean", c.Steps, func(l RLStepLog) (float64, bool) { return l.ClipRegion, true }),
		stepSeries("clip low", "clip_ratio/low_mean", c.Steps, func(l RLStepLog) (float64, bool) { return l.ClipLow, true }),
		stepSeries("clip high", "clip_ratio/high_mean", c.Steps, func(l RLStepLog) (float64, bool) { return l.ClipHigh, true }),
		stepSeries("zero-std groups", "frac_reward_zero_std", c.Steps, func(l RLStepLog) (float64, bool) { return l.ZeroStdFraction, true }),
	}}.render(b)
	lineChart{ID: id + "-length", Title: "completion length per step (tokens: mean, min, max)", XLabel: "step", YLabel: "tokens", Source: c.Source, Series: []lineSeries{
		stepSeries("mean", "completion_length.mean", c.Steps, func(l RLStepLog) (float64, bool) { return l.Length.Mean, true }),
		stepSeries("min", "completion_length.min", c.Steps, func(l RLStepLog) (float64, bool) { return float64(l.Length.Min), true }),
		stepSeries("max", "completion_length.max", c.Steps, func(l RLStepLog) (float64, bool) { return float64(l.Length.Max), true }),
	}}.render(b)
	b.WriteString(`</div>`)
	// Each reward component's (and term's) mean ± std (and share of the
	// total), per quarter of the stage.
	qs := quarters(len(c.Steps))
	fmt.Fprintf(b, `<table data-table="rl-rewards-%s"><thead><tr><th class="l">reward part (mean ± std per step`, esc(c.Stage))
	b.WriteString(`)</th>`)
	for _, q := range qs {
		fmt.Fprintf(b, "<th>steps %d–%d</th>", c.Steps[q[0]].Step, c.Steps[q[1]-1].Step)
	}
	b.WriteString("</tr></thead><tbody>")
	for _, comp := range sortedKeys(c.Steps, func(l RLStepLog) []string { return mapKeys(l.Rewards) }) {
		fmt.Fprintf(b, `<tr><td class="l">component %s</td>`, esc(comp))
		for _, q := range qs {
			m, s := meanStd(c.Steps[q[0]:q[1]], func(l RLStepLog) (grpo.Stat, bool) { x, ok := l.Rewards[comp]; return x, ok })
			fmt.Fprintf(b, "<td>%.3f ± %.3f</td>", m, s)
		}
		b.WriteString("</tr>")
	}
	b.WriteString(`<tr><td class="l"><b>reward (total)</b></td>`)
	for _, q := range qs {
		m, s := meanStd(c.Steps[q[0]:q[1]], func(l RLStepLog) (grpo.Stat, bool) { return l.Reward, true })
		fmt.Fprintf(b, "<td><b>%.3f</b> ± %.3f</td>", m, s)
	}
	b.WriteString("</tr></tbody></table>")
	b.WriteString(`<p class="note">The components are unweighted; the reward is their weighted sum as the stage's note gives it (Notes).</p>`)
}

// contributionCharts draw each weighted reward's share of the mean reward
// and of the learning signal per step, where the log carries them: which
// reward makes up the reward, and which one the advantages are made of.
func contributionCharts(b *strings.Builder, id string, c RLCurve) {
	names := sortedKeys(c.Steps, func(l RLStepLog) []string { return mapKeys(l.Contributions) })
	if len(names) == 0 {
		return
	}
	var shares, signals []lineSeries
	for _, n := range names {
		n := n
		shares = append(shares, stepSeries(n, "reward_contributions."+n+".share", c.Steps, func(l RLStepLog) (float64, bool) { x, ok := l.Contributions[n]; return x.Share, ok }))
		signals = append(signals, stepSeries(n, "reward_contributions."+n+".signal", c.Steps, func(l RLStepLog) (float64, bool) { x, ok := l.Contributions[n]; return x.Signal, ok }))
	}
	lineChart{ID: id + "-share", Title: "each weighted reward's share of the mean reward per step", XLabel: "step", YLabel: "share", Source: c.Source, Series: shares,
		Note: "mean(weight·reward) / mean(total reward); the shares add up to 1."}.render(b)
	lineChart{ID: id + "-signal", Title: "each weighted reward's share of the learning signal per step (within-group reward variance)", XLabel: "step", YLabel: "signal", Source: c.Source, Series: signals,
		Note: "Σ_groups cov(weight·reward, reward) / Σ_groups var(reward): what the advantages are made of. A reward equal across a group's completions adds nothing here, however large its share; all 0 when every group's rewards are equal."}.render(b)
}

// stdSeries are the per-step spreads of the reward and each component.
func stdSeries(lines []RLStepLog) []lineSeries {
	var out []lineSeries
	for _, comp := range sortedKeys(lines, func(l RLStepLog) []string { return mapKeys(l.Rewards) }) {
		comp := comp
		out = append(out, stepSeries(comp, "rewards."+comp+".std", lines, func(l RLStepLog) (float64, bool) { s, ok := l.Rewards[comp]; return s.Std, ok }))
	}
	total := stepSeries("reward (total)", "reward.std", lines, func(l RLStepLog) (float64, bool) { return l.Reward.Std, true })
	total.Bold = true
	return append(out, total)
}

// quarters splits n steps into (up to) four runs [from, to).
func quarters(n int) [][2]int {
	parts := min(4, n)
	out := make([][2]int, parts)
	for i := range out {
		out[i] = [2]int{i * n / parts, (i + 1) * n / parts}
	}
	return out
}

// meanStd averages a per-step Stat over steps (the std is the mean of the
// steps' stds: the typical spread within a step).
func meanStd(w []RLStepLog, f func(RLStepLog) (grpo.Stat, bool)) (float64, float64) {
	var m, s float64
	n := 0
	for _, l := range w {
		if x, ok := f(l); ok {
			m, s, n = m+x.Mean, s+x.Std, n+1
		}
	}
	if n == 0 {
		return 0, 0
	}
	return m / float64(n), s / float64(n)
}

func mapKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// sortedKeys is the union of the keys each line has, sorted.
func sortedKeys(lines []RLStepLog, keys func(RLStepLog) []string) []string {
	seen := map[string]bool{}
	for _, l := range lines {
		for _, k := range keys(l) {
			seen[k] = true
		}
	}
	out := mapKeys(seen)
	sort.Strings(out)
	return out
}

func (r *Report) htmlTags(b *strings.Builder) {
	esc := html.EscapeString
	b.WriteString(`<section id="tags"><h2>Tags</h2><p>How the models' evaluation completions use the tags (the same examples as above): the share of completions with each tag, and the tag-constraint pass rate (every constraint met, R_tag = 1) with each constraint's rate.</p><div class="grid-charts">`)
	any := false
	for _, t := range r.Tasks {
		var models []string
		tagSet := map[string]bool{}
		for _, m := range t.Models {
			if m.Tags != nil {
				models = append(models, m.Name)
				for tag := range m.Tags.Share {
					tagSet[tag] = true
				}
			}
		}
		if len(models) == 0 {
			continue
		}
		any = true
		var tags []string // the taxonomy's order, then other tags used
		for _, tag := range t.TagOrder {
			if tagSet[tag] {
				tags = append(tags, tag)
				delete(tagSet, tag)
			}
		}
		rest := mapKeys(tagSet)
		sort.Strings(rest)
		tags = append(tags, rest...)
		c := barChart{ID: "chart-tags-" + t.Task + "-" + t.Split, Title: fmt.Sprintf("%s: share of completions using each tag", r.taskLabel(t)), YLabel: "share", Source: evalSource(t), Categories: tags, Series: models, YMax: 1}
		for _, name := range models {
			m := t.model(name)
			vals := make([]float64, len(tags))
			for k, tag := range tags {
				vals[k] = m.Tags.Share[tag]
			}
			c.Values = append(c.Values, vals)
		}
		if len(tags) == 0 {
			fmt.Fprintf(b, `<p>%s: no completion has a closed tag.</p>`, esc(r.taskLabel(t)))
			continue
		}
		c.render(b)
	}
	b.WriteString("</div>")
	if !any {
		b.WriteString("<p>No model completions to show.</p></section>\n")
		return
	}
	b.WriteString(`<table data-table="tags"><thead><tr><th class="l">task</th><th class="l">model</th><th>pass rate</th>`)
	for _, c := range tagConstraints {
		fmt.Fprintf(b, "<th>%s</th>", strings.ReplaceAll(c, "_", " "))
	}
	b.WriteString("<th>mean R_tag</th><th>format</th></tr></thead><tbody>")
	for _, t := range r.Tasks {
		for _, m := range t.Models {
			if m.Tags == nil {
				continue
			}
			fmt.Fprintf(b, `<tr><td class="l">%s</td><td class="l">%s</td><td class="best">%.3f</td>`, esc(r.taskLabel(t)), esc(m.Name), m.Tags.Pass)
			for _, c := range tagConstraints {
				fmt.Fprintf(b, "<td>%.3f</td>", m.Tags.Constraints[c])
			}
			fmt.Fprintf(b, "<td>%.3f</td><td>%.3f</td></tr>", m.Tags.MeanReward, m.Tags.Format)
		}
	}
	b.WriteString("</tbody></table></section>\n")
}

// evalSource names a task's evaluation file in the run folder.
func evalSource(t TaskEval) string { return "eval/" + t.Task + "_" + t.Split + ".json" }

func (r *Report) htmlConfusion(b *strings.Builder) {
	esc := html.EscapeString
	b.WriteString(`<section id="confusion"><h2>Confusion matrices</h2>`)
	any := false
	final := r.finalModel()
	for _, t := range r.Tasks {
		if len(t.Labels) == 0 {
			continue
		}
		any = true
		fmt.Fprintf(b, `<h3>%s (%s, n=%d): rows gold, columns answer</h3>`, esc(t.Task), esc(t.Split), t.Examples)
		for _, m := range t.Models {
			if m.Confusion == nil {
				continue
			}
			open := ""
			if m.Name == final {
				open = " open"
			}
			fmt.Fprintf(b, `<details%s><summary>%s</summary>`, open, esc(m.Name))
			confusionTable(b, t, m)
			b.WriteString("</details>")
		}
	}
	if !any {
		b.WriteString("<p>No classification task in this run.</p>")
	}
	b.WriteString("</section>\n")
}

func confusionTable(b *strings.Builder, t TaskEval, m ModelEval) {
	esc := html.EscapeString
	peak := 1
	for _, row := range m.Confusion {
		for _, v := range row {
			peak = max(peak, v)
		}
	}
	fmt.Fprintf(b, `<table class="confusion" data-table="confusion-%s-%s-%s"><thead><tr><th class="l">gold \ answer</th>`, esc(t.Task), esc(t.Split), esc(m.Name))
	for _, l := range t.Labels {
		fmt.Fprintf(b, "<th>%s</th>", esc(shorten(l, 12)))
	}
	b.WriteString("<th>other</th></tr></thead><tbody>")
	for i, row := range m.Confusion {
		fmt.Fprintf(b, `<tr><th class="l">%s</th>`, esc(t.Labels[i]))
		for j, v := range row {
			alpha := float64(v) / float64(peak)
			col := "29,95,191"
			if i != j {
				col = "200,56,44"
			}
			cell := ""
			if v > 0 {
				cell = fmt.Sprint(v)
			}
			fmt.Fprintf(b, `<td class="cm" style="background:rgba(%s,%.2f)">%s</td>`, col, 0.75*alpha, cell)
		}
		b.WriteString("</tr>")
	}
	b.WriteString("</tbody></table>")
}

func (r *Report) htmlSamples(b *strings.Builder) {
	esc := html.EscapeString
	b.WriteString(`<section id="samples"><h2>Sample chains</h2><p>Greedy completions on the evaluation examples: the first correct ones (task reward 1) and the first others (wrong or partly right) of each model; each tagged step has its own colour, the answer is outlined.</p>`)
	final := r.finalModel()
	for _, t := range r.Tasks {
		for _, m := range t.Models {
			if len(m.Samples) == 0 {
				continue
			}
			open := ""
			if m.Name == final {
				open = " open"
			}
			fmt.Fprintf(b, `<details%s><summary>%s — %s</summary>`, open, esc(r.taskLabel(t)), esc(m.Name))
			for _, s := range m.Samples {
				verdict := s.verdict()
				cls := map[string]string{"correct": "ok", "partly right": "part", "wrong": "bad"}[verdict]
				fmt.Fprintf(b, `<div class="chain %s"><div class="head"><b>%s</b> · %s · reward %.2f · gold <code>%s</code> · answer <code>%s</code></div><pre>%s</pre></div>`,
					cls, esc(s.ID), verdict, s.Reward, esc(s.Gold), esc(s.Answer), chainHTML(s.Completion))
			}
			b.WriteString("</details>")
		}
	}
	b.WriteString("</section>\n")
}

// chainHTML is a completion as shown: trimmed and highlighted.
func chainHTML(text string) string {
	text = strings.TrimSpace(text)
	if text == "" {
		return "<i>(an empty completion: only whitespace or special tokens)</i>"
	}
	return highlightChain(text)
}

var chainToken = regexp.MustCompile(`</?([a-z][a-z0-9_]*)>`)

// tagHue gives each tag name a stable colour.
func tagHue(name string) int {
	h := fnv.New32a()
	h.Write([]byte(name))
	return int(h.Sum32() % 360)
}

// highlightChain escapes a completion and colours it: each tag token in
// its tag's colour, the text of each tagged step on a tint of it, the
// answer outlined.
func highlightChain(text string) string {
	var b strings.Builder
	open := ""
	last := 0
	seg := func(s string) {
		if s == "" {
			return
		}
		switch open {
		case "", "think":
			b.WriteString(html.EscapeString(s))
		case "answer":
			fmt.Fprintf(&b, `<span class="ans">%s</span>`, html.EscapeString(s))
		default:
			fmt.Fprintf(&b, `<span class="seg" style="background:hsl(%d,70%%,92%%)">%s</span>`, tagHue(open), html.EscapeString(s))
		}
	}
	for _, m := range chainToken.FindAllStringSubmatchIndex(text, -1) {
		seg(text[last:m[0]])
		name := text[m[2]:m[3]]
		closing := text[m[0]+1] == '/'
		colour := fmt.Sprintf("hsl(%d,65%%,35%%)", tagHue(name))
		if name == "think" || name == "answer" {
			colour = "#333"
		}
		fmt.Fprintf(&b, `<span class="tk" style="color:%s">%s</span>`, colour, html.EscapeString(text[m[0]:m[1]]))
		switch {
		case !closing:
			open = name
		case name == open:
			open = ""
			if name != "think" && strings.Contains(text[:m[0]], "<think>") && !strings.Contains(text[:m[0]], "</think>") {
				open = "think"
			}
		}
		last = m[1]
	}
	seg(text[last:])
	return b.String()
}
