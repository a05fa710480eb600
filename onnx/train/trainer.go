package train

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"runtime/debug"
	"strings"
	"time"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/onnxpb"
	"github.com/tagpr/tagpr/onnx/ort"
)

// TrainerOptions are the optimizer and loop settings.
type TrainerOptions struct {
	Schedule    Schedule
	WeightDecay float64
	ClipNorm    float64 // global-norm clipping; 0 disables
	// NoDecay reports weights exempt from weight decay; nil exempts rank-1
	// weights (biases, norm gains).
	NoDecay func(p *Param) bool
	Session ort.Options
	// Weights, when set, are the storage to train in place (by weight name),
	// e.g. the Data of a generation engine's weight inputs, so rollouts see
	// every update without a copy. Weights not listed are copied from the graph.
	Weights map[string][]float32
	// MaxSkipped is how many steps in a row may be skipped for a non-finite
	// loss or gradient before Step fails with a *DivergedError (0:
	// DefaultMaxSkipped).
	MaxSkipped int
}

// Trainer runs a float32 training graph: weights live in Go (Params), are
// fed to ORT without copies, and AdamW updates them in place.
type Trainer struct {
	Graph  *TrainingGraph
	Params []*Param
	Opt    *AdamW
	Sched  Schedule
	Clip   float64
	// Steps counts calls to Step (applied or skipped); the schedule follows it.
	Steps int

	sess   *ort.Session
	paramT map[string]ort.Value
	// frozenT feeds frozen weights that are graph inputs (FreezeToInputs).
	frozenT map[string]ort.Value
	grads   [][]float32
	gradT   map[string]ort.Value
	acc     *Accumulator
	decay   []bool
	guard   stepGuard
}

// StepResult reports one optimizer step.
type StepResult struct {
	Loss     float64 // mean over the micro-batches
	GradNorm float64 // before clipping
	LR       float64
	Skipped  bool   // no update: the loss or a gradient was not finite
	Reason   string // why it was skipped
	// Warning, when set, reports a run that is not learning (see Trainer.Step).
	Warning string
	// Outputs holds each kept output of the last micro-batch (copied).
	Outputs map[string][]float32
	// ForwardBackward and Optimizer split the step's time (for logs).
	ForwardBackward, Optimizer time.Duration
}

