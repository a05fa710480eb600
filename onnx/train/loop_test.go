package train

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTrimLog: lines past the checkpoint go, a last line cut by a crash
// goes, a broken line before the end is an error naming file and line.
func TestTrimLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), LogFile)
	good := `{"step":1,"loss":2}` + "\n" + `{"step":2,"loss":1}` + "\n"
	for _, c := range []struct {
		name, log, want string
		step            int
	}{
		{"past the checkpoint", good + `{"step":3,"loss":0.5}` + "\n", good, 2},
		{"cut mid-write", good + `{"step":3,"lo`, good, 3},
		{"nothing to drop", good, good, 2},
		{"all redone", good, "", 0},
	} {
		if err := os.WriteFile(path, []byte(c.log), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := TrimLog(path, c.step); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got, _ := os.ReadFile(path); string(got) != c.want {
			t.Errorf("%s: log after trimming to step %d:\n%s\nwant\n%s", c.name, c.step, got, c.want)
		}
	}
	if err := os.WriteFile(path, []byte(`{"step":1}`+"\ngarbage\n"+`{"step":2}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := TrimLog(path, 2); err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("broken middle line: %v", err)
	}
	if _, err := ReadLog[StepLog](path); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("reading a log with a broken middle line: %v", err)
	}
	if err := TrimLog(filepath.Join(t.TempDir(), "none.jsonl"), 3); err != nil {
		t.Fatalf("a missing log: %v", err)
	}
}
