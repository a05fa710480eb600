package datasets

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
)

func sampleChains() []Chain {
	chain := "<think>\n<recall_history>likes é</recall_history>\n<conclude>x</conclude>\n</think>\n<answer>x</answer>"
	return []Chain{
		{ID: "a", Prompt: []Message{{"system", "s"}, {"user", "u"}}, Chain: chain, Spans: ParseChainSpans(chain),
			Answer: "x", Gold: "x", HasGold: true, Teacher: "gpt", Verdicts: []Verdict{{Name: "answer", Pass: true}, {Name: "len", Detail: "too long", HasDetail: true}}, Keep: false},
		{ID: "b", Chain: "<answer>y</answer>", Answer: "y", Teacher: "synth", Keep: true},
	}
}

func sampleRollouts() []Rollout {
	return []Rollout{
		{PromptID: "p1", GroupIndex: 0, Completion: "c", TokenIDs: []int64{1, 2, 3}, LogProbs: []float32{-0.5, -1, -2},
			Rewards: []NamedValue{{"task", 1}, {"tag", 0.5}}, Reward: 1.15, Advantage: 0.7, Stage: "guided", Step: 3},
		{PromptID: "p1", GroupIndex: 1, Completion: "", Stage: "guided", Step: 3, Advantage: -0.7},
	}
}

func samplePredictions() []Prediction {
	return []Prediction{
		{ID: "100", Task: "LaMP_3", Model: "m", Completion: "<answer>4</answer>", Prediction: "4", Gold: "5", HasGold: true, Metrics: []NamedValue{{"mae", 1}}},
		{ID: "101", Task: "LaMP_3", Model: "m", Completion: "??", Prediction: "", Metrics: []NamedValue{}},
	}
}

// normalize prints rows so nil and empty slices compare equal.
func normalize(v any) string { return fmt.Sprintf("%+v", v) }

func TestRowKindsRoundTrip(t *testing.T) {
	tmp := t.TempDir()
	for _, ext := range []string{".arrow", ".parquet"} {
		p := filepath.Join(tmp, "chains"+ext)
		if err := WriteRows(p, sampleChains(), CreateChains); err != nil {
			t.Fatal(err)
		}
		chains, err := ReadChains(p, ReadOptions{})
		if err != nil || normalize(chains) != normalize(sampleChains()) {
			t.Fatalf("chains%s: %v\n got %+v\nwant %+v", ext, err, chains, sampleChains())
		}
		if s := chains[0].Spans[0]; chains[0].Chain[s.Start:s.End] != s.Text || s.Tag != "recall_history" {
			t.Fatalf("span offsets wrong: %+v", s)
		}
		p = filepath.Join(tmp, "rollouts"+ext)
		if err := WriteRows(p, sampleRollouts(), CreateRollouts); err != nil {
			t.Fatal(err)
		}
		rolls, err := ReadRollouts(p, ReadOptions{})
		if err != nil || normalize(rolls) != normalize(sampleRollouts()) {
			t.Fatalf("rollouts%s: %v\n got %+v\nwant %+v", ext, err, rolls, sampleRollouts())
		}
		p = filepath.Join(tmp, "preds"+ext)
		if err := WriteRows(p, samplePredictions(), CreatePredictions); err != nil {
			t.Fatal(err)
		}
		preds, err := ReadPredictions(p, ReadOptions{})
		if err != nil || normalize(preds) != normalize(samplePredictions()) {
			t.Fatalf("predictions%s: %v\n got %+v\nwant %+v", ext, err, preds, samplePredictions())
		}
		if _, err := ReadChains(p, ReadOptions{}); err == nil || !strings.Contains(err.Error(), "prediction") {
			t.Fatalf("reading predictions as chains: %v", err)
		}
	}
}