// NewTrainer opens a session on the training graph and takes the weights'
// initial values from it (with tg.ReleaseInitial, out of it).
func NewTrainer(tg *TrainingGraph, o TrainerOptions) (*Trainer, error) {
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("new trainer: %w", err)
	}
	t := &Trainer{Graph: tg, Sched: o.Schedule, Clip: o.ClipNorm, paramT: map[string]ort.Value{}, gradT: map[string]ort.Value{}, frozenT: map[string]ort.Value{}}
	t.guard.maxSkipped, t.guard.chance = o.MaxSkipped, tg.ChanceLoss
	if t.guard.maxSkipped == 0 {
		t.guard.maxSkipped = DefaultMaxSkipped
	}
	sizes := make([]int, len(tg.Params))
	for i, name := range tg.Params {
		init := tg.Initial[name]
		if init == nil {
			return nil, fmt.Errorf("new trainer: the training graph has no initial value for weight %q", name)
		}
		data, err := ir.Float32s(init)
		if err != nil || init.GetDataType() != ir.Float {
			return nil, fmt.Errorf("new trainer: weight %q must be float32 (%s): %v", name, init.GetDataType(), err)
		}
		if shared, ok := o.Weights[name]; ok {
			if len(shared) != len(data) {
				return nil, fmt.Errorf("new trainer: shared storage for weight %q has %d values, want %d", name, len(shared), len(data))
			}
			data = shared
		}
		if err := finiteAtStart(name, data); err != nil {
			return nil, err
		}
		shape := append([]int64{}, init.GetDims()...)
		p := &Param{Name: name, Shape: shape, Data: data}
		p.Decay = len(shape) > 1
		if o.NoDecay != nil {
			p.Decay = !o.NoDecay(p)
		}
		t.Params = append(t.Params, p)
		sizes[i] = len(data)
		t.decay = append(t.decay, p.Decay)
	}
	t.Opt = NewAdamW(sizes, o.WeightDecay)
	t.acc = NewAccumulator(sizes)
	b, err := ir.Marshal(tg.Model)
	if err != nil {
		return nil, fmt.Errorf("new trainer: %w", err)
	}
	// ORT's memory pattern would, from the second step on, allocate one
	// block for all of a step's intermediates beside the arena's own: up to
	// twice the activations' memory (BenchmarkLargeVocab).
	o.Session.NoMemPattern = true
	t.sess, err = ort.NewSession(b, "training graph", o.Session)
	if err != nil {
		return nil, fmt.Errorf("new trainer: %w", err)
	}
	for _, name := range tg.Frozen {
		init := tg.Initial[name]
		data, err := ir.Float32View(init) // frozen weights are only read: one copy serves both
		if err != nil || init.GetDataType() != ir.Float {
			t.Close()
			return nil, fmt.Errorf("new trainer: frozen weight %q must be float32 (%s): %v", name, init.GetDataType(), err)
		}
		if shared, ok := o.Weights[name]; ok && len(shared) == len(data) {
			data = shared
		}
		if err := finiteAtStart(name, data); err != nil {
			t.Close()
			return nil, err
		}
		v, err := ort.NewTensor(shapeOrOne(init.GetDims()), data)
		if err != nil {
			t.Close()
			return nil, fmt.Errorf("new trainer: frozen weight %q: %w", name, err)
		}
		t.frozenT[name] = v
	}
	for _, p := range t.Params {
		v, err := ort.NewTensor(shapeOrOne(p.Shape), p.Data)
		if err != nil {
			t.Close()
			return nil, fmt.Errorf("new trainer: weight %q: %w", p.Name, err)
		}
		t.paramT[p.Name] = v
		g := make([]float32, len(p.Data))
		gv, err := ort.NewTensor(shapeOrOne(p.Shape), g)
		if err != nil {
			t.Close()
			return nil, fmt.Errorf("new trainer: gradient of %q: %w", p.Name, err)
		}
		t.grads = append(t.grads, g)
		t.gradT[tg.Grads[p.Name]] = gv
	}
	if tg.ReleaseInitial {
		for _, p := range t.Params {
			delete(tg.Initial, p.Name)
		}
		// Back to the system now: the first step's activations are ORT's
		// (C) memory, which the Go heap's freed pages would not serve, so
		// without this they stay resident through the step's peak.
		debug.FreeOSMemory()
	}
	return t, nil
}

// finiteAtStart refuses a weight that is not finite before any step: every
// step would be skipped for a NaN loss and nothing could be saved, so the
// model itself is named as damaged.
func finiteAtStart(name string, w []float32) error {
	if i := NonFiniteValue(w); i >= 0 {
		return fmt.Errorf("new trainer: weight %q holds %v at index %d before any training step: the model itself is damaged (export or download it again)", name, w[i], i)
	}
	return nil
}

// Close releases the session and tensors (the Go weight slices stay valid).
func (t *Trainer) Close() {
	if t.sess != nil {
		t.sess.Destroy()
		t.sess = nil
	}
	for _, v := range t.paramT {
		v.Destroy()
	}
	for _, v := range t.gradT {
		v.Destroy()
	}
	for _, v := range t.frozenT {
		v.Destroy()
	}
	t.paramT, t.gradT, t.frozenT = map[string]ort.Value{}, map[string]ort.Value{}, map[string]ort.Value{}
}

// ParamTensors returns the weight tensors by name, for other sessions (the
// generation engine) that take the same weights as inputs.
func (t *Trainer) ParamTensors() map[string]ort.Value { return t.paramT }

// FrozenTensors returns the frozen weights fed as graph inputs
// (FreezeToInputs) by name: a generation engine binds them too, so a LoRA
// run holds its base weights once.
func (t *Trainer) FrozenTensors() map[string]ort.Value { return t.frozenT }

// Grads are the last computed gradients, in Params order.
func (t *Trainer) Grads() [][]float32 { return t.grads }

