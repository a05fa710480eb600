package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/datasets"
)

// data export-lamp --outputs of rows without golds (a test split) once
// wrote {"golds": []} with exit 0; it is refused, naming the file and the
// fix, and writes nothing. Rows some of which lack a gold export with a
// note of how many.
func TestExportLaMPGoldsCounted(t *testing.T) {
	dir := t.TempDir()
	task, _ := datasets.ParseTask("7")
	write := func(name string, withGold ...bool) string {
		path := filepath.Join(dir, name)
		rows := make([]datasets.Example, len(withGold))
		for i, g := range withGold {
			rows[i] = datasets.Example{ID: string(rune('1' + i)), Task: task.Name, Split: "test", Scheme: "user", Input: "Paraphrase: x",
				Profile: []datasets.ProfileItem{{ID: "p", Fields: []string{"y"}}}, Output: "z", HasOutput: g}
		}
		if err := datasets.WriteRows(path, rows, func(p string) (*datasets.Writer[datasets.Example], error) { return datasets.CreateExamples(p, task) }); err != nil {
			t.Fatal(err)
		}
		return path
	}
	none, some := write("none.arrow", false, false), write("some.arrow", true, false, true)
	q, o := filepath.Join(dir, "q.json"), filepath.Join(dir, "o.json")

	_, stderr, err := runTagpr(t, ".", nil, "data", "export-lamp", "--in", none, "--questions", q, "--outputs", o)
	if err == nil || !strings.Contains(stderr, o) || !strings.Contains(stderr, "none of the 2 questions") || !strings.Contains(stderr, "drop --outputs") {
		t.Fatalf("no golds: err %v, stderr %q", err, stderr)
	}
	for _, p := range []string{q, o} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("a refused export left %s", p)
		}
	}
	if _, stderr, err := runTagpr(t, ".", nil, "data", "export-lamp", "--in", none, "--questions", q); err != nil {
		t.Fatalf("test split without --outputs: %v\n%s", err, stderr)
	}

	out, stderr, err := runTagpr(t, ".", nil, "data", "export-lamp", "--in", some, "--questions", q, "--outputs", o, "--force")
	if err != nil || !strings.Contains(out, "exported 3 questions") || !strings.Contains(out, "2 golds") ||
		!strings.Contains(stderr, "1 of the 3 questions of "+some+" have no gold") {
		t.Fatalf("some golds: err %v, stdout %q, stderr %q", err, out, stderr)
	}
}
