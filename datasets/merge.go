package datasets

import (
	"errors"
	"fmt"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// MergeOptions adjust Merge.
type MergeOptions struct {
	// Partial merges shard files (MetaShard) even when some shards of
	// their input are not among them.
	Partial bool
}

// Merge concatenates per-shard files of one schema into out (IPC or Parquet by
// its extension), in argument order, streaming batch by batch. Every input must
// have the same schema; for lamp_example and prediction files an id found in two
// inputs is an error (shards are disjoint, so a repeat means overlapping inputs).
// Files `data shard` wrote record their shard (MetaShard): every shard of the
// input must be there, unless o.Partial. On error nothing is left at out. It
// returns the number of rows written.
func Merge(out string, inputs []string, o MergeOptions) (int64, error) {
	if len(inputs) == 0 {
		return 0, errors.New("merge: no input files")
	}
	if err := checkShardSet(inputs, o.Partial); err != nil {
		return 0, err
	}
	var (
		w      *BatchWriter
		first  *Reader
		schema *arrow.Schema
		seen   map[string]string
		rows   int64
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
			schema = WithShard(r.Schema(), Shard{}) // the whole, not a shard
			if w, err = CreateBatchWriter(out, schema); err != nil {
				r.Close()
				return fail(fmt.Errorf("merge: %w", err))
			}
			if r.Kind() == KindExample || r.Kind() == KindPrediction {
				seen = map[string]string{}
			}
		} else if sameColumns(r.Schema(), first.Schema()) != nil || r.Kind() != first.Kind() || r.Task() != first.Task() {
			r.Close()
			return fail(fmt.Errorf("merge: %s has another schema than %s (%s %v vs %s %v)", in, inputs[0], r.Kind(), r.Schema(), first.Kind(), first.Schema()))
		}
		// A table pyarrow wrote (every field nullable) merges with one tagpr
		// wrote: its batches are rebuilt under the first input's types.
		rebuild := !mergeable(r.Schema(), first.Schema())
		for r.Next() {
			// One batch at a time: each is released once written.
			err := func() error {
				rec := r.Batch()
				// The same columns under the output's schema: a Parquet
				// shard's differs from an Arrow one's only in field ids and a
				// list's child name, and no input's shard mark carries over.
				if rebuild {
					rec.Retain()
					var err error
					if rec, err = conform(rec, schema); err != nil {
						return fmt.Errorf("merge: %s: %w", in, err)
					}
				} else {
					rec = array.NewRecordBatch(schema, rec.Columns(), rec.NumRows())
				}
				defer rec.Release()
				if seen != nil {
					ids := rec.Column(0).(*array.String)
					for i := 0; i < ids.Len(); i++ {
						id := ids.Value(i)
						if prev, dup := seen[id]; dup {
							return fmt.Errorf("merge: id %q is in both %s and %s (overlapping shards?)", id, prev, in)
						}
						seen[id] = in
					}
				}
				if err := w.Write(rec); err != nil {
					return fmt.Errorf("merge: %w", err)
				}
				rows += rec.NumRows()
				return nil
			}()
			if err != nil {
				r.Close()
				return fail(err)
			}
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

// checkShardSet refuses shard files (MetaShard) that are not every shard of
// one split: a count that differs, a shard given twice, or (unless partial)
// one missing, which would merge to a file short of rows with exit 0.
func checkShardSet(inputs []string, partial bool) error {
	var marked, unmarked string // an input of each kind, for the errors
	var split Shard             // the first marked input's shard
	have := map[int]string{}
	for _, in := range inputs {
		r, err := OpenReader(in, ReadOptions{})
		if err != nil {
			return fmt.Errorf("merge: %w", err)
		}
		sh, ok := ShardOf(r.Schema())
		r.Close()
		switch {
		case !ok:
			if unmarked == "" {
				unmarked = in
			}
			continue
		case marked == "":
			marked, split = in, sh
		case sh.Count != split.Count:
			return fmt.Errorf("merge: %s is shard %s, %s is shard %s: the inputs come from different splits", in, sh, marked, split)
		}
		if prev, dup := have[sh.Index]; dup {
			return fmt.Errorf("merge: %s and %s are both shard %s", prev, in, sh)
		}
		have[sh.Index] = in
	}
	switch {
	case marked == "":
		return nil
	case unmarked != "":
		return fmt.Errorf("merge: %s is shard %s, %s is not marked as one: merge the shards of one split", marked, split, unmarked)
	case partial || len(have) == split.Count:
		return nil
	}
	var missing []string
	for i := range split.Count {
		if _, ok := have[i]; !ok {
			missing = append(missing, Shard{Index: i, Count: split.Count}.String())
		}
	}
	return fmt.Errorf("merge: shard %s of the split is not among the inputs (%d of %d given): add it, or pass --partial to merge these shards only",
		strings.Join(missing, ", "), len(have), split.Count)
}
