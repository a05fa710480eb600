package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/tagpr/tagpr/onnx/train"
)

// progress shows long work: a redrawn bar on a terminal, structured log lines
// (at most one every few seconds, plus the last) otherwise. Library code never
// prints; it reports through callbacks that the CLI points at one of these.
type progress struct {
	mu       sync.Mutex
	w        io.Writer
	label    string
	total    int
	done     int
	start    time.Time
	lastLog  time.Time
	ended    bool // the line with done = total was logged
	terminal bool
	logger   *slog.Logger
	// base is the done count the clock started at (a resumed task's
	// earlier steps, the first report's step): the ETA's rate is over the
	// steps after it.
	base int
	cols int // the terminal's width; 0: ask stderr's terminal
	// began is when the task's work began, where that is before start (a
	// reporter's bar starts its clock at the task's first report, after its
	// first step): the elapsed time shown and logged (elapsed_s) counts
	// from it. Zero: start.
	began time.Time
}

// stderr is where bars and notes go, stderrTerminal whether it is a
// terminal (variables: tests draw into a buffer).
var (
	stderr         io.Writer = os.Stderr
	stderrTerminal           = isTerminal(os.Stderr)
)

// barLine is whether a bar's line on stderr is drawn without its newline
// yet: a note, the interrupt's message or an error ends that line first
// (stderrLine), not written into the bar ("… lr=0.003sft: stopped after").
var barLine struct {
	sync.Mutex
	open bool
}

// stderrLine writes s as a line of its own on stderr, below an open bar.
func stderrLine(s string) {
	barLine.Lock()
	defer barLine.Unlock()
	if barLine.open {
		fmt.Fprintln(stderr)
		barLine.open = false
	}
	fmt.Fprintln(stderr, s)
}

// newProgress writes to stderr; the log format comes from log.format (auto|text|json).
func newProgress(label string, total int) *progress {
	p := &progress{w: stderr, label: label, total: total, start: time.Now()}
	switch runCfg.Log.Format {
	case "json":
		p.logger = slog.New(slog.NewJSONHandler(stderr, nil))
	case "text":
		p.logger = slog.New(slog.NewTextHandler(stderr, nil))
	default:
		if stderrTerminal && os.Getenv("TERM") == "dumb" {
			// A terminal that cannot move its cursor (Emacs' shell, TERM=dumb)
			// showed every redraw's "\r" and "\033[K" as is: log lines for
			// a person to read.
			p.logger = slog.New(slog.NewTextHandler(stderr, nil))
		} else if stderrTerminal {
			p.terminal = true
		} else {
			p.logger = slog.New(slog.NewJSONHandler(stderr, nil))
		}
	}
	return p
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// Step records n more units done; attrs are key/value pairs shown with it (loss=…).
func (p *progress) Step(n int, attrs ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += n
	now := time.Now()
	if p.terminal {
		p.draw(attrs)
		return
	}
	// Every 3 s, and once when the work is done (not again for each later
	// call: an import's last tensors logged "done 37 total 37" 25 times).
	if now.Sub(p.lastLog) < 3*time.Second && (p.done < p.total || p.ended) {
		return
	}
	p.lastLog, p.ended = now, p.ended || p.done >= p.total
	args := []any{"done", p.done}
	if p.total > 0 { // 0: not known (a fan-out stage streaming its input); "total 0" would read as done
		args = append(args, "total", p.total)
	}
	args = append(args, "elapsed_s", now.Sub(p.origin()).Seconds())
	if eta, ok := p.eta(now.Sub(p.start)); ok { // as the bar shows it: a log read by a person (nohup, a cluster's pod log) had none
		args = append(args, "eta_s", eta.Seconds())
	}
	p.logger.Info(p.label, append(args, attrs...)...)
}

// eta is the time left at the rate of this process's steps since the first
// report (elapsed counts from it; not a resumed task's earlier steps, nor
// the work before the first report); false until a step past the first
// report is done, or when the total is not known.
func (p *progress) eta(elapsed time.Duration) (time.Duration, bool) {
	n := p.done - p.base
	if n <= 0 || p.total <= p.done {
		return 0, false
	}
	return time.Duration(float64(elapsed) / float64(n) * float64(p.total-p.done)), true
}

func (p *progress) draw(attrs []any) {
	var kv strings.Builder
	for i := 0; i+1 < len(attrs); i += 2 {
		fmt.Fprintf(&kv, " %v=%v", attrs[i], attrs[i+1])
	}
	elapsed := time.Since(p.origin())
	eta := ""
	if d, ok := p.eta(time.Since(p.start)); ok {
		eta = fmt.Sprintf(" eta %s", d.Round(time.Second))
	}
	cols := p.cols
	if cols <= 0 {
		cols = stderrColumns()
	}
	var line string
	if p.total <= 0 { // not known: a count, no bar
		line = fmt.Sprintf("%s %d done %s%s", p.label, p.done, elapsed.Round(time.Second), kv.String())
	} else {
		count := fmt.Sprintf(" %d/%d", p.done, p.total)
		times := fmt.Sprintf(" %s%s", elapsed.Round(time.Second), eta)
		// The bar narrows to leave the label, the count, the time and the
		// ETA on a narrow terminal's line, and is left out below 5 columns.
		width := min(30, cols-1-utf8.RuneCountInString(p.label)-3-len(count)-len(times))
		bar := ""
		if width >= 5 {
			filled := min(int(float64(p.done)/float64(p.total)*float64(width)), width)
			bar = " [" + strings.Repeat("=", filled) + strings.Repeat(" ", width-filled) + "]"
		}
		line = p.label + bar + count + times + kv.String()
	}
	// A line longer than the terminal wraps, and "\r" then goes back only to
	// its last row: every redraw would leave the rows above as garbage. The
	// figures that do not fit are cut (the log files have them all).
	if r := []rune(line); len(r) > cols-1 {
		line = string(r[:max(cols-1, 0)])
	}
	barLine.Lock()
	defer barLine.Unlock()
	fmt.Fprintf(p.w, "\r%s\033[K", line)
	barLine.open = true
}

// stderrColumns is the width of stderr's terminal: its own, else $COLUMNS,
// else 80.
func stderrColumns() int {
	if n := terminalColumns(os.Stderr); n > 0 {
		return n
	}
	if n, err := strconv.Atoi(os.Getenv("COLUMNS")); err == nil && n > 0 {
		return n
	}
	return 80
}

// origin is when the task's work began: began, else start.
func (p *progress) origin() time.Time {
	if p.began.IsZero() {
		return p.start
	}
	return p.began
}

// Finish ends the bar's line.
func (p *progress) Finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.terminal {
		barLine.Lock()
		defer barLine.Unlock()
		if barLine.open { // not when a note ended the line already
			fmt.Fprintln(p.w)
			barLine.open = false
		}
	}
}

