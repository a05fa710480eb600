package datasets

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// Files written by pyarrow (scripts/datasets/crosscheck.py --write-fixtures) in
// tagpr's schemas are read by tagpr: IPC file, IPC stream and Parquet.
func TestReadPyarrowFixtures(t *testing.T) {
	tmp := t.TempDir()
	for _, fx := range []string{"user/LaMP_3", "time/LaMP_2M"} {
		name := strings.ReplaceAll(fx, "/", "_")
		for _, suffix := range []string{".arrow", ".stream.arrow", ".parquet"} {
			path := filepath.Join("testdata", "pyarrow", name+suffix)
			q, o := filepath.Join(tmp, "q.json"), filepath.Join(tmp, "o.json")
			if _, err := ExportLaMP(path, q, o); err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join("testdata", "lamp", fx)
			for _, pair := range [][2]string{{q, "dev_questions.json"}, {o, "dev_outputs.json"}} {
				got, want := readJSONValue(t, pair[0]), readJSONValue(t, filepath.Join(dir, pair[1]))
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("%s: %s differs from the JSON pyarrow wrote it from", path, pair[1])
				}
			}
		}
	}
	for _, ext := range []string{".arrow", ".parquet"} {
		chains, err := ReadChains(filepath.Join("testdata", "pyarrow", "chains"+ext), ReadOptions{})
		if err != nil || normalize(chains) != normalize(sampleChains()) {
			t.Fatalf("pyarrow chains%s: %v\n got %+v\nwant %+v", ext, err, chains, sampleChains())
		}
		rolls, err := ReadRollouts(filepath.Join("testdata", "pyarrow", "rollouts"+ext), ReadOptions{})
		if err != nil || normalize(rolls) != normalize(sampleRollouts()) {
			t.Fatalf("pyarrow rollouts%s: %v\n got %+v\nwant %+v", ext, err, rolls, sampleRollouts())
		}
		preds, err := ReadPredictions(filepath.Join("testdata", "pyarrow", "predictions"+ext), ReadOptions{})
		if err != nil || normalize(preds) != normalize(samplePredictions()) {
			t.Fatalf("pyarrow predictions%s: %v\n got %+v\nwant %+v", ext, err, preds, samplePredictions())
		}
	}
	v2 := filepath.Join("testdata", "pyarrow", "predictions_v2.parquet")
	if _, err := ReadPredictions(v2, ReadOptions{}); err == nil || !strings.Contains(err.Error(), `version "2"`) || !strings.Contains(err.Error(), v2) {
		t.Fatalf("a version-2 file: %v", err)
	}
}

// BM25 matches rank_bm25.BM25Okapi, LaMP's retriever (reference scores from Python).
func TestBM25MatchesRankBM25(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "bm25_reference.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cases []struct {
		Query  string
		Docs   []string
		Scores []float64
	}
	if err := json.Unmarshal(data, &cases); err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		got := BM25Scores(c.Query, c.Docs)
		for i := range got {
			if math.Abs(got[i]-c.Scores[i]) > 1e-9 {
				t.Fatalf("query %q doc %d: score %v, rank_bm25 %v", c.Query, i, got[i], c.Scores[i])
			}
		}
	}
}

