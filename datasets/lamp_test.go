package datasets

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// fixtureTasks are the LaMP fixtures: scheme/task directories under testdata/lamp.
func fixtureTasks(t *testing.T) []string {
	var out []string
	for _, scheme := range []string{"user", "time"} {
		ents, err := os.ReadDir(filepath.Join("testdata", "lamp", scheme))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			out = append(out, scheme+"/"+e.Name())
		}
	}
	if len(out) < 12 {
		t.Fatalf("found %d LaMP fixtures, want every task in both schemes", len(out))
	}
	return out
}

func readJSONValue(t *testing.T, path string) any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := json.NewDecoder(f)
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}

func importFixture(t *testing.T, fixture, out string) (*Task, string) {
	t.Helper()
	scheme, name, _ := strings.Cut(fixture, "/")
	task, err := ParseTask(name)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join("testdata", "lamp", fixture)
	st, err := ImportLaMP(ImportOptions{Task: task, Questions: filepath.Join(dir, "dev_questions.json"),
		Outputs: filepath.Join(dir, "dev_outputs.json"), Split: "dev", Scheme: scheme, Out: out, BatchRows: 2})
	if err != nil {
		t.Fatalf("import %s: %v", fixture, err)
	}
	if st.Examples != 3 {
		t.Fatalf("import %s: %d examples, want 3", fixture, st.Examples)
	}
	return task, dir
}

