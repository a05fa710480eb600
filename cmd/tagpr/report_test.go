package main

import (
	"bufio"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/net/html"

	"github.com/tagpr/tagpr/onnx/ort"
	"github.com/tagpr/tagpr/pipeline/tfevents"
)

// node helpers over golang.org/x/net/html's tree.

func attr(n *html.Node, key string) (string, bool) {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val, true
		}
	}
	return "", false
}

func hasClass(n *html.Node, class string) bool {
	c, _ := attr(n, "class")
	for _, f := range strings.Fields(c) {
		if f == class {
			return true
		}
	}
	return false
}

// findAll lists the element nodes below n (n included) that match.
func findAll(n *html.Node, match func(*html.Node) bool) []*html.Node {
	var out []*html.Node
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && match(n) {
			out = append(out, n)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return out
}

func tag(name string) func(*html.Node) bool { return func(n *html.Node) bool { return n.Data == name } }

func withAttr(name string) func(*html.Node) bool {
	return func(n *html.Node) bool { _, ok := attr(n, name); return ok }
}

// jsonlCount counts the lines of a per-step log whose dotted key path holds
// a finite number (skipped training steps left out, as the charts do).
func jsonlCount(t *testing.T, path, key string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("chart source: %v", err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var v any
		if json.Unmarshal(sc.Bytes(), &v) != nil {
			continue
		}
		if m, ok := v.(map[string]any); ok && m["skipped"] == true {
			continue
		}
		for _, k := range strings.Split(key, ".") {
			m, ok := v.(map[string]any)
			if !ok {
				v = nil
				break
			}
			v = m[k]
		}
		if x, ok := v.(float64); ok && !math.IsNaN(x) && !math.IsInf(x, 0) {
			n++
		}
	}
	return n
}

// reportFiles are what checkReportHTML compares the page with.
type reportFiles struct {
	Metrics struct {
		Tasks map[string]struct {
			Split       string
			N           int
			Models      map[string]json.RawMessage
			Differences []json.RawMessage
		}
		Stages []string
	}
	Evals map[string]struct { // by "TASK_SPLIT"
		Labels []string
		Models []struct {
			Name    string
			Metrics []json.RawMessage
			Tags    *struct{ Share map[string]float64 }
		}
	}
}

// checkReportHTML parses OUT/report.html and checks it against the run
// folder: it fetches nothing, every chart has its data points (each line's
// points are the steps of its log that have the value; each interval chart
// has every model and rule of metrics.json; each bar chart a bar per tag),
// and every table its rows (one per task, metric, difference, stage,
// model, label, as the run's files have them); wantRules(task) rule
// columns.
func checkReportHTML(t *testing.T, out string, wantRules func(task string) int) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(out, "report.html"))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := html.Parse(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatalf("report.html does not parse: %v", err)
	}
	// Where the training ran, in both reports: what its numbers reproduce on.
	// The version compared is this process's ORT's (the same pinned file the
	// binary ran), so load it here: run alone, no other test has.
	if err := ort.Init(""); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(out, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{"report.md": string(md), "report.html": string(raw)} {
		if !strings.Contains(text, "rained on") || !strings.Contains(text, "intra-op thread") || !strings.Contains(text, "; ONNX Runtime "+ort.Version()+" (") {
			t.Errorf("%s does not say which machine, threads and runtime trained the models", name)
		}
	}
	var rf reportFiles
	readJSONFile(t, filepath.Join(out, "metrics.json"), &rf.Metrics)
	rf.Evals = map[string]struct {
		Labels []string
		Models []struct {
			Name    string
			Metrics []json.RawMessage
			Tags    *struct{ Share map[string]float64 }
		}
	}{}
	for task, tm := range rf.Metrics.Tasks {
		e := rf.Evals[task]
		readJSONFile(t, filepath.Join(out, "eval", strings.Split(task, "/")[0]+"_"+tm.Split+".json"), &e)
		rf.Evals[strings.Split(task, "/")[0]+"_"+tm.Split] = e
	}

	// Self-contained: no script, no stylesheet link, no remote reference.
	if n := len(findAll(doc, func(n *html.Node) bool {
		return n.Data == "script" || n.Data == "link" || n.Data == "img" || n.Data == "iframe"
	})); n > 0 {
		t.Errorf("report.html has %d script/link/img/iframe elements; it must be self-contained", n)
	}
	for _, n := range findAll(doc, func(*html.Node) bool { return true }) {
		for _, a := range n.Attr {
			if (a.Key == "href" || a.Key == "src") && !strings.HasPrefix(a.Val, "#") {
				t.Errorf("report.html refers to %s=%q", a.Key, a.Val)
			}
		}
	}

	charts := findAll(doc, func(n *html.Node) bool { return n.Data == "figure" && hasClass(n, "chart") })
	if len(charts) == 0 {
		t.Fatal("report.html has no chart")
	}
	lineCharts, intervalCharts, barCharts := 0, 0, 0
	for _, fig := range charts {
		id, _ := attr(fig, "id")
		src, _ := attr(fig, "data-source")
		if len(findAll(fig, tag("svg"))) != 1 {
			t.Errorf("chart %s has no svg", id)
			continue
		}
		switch {
		case strings.HasPrefix(id, "chart-stages-"):
			intervalCharts++
			key := strings.TrimPrefix(id, "chart-stages-")
			var want map[string]json.RawMessage
			for task, tm := range rf.Metrics.Tasks {
				if strings.Split(task, "/")[0]+"-"+tm.Split == key {
					want = tm.Models
				}
			}
			got := findAll(fig, withAttr("data-model"))
			if len(want) == 0 || len(got) != len(want) {
				t.Errorf("chart %s draws %d models, metrics.json has %d", id, len(got), len(want))
			}
			for _, g := range got {
				m, _ := attr(g, "data-model")
				if _, ok := want[m]; !ok {
					t.Errorf("chart %s draws %s, which metrics.json does not have", id, m)
				}
				if len(findAll(g, func(n *html.Node) bool { return n.Data == "circle" || n.Data == "line" })) == 0 {
					t.Errorf("chart %s: %s has no mark", id, m)
				}
			}
		case strings.HasPrefix(id, "chart-tags-"):
			barCharts++
			key := strings.TrimPrefix(id, "chart-tags-")
			e, ok := rf.Evals[strings.Replace(key, "-", "_", 1)]
			series := findAll(fig, withAttr("data-series"))
			models := 0
			tags := map[string]bool{}
			for _, m := range e.Models {
				if m.Tags != nil {
					models++
					for tg := range m.Tags.Share {
						tags[tg] = true
					}
				}
			}
			if !ok || len(series) != models {
				t.Errorf("chart %s has %d series, the eval file %d models with completions", id, len(series), models)
			}
			for _, s := range series {
				if n := len(findAll(s, tag("rect"))); n != len(tags) {
					t.Errorf("chart %s: %d bars, want one per tag used (%d)", id, n, len(tags))
				}
			}
		default:
			lineCharts++
			series := findAll(fig, withAttr("data-series"))
			if len(series) == 0 {
				t.Errorf("chart %s has no series", id)
			}
			for _, s := range series {
				name, _ := attr(s, "data-series")
				key, _ := attr(s, "data-key")
				dn, _ := attr(s, "data-n")
				n, _ := strconv.Atoi(dn)
				lines := findAll(s, tag("polyline"))
				if len(lines) != 1 {
					t.Errorf("chart %s series %s: %d polylines", id, name, len(lines))
					continue
				}
				pts, _ := attr(lines[0], "points")
				if got := len(strings.Fields(pts)); got != n || n == 0 {
					t.Errorf("chart %s series %s: %d points drawn, data-n %d", id, name, got, n)
				}
				if c := len(findAll(s, tag("circle"))); c != n {
					t.Errorf("chart %s series %s: %d dots, want %d", id, name, c, n)
				}
				if want := jsonlCount(t, filepath.Join(out, src), key); want != n {
					t.Errorf("chart %s series %s: %d points, %s has %d values of %s", id, name, n, src, want, key)
				}
			}
		}
	}
	checkContributionCharts(t, out, charts)
	if intervalCharts != len(rf.Metrics.Tasks) || lineCharts < 2 {
		t.Errorf("%d interval charts for %d tasks, %d line charts", intervalCharts, len(rf.Metrics.Tasks), lineCharts)
	}
	used := 0
	for _, e := range rf.Evals {
		for _, m := range e.Models {
			if m.Tags != nil && len(m.Tags.Share) > 0 {
				used++
				break
			}
		}
	}
	if barCharts != used {
		t.Errorf("%d tag distribution charts, %d tasks whose completions use tags", barCharts, used)
	}

	// Tables and their rows.
	rows := map[string]int{}
	for _, tb := range findAll(doc, withAttr("data-table")) {
		name, _ := attr(tb, "data-table")
		var body []*html.Node
		for _, tbody := range findAll(tb, tag("tbody")) {
			body = append(body, findAll(tbody, tag("tr"))...)
		}
		if len(body) == 0 {
			t.Errorf("table %s has no rows", name)
		}
		rows[name] = len(body)
	}
	wantRows := map[string]int{"results": len(rf.Metrics.Tasks)}
	for task, tm := range rf.Metrics.Tasks {
		wantRows["differences"] += len(tm.Differences)
		e := rf.Evals[strings.Split(task, "/")[0]+"_"+tm.Split]
		wantRows["metrics"] += len(e.Models[0].Metrics)
		for _, m := range e.Models {
			if m.Tags != nil {
				wantRows["tags"]++
			}
		}
		if len(e.Labels) > 0 {
			for _, m := range e.Models {
				wantRows["confusion-"+strings.Split(task, "/")[0]+"-"+tm.Split+"-"+m.Name] = len(e.Labels)
			}
		}
		rules := len(tm.Models) - len(rf.Metrics.Stages)
		if rules != wantRules(task) {
			t.Errorf("metrics.json %s: %d models beside the stages %v", task, len(tm.Models), rf.Metrics.Stages)
		}
	}
	stages := 0
	for _, f := range []string{"chains/summary.json", "sft/summary.json", "prmu/summary.json", "rl/guided/summary.json", "rl/exploratory/summary.json"} {
		if fileExists(filepath.Join(out, f)) {
			stages++
		}
	}
	wantRows["stages"] = stages
	for name, want := range wantRows {
		if rows[name] != want {
			t.Errorf("table %s has %d rows, want %d", name, rows[name], want)
		}
	}
	for name, n := range rows {
		if stage, ok := strings.CutPrefix(name, "rl-rewards-"); ok {
			// Each component and the total.
			var first struct{ Rewards map[string]json.RawMessage }
			log := filepath.Join(out, "rl", stage, "checkpoints", "rl_log.jsonl")
			b, _ := os.ReadFile(log)
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			json.Unmarshal([]byte(lines[0]), &first)
			if want := len(first.Rewards) + 1; n != want || len(lines) == 0 {
				t.Errorf("table %s has %d rows, want %d", name, n, want)
			}
		}
	}
}

