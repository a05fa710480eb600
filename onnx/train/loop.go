package train

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
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

// StepLog is one line of the default step's log (JSONL).
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
	// Outputs are the graph's kept one-value outputs of the step's last
	// micro-batch (a pairwise loss's pair_accuracy…).
	Outputs map[string]float64 `json:"outputs,omitempty"`
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

// Metrics implements Metered (Hugging Face Trainer names).
func (s StepLog) Metrics() map[string]float64 {
	m := map[string]float64{"loss": s.Loss, "learning_rate": s.LR, "grad_norm": s.GradNorm, "epoch": float64(s.Epoch)}
	if s.Skipped {
		m["skipped"] = 1
	}
	for k, v := range s.Outputs {
		m[k] = v
	}
	return m
}

// StepFunc does one whole step of a Loop on the examples drawn for it and
// returns the record to log: a value that marshals to a JSON object with
// the step number under "step" (StepLog does). at.Step is the number of
// the step being made (1-based), at.Epoch and at.Cursor where the draw
// left the data. A StepFunc that fails because ctx was cancelled must not
// have changed the weights: the loop then checkpoints the last whole step.
// One that fails with a record (a run that diverged) has its step logged,
// and nothing of it is saved.
type StepFunc func(ctx context.Context, at RunState, examples []int) (record any, err error)

// Hooks add a job's own work to a Loop's life cycle; any may be nil.
type Hooks struct {
	// Start runs once the run state is known (restored from a checkpoint,
	// or Step 0), before the first step: the place to drop outputs of steps
	// the checkpoint does not cover.
	Start func(st RunState) error
	// Checkpoint runs before each checkpoint of st is written: the place to
	// make durable what the checkpoint covers.
	Checkpoint func(st RunState) error
}

// Loop runs a training job step by step and keeps what a resume needs:
// shuffled epochs from a seeded generator, the data cursor, checkpoints
// every N steps (weights, AdamW moments, generator state, cursor), and a
// JSONL log trimmed back to the checkpoint on resume, so an interrupted run
// continues bit for bit. Each step draws BatchSize·Accum examples and by
// default feeds them to the Trainer as Accum micro-batches of Data; Step
// replaces that (an RL step generates its own batch from the drawn
// prompts). Every job of tagpr that trains (SFT, RL, PRMU) runs in a Loop.
type Loop struct {
	Trainer *Trainer // its weights and moments are checkpointed
	// Device, when set (a DeviceTrainer over Trainer), runs the default
	// steps with weights and moments on the device; checkpoints download
	// them first and a resume uploads them.
	Device *DeviceTrainer
	// Data is what the default step trains on; with Step set it may be
	// nil, and Examples says how many examples there are to draw from.
	Data      Dataset
	Examples  int
	BatchSize int // examples per micro-batch
	Accum     int // micro-batches per step (default 1)
	Steps     int // total steps
	// Dir holds the checkpoints and the log; "" keeps nothing (a job of
	// seconds: a cancelled run is lost).
	Dir string
	// CheckpointEvery is in steps; 0: only at the end (and on cancel).
	CheckpointEvery int
	Keep            int // checkpoints kept (default 2)
	// ExportBytes is what the caller writes on Dir's filesystem after the
	// run (the trained model), counted in the disk check before the first
	// step (a *DiskError when the free space is short).
	ExportBytes int64
	// Seed and Stream seed the generator that shuffles the examples
	// (PCG(Seed, Stream); Stream 0 → 0x7a9).
	Seed, Stream uint64
	// LogFile names the JSONL step log in Dir (default LogFile).
	LogFile string
	// Step replaces the default step; UpdatesPerStep is how many optimizer
	// updates it makes (the learning-rate schedule's clock; default 1).
	Step           StepFunc
	UpdatesPerStep int
	// Stage names the job in its checkpoints and progress reports.
	Stage string
	// Settings, when set, are recorded in Dir (run.json) by a fresh run and
	// must match on resume (a *SettingsMismatchError otherwise).
	Settings RunSettings
	Hooks    Hooks
	// Progress hears of every step (Task is Stage, Metrics the record's
	// when it is Metered) and of a resume (a Note).
	Progress ProgressFunc
}

