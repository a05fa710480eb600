package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/onnx/train"
)

// batchRecorder is a FanOut over examples whose work records the batches it
// is given and answers one prediction per example.
func batchRecorder(out string, sh datasets.Shard, batch int, seen *[][]string) FanOut[datasets.Example, datasets.Prediction] {
	return FanOut[datasets.Example, datasets.Prediction]{Name: "test", In: "questions.json", Out: out, Shard: sh, Batch: batch,
		ID: func(e *datasets.Example) string { return e.ID }, Create: datasets.CreatePredictions,
		Work: func(_ context.Context, _ *datasets.Task, exs []datasets.Example) ([]datasets.Prediction, error) {
			var ids []string
			var preds []datasets.Prediction
			for _, e := range exs {
				ids = append(ids, e.ID)
				preds = append(preds, datasets.Prediction{ID: e.ID, Task: "LaMP_3", Prediction: "x"})
			}
			*seen = append(*seen, ids)
			return preds, nil
		}}
}

// RunBatches gives every shard whole batches of the one-process cut (batch k
// to shard k mod N), so each batch's work is what one process would do; a
// rerun skips done batches, and a batch only partly done (parts written
// with another batch size) is refused.
func TestFanOutRunBatchesKeepsTheOneProcessCut(t *testing.T) {
	task, err := datasets.ParseTask("3")
	if err != nil {
		t.Fatal(err)
	}
	exs := make([]datasets.Example, 11)
	for i := range exs {
		exs[i].ID = fmt.Sprintf("q%02d", i)
	}
	dir := t.TempDir()
	var whole [][]string
	if _, err := batchRecorder(filepath.Join(dir, "one.arrow"), datasets.Shard{}, 3, &whole).RunBatches(context.Background(), task, exs); err != nil {
		t.Fatal(err)
	}
	var sharded [][]string
	out := filepath.Join(dir, "sharded.arrow")
	for i := 2; i >= 0; i-- {
		var seen [][]string
		st, err := batchRecorder(out, datasets.Shard{Index: i, Count: 3}, 3, &seen).RunBatches(context.Background(), task, exs)
		if err != nil {
			t.Fatal(err)
		}
		for k, b := range seen {
			if want := whole[i+3*k]; !reflect.DeepEqual(b, want) {
				t.Errorf("shard %d/3, its batch %d: %v; want batch %d of one process, %v", i, k, b, i+3*k, want)
			}
		}
		sharded = append(sharded, seen...)
		rows := 0
		for _, b := range seen {
			rows += len(b)
		}
		if st.Done != rows || st.Skipped != 0 {
			t.Errorf("shard %d/3: %+v after %d rows in %d batches", i, st, rows, len(seen))
		}
	}
	if len(sharded) != len(whole) {
		t.Fatalf("the shards ran %d batches, one process %d", len(sharded), len(whole))
	}
	var again [][]string
	st, err := batchRecorder(out, datasets.Shard{Index: 1, Count: 3}, 3, &again).RunBatches(context.Background(), task, exs)
	if err != nil || len(again) != 0 || st.Skipped != 3 {
		t.Fatalf("rerun of a finished shard: %+v, %d batches, %v", st, len(again), err)
	}
	order := func() (*datasets.InputOrder, error) {
		o := datasets.NewInputOrder("questions.json")
		for _, e := range exs {
			if err := o.Add(e.ID); err != nil {
				return nil, err
			}
		}
		return o, nil
	}
	for _, f := range []string{out, filepath.Join(dir, "one.arrow")} {
		if n, err := datasets.AssembleInOrder(f, order); err != nil || n != int64(len(exs)) {
			t.Fatalf("assemble %s: %d rows, %v", f, n, err)
		}
	}
	a, _ := os.ReadFile(out)
	b, _ := os.ReadFile(filepath.Join(dir, "one.arrow"))
	if len(a) == 0 || !bytes.Equal(a, b) {
		t.Errorf("the assembled shards (%d bytes) differ from one process's (%d bytes)", len(a), len(b))
	}
	_, err = batchRecorder(filepath.Join(dir, "one.arrow"), datasets.Shard{}, 4, &again).RunBatches(context.Background(), task, append(exs, datasets.Example{ID: "q11"}))
	if err == nil || !strings.Contains(err.Error(), "another batch size") {
		t.Fatalf("batches of 4 over parts of batches of 3: %v", err)
	}
}

// A whole (unsharded) run is refused while shards write the same parts
// folder, and a shard while a whole run does, before any batch: both would
// write the same batches, and the parts would then refuse to merge.
func TestFanOutWholeAndShardsApart(t *testing.T) {
	task, err := datasets.ParseTask("3")
	if err != nil {
		t.Fatal(err)
	}
	exs := []datasets.Example{{ID: "q0"}, {ID: "q1"}}
	out := filepath.Join(t.TempDir(), "preds.arrow")
	parts := datasets.PartsFor(out, datasets.Shard{}).Dir
	for _, c := range []struct {
		held  bool // the held lock is a whole run's
		shard datasets.Shard
	}{{false, datasets.Shard{}}, {true, datasets.Shard{Index: 0, Count: 2}}} {
		l, err := train.LockRunShards(parts, c.held)
		if err != nil {
			t.Fatal(err)
		}
		var seen [][]string
		_, err = batchRecorder(out, c.shard, 1, &seen).RunBatches(context.Background(), task, exs)
		l.Unlock()
		var se *train.ShardsLockedError
		if !errors.As(err, &se) || len(seen) != 0 {
			t.Errorf("shard %v beside a whole run %v: %v after %d batches; want a ShardsLockedError before any", c.shard, c.held, err, len(seen))
		}
	}
}