func TestQueryAndRetrieval(t *testing.T) {
	cases := map[string][2]string{
		"1":  {`For an author who has written the paper with the title "A", which reference is related? [1]: "B c" [2]: "D"`, "B c D"},
		"2M": {"Which tag ... tags: [a, b] description: A robot learns.", "A robot learns."},
		"2N": {"Which category ... article: Voters vote.", "Voters vote."},
		"3":  {"What is the score ... review: good stuff", "good stuff"},
		"4":  {"Generate a headline for the following article: City park", "City park"},
		"5":  {"Generate a title for the following abstract of a paper: We study", "We study"},
		"7":  {"Paraphrase the following tweet without any explanation before or after it: hi", "hi"},
	}
	for name, c := range cases {
		task, _ := ParseTask(name)
		if got := task.Query(c[0]); got != c[1] {
			t.Errorf("task %s query %q, want %q", name, got, c[1])
		}
	}
	task, _ := ParseTask("4")
	e := Example{Input: "Generate a headline for the following article: the park opened", Profile: []ProfileItem{
		{ID: "a", Fields: []string{"museum closed", "nothing here"}, Date: "2019-10-1", HasDate: true},
		{ID: "b", Fields: []string{"park opened", "the park opened today"}, Date: "2019-3-7", HasDate: true},
		{ID: "c", Fields: []string{"storm", "rain"}},
		{ID: "d", Fields: []string{"park", "a park"}, Date: "2020-1-1", HasDate: true},
		{ID: "e", Fields: []string{"sun", "sunny day"}, Date: "2001-01-01", HasDate: true},
	}}
	if got := TopKBM25(task, &e, 2); !reflect.DeepEqual(got, []int{1, 3}) {
		t.Errorf("BM25 top-2 = %v, want [1 3]", got)
	}
	if got := TopKRecent(&e, 3); !reflect.DeepEqual(got, []int{3, 0, 1}) {
		t.Errorf("recency top-3 = %v, want [3 0 1] (dates compare as numbers; undated last)", got)
	}
}

func TestSelectProfile(t *testing.T) {
	task, _ := ParseTask("7")
	e := Example{Input: "Paraphrase: red apples", Profile: []ProfileItem{
		{ID: "a", Fields: []string{"green pears"}, Date: "2020-01-02", HasDate: true},
		{ID: "b", Fields: []string{"red apples here"}, Date: "2019-01-01", HasDate: true},
		{ID: "c", Fields: []string{"blue sky"}, Date: "2021-05-05", HasDate: true},
		{ID: "d", Fields: []string{"yellow sun"}, Date: "2018-05-05", HasDate: true},
	}}
	got, err := SelectProfile(task, &e, 1, ByBM25)
	if err != nil || len(got) != 1 || got[0].ID != "b" {
		t.Fatalf("bm25: %+v %v", got, err)
	}
	got, _ = SelectProfile(task, &e, 2, ByRecency)
	if len(got) != 2 || got[0].ID != "c" || got[1].ID != "a" {
		t.Fatalf("recency: %+v", got)
	}
	if got, _ := SelectProfile(task, &e, 0, ByBM25); len(got) != 4 {
		t.Fatal("k=0 should keep the whole profile")
	}
	if _, err := SelectProfile(task, &e, 2, "random"); err == nil {
		t.Fatal("unknown retrieval accepted")
	}
}

func TestExportPredictions(t *testing.T) {
	tmp := t.TempDir()
	preds := filepath.Join(tmp, "preds.parquet")
	if err := WriteRows(preds, samplePredictions(), CreatePredictions); err != nil {
		t.Fatal(err)
	}
	task, _ := ParseTask("3")
	out := filepath.Join(tmp, "dev_outputs.json")
	if err := ExportPredictions(preds, task, out); err != nil {
		t.Fatal(err)
	}
	got := readJSONValue(t, out)
	var want any
	json.Unmarshal([]byte(`{"task": "LaMP_3", "golds": [{"id": "100", "output": "4"}, {"id": "101", "output": ""}]}`), &want)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v", got)
	}
	// LaMP's outputs reader takes it back: the shape is LaMP's own.
	if golds, err := ReadOutputs(out, task); err != nil || golds["100"].Output != "4" {
		t.Fatalf("read back: %v %v", golds, err)
	}
	other, _ := ParseTask("5")
	if err := ExportPredictions(preds, other, filepath.Join(tmp, "x.json")); err == nil || !strings.Contains(err.Error(), "LaMP_3") {
		t.Fatalf("predictions of another task: %v", err)
	}
	if _, err := os.Stat(filepath.Join(tmp, "x.json")); !os.IsNotExist(err) {
		t.Fatal("failed export left a file")
	}
}