// Compute runs forward and backward on one batch (the data inputs by name):
// the gradients land in Grads(); it returns the loss and copies of the kept
// outputs.
func (t *Trainer) Compute(batch map[string]ort.Value) (float64, map[string][]float32, error) {
	in := make(map[string]ort.Value, len(batch)+len(t.paramT)+len(t.frozenT))
	for k, v := range batch {
		_, isParam := t.paramT[k]
		_, isFrozen := t.frozenT[k]
		if isParam || isFrozen {
			return 0, nil, fmt.Errorf("train: batch input %q is a weight", k)
		}
		in[k] = v
	}
	for k, v := range t.paramT {
		in[k] = v
	}
	for k, v := range t.frozenT {
		in[k] = v
	}
	res, err := t.sess.Run(in, t.gradT)
	if err != nil {
		return 0, nil, fmt.Errorf("train: %w", err)
	}
	defer res.Destroy()
	l, err := ort.Data[float32](t.Graph.Loss, res.Get(t.Graph.Loss))
	if err != nil {
		return 0, nil, fmt.Errorf("train: %w", err)
	}
	outs := map[string][]float32{}
	for _, k := range t.Graph.Outputs {
		d, err := ort.Data[float32](k, res.Get(k))
		if err == nil {
			outs[k] = append([]float32{}, d...)
		}
	}
	return float64(l[0]), outs, nil
}

// Step computes gradients over the micro-batches, averages them, and — unless
// a loss or gradient is not finite — clips them and applies one AdamW update.
// A skipped step leaves weights and moments untouched; after MaxSkipped
// skipped steps in a row Step fails with a *DivergedError naming the likely
// cause. An update that makes a weight non-finite is an error (the weights
// must then not be saved). When the graph knows its uniform-guess loss
// (ChanceLoss), a loss still at that level chanceWindow steps after warmup
// sets StepResult.Warning, once.
func (t *Trainer) Step(micro ...map[string]ort.Value) (r StepResult, err error) {
	return t.StepWeighted(nil, micro...)
}

// StepWeighted is Step with micro-batch k's loss and gradient weighted by
// weights[k] (summing to 1) instead of 1/len(micro). Loop passes each
// micro-batch's share of the step's loss tokens, so that with token-mean
// losses accumulating micro-batches equals one batch of them all (as
// transformers' Trainer does); nil weights: the plain mean.
func (t *Trainer) StepWeighted(weights []float64, micro ...map[string]ort.Value) (r StepResult, err error) {
	if len(micro) == 0 {
		return StepResult{}, fmt.Errorf("train step: no batch")
	}
	if err := checkMicroWeights(weights, len(micro)); err != nil {
		return StepResult{}, err
	}
	r.LR = t.Sched.LR(t.Steps)
	t.Steps++
	g := t.grads
	start := time.Now()
	defer func() { r.Optimizer = time.Since(start) - r.ForwardBackward }()
	if len(micro) > 1 {
		t.acc.Reset()
	}
	for k, b := range micro {
		l, outs, err := t.Compute(b)
		if err != nil {
			return r, err
		}
		r.Outputs = outs
		switch {
		case weights != nil:
			r.Loss += weights[k] * l
			if len(micro) > 1 {
				err = t.acc.AddScaled(t.grads, float32(weights[k]))
			}
		default:
			r.Loss += l / float64(len(micro))
			if len(micro) > 1 {
				err = t.acc.Add(t.grads)
			}
		}
		if err != nil {
			return r, err
		}
	}
	r.ForwardBackward = time.Since(start)
	if len(micro) > 1 {
		g = t.acc.Sum
		if weights == nil {
			g = t.acc.Mean()
		}
	}
	if !finite(r.Loss) {
		return r, t.skip(&r, fmt.Sprintf("loss is %v", r.Loss))
	}
	r.GradNorm = GlobalNorm(g)
	if !finite(r.GradNorm) {
		return r, t.skip(&r, fmt.Sprintf("gradient of %s is not finite", t.Params[max(NonFinite(g), 0)].Name))
	}
	if applied := r.GradNorm; (t.Clip == 0 || applied < t.Clip) && applied > maxMomentNorm {
		return r, t.skip(&r, fmt.Sprintf("gradient norm %g would overflow the float32 moments", applied))
	}
	clipTo(g, r.GradNorm, t.Clip)
	w := make([][]float32, len(t.Params))
	for i, p := range t.Params {
		w[i] = p.Data
	}
	if err := t.Opt.Update(w, g, r.LR, t.decay); err != nil {
		return r, nonFiniteUpdate(t, err, r.LR)
	}
	r.Warning = t.applied(r.Loss)
	return r, nil
}

