package train

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/ort"
)

// DeviceTrainer runs a Trainer's steps with the weights, gradients and AdamW
// moments kept in device tensors between steps (ORT IO binding; with CUDA
// they live on the GPU). The training graph reads the weights where they
// are and writes the gradients into device tensors; a second graph (the
// AdamW update, built here) reads weights, gradients and moments and writes
// the new weights and moments back in place; a third sums the squared
// gradients per weight for the global norm and the clipping. Per step only
// the batch goes in and the loss, the kept outputs, one squared-gradient
// sum and one finiteness check per weight, and the optimizer's scalars
// cross (ort.TransferCounts counts them).
//
// The update does the float32 operations of AdamW.Update in the same order,
// so on the CPU device the weights and moments equal the host Trainer's bit
// for bit. The global norm is summed in float64 per weight on the device
// (in another order than GlobalNorm's), so GradNorm may differ in its last
// bits, and with clipping active so may the clip factor.
//
// The Trainer's Go slices (Params' Data, Opt.M and Opt.V) are not updated by
// Step: Sync downloads them (before a checkpoint or an export).
type DeviceTrainer struct {
	T   *Trainer
	dev ort.Device

	weights, grads, acc []*ort.DeviceTensor // Params order
	moments             [2][]*ort.DeviceTensor
	frozen              map[string]*ort.DeviceTensor
	owned               []*ort.DeviceTensor // released by Close
	bind                *ort.Binding        // the training graph's

	update, norm, sum *deviceGraph
	scale             *deviceGraph // a weighted step's first micro-batch: acc = g·w
	scalars           map[string]*ort.Tensor[float32]
	accWeight         *ort.Tensor[float32] // w of the sum and scale graphs
	loss              *ort.Tensor[float32]
	sumsq             *ort.Tensor[float64]
	check             *ort.Tensor[float32]
}

// deviceGraph is a small graph session run through an IO binding.
type deviceGraph struct {
	sess *ort.Session
	bind *ort.Binding
}

func (g *deviceGraph) close() {
	if g != nil {
		g.bind.Close()
		g.sess.Destroy()
	}
}

// adamScalars are the update graph's scalar inputs, each a [1] float32.
var adamScalars = []string{"beta1", "one_minus_beta1", "beta2", "one_minus_beta2", "step_size", "inv_sqrt_bc2", "eps", "shrink", "grad_inv", "grad_scale"}

// NewDeviceTrainer moves t's weights (those in shared are used as they are:
// the device copies a generation model reads, see lm.Model.UploadWeights),
// frozen weights and AdamW moments to the device of session (its provider
// and device ordinal) and allocates the gradients there.
func NewDeviceTrainer(t *Trainer, session ort.Options, shared map[string]*ort.DeviceTensor) (*DeviceTrainer, error) {
	d := &DeviceTrainer{T: t, dev: ort.DeviceFor(session), frozen: map[string]*ort.DeviceTensor{}}
	fail := func(err error) (*DeviceTrainer, error) {
		d.Close()
		return nil, fmt.Errorf("device trainer on %s: %w", d.dev, err)
	}
	own := func(tt *ort.DeviceTensor, err error) (*ort.DeviceTensor, error) {
		if err == nil {
			d.owned = append(d.owned, tt)
		}
		return tt, err
	}
	s := t.sess
	for i, p := range t.Params {
		shape := shapeOrOne(p.Shape)
		w := shared[p.Name]
		var err error
		if w != nil {
			if !slices.Equal(w.Shape(), shape) || w.Device() != d.dev {
				return fail(fmt.Errorf("shared weight %q is %v on %s, want %v on %s", p.Name, w.Shape(), w.Device(), shape, d.dev))
			}
		} else if w, err = own(ort.Upload(s, d.dev, shape, p.Data)); err != nil {
			return fail(fmt.Errorf("weight %q: %w", p.Name, err))
		}
		g, err := own(ort.NewDeviceTensor[float32](s, d.dev, shape))
		if err != nil {
			return fail(fmt.Errorf("gradient of %q: %w", p.Name, err))
		}
		d.weights, d.grads = append(d.weights, w), append(d.grads, g)
		for k, host := range [2][][]float32{t.Opt.M, t.Opt.V} {
			m, err := own(ort.Upload(s, d.dev, shape, host[i]))
			if err != nil {
				return fail(fmt.Errorf("moment of %q: %w", p.Name, err))
			}
			d.moments[k] = append(d.moments[k], m)
		}
	}
	for name, v := range t.frozenT {
		w := shared[name]
		if w == nil {
			data, err := ort.Data[float32](name, v)
			if err != nil {
				return fail(err)
			}
			if w, err = own(ort.Upload(s, d.dev, v.GetShape(), data)); err != nil {
				return fail(fmt.Errorf("frozen weight %q: %w", name, err))
			}
		}
		d.frozen[name] = w
	}
	var err error
	if d.bind, err = s.NewBinding(); err != nil {
		return fail(err)
	}
	for i, p := range t.Params {
		if err := d.bind.BindDeviceInput(p.Name, d.weights[i]); err != nil {
			return fail(err)
		}
		if err := d.bind.BindDeviceOutput(t.Graph.Grads[p.Name], d.grads[i]); err != nil {
			return fail(err)
		}
	}
	for name, w := range d.frozen {
		if err := d.bind.BindDeviceInput(name, w); err != nil {
			return fail(err)
		}
	}
	if d.loss, err = ort.NewTensor([]int64{1}, make([]float32, 1)); err != nil {
		return fail(err)
	}
	if err := d.bind.BindOutput(t.Graph.Loss, d.loss); err != nil {
		return fail(err)
	}
	for _, k := range t.Graph.Outputs {
		if err := d.bind.BindOutputTo(k, d.dev); err != nil {
			return fail(err)
		}
	}
	if err := d.buildGraphs(session); err != nil {
		return fail(err)
	}
	return d, nil
}