// A file stamped with another schema version is refused with a clear error.
func TestSchemaVersionMismatch(t *testing.T) {
	tmp := t.TempDir()
	md := arrow.NewMetadata([]string{MetaKind, MetaVersion}, []string{string(KindPrediction), "99"})
	old := arrow.NewSchema(PredictionSchema.Fields(), &md)
	w, err := newWriter(filepath.Join(tmp, "old.arrow"), old, appendPrediction, func(*Prediction) int { return 1 })
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range samplePredictions() {
		w.Write(&p)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	_, err = ReadPredictions(filepath.Join(tmp, "old.arrow"), ReadOptions{})
	if err == nil || !strings.Contains(err.Error(), `version "99"`) || !strings.Contains(err.Error(), "old.arrow") {
		t.Fatalf("got %v", err)
	}
	noMeta := arrow.NewSchema(PredictionSchema.Fields(), nil)
	w, _ = newWriter(filepath.Join(tmp, "plain.parquet"), noMeta, appendPrediction, func(*Prediction) int { return 1 })
	w.Commit()
	if _, err = ReadPredictions(filepath.Join(tmp, "plain.parquet"), ReadOptions{}); err == nil || !strings.Contains(err.Error(), "not a tagpr dataset") {
		t.Fatalf("got %v", err)
	}
}

func synthSmall(t testing.TB) *SynthData {
	cfg := DefaultSynthConfig()
	cfg.Users = 60
	d, err := Synth(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func ids(t *testing.T, path string, opts ReadOptions) []string {
	t.Helper()
	r, err := OpenReader(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var out []string
	for r.Next() {
		b := r.Batch()
		if opts.BatchRows > 0 && int(b.NumRows()) > opts.BatchRows {
			t.Fatalf("batch of %d rows, asked for %d", b.NumRows(), opts.BatchRows)
		}
		rows, err := DecodeExamples(b, r.BatchFirst())
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range rows {
			out = append(out, e.ID)
		}
	}
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// Shards are disjoint, their union is the dataset, they do not depend on batch
// sizes or file order, and merging them gives back every row.
func TestShardsAndMerge(t *testing.T) {
	tmp := t.TempDir()
	set := synthSmall(t).Set(SynthTag, "train")
	for _, ext := range []string{".arrow", ".parquet"} {
		path := filepath.Join(tmp, "all"+ext)
		w, _ := CreateExamples(path, set.Task)
		w.MaxRows = 7 // many small file batches, so shards cross batch boundaries
		for i := range set.Examples {
			w.Write(&set.Examples[i])
		}
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
		all := ids(t, path, ReadOptions{BatchRows: 10})
		byID := map[string]string{}
		for _, e := range set.Examples {
			byID[e.ID] = normalize(e)
		}
		if len(all) != len(set.Examples) {
			t.Fatalf("read %d rows, wrote %d", len(all), len(set.Examples))
		}
		const n = 4
		var union []string
		var parts []string
		for i := 0; i < n; i++ {
			a := ids(t, path, ReadOptions{BatchRows: 5, Shard: Shard{i, n}})
			b := ids(t, path, ReadOptions{BatchRows: 64, Shard: Shard{i, n}})
			if !reflect.DeepEqual(a, b) {
				t.Fatalf("shard %d depends on batch size", i)
			}
			if len(a) == 0 || len(a) == len(all) {
				t.Fatalf("shard %d/%d has %d of %d rows", i, n, len(a), len(all))
			}
			for _, id := range a {
				if !(Shard{i, n}).Contains(id) {
					t.Fatalf("row %s in the wrong shard", id)
				}
			}
			union = append(union, a...)
			// write the shard, as a worker would, then merge the outputs
			part := filepath.Join(tmp, fmt.Sprintf("part%d%s", i, ext))
			rows, _, err := ReadExamples(path, ReadOptions{Shard: Shard{i, n}, BatchRows: 3})
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range rows { // whole rows survive slicing and re-cutting, not just ids
				if normalize(e) != byID[e.ID] {
					t.Fatalf("shard row %s differs from the written row", e.ID)
				}
			}
			if err := WriteRows(part, rows, func(p string) (*Writer[Example], error) { return CreateExamples(p, set.Task) }); err != nil {
				t.Fatal(err)
			}
			parts = append(parts, part)
		}
		sorted := append([]string(nil), all...)
		sort.Strings(sorted)
		sort.Strings(union)
		if !reflect.DeepEqual(union, sorted) {
			t.Fatalf("union of shards (%d rows) is not the dataset (%d rows), or shards overlap", len(union), len(sorted))
		}
		merged := filepath.Join(tmp, "merged.arrow")
		if n, err := Merge(merged, parts, MergeOptions{}); err != nil || n != int64(len(all)) {
			t.Fatalf("merge: %d rows, %v", n, err)
		}
		m := ids(t, merged, ReadOptions{})
		sort.Strings(m)
		if !reflect.DeepEqual(m, sorted) {
			t.Fatal("merged file differs from the dataset")
		}
		if _, err := Merge(filepath.Join(tmp, "dup.arrow"), []string{parts[0], parts[0]}, MergeOptions{}); err == nil || !strings.Contains(err.Error(), "in both") {
			t.Fatalf("merging a shard twice: %v", err)
		}
		if _, err := os.Stat(filepath.Join(tmp, "dup.arrow")); !os.IsNotExist(err) {
			t.Fatal("failed merge left a file")
		}
	}
	// Shards written in different formats merge (a Parquet shard's schema
	// differs only in field ids and a list child's name), into either format.
	mixed := []string{filepath.Join(tmp, "part0.arrow"), filepath.Join(tmp, "part1.parquet"), filepath.Join(tmp, "part2.arrow"), filepath.Join(tmp, "part3.parquet")}
	for _, out := range []string{"mixed.arrow", "mixed.parquet"} {
		if n, err := Merge(filepath.Join(tmp, out), mixed, MergeOptions{}); err != nil || n != int64(len(set.Examples)) {
			t.Fatalf("merge of Arrow and Parquet shards into %s: %d rows, %v", out, n, err)
		}
		rows, _, err := ReadExamples(filepath.Join(tmp, out), ReadOptions{})
		if err != nil || len(rows) != len(set.Examples) {
			t.Fatalf("%s: %d rows, %v", out, len(rows), err)
		}
		for _, e := range set.Examples {
			found := false
			for _, r := range rows {
				if r.ID == e.ID {
					found = normalize(r) == normalize(e)
					break
				}
			}
			if !found {
				t.Fatalf("%s: row %s lost or changed", out, e.ID)
			}
		}
	}
	// The shard of an id is a fixed function of the id.
	if got := []bool{(Shard{0, 3}).Contains("LaMP_1-0"), (Shard{1, 3}).Contains("LaMP_1-0"), (Shard{2, 3}).Contains("LaMP_1-0")}; !reflect.DeepEqual(got, []bool{false, true, false}) {
		t.Fatalf("shard of a fixed id moved: %v", got)
	}
	for _, bad := range []string{"4/4", "-1/2", "1", "a/b", "0/0"} {
		if _, err := ParseShard(bad); err == nil {
			t.Errorf("ParseShard(%q) accepted", bad)
		}
	}
}

// TestWriteSamples writes the sample rows for scripts/datasets/crosscheck.py when
// TAGPR_WRITE_SAMPLES names a directory; otherwise it checks they write cleanly.
func TestWriteSamples(t *testing.T) {
	dir := os.Getenv("TAGPR_WRITE_SAMPLES")
	if dir == "" {
		dir = t.TempDir()
	}
	for _, ext := range []string{".arrow", ".parquet"} {
		if err := WriteRows(filepath.Join(dir, "chains"+ext), sampleChains(), CreateChains); err != nil {
			t.Fatal(err)
		}
		if err := WriteRows(filepath.Join(dir, "rollouts"+ext), sampleRollouts(), CreateRollouts); err != nil {
			t.Fatal(err)
		}
		if err := WriteRows(filepath.Join(dir, "predictions"+ext), samplePredictions(), CreatePredictions); err != nil {
			t.Fatal(err)
		}
	}
}
