package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tagpr/tagpr/onnx/train"
)

// TestProgressLogsTheEndOnce: without a terminal, progress logs every 3 s
// and the line where done reaches total once, not again for every later
// step (an import logged "done 37 total 37" 25 times).
func TestProgressLogsTheEndOnce(t *testing.T) {
	var buf bytes.Buffer
	p := &progress{label: "import", total: 3, start: time.Now(), lastLog: time.Now(), logger: slog.New(slog.NewJSONHandler(&buf, nil))}
	for range 10 {
		p.Step(1)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], `"done":3`) {
		t.Fatalf("logged %d lines, want one at done 3:\n%s", len(lines), buf.String())
	}
}

// A task whose total is not known (a fan-out stage streaming its input
// reports Total 0) logs how many are done and no "total": 0, which read
// as "4 of 0"; on a terminal it shows a count, not an empty bar at 4/0.
func TestProgressWithoutTotal(t *testing.T) {
	var buf bytes.Buffer
	p := &progress{label: "chains", start: time.Now(), logger: slog.New(slog.NewJSONHandler(&buf, nil))}
	p.Step(4)
	if line := buf.String(); !strings.Contains(line, `"done":4`) || strings.Contains(line, `"total"`) {
		t.Fatalf("logged %s", line)
	}
	var term bytes.Buffer
	p = &progress{w: &term, terminal: true, label: "chains", start: time.Now()}
	p.Step(4)
	if s := term.String(); !strings.Contains(s, "chains 4 done") || strings.Contains(s, "4/0") {
		t.Fatalf("drew %q", s)
	}
}

// onTerminal points bars and notes at a buffer standing for a terminal.
func onTerminal(t *testing.T) *bytes.Buffer {
	var buf bytes.Buffer
	w, term := stderr, stderrTerminal
	stderr, stderrTerminal = &buf, true
	t.Cleanup(func() { stderr, stderrTerminal = w, term; barLine.open = false })
	return &buf
}

