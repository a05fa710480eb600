package lm

import (
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/ort"
)

// Device-resident generation: with CUDA (or LoadOptions.DeviceResident,
// which runs the same path on the CPU for tests) the KV cache never leaves
// the device. Each run is an IO binding whose present outputs ORT allocates
// on the device and which are bound, as they are, as the next run's past;
// regrouping rows (a prompt's cache copied to its group, finished rows
// dropped) copies within the device. Weights bound with BindDevice are
// device tensors the trainer updates in place (one copy for both). Per
// step only the token ids, positions and logits_to_keep go in and the kept
// logits come out (ort.TransferCounts counts them), with the in-graph decode
// head's switches and per-row values (headgraph.go): the attention mask is
// uploaded with the prompt and then grows on the device by a column of
// ones per step (maskGrower).

// deviceState is a model's device-resident setting and device weights.
type deviceState struct {
	on      bool
	dev     ort.Device
	weights map[string]*ort.DeviceTensor // bound with BindDevice, the caller's
	grow    *ort.Session                 // the mask's growing graph, made on first use

	// Float16 copies of weights fed as inputs (LoadOptions.Half with
	// LoadWithWeightInputs; half.go): each float32 weight's float16 input,
	// the model's own device tensors for them, and the Cast graph that
	// refreshes them from the float32 masters.
	halfIn   map[string]string
	half     map[string]*ort.DeviceTensor
	castSess *ort.Session
	castBind *ort.Binding
	castOrd  []string // the float32 names, in the Cast graph's order
}

// maskGrower returns the session that appends a column of ones to an
// attention mask on the device: a copy of its last column, which is all
// ones (every row's last position is a real token, padding is on the
// left). Slice and Concat take int64 on every provider, so nothing falls
// back to the host.
func (m *Model) maskGrower() (*ort.Session, error) {
	if m.devs.grow != nil {
		return m.devs.grow, nil
	}
	g := ir.NewGraph("tagpr_mask_grow")
	g.Input(growIn, ir.Int64, "batch", "past")
	last := g.Op("Slice", []string{growIn, g.Initializer("starts", ir.Vector("", int64(-1))),
		g.Initializer("ends", ir.Vector("", int64(math.MaxInt64))), g.Initializer("axes", ir.Vector("", int64(1)))})
	g.Node("Concat", []string{growIn, last}, []string{growOut}, ir.AttrInt("axis", 1))
	g.Output(growOut, ir.Int64, "batch", "past_plus_1")
	pm, err := ir.NewModel(g, 0)
	if err != nil {
		return nil, fmt.Errorf("mask graph: %w", err)
	}
	b, err := ir.Marshal(pm)
	if err != nil {
		return nil, fmt.Errorf("mask graph: %w", err)
	}
	so := m.sessOpts
	so.IntraOpThreads, so.InterOpThreads = 1, 1
	if m.devs.grow, err = ort.NewSession(b, m.label+" mask", so); err != nil {
		return nil, err
	}
	return m.devs.grow, nil
}

const (
	growIn  = "mask"
	growOut = "grown"
)

func (s *deviceState) close() {
	if s.grow != nil {
		s.grow.Destroy()
		s.grow = nil
	}
	for _, t := range s.half {
		t.Release()
	}
	s.half = nil
	s.castBind.Close()
	if s.castSess != nil {
		s.castSess.Destroy()
		s.castSess = nil
	}
}

func newDeviceState(o LoadOptions) deviceState {
	dev := ort.DeviceFor(o.Session)
	return deviceState{on: o.DeviceResident || dev.Provider == "cuda", dev: dev}
}

// DeviceResident reports whether generation keeps the KV cache on the
// session's device, and which device that is.
func (m *Model) DeviceResident() (bool, ort.Device) { return m.devs.on, m.devs.dev }

// isBound reports whether an input outside the layout has a value.
func (m *Model) isBound(name string) bool {
	return m.bound[name] != nil || m.devs.weights[name] != nil
}

// BindDevice feeds a device tensor to an input outside the causal-LM layout
// on every run (a weight in device memory, see UploadWeights). It needs a
// device-resident model; the tensor stays the caller's and must outlive the
// model's runs.
func (m *Model) BindDevice(name string, t *ort.DeviceTensor) error {
	info, ok := m.inputs[name]
	switch {
	case !m.devs.on:
		return fmt.Errorf("model %s: bind %q to a device tensor: generation is not device-resident (load with DeviceResident or the cuda provider)", m.label, name)
	case !ok:
		return fmt.Errorf("model %s: bind %q: no such input", m.label, name)
	case !m.isExtra(name):
		return fmt.Errorf("model %s: bind %q: generation feeds this input itself", m.label, name)
	case t == nil:
		return fmt.Errorf("model %s: bind %q: nil device tensor", m.label, name)
	case t.Device() != m.devs.dev:
		return fmt.Errorf("model %s: bind %q: tensor on %s, the model runs on %s", m.label, name, t.Device(), m.devs.dev)
	}
	if err := m.checkBindShape(name, t.Shape(), info); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.devs.weights == nil {
		m.devs.weights = map[string]*ort.DeviceTensor{}
	}
	m.devs.weights[name] = t
	return nil
}