// DeviceTrainerFor is NewDeviceTrainer (no shared weights) when session
// runs on a GPU, and nil on the CPU, where the host Trainer already feeds
// ORT its Go memory without copies. A Loop takes either.
func DeviceTrainerFor(t *Trainer, session ort.Options) (*DeviceTrainer, error) {
	if ort.DeviceFor(session).Provider == "cpu" {
		return nil, nil
	}
	return NewDeviceTrainer(t, session, nil)
}

// buildGraphs makes the update, norm and accumulation graphs and binds
// their device tensors once.
func (d *DeviceTrainer) buildGraphs(session ort.Options) error {
	ps := d.T.Params
	so := session
	so.Outputs = nil
	so.OptLevel = "basic" // no fusion may reorder AdamW's float32 operations
	open := func(name string, build func(g *ir.Graph)) (*deviceGraph, error) {
		g := ir.NewGraph(name)
		build(g)
		pm, err := ir.NewModel(g, 0)
		if err != nil {
			return nil, fmt.Errorf("%s graph: %w", name, err)
		}
		b, err := ir.Marshal(pm)
		if err != nil {
			return nil, fmt.Errorf("%s graph: %w", name, err)
		}
		sess, err := ort.NewSession(b, name, so)
		if err != nil {
			return nil, err
		}
		bind, err := sess.NewBinding()
		if err != nil {
			sess.Destroy()
			return nil, err
		}
		return &deviceGraph{sess: sess, bind: bind}, nil
	}
	var err error
	// The update: the operations of AdamW.Update, per weight.
	d.update, err = open("tagpr_adamw_update", func(g *ir.Graph) {
		for _, n := range adamScalars {
			g.Input(n, ir.Float, 1)
		}
		var checks []string
		for i, p := range ps {
			dims := dimsOf(shapeOrOne(p.Shape))
			w, gr, m, v := g.Input(fmt.Sprintf("w%d", i), ir.Float, dims...), g.Input(fmt.Sprintf("g%d", i), ir.Float, dims...),
				g.Input(fmt.Sprintf("m%d", i), ir.Float, dims...), g.Input(fmt.Sprintf("v%d", i), ir.Float, dims...)
			gr = g.Op("Mul", []string{g.Op("Mul", []string{gr, "grad_inv"}), "grad_scale"})
			m2 := g.Node("Add", []string{g.Op("Mul", []string{"beta1", m}), g.Op("Mul", []string{"one_minus_beta1", gr})}, []string{fmt.Sprintf("m%d_new", i)})[0]
			v2 := g.Node("Add", []string{g.Op("Mul", []string{"beta2", v}), g.Op("Mul", []string{g.Op("Mul", []string{"one_minus_beta2", gr}), gr})}, []string{fmt.Sprintf("v%d_new", i)})[0]
			denom := g.Op("Add", []string{g.Op("Mul", []string{g.Op("Sqrt", []string{v2}), "inv_sqrt_bc2"}), "eps"})
			ws := w
			if d.T.decay[i] {
				ws = g.Op("Mul", []string{w, "shrink"})
			}
			w2 := g.Node("Sub", []string{ws, g.Op("Div", []string{g.Op("Mul", []string{"step_size", m2}), denom})}, []string{fmt.Sprintf("w%d_new", i)})[0]
			// x−x is 0 for finite x and NaN otherwise: the sum says whether
			// the new weight or second moment holds a NaN or ±Inf.
			chk := g.Op("Add", []string{g.Op("Sub", []string{w2, w2}), g.Op("Sub", []string{v2, v2})})
			checks = append(checks, g.Op("Reshape", []string{g.Op("ReduceSum", []string{chk}, ir.AttrInt("keepdims", 0)), oneShape(g)}))
			for _, o := range []string{w2, m2, v2} {
				g.Output(o, ir.Float, dims...)
			}
		}
		g.Node("Concat", checks, []string{"check"}, ir.AttrInt("axis", 0))
		g.Output("check", ir.Float, len(ps))
	})
	if err != nil {
		return err
	}
	// The norm: Σ (g·grad_inv)² per weight, in float64.
	d.norm, err = open("tagpr_grad_sumsq", func(g *ir.Graph) {
		g.Input("grad_inv", ir.Float, 1)
		var sums []string
		for i, p := range ps {
			gr := g.Op("Mul", []string{g.Input(fmt.Sprintf("g%d", i), ir.Float, dimsOf(shapeOrOne(p.Shape))...), "grad_inv"})
			sq := g.Op("ReduceSumSquare", []string{g.Op("Cast", []string{gr}, ir.AttrInt("to", int64(ir.Double)))}, ir.AttrInt("keepdims", 0))
			sums = append(sums, g.Op("Reshape", []string{sq, oneShape(g)}))
		}
		g.Node("Concat", sums, []string{"sumsq"}, ir.AttrInt("axis", 0))
		g.Output("sumsq", ir.Double, len(ps))
	})
	if err != nil {
		return err
	}
	// Accumulation over micro-batches: acc += g·w, in place (w is 1 for
	// the plain mean, and x·1 is x: the unweighted sums are as before).
	d.sum, err = open("tagpr_grad_accumulate", func(g *ir.Graph) {
		g.Input("acc_weight", ir.Float, 1)
		for i, p := range ps {
			dims := dimsOf(shapeOrOne(p.Shape))
			a := g.Input(fmt.Sprintf("a%d", i), ir.Float, dims...)
			gr := g.Op("Mul", []string{g.Input(fmt.Sprintf("g%d", i), ir.Float, dims...), "acc_weight"})
			g.Output(g.Node("Add", []string{a, gr}, []string{fmt.Sprintf("a%d_new", i)})[0], ir.Float, dims...)
		}
	})
	if err != nil {
		return err
	}
	d.scale, err = open("tagpr_grad_scale", func(g *ir.Graph) {
		g.Input("acc_weight", ir.Float, 1)
		for i, p := range ps {
			dims := dimsOf(shapeOrOne(p.Shape))
			gr := g.Input(fmt.Sprintf("g%d", i), ir.Float, dims...)
			g.Output(g.Node("Mul", []string{gr, "acc_weight"}, []string{fmt.Sprintf("a%d_new", i)})[0], ir.Float, dims...)
		}
	})
	if err != nil {
		return err
	}
	if d.accWeight, err = ort.NewTensor([]int64{1}, []float32{1}); err != nil {
		return err
	}
	for _, b := range []*ort.Binding{d.sum.bind, d.scale.bind} {
		if err := b.BindInput("acc_weight", d.accWeight); err != nil {
			return err
		}
	}
	d.scalars = map[string]*ort.Tensor[float32]{}
	for _, n := range adamScalars {
		v, err := ort.NewTensor([]int64{1}, make([]float32, 1))
		if err != nil {
			return err
		}
		d.scalars[n] = v
		if n == "grad_inv" {
			if err := d.norm.bind.BindInput(n, v); err != nil {
				return err
			}
		}
		if err := d.update.bind.BindInput(n, v); err != nil {
			return err
		}
	}
	if d.sumsq, err = ort.NewTensor([]int64{int64(len(ps))}, make([]float64, len(ps))); err != nil {
		return err
	}
	if d.check, err = ort.NewTensor([]int64{int64(len(ps))}, make([]float32, len(ps))); err != nil {
		return err
	}
	if err := d.norm.bind.BindOutput("sumsq", d.sumsq); err != nil {
		return err
	}
	if err := d.update.bind.BindOutput("check", d.check); err != nil {
		return err
	}
	for i := range ps {
		b := d.update.bind
		for _, in := range []struct {
			name string
			t    *ort.DeviceTensor
		}{{"w", d.weights[i]}, {"m", d.moments[0][i]}, {"v", d.moments[1][i]}} {
			if err := b.BindDeviceInput(fmt.Sprintf("%s%d", in.name, i), in.t); err != nil {
				return err
			}
			// In place: each new value is written over the old one after
			// the old one's only reader has run (see the graph above).
			if err := b.BindDeviceOutput(fmt.Sprintf("%s%d_new", in.name, i), in.t); err != nil {
				return err
			}
		}
		if err := d.norm.bind.BindDeviceInput(fmt.Sprintf("g%d", i), d.grads[i]); err != nil {
			return err
		}
	}
	return nil
}

