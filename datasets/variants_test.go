package datasets

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// A null where tagpr's schema requires a value (a column or a list item's
// field), in a file pyarrow wrote (scripts/datasets/make_variant_fixtures.py),
// is refused naming the file, the record and the place: it once read as "",
// 0 or false without a word (an empty chat message trained on, a reward of 0,
// a prediction of model "").
func TestReadRefusesNullsInRequiredColumns(t *testing.T) {
	dir := filepath.Join("testdata", "variants")
	for _, c := range []struct {
		file, want string
		read       func(string) error
	}{
		{"nulls_chains.parquet", `record 2 (id "c"): prompt[1].content is null`, func(p string) error { _, err := ReadChains(p, ReadOptions{}); return err }},
		{"nulls_rollouts.arrow", `record 1 (id "p1"): reward is null`, func(p string) error { _, err := ReadRollouts(p, ReadOptions{}); return err }},
		{"nulls_predictions.feather", `record 1 (id "101"): model is null`, func(p string) error { _, err := ReadPredictions(p, ReadOptions{}); return err }},
		// A null list item: an empty message or a token id 0 when read.
		{"null_items_chains.arrow", `record 0 (id "a"): prompt[1] is null`, func(p string) error { _, err := ReadChains(p, ReadOptions{}); return err }},
		{"null_items_rollouts.arrow", `record 0 (id "p1"): token_ids[1] is null`, func(p string) error { _, err := ReadRollouts(p, ReadOptions{}); return err }},
	} {
		path := filepath.Join(dir, c.file)
		err := c.read(path)
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error naming the file and %q", c.file, err, c.want)
		}
	}
}

// Text sets in the types other tools give strings are read as they are: a
// string_view column (Polars' IPC files) and dictionary-encoded columns (a
// pandas category column) once were refused as "string_view, want a
// string". A null id inside input_ids is refused (it read as id 0), and a
// missing column names the columns there are and --text-column.
func TestReadTextSetVariants(t *testing.T) {
	dir := filepath.Join("testdata", "variants")
	texts := []string{"café 🎉 日本", "nul\x00inside", "café 🎉 日本", ""}
	d, err := ReadTextSet(filepath.Join(dir, "text_string_view.arrow"), "text")
	if err != nil || !reflect.DeepEqual(d.Texts, texts) || d.Prompts != nil {
		t.Errorf("string_view: %v %q", err, d.Texts)
	}
	path := filepath.Join(dir, "text_category.parquet")
	d, err = ReadTextSet(path, "text")
	if err != nil || !reflect.DeepEqual(d.Texts, texts) || !reflect.DeepEqual(d.Prompts, []string{"q1", "q2", "q1", "q3"}) {
		t.Errorf("pandas category: %v %q %q", err, d.Texts, d.Prompts)
	}
	_, err = ReadTextSet(path, "body")
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "its columns are prompt (dictionary") || !strings.Contains(err.Error(), "--text-column") {
		t.Errorf("no such column: %v", err)
	}
	path = filepath.Join(dir, "ids_null_item.arrow")
	_, err = ReadTextSet(path, "text")
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), `record 1: column "input_ids": id 1 of the row is null`) {
		t.Errorf("null id: %v", err)
	}
}

// tagpr's tables in the other encodings of their types — large_string and
// large_list (pandas 3, Polars), string_view, dictionary-encoded strings
// (pyarrow's read_dictionary) — are read with the same values as the plain
// ones, and merge with them. They were refused ("column "id" has type
// large_utf8, want utf8") although nothing in them differs.
func TestReadOtherEncodings(t *testing.T) {
	dir := filepath.Join("testdata", "variants")
	chains, err := ReadChains(filepath.Join(dir, "enc_chains.parquet"), ReadOptions{BatchRows: 3})
	if err != nil || normalize(chains) != normalize(sampleChains()) {
		t.Errorf("large_string/large_list chains: %v\n got %+v\nwant %+v", err, chains, sampleChains())
	}
	preds, err := ReadPredictions(filepath.Join(dir, "enc_predictions.arrow"), ReadOptions{})
	if err != nil || normalize(preds) != normalize(samplePredictions()) {
		t.Errorf("dictionary predictions: %v\n got %+v\nwant %+v", err, preds, samplePredictions())
	}
	rolls, err := ReadRollouts(filepath.Join(dir, "enc_rollouts.feather"), ReadOptions{})
	if err != nil || normalize(rolls) != normalize(sampleRollouts()) {
		t.Errorf("string_view/large_list rollouts: %v\n got %+v\nwant %+v", err, rolls, sampleRollouts())
	}
	out := filepath.Join(t.TempDir(), "all.parquet")
	if _, err := Merge(out, []string{filepath.Join(dir, "enc_chains.parquet"), filepath.Join("testdata", "pyarrow", "chains.arrow")}, MergeOptions{}); err != nil {
		t.Fatal(err)
	}
	merged, err := ReadChains(out, ReadOptions{})
	if want := append(sampleChains(), sampleChains()...); err != nil || normalize(merged) != normalize(want) {
		t.Errorf("merged: %v\n got %+v\nwant %+v", err, merged, want)
	}
}