// UploadWeights copies weights (LoadWithWeightInputs') to the model's
// device once and binds them there: later runs read the device copies, and
// a trainer given them (train.NewDeviceTrainer) updates them in place. The
// tensors are allocated with the model's session: release them (Release)
// before closing the model.
//
// With float16 copies (LoadOptions.Half), a weight the model reads only in
// float16 is uploaded, cast into the model's own float16 tensor and dropped:
// it is not in the returned map, and the trainer keeps its float32 master
// (RefreshHalf casts it again after updates).
func (m *Model) UploadWeights(ws []Weight) (map[string]*ort.DeviceTensor, error) {
	out := map[string]*ort.DeviceTensor{}
	masters := map[string]*ort.DeviceTensor{}
	release := func() {
		for name, t := range masters {
			if out[name] == nil {
				t.Release()
			}
		}
		for _, t := range out {
			t.Release()
		}
	}
	for _, w := range ws {
		t, err := ort.Upload(m.sess, m.devs.dev, w.Shape, w.Data)
		if err != nil {
			release()
			return nil, fmt.Errorf("model %s: upload weight %q: %w", m.label, w.Name, err)
		}
		if _, half := m.devs.halfIn[w.Name]; half {
			masters[w.Name] = t
		}
		if _, read := m.inputs[w.Name]; !read {
			continue
		}
		out[w.Name] = t
		if err := m.BindDevice(w.Name, t); err != nil {
			release()
			return nil, err
		}
	}
	if len(m.devs.halfIn) > 0 {
		if err := m.RefreshHalf(masters); err != nil {
			release()
			return nil, err
		}
		for name, t := range masters {
			if out[name] == nil {
				t.Release()
			}
		}
	}
	return out, nil
}

// HalfWeights reports whether the model reads float16 copies of weights
// fed as inputs (which RefreshHalf updates).
func (m *Model) HalfWeights() bool { return len(m.devs.halfIn) > 0 }

// RefreshHalf casts the float32 master weights (by name; a trainer's
// device weights) into the model's float16 copies, on the device: after
// an update, before the next generation. Nothing crosses to the host.
func (m *Model) RefreshHalf(masters map[string]*ort.DeviceTensor) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := &m.devs
	if len(s.halfIn) == 0 {
		return nil
	}
	if s.castBind == nil {
		if err := m.openCast(); err != nil {
			return fmt.Errorf("model %s: float16 weights: %w", m.label, err)
		}
	}
	for i, name := range s.castOrd {
		w := masters[name]
		if w == nil {
			return fmt.Errorf("model %s: refresh float16 weights: no float32 master for %q", m.label, name)
		}
		if err := s.castBind.BindDeviceInput(fmt.Sprintf("w%d", i), w); err != nil {
			return fmt.Errorf("model %s: refresh float16 weights: %w", m.label, err)
		}
	}
	if err := s.castBind.Run(); err != nil {
		return fmt.Errorf("model %s: refresh float16 weights: %w", m.label, err)
	}
	return nil
}

// openCast makes the float16 tensors, binds them to the model, and builds
// the Cast graph writing them in place.
func (m *Model) openCast() error {
	s := &m.devs
	for name := range s.halfIn {
		s.castOrd = append(s.castOrd, name)
	}
	sort.Strings(s.castOrd)
	g := ir.NewGraph("tagpr_half_weights")
	s.half = map[string]*ort.DeviceTensor{}
	for i, name := range s.castOrd {
		dims := m.inputs[s.halfIn[name]].Dimensions
		dd := make([]any, len(dims))
		for k, d := range dims {
			dd[k] = int(d)
		}
		in := g.Input(fmt.Sprintf("w%d", i), ir.Float, dd...)
		g.Output(g.Node("Cast", []string{in}, []string{fmt.Sprintf("h%d", i)}, ir.AttrInt("to", int64(ir.Float16)))[0], ir.Float16, dd...)
		t, err := ort.NewHalfDeviceTensor(m.sess, s.dev, dims)
		if err != nil {
			return err
		}
		s.half[name] = t
		if s.weights == nil {
			s.weights = map[string]*ort.DeviceTensor{}
		}
		s.weights[s.halfIn[name]] = t // bound like BindDevice (the lock is held)
	}
	pm, err := ir.NewModel(g, 0)
	if err != nil {
		return err
	}
	b, err := ir.Marshal(pm)
	if err != nil {
		return err
	}
	so := m.sessOpts
	so.IntraOpThreads, so.InterOpThreads = 1, 1
	if s.castSess, err = ort.NewSession(b, m.label+" float16 weights", so); err != nil {
		return err
	}
	if s.castBind, err = s.castSess.NewBinding(); err != nil {
		return err
	}
	for i, name := range s.castOrd {
		if err := s.castBind.BindDeviceOutput(fmt.Sprintf("h%d", i), s.half[name]); err != nil {
			return err
		}
	}
	return nil
}