func dimsOf(shape []int64) []any {
	out := make([]any, len(shape))
	for i, s := range shape {
		out[i] = int(s)
	}
	return out
}

// oneShape is a constant [1] shape for Reshape.
func oneShape(g *ir.Graph) string {
	name := "shape_1"
	if !g.Has(name) {
		g.Initializer(name, ir.Vector("", int64(1)))
	}
	return name
}

// setScalar writes one of the update graph's scalar inputs.
func (d *DeviceTrainer) setScalar(name string, v float32) { d.scalars[name].GetData()[0] = v }

// Compute runs forward and backward on one batch: the gradients land in the
// device gradient tensors; it returns the loss and copies of the kept
// outputs.
func (d *DeviceTrainer) Compute(batch map[string]ort.Value) (float64, map[string][]float32, error) {
	for k, v := range batch {
		if _, isParam := d.T.paramT[k]; isParam {
			return 0, nil, fmt.Errorf("train: batch input %q is a weight", k)
		}
		if _, isFrozen := d.frozen[k]; isFrozen {
			return 0, nil, fmt.Errorf("train: batch input %q is a weight", k)
		}
		if err := d.bind.BindInput(k, v); err != nil {
			return 0, nil, fmt.Errorf("train: %w", err)
		}
	}
	if err := d.bind.Run(); err != nil {
		return 0, nil, fmt.Errorf("train: %w", err)
	}
	res, err := d.bind.Outputs()
	if err != nil {
		return 0, nil, fmt.Errorf("train: %w", err)
	}
	outs := map[string][]float32{}
	for k, v := range res {
		data, err := ort.Download[float32](v)
		v.Release()
		if err == nil {
			outs[k] = data
		}
	}
	return float64(d.loss.GetData()[0]), outs, nil
}

