package train

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/google/renameio/v2"

	"github.com/tagpr/tagpr/onnx/ort"
)

// Dataset hands out training batches by example index.
type Dataset interface {
	Len() int
	// Batch makes the data inputs for these examples; release frees them.
	Batch(idx []int) (inputs map[string]ort.Value, release func(), err error)
}

// StepLog is one line of the training log (JSONL).
type StepLog struct {
	Step     int     `json:"step"`
	Epoch    int     `json:"epoch"`
	Loss     float64 `json:"loss"`
	LR       float64 `json:"lr"`
	GradNorm float64 `json:"grad_norm"`
	Skipped  bool    `json:"skipped,omitempty"`
	Reason   string  `json:"reason,omitempty"`
	Warning  string  `json:"warning,omitempty"` // e.g. a loss stuck at the uniform-guess level
	Seconds  float64 `json:"seconds"`
	// FwdBwd and Optim split Seconds: ORT forward+backward, Go optimizer.
	FwdBwd float64 `json:"fwd_bwd_s"`
	Optim  float64 `json:"optim_s"`
}

// MarshalJSON writes a non-finite loss or gradient norm (a skipped step) as
// null: JSON has no NaN, and encoding/json would refuse the whole line.
func (s StepLog) MarshalJSON() ([]byte, error) {
	type plain StepLog
	return json.Marshal(struct {
		plain
		Loss     *float64 `json:"loss"`
		GradNorm *float64 `json:"grad_norm"`
	}{plain(s), finiteOrNull(s.Loss), finiteOrNull(s.GradNorm)})
}

func finiteOrNull(x float64) *float64 {
	if !finite(x) {
		return nil
	}
	return &x
}

// Loop drives a Trainer over a Dataset: shuffled epochs from a seeded
// generator, gradient accumulation, periodic checkpoints, and resume that
// continues bit for bit (weights, moments, generator state and data cursor
// are all restored).
type Loop struct {
	Trainer         *Trainer
	Data            Dataset
	BatchSize       int // examples per micro-batch
	Accum           int // micro-batches per step (default 1)
	Steps           int // total optimizer steps
	Dir             string
	CheckpointEvery int // steps; 0: only at the end
	Keep            int // checkpoints kept (default 2)
	Seed            uint64
	// Settings, when set, are recorded in Dir (run.json) by a fresh run and
	// must match on resume (a *SettingsMismatchError otherwise).
	Settings RunSettings
	// OnStep is called after every step (progress bars, tests).
	OnStep func(StepLog)
}

// LogFile is the per-step JSONL log beside the checkpoints.
const LogFile = "train_log.jsonl"

// Run trains until Steps are done or ctx is cancelled; either way it leaves
// a checkpoint of the last completed step. It resumes from Dir's newest
// checkpoint when there is one (with the same Settings). It holds Dir's run
// lock (LockRunDir) while it runs.
func (l *Loop) Run(ctx context.Context) (RunState, error) {
	if l.Accum <= 0 {
		l.Accum = 1
	}
	if l.BatchSize <= 0 || l.Data.Len() == 0 {
		return RunState{}, fmt.Errorf("train loop: batch size %d over %d examples", l.BatchSize, l.Data.Len())
	}
	lk, err := LockRunDir(l.Dir)
	if err != nil {
		return RunState{}, fmt.Errorf("train loop: %w", err)
	}
	defer lk.Unlock()
	if l.Settings != nil {
		if err := l.Settings.CheckOrRecord(l.Dir); err != nil {
			return RunState{}, err
		}
	}
	t := l.Trainer
	pcg := rand.NewPCG(l.Seed, 0x7a9)
	st, err := LoadCheckpoint(l.Dir, t.Params, t.Opt)
	switch {
	case errors.Is(err, ErrNoCheckpoint):
		st = RunState{}
		st.RNG, _ = pcg.MarshalBinary()
	case err != nil:
		return st, err
	default:
		if err := pcg.UnmarshalBinary(st.RNG); err != nil {
			return st, fmt.Errorf("train loop: checkpoint in %s: generator state: %w", l.Dir, err)
		}
	}
	t.Steps = st.Step
	if err := l.trimLog(st.Step); err != nil {
		return st, err
	}
	logf, err := os.OpenFile(filepath.Join(l.Dir, LogFile), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return st, fmt.Errorf("train loop: %w", err)
	}
	defer logf.Close()
	// The permutation of the current epoch comes from the generator state
	// saved at the epoch's start (st.RNG).
	rng := rand.New(pcg)
	perm := rng.Perm(l.Data.Len())
	save := func() error { return SaveCheckpoint(l.Dir, t.Params, t.Opt, st, l.Keep) }
	for st.Step < l.Steps {
		if ctx.Err() != nil {
			if err := save(); err != nil {
				return st, err
			}
			return st, ctx.Err()
		}
		start := time.Now()
		var micro []map[string]ort.Value
		var releases []func()
		for k := 0; k < l.Accum; k++ {
			idx := make([]int, 0, l.BatchSize)
			for len(idx) < l.BatchSize {
				if int(st.Cursor) >= len(perm) {
					st.Epoch++
					st.Cursor = 0
					st.RNG, _ = pcg.MarshalBinary()
					perm = rng.Perm(l.Data.Len())
				}
				idx = append(idx, perm[st.Cursor])
				st.Cursor++
			}
			in, rel, err := l.Data.Batch(idx)
			if err != nil {
				return st, fmt.Errorf("train loop: step %d: %w", st.Step+1, err)
			}
			micro = append(micro, in)
			releases = append(releases, rel)
		}
		res, stepErr := t.Step(micro...)
		for _, r := range releases {
			r()
		}
		if stepErr != nil && !res.Skipped {
			return st, fmt.Errorf("train loop: step %d: %w", st.Step+1, stepErr)
		}
		st.Step++
		sl := StepLog{Step: st.Step, Epoch: st.Epoch, Loss: res.Loss, LR: res.LR, GradNorm: res.GradNorm,
			Skipped: res.Skipped, Reason: res.Reason, Warning: res.Warning, Seconds: time.Since(start).Seconds(),
			FwdBwd: res.ForwardBackward.Seconds(), Optim: res.Optimizer.Seconds()}
		js, err := json.Marshal(sl)
		if err != nil {
			return st, fmt.Errorf("train loop: log step %d: %w", st.Step, err)
		}
		if _, err := logf.Write(append(js, '\n')); err != nil {
			return st, fmt.Errorf("train loop: log: %w", err)
		}
		if l.OnStep != nil {
			l.OnStep(sl)
		}
		if stepErr != nil { // too many skipped steps: logged, not saved
			return st, fmt.Errorf("train loop: step %d: %w", st.Step, stepErr)
		}
		if l.CheckpointEvery > 0 && st.Step%l.CheckpointEvery == 0 && st.Step < l.Steps {
			if err := save(); err != nil {
				return st, err
			}
		}
	}
	return st, save()
}

// trimLog drops log lines of steps after the resumed checkpoint (they were
// computed by a run that was interrupted and will be redone).
func (l *Loop) trimLog(step int) error {
	p := filepath.Join(l.Dir, LogFile)
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("train loop: %w", err)
	}
	var keep []byte
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	dropped := false
	for sc.Scan() {
		var sl StepLog
		if json.Unmarshal(sc.Bytes(), &sl) != nil || sl.Step > step {
			dropped = true
			continue
		}
		keep = append(append(keep, sc.Bytes()...), '\n')
	}
	f.Close()
	if !dropped {
		return nil
	}
	return renameio.WriteFile(p, keep, 0o644)
}