// devCache is one device-resident run's cache and binding.
type devCache struct {
	dev  ort.Device
	bind *ort.Binding
	past []*ort.DeviceTensor // layer*2 + 0 key / 1 value; nil before the first run
	mask *ort.DeviceTensor   // the last run's attention mask [B, S]
	grow *ort.Binding        // appends a column of ones to mask
}

// newDeviceGen starts a device-resident run of B rows (pad has room for
// capRows): newGenIn's run with no host cache buffers (its past tensors are
// only the empty first past) and the device-bound weights left out of the
// host inputs.
func (m *Model) newDeviceGen(B, capRows int) (*gen, error) {
	return m.newDeviceGenIn(&m.ws, B, capRows)
}

// newDeviceGenIn is newDeviceGen with the host buffers (ids, positions,
// logits) in ws: the batcher's own.
func (m *Model) newDeviceGenIn(ws *workspace, B, capRows int) (*gen, error) {
	g, err := m.newGenIn(ws, B, capRows, 0)
	if err != nil {
		return nil, err
	}
	g.capPos = math.MaxInt
	for i, info := range m.sess.Inputs() {
		if m.devs.weights[info.Name] != nil {
			g.in[i] = nil
		}
	}
	b, err := m.sess.NewBinding()
	if err != nil {
		g.release()
		return nil, fmt.Errorf("generate with %s: %w", m.label, err)
	}
	g.dc = &devCache{dev: m.devs.dev, bind: b}
	for name, t := range m.devs.weights {
		if err := b.BindDeviceInput(name, t); err != nil {
			g.release()
			return nil, fmt.Errorf("generate with %s: %w", m.label, err)
		}
	}
	return g, nil
}

// run is gen.forward's device half: the host inputs (ids, positions,
// logits_to_keep, use_cache_branch, host-bound weights) and the host
// outputs (the logits buffer) are in g.in and g.out; the mask and the past
// are on the device (the past: or the gen's empty host past on the first
// run); the present stays there.
func (dc *devCache) run(g *gen, S, K int, ortTime *time.Duration) ([]float32, int, error) {
	m, s, b := g.m, &g.m.slot, dc.bind
	ins, outs := m.sess.Inputs(), m.sess.Outputs()
	isPast := map[int]int{}
	for l := range s.pastK {
		isPast[s.pastK[l]], isPast[s.pastV[l]] = 2*l, 2*l+1
	}
	if err := dc.feedMask(g, S); err != nil {
		return nil, 0, fmt.Errorf("generate with %s: %w", m.label, err)
	}
	for i, v := range g.in {
		if i == s.mask {
			continue // on the device (feedMask)
		}
		if k, ok := isPast[i]; ok {
			var err error
			if dc.past != nil {
				err = b.BindDeviceInput(ins[i].Name, dc.past[k])
			} else {
				err = b.BindInput(ins[i].Name, g.past[k])
			}
			if err != nil {
				return nil, 0, fmt.Errorf("generate with %s: %w", m.label, err)
			}
			continue
		}
		if v == nil {
			continue // a device-bound weight
		}
		if err := b.BindInput(ins[i].Name, v); err != nil {
			return nil, 0, fmt.Errorf("generate with %s: %w", m.label, err)
		}
	}
	// The logits (and any other host output forward made) come back.
	isPresent := map[int]bool{}
	for l := range s.presK {
		isPresent[s.presK[l]], isPresent[s.presV[l]] = true, true
	}
	for o, v := range g.out {
		if v == nil || isPresent[o] {
			continue
		}
		if err := b.BindOutput(outs[o].Name, v); err != nil {
			return nil, 0, fmt.Errorf("generate with %s: %w", m.label, err)
		}
	}
	for l := range s.presK {
		for _, o := range []int{s.presK[l], s.presV[l]} {
			if err := b.BindOutputTo(outs[o].Name, dc.dev); err != nil {
				return nil, 0, fmt.Errorf("generate with %s: %w", m.label, err)
			}
		}
	}
	t0 := time.Now()
	err := b.Run()
	*ortTime += time.Since(t0)
	if err != nil {
		return nil, 0, err
	}
	res, err := b.Outputs()
	if err != nil {
		return nil, 0, err
	}
	pres := make([]*ort.DeviceTensor, len(g.past))
	for l := range s.presK {
		pres[2*l], pres[2*l+1] = res[outs[s.presK[l]].Name], res[outs[s.presV[l]].Name]
	}
	for _, p := range pres {
		if p == nil {
			for _, t := range res {
				t.Release()
			}
			return nil, 0, fmt.Errorf("generate with %s: internal: a present output did not come back from the device", m.label)
		}
	}
	dc.releasePast()
	dc.past, g.P = pres, S
	return g.ws.logits, K, nil
}