// LogFile is the default step log beside the checkpoints.
const LogFile = "train_log.jsonl"

// Run trains until Steps are done or ctx is cancelled; either way it leaves
// a checkpoint of the last completed step. It resumes from Dir's newest
// checkpoint when there is one (with the same Settings). It holds Dir's run
// lock (LockRunDir) while it runs: another process, or another Loop of this
// one, is refused with a *LockedError.
func (l *Loop) Run(ctx context.Context) (RunState, error) {
	if l.Accum <= 0 {
		l.Accum = 1
	}
	if l.UpdatesPerStep <= 0 {
		l.UpdatesPerStep = 1
	}
	if l.LogFile == "" {
		l.LogFile = LogFile
	}
	if l.Data != nil {
		l.Examples = l.Data.Len()
	}
	if l.Step == nil && l.Data == nil {
		return RunState{}, fmt.Errorf("train loop: no data and no step")
	}
	if l.BatchSize <= 0 || l.Examples <= 0 {
		return RunState{}, fmt.Errorf("train loop: batch size %d over %d examples", l.BatchSize, l.Examples)
	}
	if l.Stream == 0 {
		l.Stream = 0x7a9
	}
	t := l.Trainer
	pcg := rand.NewPCG(l.Seed, l.Stream)
	persist := l.Dir != ""
	var st RunState
	var resumed bool
	if persist {
		lk, err := LockRunDir(l.Dir)
		if err != nil {
			return RunState{}, fmt.Errorf("train loop: %w", err)
		}
		defer lk.Unlock()
		release, err := lk.claimLoop(l.Dir)
		if err != nil {
			return RunState{}, fmt.Errorf("train loop: %w", err)
		}
		defer release()
		if l.Settings != nil {
			if err := l.Settings.CheckOrRecord(l.Dir); err != nil {
				return RunState{}, err
			}
		}
		if st, resumed, err = l.restore(pcg); err != nil {
			return st, err
		}
		if st.Step < l.Steps {
			if err := l.checkDisk(); err != nil {
				return st, err
			}
		}
	} else {
		st = RunState{Stage: l.Stage}
	}
	// saved is the step of the newest checkpoint on disk (-1: none yet).
	saved := -1
	if resumed {
		saved = st.Step
	}
	t.Steps = st.Step * l.UpdatesPerStep
	var logf *os.File
	if persist {
		logPath := filepath.Join(l.Dir, l.LogFile)
		if err := TrimLog(logPath, st.Step); err != nil {
			return st, fmt.Errorf("train loop: %w", err)
		}
		var err error
		if logf, err = os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); err != nil {
			return st, fmt.Errorf("train loop: %w", err)
		}
		defer logf.Close()
	}
	if l.Hooks.Start != nil {
		if err := l.Hooks.Start(st); err != nil {
			return st, err
		}
	}
	step := l.Step
	if step == nil {
		step = l.defaultStep
	}
	// The permutation of the current epoch comes from the generator state
	// saved at the epoch's start (st.RNG).
	rng := rand.New(pcg)
	perm := rng.Perm(l.Examples)
	save := func() error {
		if err := l.Device.syncIfAny(); err != nil {
			return err
		}
		if !persist || st.Step == saved {
			return nil
		}
		if l.Hooks.Checkpoint != nil {
			if err := l.Hooks.Checkpoint(st); err != nil {
				return err
			}
		}
		if err := SaveCheckpoint(l.Dir, t.Params, t.Opt, st, l.Keep); err != nil {
			return err
		}
		saved = st.Step
		return nil
	}
	stopped := func() (RunState, error) {
		if err := save(); err != nil {
			return st, err
		}
		if persist && st.Step > 0 { // say what a rerun resumes from
			l.Progress.Report(Progress{Task: l.Stage, Step: st.Step, Total: l.Steps, Note: fmt.Sprintf("stopped after step %d of %d; checkpoint in %s, where a rerun resumes", st.Step, l.Steps, l.Dir)})
		}
		return st, ctx.Err()
	}
	for st.Step < l.Steps {
		if ctx.Err() != nil {
			return stopped()
		}
		// next is st once this step is done; st stays the last whole step's
		// state until then, for the checkpoint of a cancelled step.
		next := st
		idx := make([]int, 0, l.BatchSize*l.Accum)
		for len(idx) < cap(idx) {
			if int(next.Cursor) >= len(perm) {
				next.Epoch++
				next.Cursor = 0
				next.RNG, _ = pcg.MarshalBinary()
				perm = rng.Perm(l.Examples)
			}
			idx = append(idx, perm[next.Cursor])
			next.Cursor++
		}
		next.Step++
		rec, stepErr := step(ctx, next, idx)
		if stepErr != nil && rec == nil {
			if ctx.Err() != nil {
				return stopped()
			}
			return st, fmt.Errorf("train loop: step %d: %w", next.Step, stepErr)
		}
		st = next
		if logf != nil {
			js, err := json.Marshal(rec)
			if err != nil {
				return st, fmt.Errorf("train loop: log step %d: %w", st.Step, err)
			}
			if _, err := logf.Write(append(js, '\n')); err != nil {
				return st, fmt.Errorf("train loop: log: %w", err)
			}
		}
		p := Progress{Task: l.Stage, Step: st.Step, Total: l.Steps}
		if m, ok := rec.(Metered); ok {
			p.Metrics = m.Metrics()
		}
		if sl, ok := rec.(StepLog); ok {
			p.Warning = sl.Warning
			if sl.Skipped {
				p.Warning = strings.TrimPrefix(p.Warning+"; skipped: "+sl.Reason, "; ")
			}
		}
		l.Progress.Report(p)
		if stepErr != nil { // a step that failed after changing weights: logged, not saved
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

// restore loads the newest checkpoint into the trainer and pcg (resumed),
// or starts a fresh run state.
func (l *Loop) restore(pcg *rand.PCG) (st RunState, resumed bool, err error) {
	t := l.Trainer
	st, err = LoadCheckpoint(l.Dir, t.Params, t.Opt)
	switch {
	case errors.Is(err, ErrNoCheckpoint):
		st = RunState{Stage: l.Stage}
		st.RNG, _ = pcg.MarshalBinary()
		return st, false, nil
	case err != nil:
		return st, false, err
	}
	if err := pcg.UnmarshalBinary(st.RNG); err != nil {
		return st, false, fmt.Errorf("train loop: checkpoint in %s: generator state: %w", l.Dir, err)
	}
	if err := l.Device.loadIfAny(); err != nil {
		return st, false, err
	}
	if st.Step > 0 {
		l.Progress.Report(Progress{Task: l.Stage, Step: st.Step, Total: l.Steps, Note: fmt.Sprintf("resuming after step %d of %d", st.Step, l.Steps)})
	}
	return st, true, nil
}

// defaultStep trains on Accum micro-batches of Data.
func (l *Loop) defaultStep(_ context.Context, at RunState, idx []int) (any, error) {
	start := time.Now()
	var micro []map[string]ort.Value
	var releases []func()
	defer func() {
		for _, r := range releases {
			r()
		}
	}()
	for k := 0; k < l.Accum; k++ {
		in, rel, err := l.Data.Batch(idx[k*l.BatchSize : (k+1)*l.BatchSize])
		if err != nil {
			return nil, err
		}
		micro = append(micro, in)
		releases = append(releases, rel)
	}
	weights, err := l.microWeights(idx)
	if err != nil {
		return nil, err
	}
	step := l.Trainer.StepWeighted
	if l.Device != nil {
		step = l.Device.StepWeighted
	}
	res, err := step(weights, micro...)
	if err != nil && !res.Skipped {
		return nil, err
	}
	sl := StepLog{Step: at.Step, Epoch: at.Epoch, Loss: res.Loss, LR: res.LR, GradNorm: res.GradNorm,
		Skipped: res.Skipped, Reason: res.Reason, Warning: res.Warning, Seconds: time.Since(start).Seconds(),
		FwdBwd: res.ForwardBackward.Seconds(), Optim: res.Optimizer.Seconds()}
	for k, v := range res.Outputs {
		if len(v) == 1 {
			if sl.Outputs == nil {
				sl.Outputs = map[string]float64{}
			}
			sl.Outputs[k] = float64(v[0])
		}
	}
	return sl, err // err: too many skipped steps in a row (logged, not saved)
}

// LossTokenCounter is a Dataset whose batches' losses are means over loss
// tokens (LMDataset): with Accum > 1, Loop weighs each micro-batch by its
// share of the step's loss tokens, so a step's loss and gradient are those
// of one batch of all its examples whatever their lengths (an equal-weight
// mean of micro-batch means gave 13.546 for a batch's 13.693 on rows of
// unequal length).
type LossTokenCounter interface {
	LossTokens(idx []int) (int, error)
}

// microWeights are the step's micro-batch weights (nil: the plain mean,
// for one micro-batch or a Dataset that does not count loss tokens).
func (l *Loop) microWeights(idx []int) ([]float64, error) {
	c, ok := l.Data.(LossTokenCounter)
	if !ok || l.Accum == 1 {
		return nil, nil
	}
	n := make([]float64, l.Accum)
	total := 0.0
	for k := range n {
		m, err := c.LossTokens(idx[k*l.BatchSize : (k+1)*l.BatchSize])
		if err != nil {
			return nil, err
		}
		n[k] = float64(m)
		total += n[k]
	}
	if total == 0 {
		return nil, nil // no targets anywhere: the gradient is 0 either way
	}
	for k := range n {
		n[k] /= total
	}
	return n, nil
}

// TrimLog keeps the lines of a JSONL step log whose "step" is ≤ step (the
// later ones were computed by a run that was interrupted and will be
// redone). A broken last line (a crash while writing it) is dropped; a
// broken line before it is an error naming the file and line. A missing log
// is an empty one.
func TrimLog(path string, step int) error {
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	lines := bytes.SplitAfter(raw, []byte("\n"))
	if len(lines[len(lines)-1]) == 0 {
		lines = lines[:len(lines)-1]
	}
	var keep []byte
	dropped := false
	for i, line := range lines {
		var rec struct {
			Step *int `json:"step"`
		}
		if json.Unmarshal(line, &rec) != nil || rec.Step == nil || line[len(line)-1] != '\n' {
			if i < len(lines)-1 {
				return fmt.Errorf("step log %s: line %d is not a step record", path, i+1)
			}
			dropped = true
			continue
		}
		if *rec.Step > step {
			dropped = true
			continue
		}
		keep = append(keep, line...)
	}
	if !dropped {
		return nil
	}
	return renameio.WriteFile(path, keep, 0o644)
}

// ReadLog decodes every line of a JSONL step log into a T; a missing log
// is empty, and a last line cut by a crash is left out.
func ReadLog[T any](path string) ([]T, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read step log: %w", err)
	}
	defer f.Close()
	var out []T
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	var broken error
	for line := 1; sc.Scan(); line++ {
		if broken != nil {
			return nil, broken
		}
		var v T
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			broken = fmt.Errorf("read step log %s: line %d: %w", path, line, err)
			continue
		}
		out = append(out, v)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read step log %s: %w", path, err)
	}
	return out, nil
}