// checkContributionCharts checks that every RL stage whose log carries
// reward_contributions has its share and signal charts, with a series per
// reward the log names (their points are counted with every line chart's).
func checkContributionCharts(t *testing.T, out string, charts []*html.Node) {
	t.Helper()
	byID := map[string]*html.Node{}
	for _, fig := range charts {
		id, _ := attr(fig, "id")
		byID[id] = fig
	}
	logs, _ := filepath.Glob(filepath.Join(out, "rl", "*", "checkpoints", "rl_log.jsonl"))
	for _, log := range logs {
		stage := filepath.Base(filepath.Dir(filepath.Dir(log)))
		b, err := os.ReadFile(log)
		if err != nil {
			t.Fatal(err)
		}
		names := map[string]bool{}
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var l struct {
				Contributions map[string]json.RawMessage `json:"reward_contributions"`
			}
			json.Unmarshal([]byte(line), &l)
			for n := range l.Contributions {
				names[n] = true
			}
		}
		for _, part := range []string{"share", "signal"} {
			id := "chart-rl-" + stage + "-" + part
			fig, ok := byID[id]
			if len(names) == 0 {
				if ok {
					t.Errorf("%s: chart %s, but the log has no reward_contributions", stage, id)
				}
				continue
			}
			if !ok {
				t.Errorf("%s: the log has reward_contributions of %d rewards, the page no chart %s", stage, len(names), id)
				continue
			}
			series := findAll(fig, withAttr("data-series"))
			if len(series) != len(names) {
				t.Errorf("chart %s has %d series, the log %d rewards", id, len(series), len(names))
			}
			for _, s := range series {
				key, _ := attr(s, "data-key")
				n, _ := strings.CutPrefix(key, "reward_contributions.")
				if n, ok := strings.CutSuffix(n, "."+part); !ok || !names[n] {
					t.Errorf("chart %s: series key %q is not one of the log's reward_contributions.NAME.%s", id, key, part)
				}
			}
		}
	}
}

