package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
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