// Step is Trainer.Step on the device: the same schedule, skips, clipping,
// guard and warnings, with the gradients accumulated, clipped and applied
// where they are.
func (d *DeviceTrainer) Step(micro ...map[string]ort.Value) (r StepResult, err error) {
	return d.StepWeighted(nil, micro...)
}

// StepWeighted is Trainer.StepWeighted on the device (the same sums, bit
// for bit).
func (d *DeviceTrainer) StepWeighted(weights []float64, micro ...map[string]ort.Value) (r StepResult, err error) {
	t := d.T
	if len(micro) == 0 {
		return StepResult{}, fmt.Errorf("train step: no batch")
	}
	if err := checkMicroWeights(weights, len(micro)); err != nil {
		return StepResult{}, err
	}
	r.LR = t.Sched.LR(t.Steps)
	t.Steps++
	start := time.Now()
	defer func() { r.Optimizer = time.Since(start) - r.ForwardBackward }()
	for k, b := range micro {
		l, outs, err := d.Compute(b)
		if err != nil {
			return r, err
		}
		r.Outputs = outs
		w := float32(1)
		if weights != nil {
			r.Loss += weights[k] * l
			w = float32(weights[k])
		} else {
			r.Loss += l / float64(len(micro))
		}
		if len(micro) > 1 {
			if err := d.accumulate(k == 0, weights != nil, w); err != nil {
				return r, err
			}
		}
	}
	r.ForwardBackward = time.Since(start)
	grads, inv := d.grads, float32(1)
	if len(micro) > 1 {
		grads = d.acc
		if weights == nil {
			inv = 1 / float32(len(micro))
		}
	}
	if err := d.bindGrads(grads); err != nil {
		return r, err
	}
	if !finite(r.Loss) {
		return r, t.skip(&r, fmt.Sprintf("loss is %v", r.Loss))
	}
	d.setScalar("grad_inv", inv)
	if err := d.norm.bind.Run(); err != nil {
		return r, fmt.Errorf("train step: %w", err)
	}
	s := 0.0
	for _, x := range d.sumsq.GetData() {
		s += x
	}
	r.GradNorm = math.Sqrt(s)
	if !finite(r.GradNorm) {
		bad := 0
		for i, x := range d.sumsq.GetData() {
			if !finite(x) {
				bad = i
				break
			}
		}
		return r, t.skip(&r, fmt.Sprintf("gradient of %s is not finite", t.Params[bad].Name))
	}
	if applied := r.GradNorm; (t.Clip == 0 || applied < t.Clip) && applied > maxMomentNorm {
		return r, t.skip(&r, fmt.Sprintf("gradient norm %g would overflow the float32 moments", applied))
	}
	o := t.Opt
	o.Step++
	bc1 := 1 - math.Pow(o.Beta1, float64(o.Step))
	bc2 := 1 - math.Pow(o.Beta2, float64(o.Step))
	b1, b2 := float32(o.Beta1), float32(o.Beta2)
	for name, v := range map[string]float32{"beta1": b1, "one_minus_beta1": 1 - b1, "beta2": b2, "one_minus_beta2": 1 - b2,
		"step_size": float32(r.LR / bc1), "inv_sqrt_bc2": float32(1 / math.Sqrt(bc2)), "eps": float32(o.Eps),
		"shrink": float32(1 - r.LR*o.WeightDecay), "grad_scale": clipScale(r.GradNorm, t.Clip)} {
		d.setScalar(name, v)
	}
	if err := d.update.bind.Run(); err != nil {
		return r, fmt.Errorf("train step: %w", err)
	}
	for i, c := range d.check.GetData() {
		if c != 0 {
			return r, nonFiniteUpdate(t, &NonFiniteUpdateError{Param: i, LR: r.LR}, r.LR)
		}
	}
	r.Warning = t.applied(r.Loss)
	return r, nil
}

