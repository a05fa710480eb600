package pipeline

import (
	"path/filepath"
	"strings"

	"github.com/tagpr/tagpr/onnx/train"
	"github.com/tagpr/tagpr/pipeline/tfevents"
)

// runEvents writes the training stages' per-step metrics (as their
// progress reports name them: loss, learning_rate, reward,
// rewards/NAME/mean, kl, clip_ratio/…) as TensorBoard event files in each
// stage's folder (OUT/sft, OUT/prmu, OUT/rl/NAME), so `tensorboard --logdir
// OUT` shows a run as it goes. Each process starts a new file per stage and
// marks its first step as a restart: the steps a resumed stage redoes
// replace what an earlier process logged for them.
type runEvents struct {
	out     string
	writers map[string]*tfevents.Writer
	failed  bool
	warn    func(msg string)
}

// wrap adds event writing to a progress function.
func (e *runEvents) wrap(h train.ProgressFunc) train.ProgressFunc {
	return func(p train.Progress) {
		if dir, ok := eventDir(p.Task); ok && p.Step > 0 && p.Note == "" && len(p.Metrics) > 0 {
			e.write(dir, p.Step, p.Metrics)
		}
		h.Report(p)
	}
}

// eventDir is the folder of a training task's events, relative to the run.
func eventDir(task string) (string, bool) {
	switch {
	case task == StageSFT || task == StagePRMU:
		return task, true
	case strings.HasPrefix(task, StageRL+" "):
		return filepath.Join(StageRL, strings.TrimPrefix(task, StageRL+" ")), true
	}
	return "", false
}

// write logs one step's metrics. A failure to write is reported once and
// ends the event files, not the run: they are a view, the JSONL step logs
// are the record.
func (e *runEvents) write(dir string, step int, metrics map[string]float64) {
	if e.failed {
		return
	}
	w := e.writers[dir]
	var err error
	if w == nil {
		if w, err = tfevents.Create(filepath.Join(e.out, dir)); err == nil {
			err = w.Restart(int64(step))
		}
		if err != nil {
			e.fail(err)
			return
		}
		if e.writers == nil {
			e.writers = map[string]*tfevents.Writer{}
		}
		e.writers[dir] = w
	}
	if err := w.Scalars(int64(step), metrics); err != nil {
		e.fail(err)
	}
}

func (e *runEvents) fail(err error) {
	e.failed = true
	if e.warn != nil {
		e.warn("TensorBoard event files stop here: " + err.Error())
	}
}

func (e *runEvents) close() {
	for _, w := range e.writers {
		w.Close()
	}
	e.writers = nil
}
