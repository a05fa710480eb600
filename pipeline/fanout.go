package pipeline

import (
	"context"
	"errors"
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/onnx/train"
)

// FanOut is a batch stage over the rows of an input file — chains from a
// teacher, PRMU scores, predictions — that can be split across processes
// (the pods of a Kubernetes Indexed Job, each with its own --shard): Run
// reads its shard of In in batches, skips rows that already have output in
// Out.parts/ (an earlier attempt, or another worker), and writes each batch's
// output as one part, atomically. A killed worker loses at most the batch in
// flight; run again, it redoes only that. Assembling every worker's parts
// into Out, in In's order, is the stage's (datasets.Assemble, or its own merge
// when rows depend on earlier ones), once every shard is done.
type FanOut[I, O any] struct {
	Name    string // the stage, for errors
	In, Out string
	Kind    datasets.Kind // In's row kind
	Shard   datasets.Shard
	Batch   int // input rows per batch and part (default 32)
	Decode  func(arrow.RecordBatch, int) ([]I, error)
	ID      func(*I) string // the row's key: In's first column
	Work    func(ctx context.Context, task *datasets.Task, batch []I) ([]O, error)
	Create  func(string) (*datasets.Writer[O], error)
	// Progress hears of every batch (Task Name, Step the shard's input rows
	// done so far, earlier runs' included; Metrics rows, this run's output).
	Progress train.ProgressFunc
}

// FanOutStats count one run of one worker.
type FanOutStats struct {
	Skipped int // input rows of this shard that already had output
	Done    int // input rows worked on in this run
	Rows    int // output rows written in this run
}

// Run works through this worker's shard.
func (f FanOut[I, O]) Run(ctx context.Context) (FanOutStats, error) {
	var st FanOutStats
	if f.In == "" || f.Out == "" {
		return st, fmt.Errorf("%s: input and output files are required", f.Name)
	}
	if f.Batch <= 0 {
		f.Batch = 32
	}
	parts := datasets.PartsFor(f.Out, f.Shard)
	// Workers share the parts folder by design; one writer per shard.
	writer := "shard all"
	if f.Shard.Count > 1 {
		writer = "shard " + f.Shard.String()
	}
	lk, err := train.LockRunPart(parts.Dir, writer)
	if err != nil {
		return st, fmt.Errorf("%s: %w", f.Name, err)
	}
	defer lk.Unlock()
	done, err := parts.DoneIDs()
	if err != nil {
		return st, fmt.Errorf("%s: %w", f.Name, err)
	}
	r, err := datasets.OpenReader(f.In, datasets.ReadOptions{BatchRows: f.Batch, Shard: f.Shard})
	if err != nil {
		return st, fmt.Errorf("%s: %w", f.Name, err)
	}
	defer r.Close()
	if r.Kind() != f.Kind {
		return st, fmt.Errorf("%s: %s holds %s rows, want %s", f.Name, f.In, r.Kind(), f.Kind)
	}
	for r.Next() {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		rows, err := f.Decode(r.Batch(), r.BatchFirst())
		if err != nil {
			return st, fmt.Errorf("%s: read %s: %w", f.Name, f.In, err)
		}
		todo := rows[:0]
		for i := range rows {
			if done[f.ID(&rows[i])] {
				st.Skipped++
			} else {
				todo = append(todo, rows[i])
			}
		}
		if len(todo) == 0 {
			continue
		}
		out, err := f.Work(ctx, r.Task(), todo)
		if err != nil {
			return st, err
		}
		if len(out) == 0 {
			return st, errors.New(f.Name + ": a batch gave no output rows; every input row needs at least one (the merge checks)")
		}
		if err := datasets.WritePart(parts, out, f.Create); err != nil {
			return st, fmt.Errorf("%s: %w", f.Name, err)
		}
		st.Done += len(todo)
		st.Rows += len(out)
		f.Progress.Report(train.Progress{Task: f.Name, Step: st.Done + st.Skipped, Metrics: map[string]float64{"rows": float64(st.Rows)}})
	}
	if err := r.Err(); err != nil {
		return st, fmt.Errorf("%s: %w", f.Name, err)
	}
	return st, nil
}