// LaMP JSON → Arrow (IPC and Parquet) → LaMP JSON gives the same JSON values.
func TestLaMPRoundTrip(t *testing.T) {
	tmp := t.TempDir()
	for _, fx := range fixtureTasks(t) {
		for _, ext := range []string{".arrow", ".parquet"} {
			out := filepath.Join(tmp, strings.ReplaceAll(fx, "/", "_")+ext)
			task, dir := importFixture(t, fx, out)
			rows, gotTask, err := ReadExamples(out, ReadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if gotTask != task || len(rows) != 3 || !rows[0].HasOutput || rows[0].Split != "dev" {
				t.Fatalf("%s%s: task %v, %d rows, first %+v", fx, ext, gotTask, len(rows), rows[0])
			}
			q, o := filepath.Join(tmp, "q.json"), filepath.Join(tmp, "o.json")
			if _, err := ExportLaMP(out, q, o); err != nil {
				t.Fatal(err)
			}
			for _, pair := range [][2]string{{q, "dev_questions.json"}, {o, "dev_outputs.json"}} {
				got, want := readJSONValue(t, pair[0]), readJSONValue(t, filepath.Join(dir, pair[1]))
				if !reflect.DeepEqual(got, want) {
					gb, _ := json.Marshal(got)
					wb, _ := json.Marshal(want)
					t.Fatalf("%s%s %s differs after the round trip:\n got %s\nwant %s", fx, ext, pair[1], gb, wb)
				}
			}
		}
	}
}

func TestParseTask(t *testing.T) {
	for in, want := range map[string]string{"1": "LaMP_1", "2": "LaMP_2M", "2M": "LaMP_2M", "2n": "LaMP_2N",
		"LaMP_2": "LaMP_2M", "LaMP_2N": "LaMP_2N", "lamp_7": "LaMP_7", "synth_tag": "synth_tag"} {
		got, err := ParseTask(in)
		if err != nil || got.Name != want {
			t.Errorf("ParseTask(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{"8", "2X", "", "synth_x"} {
		if _, err := ParseTask(bad); err == nil {
			t.Errorf("ParseTask(%q) accepted", bad)
		}
	}
}

func writeFile(t *testing.T, path, text string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// Malformed input names the file and the record, and leaves no output file.
func TestImportMalformed(t *testing.T) {
	tmp := t.TempDir()
	task, _ := ParseTask("7")
	good := `{"id": "1", "input": "Paraphrase: a", "profile": [{"id": "p", "text": "t"}]}`
	outputs := writeFile(t, filepath.Join(tmp, "outputs.json"), `{"task": "LaMP_7", "golds": [{"id": "1", "output": "x"}, {"id": "2", "output": "y"}]}`)
	cases := []struct {
		name, questions, outputs string
		want                     []string
	}{
		{"truncated", `[` + good + `, {"id": "2", "input": "Para`, "", []string{"record 1", `after id "1"`, "truncated"}},
		{"missing field", `[` + good + `, {"id": "2", "profile": []}]`, "", []string{"record 1", `id "2"`, "input"}},
		{"missing profile field", `[` + good + `, {"id": "2", "input": "a", "profile": [{"id": "p"}]}]`, "", []string{"record 1", `id "2"`, "profile[0]", "missing field text"}},
		{"wrong type", `[` + good + `, {"id": "2", "input": "a", "profile": [{"id": "p", "text": {"a": 1}}]}]`, "", []string{"record 1", `id "2"`, "text", "object"}},
		{"wrong profile type", `[` + good + `, {"id": "2", "input": "a", "profile": "none"}]`, "", []string{"record 1", "profile"}},
		{"not a list", `{"id": "1"}`, "", []string{"want a JSON list"}},
		{"outputs as questions", `{"task": "LaMP_7", "golds": []}`, "", []string{"want a JSON list", "looks like a LaMP outputs file", "swapped"}},
		{"questions as outputs", `[` + good + `]`, writeFile(t, filepath.Join(tmp, "list_outputs.json"), `[`+good+`]`),
			[]string{"list_outputs.json", "want an object", "looks like a LaMP questions file", "swapped"}},
		{"unknown field", `[{"id": "1", "input": "a", "profile": [], "oops": 1}]`, "", []string{"record 0", "oops"}},
		{"gold missing", `[` + good + `, {"id": "3", "input": "a", "profile": []}]`, outputs, []string{"record 1", `id "3"`, "no gold"}},
		{"gold without question", `[` + good + `]`, outputs, []string{"golds whose id is not a question", `"2"`}},
		{"trailing data", `[` + good + `] x`, "", []string{"after the closing"}},
		// Two questions with one id (the issue: 16 rows accepted, 2 with one id): both records named.
		{"duplicate question id", `[` + good + `, {"id": "2", "input": "a", "profile": []}, {"id": "1", "input": "b", "profile": []}]`, "",
			[]string{"record 2", `id "1"`, "duplicate id: record 0"}},
		{"duplicate gold id", `[` + good + `]`, writeFile(t, filepath.Join(tmp, "dup_outputs.json"), `{"task": "LaMP_7", "golds": [{"id": "1", "output": "x"}, {"id": "1", "output": "y"}]}`),
			[]string{"gold 1", `duplicate id "1"`, "gold 0 has it too"}},
	}
	for _, c := range cases {
		q := writeFile(t, filepath.Join(tmp, "questions.json"), c.questions)
		out := filepath.Join(tmp, "out.arrow")
		_, err := ImportLaMP(ImportOptions{Task: task, Questions: q, Outputs: c.outputs, Split: "dev", Out: out})
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not mention %q", c.name, err, w)
			}
		}
		if c.name != "gold without question" && c.name != "duplicate gold id" && c.name != "questions as outputs" && !strings.Contains(err.Error(), q) {
			t.Errorf("%s: error %q does not name the file", c.name, err)
		}
		if _, serr := os.Stat(out); !os.IsNotExist(serr) {
			t.Errorf("%s: output file left behind", c.name)
		}
		if ents, _ := filepath.Glob(filepath.Join(tmp, ".out.arrow*")); len(ents) > 0 {
			t.Errorf("%s: temp files left behind: %v", c.name, ents)
		}
	}
	q := writeFile(t, filepath.Join(tmp, "questions.json"), `[`+good+`]`)
	bad := writeFile(t, filepath.Join(tmp, "bad_outputs.json"), `{"task": "LaMP_5", "golds": []}`)
	if _, err := ImportLaMP(ImportOptions{Task: task, Questions: q, Outputs: bad, Split: "dev", Out: filepath.Join(tmp, "o.arrow")}); err == nil || !strings.Contains(err.Error(), "LaMP_5") || !strings.Contains(err.Error(), bad) {
		t.Errorf("outputs of another task: %v", err)
	}
}

// Truncated Arrow/Parquet files and files of another schema version are refused by name.
func TestReadMalformedFiles(t *testing.T) {
	tmp := t.TempDir()
	for _, ext := range []string{".arrow", ".parquet"} {
		out := filepath.Join(tmp, "x"+ext)
		importFixture(t, "user/LaMP_4", out)
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		for _, cut := range []int{len(data) / 2, len(data) - 3, 7} {
			trunc := writeFile(t, filepath.Join(tmp, "trunc"+ext), string(data[:cut]))
			_, _, err := ReadExamples(trunc, ReadOptions{})
			if err == nil || !strings.Contains(err.Error(), trunc) {
				t.Errorf("%s cut at %d of %d: error %v does not name the file", ext, cut, len(data), err)
			}
		}
	}
	empty := writeFile(t, filepath.Join(tmp, "empty.arrow"), "")
	if _, _, err := ReadExamples(empty, ReadOptions{}); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty file: %v", err)
	}
}

// The fast string decoder agrees with encoding/json on every escape form.
func TestAliasTextMatchesEncodingJSON(t *testing.T) {
	for _, raw := range []string{`"plain"`, `""`, `"a\"b\\c\/d"`, `"\b\f\n\r\t"`, `"caf\u00e9 \u00E9"`, `"\ud83d\ude00!"`,
		`"lone \ud800 x"`, `"lone end \udc00"`, `"\ud800\u0041"`, `"tab\tnl\n"`, "\"bad \xff utf8\"", `"été ok"`} {
		var want string
		if err := json.Unmarshal([]byte(raw), &want); err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		got, ok, keep, err := aliasText([]byte(raw), "f")
		if err != nil || !ok || keep || got != want {
			t.Errorf("%s: got %q (%v %v %v), encoding/json %q", raw, got, ok, keep, err, want)
		}
	}
}

func FuzzAliasText(f *testing.F) {
	f.Add(`a\"b`)
	f.Add(`\ud83d\ude00`)
	f.Fuzz(func(t *testing.T, body string) {
		raw := []byte(`"` + body + `"`)
		var want string
		if json.Unmarshal(raw, &want) != nil {
			return
		}
		if got, _, _, err := aliasText(raw, "f"); err != nil || got != want {
			t.Fatalf("%q: got %q, %v; want %q", raw, got, err, want)
		}
	})
}

// A stream cut between record batches fails at the batch, naming file and position.
func TestTruncatedStream(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "pyarrow", "user_LaMP_3.stream.arrow"))
	if err != nil {
		t.Fatal(err)
	}
	path := writeFile(t, filepath.Join(t.TempDir(), "cut.arrow"), string(data[:len(data)*3/4]))
	_, _, err = ReadExamples(path, ReadOptions{BatchRows: 1})
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "record batch") {
		t.Fatalf("got %v", err)
	}
}