// logLine reports one event of long work in the configured log format.
func logLine(stage, detail string) {
	p := newProgress(stage, 0)
	if p.terminal {
		stderrLine(stage + ": " + detail)
		return
	}
	p.logger.Info(detail, "stage", stage)
}

// reporter shows train.Progress reports: a bar per task (created at the
// task's first step, starting where a resumed task starts), its note lines
// through logLine, and the figures named in show (when the report has them)
// beside the bar.
func reporter(show ...string) train.ProgressFunc {
	bars := map[string]*progress{}
	// last is the time of the previous report (or of the reporter's
	// making): a task's first report comes after its first step, whose work
	// began then.
	var mu sync.Mutex // notes may come from the stage's goroutines
	last := time.Now()
	return func(p train.Progress) {
		mu.Lock()
		began := last
		last = time.Now()
		mu.Unlock()
		if p.Note != "" {
			logLine(p.Task, p.Note)
			return
		}
		b := bars[p.Task]
		// A step not past the bar's is the task's next run (chains and
		// predict report each file under one name, from step 1): a new bar,
		// not the last one's carried past its total.
		if b == nil || p.Step <= b.done {
			b = newProgress(p.Task, p.Total)
			// The clock starts at this first report: the ETA is over the
			// steps after it (not a resumed task's earlier steps).
			b.done, b.base, b.began = p.Step-1, p.Step, began
			bars[p.Task] = b
		}
		var attrs []any
		for _, k := range show {
			if v, ok := p.Metrics[k]; ok {
				attrs = append(attrs, k, strconv.FormatFloat(v, 'g', 4, 64))
			}
		}
		b.Step(max(p.Step-b.done, 1), attrs...) // fan-out stages step by rows
		if p.Warning != "" {
			logLine(p.Task, fmt.Sprintf("warning: step %d: %s", p.Step, p.Warning))
		}
		if p.Total > 0 && p.Step == p.Total {
			b.Finish()
		}
	}
}