// bindGrads points the norm and update graphs at the gradients to apply
// (the last micro-batch's, or the accumulated sums).
func (d *DeviceTrainer) bindGrads(grads []*ort.DeviceTensor) error {
	for i, g := range grads {
		for _, b := range []*ort.Binding{d.norm.bind, d.update.bind} {
			if err := b.BindDeviceInput(fmt.Sprintf("g%d", i), g); err != nil {
				return err
			}
		}
	}
	return nil
}

// accumulate adds the last micro-batch's gradients times w to the sums
// (copies them for the first, or scales them when weighted), on the
// device.
func (d *DeviceTrainer) accumulate(first, weighted bool, w float32) error {
	if d.acc == nil {
		for i, p := range d.T.Params {
			a, err := ort.NewDeviceTensor[float32](d.T.sess, d.dev, shapeOrOne(p.Shape))
			if err != nil {
				return fmt.Errorf("train step: gradient sums: %w", err)
			}
			d.owned = append(d.owned, a)
			d.acc = append(d.acc, a)
			if err := d.scale.bind.BindDeviceInput(fmt.Sprintf("g%d", i), d.grads[i]); err != nil {
				return err
			}
			if err := d.scale.bind.BindDeviceOutput(fmt.Sprintf("a%d_new", i), a); err != nil {
				return err
			}
			b := d.sum.bind
			if err := b.BindDeviceInput(fmt.Sprintf("a%d", i), a); err != nil {
				return err
			}
			if err := b.BindDeviceOutput(fmt.Sprintf("a%d_new", i), a); err != nil {
				return err
			}
			if err := b.BindDeviceInput(fmt.Sprintf("g%d", i), d.grads[i]); err != nil {
				return err
			}
		}
	}
	d.accWeight.GetData()[0] = w
	if first && weighted {
		if err := d.scale.bind.Run(); err != nil {
			return fmt.Errorf("train step: %w", err)
		}
		return nil
	}
	if first {
		for i, a := range d.acc {
			n := int64(len(d.T.Params[i].Data))
			if err := ort.CopyRows(a, 0, d.grads[i], 0, n); err != nil {
				return fmt.Errorf("train step: %w", err)
			}
		}
		return nil
	}
	if err := d.sum.bind.Run(); err != nil {
		return fmt.Errorf("train step: %w", err)
	}
	return nil
}