// A null in a required column (possible in files other tools write) names the record.
func TestNullInRequiredColumn(t *testing.T) {
	task, _ := ParseTask("7")
	base := ExampleSchema(task)
	fields := base.Fields()
	fields[4].Nullable = true // input
	md := base.Metadata()
	schema := arrow.NewSchema(fields, &md)
	path := filepath.Join(t.TempDir(), "nulls.parquet")
	w, err := newWriter(path, schema, func(b *array.RecordBuilder, e *Example) {
		appendExample(b, e)
		if e.ID == "2" {
			sb := b.Field(4).(*array.StringBuilder)
			sb.Resize(sb.Len() - 1)
			sb.AppendNull()
		}
	}, exampleSize)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"1", "2"} {
		w.Write(&Example{ID: id, Task: task.Name, Split: "dev", Scheme: "user", Input: "x"})
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	_, _, err = ReadExamples(path, ReadOptions{})
	if err == nil || !strings.Contains(err.Error(), `record 1 (id "2"): input is null`) || !strings.Contains(err.Error(), path) {
		t.Fatalf("got %v", err)
	}
}

func TestImportOptionsChecked(t *testing.T) {
	task, _ := ParseTask("7")
	q := filepath.Join("testdata", "lamp", "user", "LaMP_7", "dev_questions.json")
	for _, o := range []ImportOptions{{Task: task, Questions: q, Split: "dev", Scheme: "users", Out: "x.arrow"},
		{Task: task, Questions: q, Out: "x.arrow"}, {Questions: q, Split: "dev", Out: "x.arrow"},
		{Task: task, Questions: q, Split: "dev", Out: filepath.Join(t.TempDir(), "x.csv")}} {
		if _, err := ImportLaMP(o); err == nil {
			t.Errorf("accepted %+v", o)
		}
	}
}

