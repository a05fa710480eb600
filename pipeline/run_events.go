package pipeline

import (
	"encoding/json"
	"path/filepath"

	"github.com/tagpr/tagpr/onnx/train"
	"github.com/tagpr/tagpr/pipeline/tfevents"
)

// runEvents writes the training stages' per-step scalars as TensorBoard
// event files in each stage's folder (OUT/sft, OUT/prmu, OUT/rl/NAME), so
// `tensorboard --logdir OUT` shows a run as it goes. Each process starts a
// new file per stage and marks its first step as a restart: the steps a
// resumed stage redoes replace what an earlier process logged for them.
type runEvents struct {
	out     string
	writers map[string]*tfevents.Writer
	failed  bool
	warn    func(msg string)
}

// wrap adds event writing to the step hooks of h.
func (e *runEvents) wrap(h Hooks) Hooks {
	sft, rl, prmu := h.SFTStep, h.RLStep, h.PRMUStep
	h.SFTStep = func(l train.StepLog, total int) {
		e.write(StageSFT, l.Step, l)
		if sft != nil {
			sft(l, total)
		}
	}
	h.RLStep = func(l RLStepLog, total int) {
		e.write(filepath.Join(StageRL, l.Stage), l.Step, l)
		if rl != nil {
			rl(l, total)
		}
	}
	h.PRMUStep = func(step, total int, loss, acc float64) {
		e.write(StagePRMU, step, map[string]float64{"loss": loss, "pair_accuracy": acc})
		if prmu != nil {
			prmu(step, total, loss, acc)
		}
	}
	return h
}

// write logs every number of a step's log line (nested fields joined with
// "/", e.g. rewards/r_task/mean) under the stage's folder. A failure to
// write is reported once and ends the event files, not the run: they are
// a view, the JSONL logs are the record.
func (e *runEvents) write(stage string, step int, v any) {
	if e.failed {
		return
	}
	w := e.writers[stage]
	var err error
	if w == nil {
		if w, err = tfevents.Create(filepath.Join(e.out, stage)); err == nil {
			err = w.Restart(int64(step))
		}
		if err != nil {
			e.fail(err)
			return
		}
		if e.writers == nil {
			e.writers = map[string]*tfevents.Writer{}
		}
		e.writers[stage] = w
	}
	values := map[string]float64{}
	raw, err := json.Marshal(v)
	if err == nil {
		var tree any
		if err = json.Unmarshal(raw, &tree); err == nil {
			flattenNumbers("", tree, values)
		}
	}
	delete(values, "step")
	if err == nil {
		err = w.Scalars(int64(step), values)
	}
	if err != nil {
		e.fail(err)
	}
}

func (e *runEvents) fail(err error) {
	e.failed = true
	if e.warn != nil {
		e.warn("TensorBoard event files stop here: " + err.Error())
	}
}

// flattenNumbers collects the numbers of a decoded JSON tree by path.
func flattenNumbers(prefix string, v any, out map[string]float64) {
	switch x := v.(type) {
	case float64:
		out[prefix] = x
	case map[string]any:
		for k, c := range x {
			p := k
			if prefix != "" {
				p = prefix + "/" + k
			}
			flattenNumbers(p, c, out)
		}
	}
}

func (e *runEvents) close() {
	for _, w := range e.writers {
		w.Close()
	}
	e.writers = nil
}