// checkEventFiles replays each training stage's TensorBoard event files as
// TensorBoard does (a restart at step s drops what earlier files hold for s
// and later) and checks that every step of the stage's JSONL log is there
// once, with its value: however often the run was killed and resumed.
func checkEventFiles(t *testing.T, out string) {
	t.Helper()
	for _, s := range []struct{ dir, log, key, tag string }{
		{"sft", "sft/checkpoints/train_log.jsonl", "loss", "loss"},
		{"rl/guided", "rl/guided/checkpoints/rl_log.jsonl", "reward.mean", "reward"},
		{"rl/exploratory", "rl/exploratory/checkpoints/rl_log.jsonl", "reward.mean", "reward"},
	} {
		files, err := tfevents.Files(filepath.Join(out, s.dir))
		if err != nil || len(files) == 0 {
			t.Errorf("%s: no TensorBoard event file (%v)", s.dir, err)
			continue
		}
		got := map[int64]float32{}
		for _, f := range files {
			evs, err := tfevents.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range evs {
				if e.SessionStart {
					for step := range got {
						if step >= e.Step {
							delete(got, step)
						}
					}
				}
				if v, ok := e.Scalars[s.tag]; ok {
					got[e.Step] = v
				}
			}
		}
		want := map[int64]float32{}
		b, _ := os.ReadFile(filepath.Join(out, s.log))
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var l map[string]any
			if json.Unmarshal([]byte(line), &l) != nil {
				continue
			}
			v := any(l)
			for _, k := range strings.Split(s.key, ".") {
				v = v.(map[string]any)[k]
			}
			if x, ok := v.(float64); ok {
				want[int64(l["step"].(float64))] = float32(x)
			}
		}
		t.Logf("%s: %d event files, %d steps after the purge", s.dir, len(files), len(got))
		if len(want) == 0 || len(got) != len(want) {
			t.Errorf("%s: event files hold %d steps of %s after TensorBoard's purge, the log %d (%d files)", s.dir, len(got), s.tag, len(want), len(files))
		}
		for step, v := range want {
			if got[step] != v {
				t.Errorf("%s step %d: %s %v in the event files, %v in the log", s.dir, step, s.tag, got[step], v)
			}
		}
	}
}

