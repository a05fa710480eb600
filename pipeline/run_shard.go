package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tagpr/tagpr/onnx/train"
)

// The config's predict stage as N workers (`tagpr predict -c FILE --shard
// i/N|auto`): every worker runs the stage alone, predicting only its
// shard's batches of every model, task and split (predictBatches, the
// standalone predict's fan-out), into the parts folder beside each
// predictions file; `tagpr predict merge -c FILE` then assembles every
// file (or says which batches are missing) and marks each model done, and
// eval reads the merged files as it reads an unsharded run's.

// sharded reports whether this process is one of several predict workers
// (or their merge), which share the run folder.
func (r *runEnv) sharded() bool { return r.shard.Count > 1 || r.mergeShards }

// lockRun takes the run folder's lock. A predict worker takes it only to
// prepare the run (data, tokenizer, base model: the first worker does the
// work, the others wait for it, then find it done) and releases it after
// (Run does); each then locks its own shard's parts.
func (r *runEnv) lockRun(ctx context.Context, o RunOptions) (*train.RunLock, error) {
	r.shard, r.mergeShards = o.Shard, o.MergeShards
	if !r.sharded() {
		return train.LockRunDir(r.cfg.Out)
	}
	if len(o.Only) != 1 || o.Only[0] != StagePredict {
		return nil, fmt.Errorf("sharding (--shard %s) and merging shards go with the predict stage alone: tagpr predict -c FILE --shard i/N|auto, then tagpr predict merge -c FILE", r.shard)
	}
	for {
		lk, err := train.LockRunDir(r.cfg.Out)
		var held *train.LockedError
		if !errors.As(err, &held) {
			return lk, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("predict shard %s: waiting for the run folder: %w", r.shard, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