// Sync downloads the device weights and moments into the Trainer's Params
// and Opt (for a checkpoint, an export, or the host Trainer to go on).
func (d *DeviceTrainer) Sync() error {
	t := d.T
	for i, p := range t.Params {
		for _, x := range []struct {
			dst []float32
			src *ort.DeviceTensor
		}{{p.Data, d.weights[i]}, {t.Opt.M[i], d.moments[0][i]}, {t.Opt.V[i], d.moments[1][i]}} {
			data, err := ort.Download[float32](x.src)
			if err != nil {
				return fmt.Errorf("sync weight %q from %s: %w", p.Name, d.dev, err)
			}
			copy(x.dst, data)
		}
	}
	return nil
}

// Load uploads the Trainer's Params and Opt moments to the device (after a
// checkpoint was loaded into them).
func (d *DeviceTrainer) Load() error {
	t := d.T
	for i, p := range t.Params {
		for _, x := range []struct {
			src []float32
			dst *ort.DeviceTensor
		}{{p.Data, d.weights[i]}, {t.Opt.M[i], d.moments[0][i]}, {t.Opt.V[i], d.moments[1][i]}} {
			if err := x.dst.Upload(x.src); err != nil {
				return fmt.Errorf("load weight %q to %s: %w", p.Name, d.dev, err)
			}
		}
	}
	return nil
}

// syncIfAny and loadIfAny are Sync and Load for a Loop that may have no
// device trainer.
func (d *DeviceTrainer) syncIfAny() error {
	if d == nil {
		return nil
	}
	return d.Sync()
}

func (d *DeviceTrainer) loadIfAny() error {
	if d == nil {
		return nil
	}
	return d.Load()
}

// Weights are the device weights by name (trainable in Params order, then
// frozen), for a generation model to bind.
func (d *DeviceTrainer) Weights() map[string]*ort.DeviceTensor {
	out := map[string]*ort.DeviceTensor{}
	for i, p := range d.T.Params {
		out[p.Name] = d.weights[i]
	}
	for k, v := range d.frozen {
		out[k] = v
	}
	return out
}

// Close releases what NewDeviceTrainer allocated (not shared weights, not
// the Trainer).
func (d *DeviceTrainer) Close() {
	if d == nil {
		return
	}
	for _, g := range []*deviceGraph{d.update, d.norm, d.sum, d.scale} {
		g.close()
	}
	d.update, d.norm, d.sum, d.scale = nil, nil, nil, nil
	if d.accWeight != nil {
		d.accWeight.Destroy()
		d.accWeight = nil
	}
	if d.bind != nil {
		d.bind.Close()
		d.bind = nil
	}
	for _, t := range d.owned {
		t.Release()
	}
	d.owned = nil
	for _, v := range d.scalars {
		v.Destroy()
	}
	if d.loss != nil {
		d.loss.Destroy()
	}
	if d.sumsq != nil {
		d.sumsq.Destroy()
	}
	if d.check != nil {
		d.check.Destroy()
	}
}