// Every output a user keeps names the tagpr build that made it: the
// reports (markdown, HTML, report.json) and each training stage's summary
// carry the version and the commit `make build` stamps (here testCommit).
// Before, none did: a report could not be traced to the code behind it.
func TestReportNamesTheBuild(t *testing.T) {
	dir := t.TempDir()
	if _, stderr, err := runTagpr(t, dir, runtimeEnv(t), "demo", "--fast-dev-run", "--dir", "d"); err != nil {
		t.Fatalf("demo --fast-dev-run: %v\n%s", err, stderr)
	}
	out := filepath.Join(dir, "d", "fast_dev_run")
	build := "tagpr " + version + " (commit " + testCommit + ")"
	for _, f := range []string{"report.md", "report.html", "report.json", "sft/summary.json", "prmu/summary.json",
		"chains/summary.json", "rl/guided/summary.json", "rl/exploratory/summary.json"} {
		b, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), build) {
			t.Errorf("%s does not name the build %q", f, build)
		}
	}
	md, _ := os.ReadFile(filepath.Join(out, "report.md"))
	if !strings.Contains(string(md), "- made by: "+build+"\n") {
		t.Errorf("report.md's header does not say which tagpr made it:\n%s", md[:min(len(md), 800)])
	}
	// metrics.json stays comparable byte for byte across builds.
	if b, _ := os.ReadFile(filepath.Join(out, "metrics.json")); strings.Contains(string(b), testCommit) {
		t.Error("metrics.json names the build; it should stay comparable across builds")
	}
}