// A table that went through Hugging Face datasets (no tagpr metadata) or a
// pandas frame whose index became a column is refused saying what to do,
// not only what is wrong.
func TestRefusalsSayWhatToDo(t *testing.T) {
	dir := filepath.Join("testdata", "variants")
	for file, want := range map[string][]string{
		"hf_predictions.parquet":           {`no "tagpr.schema" key`, "Hugging Face datasets drop it", "schema metadata of the tagpr file it came from"},
		"pandas_index_predictions.parquet": {"columns [id, task, model, completion, prediction, gold, metrics, __index_level_0__] are not the schema's [id, task, model, completion, prediction, gold, metrics]", "to_parquet(index=False)"},
	} {
		path := filepath.Join(dir, file)
		_, err := ReadPredictions(path, ReadOptions{})
		for _, w := range append(want, path) {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%s: got %v, want it to say %q", file, err, w)
			}
		}
	}
}

// A table of no rows is written as one empty record batch, not none:
// Hugging Face datasets' Dataset.from_file (which docs/formats.md names as
// the reader of .arrow files) fails on an IPC stream without a batch
// ("cannot construct ChunkedArray from empty vector and omitted type").
func TestEmptyTableHasOneBatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "empty.arrow")
	if err := WriteRows(path, []Prediction{}, CreatePredictions); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := ipc.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Release()
	batches := 0
	for r.Next() {
		batches++
	}
	if batches != 1 || r.Err() != nil {
		t.Errorf("an empty table has %d record batches (%v), want 1", batches, r.Err())
	}
	if rows, err := ReadPredictions(path, ReadOptions{}); err != nil || len(rows) != 0 {
		t.Errorf("read back: %d rows, %v", len(rows), err)
	}
}

// A Feather v1 file (pyarrow still writes one with version=1) is refused
// saying what it is and how to rewrite it, not as "neither Arrow IPC (file
// or stream) nor Parquet: ... message metadata length 826361158 exceeds
// limit 168".
func TestFeatherV1SaysHowToRewrite(t *testing.T) {
	path := filepath.Join("testdata", "variants", "text_feather_v1.feather")
	for _, read := range []func() error{
		func() error { _, err := ReadTextSet(path, "text"); return err },
		func() error { _, err := ReadPredictions(path, ReadOptions{}); return err },
	} {
		if err := read(); err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "Feather v1") || !strings.Contains(err.Error(), "write_feather") {
			t.Errorf("got %v", err)
		}
	}
}

// LaMP examples that went through a pandas frame (rows in tagpr's order,
// the metadata put back) are read as the original: pandas gives strings as
// large_string and a column holding only None (the user split's dates,
// user, chain) as type null, which is read as nulls of tagpr's type. It was
// refused (column "profile" ... date: null ..., want ... date: utf8).
func TestReadPandasNullColumns(t *testing.T) {
	got, task, err := ReadExamples(filepath.Join("testdata", "variants", "pandas_user_LaMP_3.parquet"), ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want, _, err := ReadExamples(filepath.Join("testdata", "pyarrow", "user_LaMP_3.parquet"), ReadOptions{})
	if err != nil || task.Name != "LaMP_3" || !reflect.DeepEqual(got, want) {
		t.Errorf("%v %v\n got %+v\nwant %+v", err, task, got, want)
	}
}

// A tagged_chain table given to train lm that tagpr cannot read as one is
// not taken for a text set missing its "text" column: one without tagpr's
// metadata (filtered in Hugging Face datasets) says so and how to train on
// its chains with their prompts — the old hint, --text-column, would have
// trained on the chains without their prompts — and one with the metadata
// gets the tagged_chain schema's own error.
func TestReadTextSetChainTables(t *testing.T) {
	dir := filepath.Join("testdata", "variants")
	for file, want := range map[string]string{
		"hf_chains.parquet":      "a tagged_chain table's, without tagpr's schema metadata",
		"chains_extra_col.arrow": "tagged_chain v1: columns [id, prompt, chain, spans, answer, gold, teacher, verdicts, keep, note] are not the schema's",
	} {
		path := filepath.Join(dir, file)
		_, err := ReadTextSet(path, "text")
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "--text-column") {
			t.Errorf("%s: got %v, want %q", file, err, want)
		}
	}
}

