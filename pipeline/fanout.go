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
// reads its shard of In in batches (RunBatches: of rows in memory, in
// fixed batches), skips rows that already have output in Out.parts/ (an
// earlier attempt, or another worker), and writes each batch's output as
// one part, atomically. A killed worker loses at most the batch in
// flight; run again, it redoes only that. Assembling every worker's parts
// into Out, in In's order, is the stage's (datasets.Assemble, or its own merge
// when rows depend on earlier ones), once every shard is done.
type FanOut[I, O any] struct {
	Name    string // the stage, for errors
	In, Out string
	Kind    datasets.Kind // In's row kind (Run's)
	Shard   datasets.Shard
	Batch   int                                       // input rows per batch and part (default 32)
	Decode  func(arrow.RecordBatch, int) ([]I, error) // Run's reader of In
	ID      func(*I) string                           // the row's key: In's first column
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

// Run works through this worker's shard of In, whose rows belong to shards
// by their ids.
func (f FanOut[I, O]) Run(ctx context.Context) (FanOutStats, error) {
	var st FanOutStats
	if f.In == "" || f.Out == "" {
		return st, fmt.Errorf("%s: input and output files are required", f.Name)
	}
	w, err := f.begin()
	if err != nil {
		return st, err
	}
	defer w.end()
	r, err := datasets.OpenReader(f.In, datasets.ReadOptions{BatchRows: w.Batch, Shard: f.Shard})
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
			if w.done[f.ID(&rows[i])] {
				st.Skipped++
			} else {
				todo = append(todo, rows[i])
			}
		}
		if err := w.work(ctx, r.Task(), todo, &st); err != nil {
			return st, err
		}
	}
	if err := r.Err(); err != nil {
		return st, fmt.Errorf("%s: %w", f.Name, err)
	}
	return st, nil
}

// RunBatches works through this worker's share of rows, already in memory
// (read from In, which only names them in messages), for a stage whose output
// depends on how rows are batched: generation pads a batch to its longest
// prompt, and the padding moves the logits in their last bits, enough to flip
// a near-tie of greedy decoding. So rows are cut into batches of Batch from
// the start, the same cut for every worker and for an unsharded run, and
// batch k belongs whole to shard k mod N (datasets.Shard.HoldsBatch): every
// batch runs exactly as in one process, and the merged output is the same
// bytes. A batch is done or not (its part is written atomically); one only
// partly done means the parts were written with another batch size, and is
// refused.
func (f FanOut[I, O]) RunBatches(ctx context.Context, task *datasets.Task, rows []I) (FanOutStats, error) {
	var st FanOutStats
	if f.Out == "" {
		return st, fmt.Errorf("%s: output file is required", f.Name)
	}
	w, err := f.begin()
	if err != nil {
		return st, err
	}
	defer w.end()
	for k, lo := 0, 0; lo < len(rows); k, lo = k+1, lo+w.Batch {
		if f.Shard.HoldsBatch(k) {
			w.total += min(w.Batch, len(rows)-lo)
		}
	}
	for k, lo := 0, 0; lo < len(rows); k, lo = k+1, lo+w.Batch {
		if !f.Shard.HoldsBatch(k) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return st, err
		}
		batch := rows[lo:min(lo+w.Batch, len(rows))]
		done := 0
		for i := range batch {
			if w.done[f.ID(&batch[i])] {
				done++
			}
		}
		switch done {
		case 0:
			if err := w.work(ctx, task, batch, &st); err != nil {
				return st, err
			}
		case len(batch):
			st.Skipped += done
		default:
			return st, fmt.Errorf("%s: %d of the %d rows of batch %d of %s have output in %s, the others none: were the parts written with another batch size? Use the same one, or delete %s to start over",
				f.Name, done, len(batch), k, f.In, w.parts.Dir, w.parts.Dir)
		}
	}
	return st, nil
}

// fanOutWorker is one worker's hold on the parts folder.
type fanOutWorker[I, O any] struct {
	FanOut[I, O]
	parts datasets.Parts
	mode  *train.RunLock // shards side by side, or one whole run
	lock  *train.RunLock
	done  map[string]bool // ids with output in any part, of any worker
	total int             // the shard's input rows, when known (progress)
}

// begin locks this shard's writing in the parts folder and reads which ids
// already have output.
func (f FanOut[I, O]) begin() (*fanOutWorker[I, O], error) {
	if f.Batch <= 0 {
		f.Batch = 32
	}
	w := &fanOutWorker[I, O]{FanOut: f, parts: datasets.PartsFor(f.Out, f.Shard)}
	// Workers share the parts folder by design; one writer per shard.
	writer := "shard all"
	if f.Shard.Count > 1 {
		writer = "shard " + f.Shard.String()
	}
	// The part lock first: a second writer of the same shard (or a second
	// whole run) is refused naming the holder's PID; then shards and a
	// whole run keep apart.
	var err error
	if w.lock, err = train.LockRunPart(w.parts.Dir, writer); err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name, err)
	}
	if w.mode, err = train.LockRunShards(w.parts.Dir, f.Shard.Count <= 1); err != nil {
		w.lock.Unlock()
		return nil, fmt.Errorf("%s: %w", f.Name, err)
	}
	if w.done, err = w.parts.DoneIDs(); err != nil {
		w.end()
		return nil, fmt.Errorf("%s: %w", f.Name, err)
	}
	return w, nil
}

func (w *fanOutWorker[I, O]) end() {
	w.mode.Unlock()
	w.lock.Unlock()
}

// work runs one batch of rows that have no output yet and writes its output
// as this shard's next part.
func (w *fanOutWorker[I, O]) work(ctx context.Context, task *datasets.Task, todo []I, st *FanOutStats) error {
	if len(todo) == 0 {
		return nil
	}
	out, err := w.Work(ctx, task, todo)
	if err != nil {
		return err
	}
	if len(out) == 0 {
		return errors.New(w.Name + ": a batch gave no output rows; every input row needs at least one (the merge checks)")
	}
	if err := datasets.WritePart(w.parts, out, w.Create); err != nil {
		return fmt.Errorf("%s: %w", w.Name, err)
	}
	st.Done += len(todo)
	st.Rows += len(out)
	w.Progress.Report(train.Progress{Task: w.Name, Step: st.Done + st.Skipped, Total: w.total, Metrics: map[string]float64{"rows": float64(st.Rows)}})
	return nil
}