// Ids are unique across the whole outputs file: a second "golds" list
// repeating an id is refused, not merged (the duplicate map once lived per list).
func TestReadOutputsDuplicateAcrossGoldsLists(t *testing.T) {
	tmp := t.TempDir()
	task, _ := ParseTask("7")
	path := writeFile(t, filepath.Join(tmp, "two_lists.json"),
		`{"task": "LaMP_7", "golds": [{"id": "1", "output": "x"}, {"id": "2", "output": "y"}], "golds": [{"id": "3", "output": "z"}, {"id": "1", "output": "w"}]}`)
	_, err := ReadOutputs(path, task)
	if err == nil {
		t.Fatal("an id in two golds lists was merged")
	}
	for _, w := range []string{path, `duplicate id "1"`, "gold 1 of golds list 2", "gold 0 of golds list 1 has it too"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q lacks %q", err, w)
		}
	}
	// Distinct ids over two lists are still read, all of them.
	ok := writeFile(t, filepath.Join(tmp, "two_lists_ok.json"),
		`{"task": "LaMP_7", "golds": [{"id": "1", "output": "x"}], "golds": [{"id": "2", "output": "y"}]}`)
	if golds, err := ReadOutputs(ok, task); err != nil || len(golds) != 2 {
		t.Fatalf("two lists: %v %v", golds, err)
	}
}

// A predictions file's errors call its records predictions, not golds; the
// outputs file of another LaMP-2 variant names the --task that reads it.
func TestReadOutputsNamesWhatItReads(t *testing.T) {
	tmp := t.TempDir()
	task, _ := ParseTask("3")
	dup := writeFile(t, filepath.Join(tmp, "preds.json"), `{"task": "LaMP_3", "golds": [{"id": "1", "output": "3"}, {"id": "1", "output": "4"}]}`)
	_, err := ReadPredictionOutputs(dup, task)
	if err == nil || !strings.Contains(err.Error(), `read predictions `+dup+`: prediction 1: duplicate id "1" (prediction 0 has it too)`) || strings.Contains(err.Error(), "gold") {
		t.Fatalf("duplicate prediction id: %v", err)
	}
	if _, err := ReadOutputs(dup, task); err == nil || !strings.Contains(err.Error(), `read outputs `+dup+`: gold 1: duplicate id "1" (gold 0 has it too)`) {
		t.Fatalf("duplicate gold id: %v", err)
	}
	m, _ := ParseTask("2M")
	news := writeFile(t, filepath.Join(tmp, "LaMP_2N_dev_outputs.json"), `{"task": "LaMP_2N", "golds": [{"id": "1", "output": "religion"}]}`)
	if _, err := ReadOutputs(news, m); err == nil || !strings.Contains(err.Error(), news) || !strings.Contains(err.Error(), "--task 2N") {
		t.Fatalf("LaMP_2N file read as 2M: %v", err)
	}
	n, _ := ParseTask("2N")
	movies := writeFile(t, filepath.Join(tmp, "LaMP_2M_dev_outputs.json"), `{"task": "LaMP_2M", "golds": []}`)
	if _, err := ReadOutputs(movies, n); err == nil || !strings.Contains(err.Error(), "--task 2M") {
		t.Fatalf("LaMP_2M file read as 2N: %v", err)
	}
}