// feedMask binds this run's attention mask [B, S] on the device: after a
// one-column run over the last run's mask, that mask grown by a column of
// ones (what gen.forward computed on the host, as no row's padding
// reaches the new column); otherwise the host's mask, uploaded.
func (dc *devCache) feedMask(g *gen, S int) error {
	var next *ort.DeviceTensor
	if sh := maskShape(dc.mask); sh != nil && sh[0] == int64(g.B) && sh[1] == int64(S-1) && S-g.P == 1 {
		if dc.grow == nil {
			sess, err := g.m.maskGrower()
			if err != nil {
				return err
			}
			if dc.grow, err = sess.NewBinding(); err != nil {
				return err
			}
			if err := dc.grow.BindOutputTo(growOut, dc.dev); err != nil {
				return err
			}
		}
		if err := dc.grow.BindDeviceInput(growIn, dc.mask); err != nil {
			return err
		}
		if err := dc.grow.Run(); err != nil {
			return err
		}
		out, err := dc.grow.Outputs()
		if err != nil {
			return err
		}
		next = out[growOut]
	} else {
		var err error
		if next, err = ort.Upload(g.m.sess, dc.dev, []int64{int64(g.B), int64(S)}, g.ws.mask[:g.B*S]); err != nil {
			return err
		}
	}
	dc.mask.Release()
	dc.mask = next
	return dc.bind.BindDeviceInput(g.m.sess.Inputs()[g.m.slot.mask].Name, next)
}

func maskShape(t *ort.DeviceTensor) []int64 {
	if t == nil {
		return nil
	}
	return t.Shape()
}

// regroup makes each cache tensor a batch of len(from) rows, row j a copy
// of old row from[j], copied within the device.
func (dc *devCache) regroup(g *gen, from []int) error {
	if dc.past == nil {
		return fmt.Errorf("generate with %s: internal: regroup before the first run", g.m.label)
	}
	blk := int64(g.H * g.P * g.D)
	shape := []int64{int64(len(from)), int64(g.H), int64(g.P), int64(g.D)}
	next := make([]*ort.DeviceTensor, len(dc.past))
	for i, old := range dc.past {
		t, err := ort.NewDeviceTensor[float32](g.m.sess, dc.dev, shape)
		if err == nil {
			for j, r := range from {
				if err = ort.CopyRows(t, int64(j)*blk, old, int64(r)*blk, blk); err != nil {
					break
				}
			}
		}
		if err != nil {
			if t != nil {
				t.Release()
			}
			for _, n := range next[:i] {
				n.Release()
			}
			return fmt.Errorf("generate with %s: %w", g.m.label, err)
		}
		next[i] = t
	}
	dc.releasePast()
	dc.past = next
	// The mask's rows follow.
	if sh := maskShape(dc.mask); sh != nil {
		m, err := ort.NewDeviceTensor[int64](g.m.sess, dc.dev, []int64{int64(len(from)), sh[1]})
		if err != nil {
			return fmt.Errorf("generate with %s: %w", g.m.label, err)
		}
		for j, r := range from {
			if err := ort.CopyRows(m, int64(j)*sh[1], dc.mask, int64(r)*sh[1], sh[1]); err != nil {
				m.Release()
				return fmt.Errorf("generate with %s: %w", g.m.label, err)
			}
		}
		dc.mask.Release()
		dc.mask = m
	}
	return nil
}

// expand is gen.expand on the device: row p becomes rows p·G … p·G+G-1.
func (dc *devCache) expand(g *gen, G int) error {
	from := make([]int, 0, g.B*G)
	for p := 0; p < g.B; p++ {
		for k := 0; k < G; k++ {
			from = append(from, p)
		}
	}
	if err := dc.regroup(g, from); err != nil {
		return err
	}
	g.expandPad(G)
	return nil
}

// compact is gen.compact on the device.
func (dc *devCache) compact(g *gen, keep []int) error {
	if err := dc.regroup(g, keep); err != nil {
		return err
	}
	g.compactPad(keep)
	return nil
}

func (dc *devCache) releasePast() {
	for _, p := range dc.past {
		p.Release()
	}
	dc.past = nil
}

func (dc *devCache) release() {
	dc.releasePast()
	dc.mask.Release()
	dc.bind.Close()
	dc.grow.Close()
}
