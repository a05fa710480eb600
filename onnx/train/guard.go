package train

import (
	"fmt"
	"math"
)

// The numerics guard: settings are checked before any work, a step whose
// loss or gradient is not finite is skipped (weights and moments untouched),
// a run of skipped steps stops training with the likely cause, an update that
// would make a weight or moment non-finite is an error, and a loss that stays
// at the uniform-guess level after warmup is reported. Writers (safetensors,
// Export) refuse non-finite values on their own, so nothing non-finite is
// ever saved.

// DefaultMaxSkipped is how many steps in a row may be skipped for a
// non-finite loss or gradient before Step fails (TrainerOptions.MaxSkipped).
const DefaultMaxSkipped = 5

// maxMomentNorm bounds the (clipped) gradient norm of an applied step: the
// second moment holds g² in float32, which overflows from |g| ≈ 1.8e19.
const maxMomentNorm = 1e19

// chanceWindow is how many steps after warmup the loss is averaged over
// before it is compared with the uniform-guess level.
const chanceWindow = 10

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

// Validate refuses settings that cannot train, each with its range.
func (o TrainerOptions) Validate() error {
	if err := o.Schedule.Validate(); err != nil {
		return err
	}
	switch {
	case !finite(o.WeightDecay) || o.WeightDecay < 0:
		return fmt.Errorf("weight decay %v: want a finite value ≥ 0", o.WeightDecay)
	case o.Schedule.Peak*o.WeightDecay >= 1:
		return fmt.Errorf("weight decay %v at learning rate %v: want lr·weight_decay < 1 (each step multiplies weights by 1 − lr·weight_decay)", o.WeightDecay, o.Schedule.Peak)
	case !finite(o.ClipNorm) || o.ClipNorm < 0:
		return fmt.Errorf("gradient clipping norm %v: want a finite value ≥ 0 (0: off)", o.ClipNorm)
	case o.MaxSkipped < 0:
		return fmt.Errorf("max skipped steps %d: want ≥ 1 (0: the default %d)", o.MaxSkipped, DefaultMaxSkipped)
	}
	return nil
}

// DivergedError is Step's error after MaxSkipped steps in a row were skipped.
type DivergedError struct {
	Skipped int     // steps skipped in a row
	Reason  string  // why the last one was skipped
	Applied int     // updates applied by this trainer before the skips began
	Peak    float64 // the schedule's peak learning rate
	Clip    float64
}

func (e *DivergedError) Error() string {
	msg := fmt.Sprintf("%d steps in a row skipped (the last: %s)", e.Skipped, e.Reason)
	if e.Applied == 0 {
		return msg + ": the loss is not finite from the start, before any update: the model, its settings (e.g. LoRA alpha) or the data produce non-finite values"
	}
	msg += fmt.Sprintf(" after %d applied update(s): training diverged; the learning rate %g is likely too high", e.Applied, e.Peak)
	if e.Clip == 0 {
		msg += " (and gradient clipping is off)"
	}
	return msg
}

// stepGuard holds the trainer's guard state.
type stepGuard struct {
	maxSkipped int
	skipped    int // consecutive skipped steps
	applied    int // updates applied by this trainer
	// chance is the loss of a uniform guess (TrainingGraph.ChanceLoss), 0 if
	// unknown; recent holds the losses of the last steps after warmup.
	chance float64
	recent []float64
	warned bool
}

// skip records a skipped step; it returns a *DivergedError once maxSkipped
// steps in a row were skipped.
func (t *Trainer) skip(r *StepResult, reason string) error {
	r.Skipped, r.Reason = true, reason
	g := &t.guard
	g.skipped++
	g.recent = g.recent[:0]
	if g.skipped >= g.maxSkipped {
		return &DivergedError{Skipped: g.skipped, Reason: reason, Applied: g.applied, Peak: t.Sched.Peak, Clip: t.Clip}
	}
	return nil
}

// applied records an applied step and returns a warning, once per trainer,
// when the loss over chanceWindow steps after warmup has stayed at (or above)
// the uniform-guess level.
func (t *Trainer) applied(loss float64) string {
	g := &t.guard
	g.skipped = 0
	g.applied++
	if g.chance <= 0 || g.warned || t.Steps <= t.Sched.Warmup {
		return ""
	}
	g.recent = append(g.recent, loss)
	if len(g.recent) > chanceWindow {
		g.recent = g.recent[1:]
	}
	if len(g.recent) < chanceWindow {
		return ""
	}
	mean := 0.0
	for _, l := range g.recent {
		mean += l / chanceWindow
	}
	if mean < 0.95*g.chance {
		return ""
	}
	g.warned = true
	if mean > 1.5*g.chance {
		return fmt.Sprintf("the loss (%.4g over the last %d steps) is far above the uniform-guess level %.4g after warmup: training diverged (learning rate %g too high?)",
			mean, chanceWindow, g.chance, t.Sched.Peak)
	}
	return fmt.Sprintf("the loss (%.4g over the last %d steps) has stayed at the uniform-guess level %.4g since warmup ended: the model is not learning (learning rate %g too high or too low?)",
		mean, chanceWindow, g.chance, t.Sched.Peak)
}

// NonFiniteUpdateError is AdamW.Update's error when the update made a
// weight or its second moment NaN or ±Inf (a learning rate far too high, or
// weights already at float32's limits). The weights are then unusable; the
// run must stop without saving them.
type NonFiniteUpdateError struct {
	Param int     // index of the first such weight
	LR    float64 // the learning rate of the update
}

func (e *NonFiniteUpdateError) Error() string {
	return fmt.Sprintf("adamw: the update at learning rate %g made weight %d non-finite", e.LR, e.Param)
}

// NonFiniteValue returns the index of the first NaN or ±Inf in x, or -1.
func NonFiniteValue[T float32 | float64](x []T) int {
	for i, v := range x {
		if v-v != 0 {
			return i
		}
	}
	return -1
}