// A table of two models' predictions is refused unless one is picked, and
// an id seen twice is refused in any case; nothing is left at out.
func TestExportModelPredictions(t *testing.T) {
	tmp := t.TempDir()
	task, _ := ParseTask("3")
	rows := []Prediction{
		{ID: "100", Task: "LaMP_3", Model: "base", Prediction: "3"},
		{ID: "101", Task: "LaMP_3", Model: "base", Prediction: "2"},
		{ID: "100", Task: "LaMP_3", Model: "sft", Prediction: "4"},
		{ID: "101", Task: "LaMP_3", Model: "sft", Prediction: "5"},
	}
	preds := filepath.Join(tmp, "preds.parquet")
	if err := WriteRows(preds, rows, CreatePredictions); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(tmp, "x.json")
	err := ExportPredictions(preds, task, out)
	if err == nil {
		t.Fatal("two models' predictions exported as one")
	}
	for _, w := range []string{preds, `"base", "sft"`, "--model"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q lacks %q", err, w)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatal("refused export left a file")
	}
	if err := ExportModelPredictions(preds, task, "sft", out); err != nil {
		t.Fatal(err)
	}
	got, err := ReadPredictionOutputs(out, task)
	if err != nil || len(got) != 2 || got["100"].Output != "4" || got["101"].Output != "5" {
		t.Fatalf("sft's predictions: %v %v", got, err)
	}
	if err := ExportModelPredictions(preds, task, "rl", filepath.Join(tmp, "rl.json")); err == nil || !strings.Contains(err.Error(), `"rl"`) || !strings.Contains(err.Error(), `"base", "sft"`) {
		t.Fatalf("unknown model: %v", err)
	}
	dups := filepath.Join(tmp, "dups.parquet")
	if err := WriteRows(dups, append(rows[2:], Prediction{ID: "100", Task: "LaMP_3", Model: "sft", Prediction: "1"}), CreatePredictions); err != nil {
		t.Fatal(err)
	}
	for _, model := range []string{"", "sft"} {
		err := ExportModelPredictions(dups, task, model, filepath.Join(tmp, "d.json"))
		if err == nil || !strings.Contains(err.Error(), `id "100"`) || !strings.Contains(err.Error(), dups) {
			t.Fatalf("model %q, duplicate id: %v", model, err)
		}
	}
	if _, err := os.Stat(filepath.Join(tmp, "d.json")); !os.IsNotExist(err) {
		t.Fatal("refused export left a file")
	}
}