// A stage resumed at another thread count is another computation than a
// fresh run at either count: its summary and the report's "trained on"
// name each machine with its steps. Before, the summary named only the
// machine the stage finished on, which a fresh run did not reproduce.
func TestResumedStageNamesEveryMachine(t *testing.T) {
	dir := t.TempDir()
	env := runtimeEnv(t)
	// The finished SFT keeps its checkpoints for rewindSFT.
	keep := append(slices.Clone(env), "TAGPR_STAGES_KEEP_CHECKPOINTS=true")
	if _, stderr, err := runTagpr(t, dir, keep, "demo", "--fast-dev-run", "--dir", "d", "--threads", "1"); err != nil {
		t.Fatalf("demo --fast-dev-run: %v\n%s", err, stderr)
	}
	out := filepath.Join(dir, "d", "fast_dev_run")
	rewindSFT(t, out)
	stdout, stderr, err := runTagpr(t, dir, env, "demo", "--fast-dev-run", "--dir", "d", "--threads", "2")
	if err != nil {
		t.Fatalf("resumed at 2 threads: %v\n%s", err, stderr)
	}
	if !strings.Contains(stderr, "resuming after step 1 of 2") {
		t.Fatalf("SFT did not resume after step 1:\n%s", stderr)
	}
	var sum struct {
		Machine string `json:"machine"`
	}
	b, err := os.ReadFile(filepath.Join(out, "sft/summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &sum); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"steps 1–1: ", "1 intra-op thread;", "; then steps 2–2: ", "2 intra-op threads;", "(resumed on another machine"} {
		if !strings.Contains(sum.Machine, want) {
			t.Errorf("sft/summary.json's machine %q lacks %q", sum.Machine, want)
		}
	}
	if !strings.Contains(stdout, "trained on: "+sum.Machine+" (sft)") {
		t.Errorf("the report's trained-on line does not name SFT's two machines:\n%s", stdout[:min(len(stdout), 1200)])
	}
	// RL ran whole at 2 threads: one machine.
	b, _ = os.ReadFile(filepath.Join(out, "rl/guided/summary.json"))
	if !strings.Contains(string(b), `"machine": "`) || strings.Contains(string(b), "then steps") {
		t.Errorf("rl/guided/summary.json should name its one machine:\n%s", b)
	}
}

// A report made alone after the predict stage ran again, without the eval
// stage, is refused: its eval files scored the earlier predictions, so
// before, it gave their numbers and sample chains as the new ones'.
func TestReportRefusesEvalOfEarlierPredictions(t *testing.T) {
	dir := t.TempDir()
	env := append(runtimeEnv(t), "TAGPR_OUT="+filepath.Join(dir, "d"))
	if _, stderr, err := runTagpr(t, dir, env, "run", "--fast-dev-run"); err != nil {
		t.Fatalf("run --fast-dev-run: %v\n%s", err, stderr)
	}
	out := filepath.Join(dir, "d", "fast_dev_run")
	if err := os.RemoveAll(filepath.Join(out, "predictions")); err != nil {
		t.Fatal(err)
	}
	env = append(env, "TAGPR_STAGES_PREDICT_MAX_NEW_TOKENS=4")
	if _, stderr, err := runTagpr(t, dir, env, "predict", "--fast-dev-run"); err != nil {
		t.Fatalf("predict again: %v\n%s", err, stderr)
	}
	_, stderr, err := runTagpr(t, dir, env, "report", "--fast-dev-run")
	if err == nil || !strings.Contains(stderr, "scored other predictions than") || !strings.Contains(stderr, "run `tagpr eval` with this config first") {
		t.Fatalf("report on eval files of earlier predictions: want a refusal naming tagpr eval, got %v:\n%s", err, stderr)
	}
	if _, stderr, err := runTagpr(t, dir, env, "eval", "--fast-dev-run"); err != nil {
		t.Fatalf("eval: %v\n%s", err, stderr)
	}
	if _, stderr, err := runTagpr(t, dir, env, "report", "--fast-dev-run"); err != nil {
		t.Fatalf("report after eval: %v\n%s", err, stderr)
	}
}

// report.json holds the effective config of the run that wrote it, after
// defaults, --fast-dev-run, TAGPR_* variables and flags; before, no file of
// the run folder held the whole of it.
func TestReportJSONHoldsTheEffectiveConfig(t *testing.T) {
	dir := t.TempDir()
	env := append(runtimeEnv(t), "TAGPR_STAGES_EVAL_SEED=7")
	if _, stderr, err := runTagpr(t, dir, env, "demo", "--fast-dev-run", "--dir", "d", "--threads", "1"); err != nil {
		t.Fatalf("demo --fast-dev-run: %v\n%s", err, stderr)
	}
	b, err := os.ReadFile(filepath.Join(dir, "d", "fast_dev_run", "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Config struct {
			Out     string `json:"out"`
			Runtime struct {
				Threads int `json:"threads"`
			} `json:"runtime"`
			Stages struct {
				SFT struct {
					Steps int `json:"steps"`
				} `json:"sft"`
				Eval struct {
					Seed int `json:"seed"`
				} `json:"eval"`
			} `json:"stages"`
		} `json:"config"`
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	c := rep.Config
	if c.Runtime.Threads != 1 || c.Stages.Eval.Seed != 7 || c.Stages.SFT.Steps != 2 || c.Out != filepath.Join(dir, "d", "fast_dev_run") {
		t.Errorf("report.json's config = %+v, want threads 1 (flag), eval seed 7 (variable), sft steps 2 (fast-dev-run), out %s",
			c, filepath.Join(dir, "d", "fast_dev_run"))
	}
}

// rewindSFT leaves the fast-dev-run in out (run with
// stages.keep_checkpoints) as if its SFT had stopped after step 1 of 2: the
// checkpoint of step 1 is the newest, and nothing after SFT is done.
func rewindSFT(t *testing.T, out string) {
	t.Helper()
	for _, p := range []string{"sft/model.onnx", "sft/summary.json", "sft/checkpoints/step-00000002", "rl", "predictions", "eval"} {
		if err := os.RemoveAll(filepath.Join(out, p)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(out, "sft/checkpoints/LATEST"), []byte("step-00000001\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// A stage resumed on the same machine says so, with the step it resumed
// after, and when its first process began and its last ended; its results
// are the uninterrupted run's (metrics.json byte for byte). Before, nothing
// in the run folder or the report said a stage had been resumed.
func TestResumedStageSaysSo(t *testing.T) {
	dir := t.TempDir()
	env := runtimeEnv(t)
	// The finished SFT keeps its checkpoints for rewindSFT.
	keep := append(slices.Clone(env), "TAGPR_STAGES_KEEP_CHECKPOINTS=true")
	if _, stderr, err := runTagpr(t, dir, keep, "demo", "--fast-dev-run", "--dir", "d", "--threads", "1"); err != nil {
		t.Fatalf("demo --fast-dev-run: %v\n%s", err, stderr)
	}
	out := filepath.Join(dir, "d", "fast_dev_run")
	whole, err := os.ReadFile(filepath.Join(out, "metrics.json"))
	if err != nil {
		t.Fatal(err)
	}
	rewindSFT(t, out)
	stdout, stderr, err := runTagpr(t, dir, env, "demo", "--fast-dev-run", "--dir", "d", "--threads", "1")
	if err != nil {
		t.Fatalf("resumed: %v\n%s", err, stderr)
	}
	var sum struct {
		Machine      string `json:"machine"`
		ResumedAfter []int  `json:"resumed_after"`
		Started      string `json:"started"`
		Finished     string `json:"finished"`
	}
	b, _ := os.ReadFile(filepath.Join(out, "sft/summary.json"))
	if err := json.Unmarshal(b, &sum); err != nil {
		t.Fatal(err)
	}
	if len(sum.ResumedAfter) != 1 || sum.ResumedAfter[0] != 1 || sum.Started == "" || sum.Finished < sum.Started || strings.Contains(sum.Machine, "then") {
		t.Errorf("sft/summary.json = %s; want resumed_after [1], started ≤ finished, one machine", b)
	}
	if !strings.Contains(stdout, "- sft was interrupted and resumed after step 1 (") {
		t.Errorf("the report does not say SFT was resumed:\n%s", stdout)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "rl/guided/summary.json")); strings.Contains(string(b), "resumed_after") || !strings.Contains(string(b), `"started": "`) {
		t.Errorf("rl/guided ran whole: want no resumed_after and its start time:\n%s", b)
	}
	if again, _ := os.ReadFile(filepath.Join(out, "metrics.json")); string(again) != string(whole) {
		t.Errorf("metrics.json of the resumed run differs from the uninterrupted one's")
	}
}