// nonFiniteUpdate names the weight an update made non-finite.
func nonFiniteUpdate(t *Trainer, err error, lr float64) error {
	var nf *NonFiniteUpdateError
	if errors.As(err, &nf) {
		return fmt.Errorf("train step %d: the update at learning rate %g made weight %s non-finite: the learning rate is far too high; nothing of this step may be saved",
			t.Steps, lr, t.Params[nf.Param].Name)
	}
	return err
}

// ParamByName returns the weight of that name, or nil.
func (t *Trainer) ParamByName(name string) *Param {
	for _, p := range t.Params {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// SelectParams returns the float initializers of a specialized model whose
// names match any of the patterns (see MatchName), scalars included. With no
// patterns it selects every float initializer with more than one element
// (scalar initializers are exporters' constants: eps, scales) except rotary
// position tables: those that feed Cos or Sin (frequencies) and those named
// like rotary/rope/inv_freq tables (precomputed cos/sin caches).
func SelectParams(sp *Specialized, patterns []string) []string {
	var tables map[string]bool
	if len(patterns) == 0 {
		tables = trigTables(sp.Model.Graph)
	}
	var out []string
	for _, t := range sp.Model.Graph.Initializer {
		if !isFloat(t.GetDataType()) || (len(patterns) == 0 && ir.NumElements(t.GetDims()) <= 1) || strings.HasPrefix(t.GetName(), lossPrefix) ||
			tables[t.GetName()] || (len(patterns) == 0 && rotaryName.MatchString(t.GetName())) {
			continue
		}
		if len(patterns) == 0 || MatchName(t.GetName(), patterns) {
			out = append(out, t.GetName())
		}
	}
	return out
}

var rotaryName = regexp.MustCompile(`(?i)rotary|rope|inv_freq|cos_cached|sin_cached`)

// trigTables lists the initializers from which a Cos or Sin node's input is
// computed: rotary embeddings' frequencies, never trained.
func trigTables(g *onnxpb.GraphProto) map[string]bool {
	producer := map[string]*onnxpb.NodeProto{}
	for _, n := range g.Node {
		for _, o := range n.Output {
			producer[o] = n
		}
	}
	out := map[string]bool{}
	seen := map[string]bool{}
	var walk func(v string)
	walk = func(v string) {
		if seen[v] {
			return
		}
		seen[v] = true
		p, ok := producer[v]
		if !ok {
			out[v] = true
			return
		}
		for _, in := range p.Input {
			walk(in)
		}
	}
	for _, n := range g.Node {
		if n.GetOpType() == "Cos" || n.GetOpType() == "Sin" {
			for _, in := range n.Input {
				walk(in)
			}
		}
	}
	return out
}

// checkMicroWeights refuses weights that are not one finite, non-negative
// value per micro-batch summing to 1 (nil is the plain mean).
func checkMicroWeights(weights []float64, n int) error {
	if weights == nil {
		return nil
	}
	if len(weights) != n {
		return fmt.Errorf("train step: %d weights for %d micro-batches", len(weights), n)
	}
	sum := 0.0
	for k, w := range weights {
		if !(w >= 0) || math.IsInf(w, 0) {
			return fmt.Errorf("train step: micro-batch %d has weight %v: want a finite value >= 0", k, w)
		}
		sum += w
	}
	if math.Abs(sum-1) > 1e-9 {
		return fmt.Errorf("train step: micro-batch weights sum to %v, want 1", sum)
	}
	return nil
}
