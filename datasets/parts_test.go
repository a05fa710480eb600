package datasets

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func predictionRows(ids ...string) []Prediction {
	out := make([]Prediction, len(ids))
	for i, id := range ids {
		out[i] = Prediction{ID: id, Task: "LaMP_3", Model: "m", Completion: "c " + id, Prediction: "3"}
	}
	return out
}

func readPreds(path string) ([]Prediction, error) { return ReadPredictions(path, ReadOptions{}) }
func predID(p *Prediction) string                 { return p.ID }

// Parts written by any split of the work assemble into the same bytes.
func TestPartsAssembleInInputOrder(t *testing.T) {
	dir := t.TempDir()
	var ids []string
	for i := range 23 {
		ids = append(ids, fmt.Sprintf("ex-%02d", i))
	}
	input := filepath.Join(dir, "input.arrow")
	if err := WriteRows(input, predictionRows(ids...), CreatePredictions); err != nil {
		t.Fatal(err)
	}
	order, err := ReadInputOrder(input)
	if err != nil || order.Len() != 23 {
		t.Fatalf("order %v, %v", order, err)
	}
	// Each worker writes its shard's rows, in input order, a few per part.
	run := func(out string, n, per int) {
		for i := range n {
			p := PartsFor(out, Shard{Index: i, Count: n})
			var batch []string
			for _, id := range ids {
				if p.Shard.Contains(id) {
					batch = append(batch, id)
				}
				if len(batch) == per {
					if err := WritePart(p, predictionRows(batch...), CreatePredictions); err != nil {
						t.Fatal(err)
					}
					batch = nil
				}
			}
			if len(batch) > 0 {
				if err := WritePart(p, predictionRows(batch...), CreatePredictions); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	var want []byte
	for _, split := range []struct{ n, per int }{{1, 5}, {3, 2}, {4, 7}} {
		out := filepath.Join(dir, fmt.Sprintf("out-%d", split.n), "preds.arrow")
		run(out, split.n, split.per)
		done, err := PartsFor(out, Shard{}).DoneIDs()
		if err != nil || len(done) != 23 {
			t.Fatalf("done ids %d, %v", len(done), err)
		}
		if n, err := Assemble(PartsFor(out, Shard{}), out, order, readPreds, predID, CreatePredictions, nil); err != nil || n != 23 {
			t.Fatalf("assemble %d shards: %d rows, %v", split.n, n, err)
		}
		got, _ := os.ReadFile(out)
		if want == nil {
			want = got
			rows, _ := readPreds(out)
			for i, r := range rows {
				if r.ID != ids[i] {
					t.Fatalf("row %d is %s, want %s", i, r.ID, ids[i])
				}
			}
		} else if string(got) != string(want) {
			t.Fatalf("%d shards assembled differently from 1", split.n)
		}
	}
	// The next part of a shard follows its last one; old unsharded names count as "all".
	p := PartsFor(filepath.Join(dir, "x.arrow"), Shard{Index: 1, Count: 3})
	os.MkdirAll(p.Dir, 0o755)
	for _, f := range []string{"part-1of3-000004.arrow", "part-2of3-000009.arrow", "part-000007.arrow", ".part-1of3-000005.arrow123"} {
		os.WriteFile(filepath.Join(p.Dir, f), nil, 0o644)
	}
	if next, _ := p.NextPath(); filepath.Base(next) != "part-1of3-000005.arrow" {
		t.Fatalf("next part %s", next)
	}
	if next, _ := PartsFor(filepath.Join(dir, "x.arrow"), Shard{}).NextPath(); filepath.Base(next) != "part-all-000008.arrow" {
		t.Fatalf("next unsharded part %s", next)
	}
}

func TestAssembleRefusesGapsOverlapsAndDisorder(t *testing.T) {
	dir := t.TempDir()
	input := filepath.Join(dir, "input.arrow")
	WriteRows(input, predictionRows("a", "b", "c", "d"), CreatePredictions)
	order, _ := ReadInputOrder(input)
	try := func(name string, parts map[string][]string) error {
		out := filepath.Join(dir, name, "out.arrow")
		p := PartsFor(out, Shard{})
		for file, ids := range parts {
			if err := WriteRows(filepath.Join(p.Dir, file), predictionRows(ids...), CreatePredictions); err != nil {
				t.Fatal(err)
			}
		}
		_, err := Assemble(p, out, order, readPreds, predID, CreatePredictions, nil)
		if _, serr := os.Stat(out); err != nil && !os.IsNotExist(serr) {
			t.Errorf("%s: a failed assembly left %s", name, out)
		}
		return err
	}
	for _, c := range []struct {
		name  string
		parts map[string][]string
		want  string
	}{
		{"gap", map[string][]string{"part-0of2-000000.arrow": {"a", "c"}}, "2 of 4 rows"},
		{"overlap", map[string][]string{"part-0of2-000000.arrow": {"a", "b"}, "part-1of2-000000.arrow": {"b", "c", "d"}}, `"b" has rows from two writers`},
		{"disorder", map[string][]string{"part-all-000000.arrow": {"a", "c", "b", "d"}}, "input's order"},
		{"foreign", map[string][]string{"part-all-000000.arrow": {"a", "b", "c", "d", "zz"}}, `"zz" is not in`},
	} {
		if err := try(c.name, c.parts); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error mentioning %q", c.name, err, c.want)
		}
	}
	dup := filepath.Join(dir, "dup.arrow")
	WriteRows(dup, predictionRows("a", "a"), CreatePredictions)
	if _, err := ReadInputOrder(dup); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("duplicate input ids: %v", err)
	}
}

func TestShardFlagAuto(t *testing.T) {
	t.Setenv(EnvJobIndex, "2")
	t.Setenv(EnvShardCount, "5")
	if sh, err := ParseShardFlag("auto"); err != nil || sh != (Shard{Index: 2, Count: 5}) {
		t.Fatalf("auto: %v, %v", sh, err)
	}
	t.Setenv(EnvJobIndex, "")
	t.Setenv(EnvShardIndex, "4")
	if sh, err := ParseShardFlag("auto"); err != nil || sh != (Shard{Index: 4, Count: 5}) {
		t.Fatalf("auto from TAGPR_SHARD_INDEX: %v, %v", sh, err)
	}
	t.Setenv(EnvShardIndex, "5")
	if _, err := ParseShardFlag("auto"); err == nil || !strings.Contains(err.Error(), EnvShardIndex) {
		t.Fatalf("index ≥ count: %v", err)
	}
	t.Setenv(EnvShardIndex, "")
	if _, err := ParseShardFlag("auto"); err == nil || !strings.Contains(err.Error(), EnvJobIndex) || !strings.Contains(err.Error(), EnvShardCount) {
		t.Fatalf("no index: %v", err)
	}
	if sh, err := ParseShardFlag("1/3"); err != nil || sh != (Shard{Index: 1, Count: 3}) {
		t.Fatalf("1/3: %v %v", sh, err)
	}
	// Both index variables set: the same value is fine, two are refused.
	t.Setenv(EnvJobIndex, "1")
	t.Setenv(EnvShardIndex, "1")
	if sh, err := ParseShardFlag("auto"); err != nil || sh != (Shard{Index: 1, Count: 5}) {
		t.Fatalf("both set alike: %v, %v", sh, err)
	}
	t.Setenv(EnvShardIndex, "2")
	if _, err := ParseShardFlag("auto"); err == nil || !strings.Contains(err.Error(), "disagree") {
		t.Fatalf("both set, differing: %v", err)
	}
}

// A part that does not read (damaged after it was written whole) is named
// with the way on: delete it and run its worker again. Before, resume and
// assembly stopped on it with no way on but guessing.
func TestDamagedPartSaysHowToGoOn(t *testing.T) {
	dir := t.TempDir()
	input := filepath.Join(dir, "input.arrow")
	WriteRows(input, predictionRows("a", "b"), CreatePredictions)
	order, _ := ReadInputOrder(input)
	out := filepath.Join(dir, "out.arrow")
	p := PartsFor(out, Shard{})
	part := filepath.Join(p.Dir, "part-all-000000.arrow")
	if err := WriteRows(part, predictionRows("a", "b"), CreatePredictions); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(part)
	os.WriteFile(part, b[:len(b)/3], 0o644)
	want := "delete " + part + " and run its shard's worker again"
	if _, err := p.DoneIDs(); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("resume: %v, want it to say %q", err, want)
	}
	if _, err := Assemble(p, out, order, readPreds, predID, CreatePredictions, nil); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("assemble: %v, want it to say %q", err, want)
	}
}