// drawn is each state a bar's line took on the terminal ("\r…\033[K").
func drawn(s string) []string {
	var lines []string
	for _, l := range strings.Split(s, "\r") {
		if l = strings.TrimSuffix(strings.TrimSuffix(l, "\n"), "\033[K"); l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// TestBarFitsTheTerminal: a bar line longer than the terminal wrapped, and
// each redraw ("\r" goes back to the last row only) left the rows above as
// garbage: an RL bar with its figures at 80 columns, every bar at 20.
func TestBarFitsTheTerminal(t *testing.T) {
	for _, cols := range []int{20, 60, 80, 300} {
		var buf bytes.Buffer
		p := &progress{w: &buf, terminal: true, label: "rl guided", total: 6, start: time.Now(), cols: cols}
		for range 6 {
			p.Step(1, "loss", "0.009426", "learning_rate", "5e-05", "reward", "0.1163", "completions/mean_length", "28",
				"kl", "0.001029", "rewards/task/signal", "0", "rewards/tag/signal", "1", "rewards/prmu/signal", "0")
		}
		for _, l := range drawn(buf.String()) {
			if n := len([]rune(l)); n >= cols {
				t.Fatalf("at %d columns drew %d: %q", cols, n, l)
			}
			if !strings.HasPrefix(l, "rl guided") || !strings.Contains(l, "/6") {
				t.Fatalf("at %d columns drew %q: want the label and the count", cols, l)
			}
		}
	}
}

// TestBarLeavesTheETA: the bar's width left out the time and the ETA, so
// at 60 columns an import's line was cut before its ETA ("63/217 0s eta").
func TestBarLeavesTheETA(t *testing.T) {
	var buf bytes.Buffer
	p := &progress{w: &buf, terminal: true, label: "import (MiB)", total: 217, start: time.Now(), cols: 60}
	for range 21 {
		p.Step(10)
	}
	for _, l := range drawn(buf.String()) {
		if !strings.Contains(l, " eta ") || !strings.HasSuffix(l, "s") {
			t.Fatalf("drew %q: want the ETA whole", l)
		}
	}
}

// TestNoteEndsTheBarLine: a note during a bar (a warning, "stopped after
// step N" at Ctrl-C) was written onto the bar's line ("…lr=0.003sft:
// stopped after…"); it goes on a line of its own, and the bar goes on below.
func TestNoteEndsTheBarLine(t *testing.T) {
	buf := onTerminal(t)
	r := reporter("loss")
	r(train.Progress{Task: "sft", Step: 1, Total: 4, Metrics: map[string]float64{"loss": 6.9}})
	r(train.Progress{Task: "sft", Note: "stopped after step 1 of 4"})
	stderrLine("tagpr: interrupted; rerun the same command to resume")
	s := buf.String()
	if !strings.Contains(s, "loss=6.9\033[K\nsft: stopped after step 1 of 4\ntagpr: interrupted;") {
		t.Fatalf("drew %q", s)
	}
}

// TestReporterNewBarPerFile: chains and predict report each task file
// under one name from step 1; the second file went on the first's bar (past
// its total: "12/8") on a terminal, and logged nothing at all otherwise.
func TestReporterNewBarPerFile(t *testing.T) {
	buf := onTerminal(t)
	r := reporter("rows")
	for range 2 {
		r(train.Progress{Task: "predict", Step: 4, Total: 8})
		r(train.Progress{Task: "predict", Step: 8, Total: 8})
	}
	got := drawn(buf.String())
	if len(got) != 4 || !strings.Contains(got[2], " 4/8 ") || !strings.Contains(got[3], " 8/8 ") {
		t.Fatalf("drew %q", got)
	}
	var logs bytes.Buffer
	stderr, stderrTerminal = &logs, false
	r = reporter("rows")
	for range 2 {
		r(train.Progress{Task: "predict", Step: 4, Total: 8})
		r(train.Progress{Task: "predict", Step: 8, Total: 8})
	}
	if n := strings.Count(logs.String(), `"done":8,"total":8`); n != 2 {
		t.Fatalf("logged the end of %d files, want 2:\n%s", n, logs.String())
	}
}

// TestResumedBarHasNoETAYet: a resumed task's bar counted the steps done
// before this process in its rate, so its ETA read a fraction of the time
// left ("eta 0s" at step 41 of 400); the rate is over this process's steps.
func TestResumedBarHasNoETAYet(t *testing.T) {
	buf := onTerminal(t)
	reporter()(train.Progress{Task: "sft", Step: 41, Total: 400})
	if s := buf.String(); !strings.Contains(s, "41/400") || strings.Contains(s, "eta") {
		t.Fatalf("drew %q", s)
	}
}

// TestDumbTerminalGetsTextLines: on a terminal that cannot move its cursor
// (TERM=dumb) the bar's "\r" and "\033[K" showed as is on every redraw; it
// gets text log lines instead.
func TestDumbTerminalGetsTextLines(t *testing.T) {
	buf := onTerminal(t)
	t.Setenv("TERM", "dumb")
	r := reporter("loss")
	r(train.Progress{Task: "sft", Step: 1, Total: 2, Metrics: map[string]float64{"loss": 6.9}})
	r(train.Progress{Task: "sft", Step: 2, Total: 2, Metrics: map[string]float64{"loss": 6.3}})
	s := buf.String()
	if strings.ContainsAny(s, "\r\033") || !strings.Contains(s, "msg=sft done=2 total=2") || !strings.HasSuffix(s, "\n") {
		t.Fatalf("wrote %q", s)
	}
}

// TestElapsedCountsTheFirstStep: a reporter's bar starts at the task's
// first report, which comes after its first step, so elapsed_s left that
// step out: an RL stage of one 8-second step logged "done 1 total 1
// elapsed_s 1.2e-05" (and predict "done 16 elapsed_s 5.9e-06", a rate of
// millions of rows a second). It counts from the previous report now.
func TestElapsedCountsTheFirstStep(t *testing.T) {
	var logs bytes.Buffer
	w, term := stderr, stderrTerminal
	stderr, stderrTerminal = &logs, false
	t.Cleanup(func() { stderr, stderrTerminal = w, term })
	r := reporter()
	time.Sleep(50 * time.Millisecond) // the first step's work
	r(train.Progress{Task: "rl guided", Step: 1, Total: 1})
	var line struct {
		Done    int     `json:"done"`
		Elapsed float64 `json:"elapsed_s"`
	}
	if err := json.Unmarshal(logs.Bytes(), &line); err != nil || line.Done != 1 || line.Elapsed < 0.05 {
		t.Fatalf("logged %s (%v): want elapsed_s ≥ 0.05, the step's time", logs.String(), err)
	}
}

// TestLogLinesCarryTheETA: without a terminal (nohup, a pod's log) progress
// lines had done, total and elapsed_s but no ETA, which only the bar showed;
// they now carry eta_s once the rate is known, at the bar's rate.
func TestLogLinesCarryTheETA(t *testing.T) {
	var buf bytes.Buffer
	start := time.Now().Add(-10 * time.Second)
	p := &progress{label: "sft", total: 5, start: start, logger: slog.New(slog.NewJSONHandler(&buf, nil)), base: 1, done: 0}
	p.Step(1) // the first report: no rate yet
	if s := buf.String(); strings.Contains(s, "eta_s") {
		t.Fatalf("first line has an ETA: %s", s)
	}
	buf.Reset()
	p.lastLog = time.Time{}
	p.Step(1) // 1 step in ~10 s, 3 left: ~30 s
	var line struct {
		ETA float64 `json:"eta_s"`
	}
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil || line.ETA < 29 || line.ETA > 60 {
		t.Fatalf("eta_s %v (%v) in %s", line.ETA, err, buf.String())
	}
}