// A table pyarrow wrote (its fields nullable, its list items "element")
// merges with one tagpr wrote: it was refused as "another schema" with
// both schemas dumped, although tagpr reads each the same way.
func TestMergePyarrowWithTagprTables(t *testing.T) {
	tmp := t.TempDir()
	ours := filepath.Join(tmp, "ours.parquet")
	if err := WriteRows(ours, sampleChains(), CreateChains); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(tmp, "all.arrow")
	inputs := []string{ours, filepath.Join("testdata", "pyarrow", "chains.parquet"), filepath.Join("testdata", "variants", "enc_chains.parquet")}
	if _, err := Merge(out, inputs, MergeOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := ReadChains(out, ReadOptions{})
	want := append(append(sampleChains(), sampleChains()...), sampleChains()...)
	if err != nil || normalize(got) != normalize(want) {
		t.Errorf("%v\n got %+v\nwant %+v", err, got, want)
	}
}

// peakAllocator counts the bytes allocated and not yet freed, and the most
// there were at once.
type peakAllocator struct {
	memory.Allocator
	mu        sync.Mutex
	cur, peak int
}

func (a *peakAllocator) add(n int) {
	a.mu.Lock()
	a.cur += n
	a.peak = max(a.peak, a.cur)
	a.mu.Unlock()
}

func (a *peakAllocator) Allocate(size int) []byte { a.add(size); return a.Allocator.Allocate(size) }
func (a *peakAllocator) Reallocate(size int, b []byte) []byte {
	a.add(size - len(b))
	return a.Allocator.Reallocate(size, b)
}
func (a *peakAllocator) Free(b []byte) { a.add(-len(b)); a.Allocator.Free(b) }

// Merge holds one record batch at a time, not every batch it wrote: each
// was released only when Merge returned (a defer in the loop), so merging
// shards took memory for the whole merged table.
func TestMergeMemoryIsOneBatch(t *testing.T) {
	tmp := t.TempDir()
	var inputs []string
	for s := 0; s < 8; s++ {
		rows := make([]Rollout, 2000)
		for i := range rows {
			rows[i] = Rollout{PromptID: fmt.Sprintf("p%d-%d", s, i), Completion: strings.Repeat("x", 500), TokenIDs: make([]int64, 100), Stage: "guided"}
		}
		path := filepath.Join(tmp, fmt.Sprintf("s%d.arrow", s))
		if err := WriteRows(path, rows, CreateRollouts); err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, path)
	}
	alloc := &peakAllocator{Allocator: memory.NewGoAllocator()}
	saved := memory.DefaultAllocator
	memory.DefaultAllocator = alloc
	defer func() { memory.DefaultAllocator = saved }()
	if n, err := Merge(filepath.Join(tmp, "all.arrow"), inputs, MergeOptions{}); err != nil || n != 16000 {
		t.Fatal(n, err)
	}
	// 16000 rows of ~1 KB are ~16 MB; a batch is 1024 of them (~1 MB), and
	// reading and writing one holds about three.
	if alloc.peak > 6<<20 {
		t.Errorf("merging 16000 rows held %d bytes at once, want a few batches (~3 MB)", alloc.peak)
	}
}

// One shard of a Hugging Face save_to_disk folder that has several is
// refused: train lm reads one file, and trained on that shard's rows only,
// without a word. The one file of a one-shard folder is read.
func TestReadTextSetHFShard(t *testing.T) {
	dir := filepath.Join("testdata", "variants")
	path := filepath.Join(dir, "hf_save_to_disk", "data-00000-of-00002.arrow")
	_, err := ReadTextSet(path, "text")
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "shard 1 of the 2") || !strings.Contains(err.Error(), "to_parquet") {
		t.Errorf("one of two shards: %v", err)
	}
	d, err := ReadTextSet(filepath.Join(dir, "hf_save_to_disk_1", "data-00000-of-00001.arrow"), "text")
	if err != nil || !reflect.DeepEqual(d.Texts, []string{"a b", "c d", "e f", "g h"}) {
		t.Errorf("one shard of one: %v %q", err, d.Texts)
	}
}