// An export whose outputs file cannot be written (its path is a folder
// here; a full disk does the same) leaves no questions file either: the
// pair is written whole or not at all.
func TestExportLaMPFailedWriteLeavesNeither(t *testing.T) {
	tmp := t.TempDir()
	in := filepath.Join(tmp, "in.parquet")
	importFixture(t, "user/LaMP_4", in)
	q, o := filepath.Join(tmp, "q.json"), filepath.Join(tmp, "o.json")
	if err := os.MkdirAll(filepath.Join(o, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := ExportLaMP(in, q, o); err == nil || !strings.Contains(err.Error(), o) {
		t.Fatalf("outputs file unwritable: %v; want an error naming %s", err, o)
	}
	if _, err := os.Stat(q); !os.IsNotExist(err) {
		t.Errorf("the questions file is there after a failed export (%v)", err)
	}
	os.RemoveAll(o)
	if _, err := ExportLaMP(in, q, o); err != nil {
		t.Fatal(err)
	}
}

// ImportLaMP reports its progress through the questions file after each
// question (import-lamp draws it: a 1 GB LaMP-5 train file takes a while),
// up to the last question's end, never past the file's size.
func TestImportLaMPReportsProgress(t *testing.T) {
	dir := filepath.Join("testdata", "lamp", "user", "LaMP_4")
	q := filepath.Join(dir, "dev_questions.json")
	fi, err := os.Stat(q)
	if err != nil {
		t.Fatal(err)
	}
	task, _ := ParseTask("4")
	var reads []int64
	_, err = ImportLaMP(ImportOptions{Task: task, Questions: q, Outputs: filepath.Join(dir, "dev_outputs.json"), Split: "dev",
		Out: filepath.Join(t.TempDir(), "out.arrow"), Progress: func(read, size int64) {
			if size != fi.Size() {
				t.Errorf("progress size %d, want the file's %d", size, fi.Size())
			}
			reads = append(reads, read)
		}})
	if err != nil {
		t.Fatal(err)
	}
	if len(reads) != 3 {
		t.Fatalf("%d progress calls, want one per question (3)", len(reads))
	}
	for i := 1; i < len(reads); i++ {
		if reads[i] <= reads[i-1] {
			t.Fatalf("progress went back: %v", reads)
		}
	}
	if last := reads[len(reads)-1]; last > fi.Size() || last < fi.Size()-8 {
		t.Fatalf("last progress %d of %d bytes: want the end of the last question", last, fi.Size())
	}
}

// lamp3Dev is the LaMP-3 fixture's dev questions and outputs files' bytes.
func lamp3Dev(t *testing.T) (*Task, []byte, []byte) {
	t.Helper()
	task, _ := ParseTask("3")
	src := filepath.Join("testdata", "lamp", "user", "LaMP_3")
	q, err := os.ReadFile(filepath.Join(src, "dev_questions.json"))
	if err != nil {
		t.Fatal(err)
	}
	o, err := os.ReadFile(filepath.Join(src, "dev_outputs.json"))
	if err != nil {
		t.Fatal(err)
	}
	return task, q, o
}

// A UTF-8 byte order mark (Windows editors write one) is skipped, and a
// UTF-16 file is refused naming its encoding and the fix: both failed with
// "invalid character 'ï' (or 'ÿ') looking for beginning of value".
func TestLaMPByteOrderMarks(t *testing.T) {
	task, q, o := lamp3Dev(t)
	dir := t.TempDir()
	bom := "\xEF\xBB\xBF"
	qp := writeFile(t, filepath.Join(dir, "q.json"), bom+string(q))
	op := writeFile(t, filepath.Join(dir, "o.json"), bom+string(o))
	var ids []string
	if _, _, err := ScanQuestions(qp, task, func(e *Example) error { ids = append(ids, e.ID); return nil }); err != nil {
		t.Fatalf("questions with a BOM: %v", err)
	}
	golds, err := ReadOutputs(op, task)
	if err != nil {
		t.Fatalf("outputs with a BOM: %v", err)
	}
	want, err := ReadOutputs(writeFile(t, filepath.Join(t.TempDir(), "o.json"), string(o)), task)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 3 || len(golds) != len(want) || golds["100"] != want["100"] {
		t.Errorf("with a BOM: ids %v, golds %v; want 3 ids and %v", ids, golds, want)
	}
	utf16 := func(b []byte) string { // little-endian with its BOM, as Notepad writes it
		out := []byte{0xFF, 0xFE}
		for _, r := range string(b) {
			out = utf16le(out, r)
		}
		return string(out)
	}
	qp16 := writeFile(t, filepath.Join(dir, "q16.json"), utf16(q))
	op16 := writeFile(t, filepath.Join(dir, "o16.json"), utf16(o))
	if _, _, err := ScanQuestions(qp16, task, func(*Example) error { return nil }); err == nil || !strings.Contains(err.Error(), qp16+": the file is UTF-16") || !strings.Contains(err.Error(), "iconv") {
		t.Errorf("UTF-16 questions: %v", err)
	}
	if _, err := ReadOutputs(op16, task); err == nil || !strings.Contains(err.Error(), op16+": the file is UTF-16") {
		t.Errorf("UTF-16 outputs: %v", err)
	}
}

func utf16le(b []byte, r rune) []byte {
	if r >= 0x10000 {
		r -= 0x10000
		b = utf16le(b, 0xD800+(r>>10))
		return utf16le(b, 0xDC00+(r&0x3FF))
	}
	return append(b, byte(r), byte(r>>8))
}

// A file that is not UTF-8 (Latin-1) is refused naming the file and the
// byte: encoding/json turned each such byte into U+FFFD, so questions and
// golds imported with their accented letters silently replaced.
func TestLaMPNotUTF8(t *testing.T) {
	task, q, o := lamp3Dev(t)
	dir := t.TempDir()
	at := strings.Index(string(q), "été")
	qp := writeFile(t, filepath.Join(dir, "q.json"), strings.Replace(string(q), "été", "\xe9t\xe9", 1))
	if _, _, err := ScanQuestions(qp, task, func(*Example) error { return nil }); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%s: byte %d (0xE9) is not UTF-8", qp, at)) {
		t.Errorf("Latin-1 questions: %v", err)
	}
	op := writeFile(t, filepath.Join(dir, "o.json"), strings.Replace(string(o), `"1"`, "\"1\xe9\"", 1))
	if _, err := ReadOutputs(op, task); err == nil || !strings.Contains(err.Error(), op+": byte") || !strings.Contains(err.Error(), "iconv") {
		t.Errorf("Latin-1 outputs: %v", err)
	}
	// Valid UTF-8 read a byte at a time (every sequence split across reads)
	// passes unchanged; a truncated sequence at the end does not.
	text := "a é € 😀 z"
	got, err := io.ReadAll(&utf8Reader{r: iotest.OneByteReader(strings.NewReader(text))})
	if err != nil || string(got) != text {
		t.Errorf("split sequences: %q, %v", got, err)
	}
	if _, err := io.ReadAll(&utf8Reader{r: iotest.OneByteReader(strings.NewReader(text[:len(text)-3]))}); err == nil {
		t.Errorf("a sequence cut at the end passed")
	}
}
