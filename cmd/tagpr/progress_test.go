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
