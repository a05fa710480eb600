package datasets

import (
	"errors"
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// Merge concatenates per-shard files of one schema into out (IPC or Parquet by
// its extension), in argument order, streaming batch by batch. Every input must
// have the same schema; for lamp_example and prediction files an id found in two
// inputs is an error (shards are disjoint, so a repeat means overlapping inputs).
// On error nothing is left at out. It returns the number of rows written.
func Merge(out string, inputs []string) (int64, error) {
	if len(inputs) == 0 {
		return 0, errors.New("merge: no input files")
	}
	var (
		w     *BatchWriter
		first *Reader
		seen  map[string]string
		rows  int64
	)
	fail := func(err error) (int64, error) {
		if w != nil {
			w.Abort()
		}
		return 0, err
	}
	for _, in := range inputs {
		r, err := OpenReader(in, ReadOptions{BatchRows: DefaultBatchRows})
		if err != nil {
			return fail(fmt.Errorf("merge: %w", err))
		}
		if w == nil {
			first = r
			if w, err = CreateBatchWriter(out, r.Schema()); err != nil {
				r.Close()
				return fail(fmt.Errorf("merge: %w", err))
			}
			if r.Kind() == KindExample || r.Kind() == KindPrediction {
				seen = map[string]string{}
			}
		} else if !mergeable(r.Schema(), first.Schema()) || r.Kind() != first.Kind() || r.Task() != first.Task() {
			r.Close()
			return fail(fmt.Errorf("merge: %s has another schema than %s (%s %v vs %s %v)", in, inputs[0], r.Kind(), r.Schema(), first.Kind(), first.Schema()))
		}
		for r.Next() {
			rec := r.Batch()
			if r != first {
				// The same columns under the first file's schema: a Parquet
				// shard's differs from an Arrow one's only in field ids
				// and a list's child name.
				rec = array.NewRecordBatch(first.Schema(), rec.Columns(), rec.NumRows())
				defer rec.Release()
			}
			if seen != nil {
				ids := rec.Column(0).(*array.String)
				for i := 0; i < ids.Len(); i++ {
					id := ids.Value(i)
					if prev, dup := seen[id]; dup {
						r.Close()
						return fail(fmt.Errorf("merge: id %q is in both %s and %s (overlapping shards?)", id, prev, in))
					}
					seen[id] = in
				}
			}
			if err := w.Write(rec); err != nil {
				r.Close()
				return fail(fmt.Errorf("merge: %w", err))
			}
			rows += rec.NumRows()
		}
		err = r.Err()
		if r != first {
			r.Close()
		}
		if err != nil {
			return fail(fmt.Errorf("merge: %w", err))
		}
	}
	first.Close()
	if err := w.Commit(); err != nil {
		return 0, fmt.Errorf("merge: %w", err)
	}
	return rows, nil
}

// mergeable reports whether b's records can be written under schema a: the
// same columns (sameColumns), whose types arrow takes for equal — so Parquet
// field ids and a list child's name ("element" in Parquet, "item" in Arrow)
// do not matter.
func mergeable(a, b *arrow.Schema) bool {
	if sameColumns(a, b) != nil {
		return false
	}
	for i := range a.NumFields() {
		if !arrow.TypeEqual(a.Field(i).Type, b.Field(i).Type) {
			return false
		}
	}
	return true
}
