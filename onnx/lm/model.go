package lm

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"

	ortgo "github.com/yalue/onnxruntime_go"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/lock"
	"github.com/tagpr/tagpr/onnx/onnxpb"
	"github.com/tagpr/tagpr/onnx/ort"
)

// LoadOptions configure how a model is opened for generation.
type LoadOptions struct {
	Session ort.Options
	// TokenizerVocab, when > 0, refuses a model with fewer logits.
	TokenizerVocab int
	// Config and Generation override the config.json and
	// generation_config.json found beside the model file.
	Config     *HFConfig
	Generation *GenerationConfig
	// DeviceResident keeps the KV cache (and weights bound with BindDevice)
	// on the session's device between runs (generate_device.go). It is
	// automatic with the cuda provider; set on the CPU it runs the same
	// device path there (tests compare it with the host path).
	DeviceResident bool
	// Half runs the MatMuls over float32 weight initializers in float16
	// (half.go): generation with half the weight bytes. It needs a model
	// Load can edit in memory (under 1 GiB with its external data).
	Half bool
}

// Model is a causal LM session ready to generate. It is safe for concurrent
// use; calls that run the session take turns.
type Model struct {
	label  string
	sess   *ort.Session
	Layout Layout
	// Config and Generation are config.json and generation_config.json
	// (nil when absent).
	Config     *HFConfig
	Generation *GenerationConfig

	inputs map[string]ort.IOInfo
	slot   slots
	devs   deviceState // device-resident generation (generate_device.go)

	mu    sync.Mutex
	bound map[string]ort.Value
	ws    workspace
	heads map[headKind]*head
	// separateHead makes generation use the separate head session even
	// when the graph has the head (tests compare the two).
	separateHead bool
	sessOpts     ort.Options // for the decode heads
}

// slots are the positions of each role in the session's run order.
type slots struct {
	ids, mask, pos int // pos is -1 without position_ids
	branch         int // use_cache_branch, or -1
	keep           int // logits_to_keep, or -1
	pastK, pastV   []int
	logits         int
	head           headSlots // the decode head in the graph (headgraph.go)
	presK, presV   []int
	nIn, nOut      int
}

// verifyPinned checks every file a load of modelPath reads against its pin.
func verifyPinned(modelPath string) error {
	for _, f := range Files(modelPath) {
		if err := lock.VerifyIfPinned(f); err != nil {
			return err
		}
	}
	return nil
}

// Load opens a model file, or a folder holding model.onnx or
// onnx/model.onnx, checks its layout, and reads config.json and
// generation_config.json beside it.
func Load(path string, opts LoadOptions) (*Model, error) {
	file, err := ResolveModelPath(path)
	if err != nil {
		return nil, err
	}
	if err := verifyPinned(file); err != nil { // the model and every companion it reads
		return nil, err
	}
	hc, gc, err := findConfigs(file)
	if err != nil {
		return nil, err
	}
	if opts.Config == nil {
		opts.Config = hc
	}
	if opts.Generation == nil {
		opts.Generation = gc
	}
	if err := ort.Init(""); err != nil {
		return nil, err
	}
	if opts.Half {
		return loadHalf(file, opts)
	}
	// Models of a reasonable size are edited in memory to take
	// logits_to_keep (see keep.go); others, and models whose weights are
	// in an external data file (big ones), load as they are.
	if st, err := os.Stat(file); err == nil && st.Size() < maxEditBytes {
		pm, size, err := readModelFile(file)
		if err != nil {
			return nil, err
		}
		small := externalBytes(pm)+size < maxEditBytes
		if small && hasExternalData(pm) {
			if err := ir.LoadExternalData(pm, filepath.Dir(file)); err != nil {
				return nil, fmt.Errorf("load model %s: %w", file, err)
			}
		}
		if small && editForGeneration(pm) {
			b, err := ir.Marshal(pm)
			if err == nil {
				return LoadBytes(b, file, opts)
			}
		}
	}
	ins, outs, err := ortgo.GetInputOutputInfo(file)
	if err != nil {
		return nil, fmt.Errorf("load model %s: %w", file, err)
	}
	return open(file, ins, outs, opts, func(o ort.Options) (*ort.Session, error) {
		return ort.NewSessionFromFile(file, o)
	})
}

// hasExternalData reports whether any initializer's data is in another file.
func hasExternalData(pm *onnxpb.ModelProto) bool {
	return externalBytes(pm) > 0
}

// externalBytes sums the sizes of the initializers held in external files.
func externalBytes(pm *onnxpb.ModelProto) int64 {
	var n int64
	for _, t := range pm.GetGraph().GetInitializer() {
		if t.GetDataLocation() == onnxpb.TensorProto_EXTERNAL {
			n += max(ir.NumElements(t.GetDims())*int64(ir.ElemSize(t.GetDataType())), 1)
		}
	}
	return n
}

// LoadBytes is Load for a model held in memory (for example one just built
// or edited); label names it in errors.
func LoadBytes(model []byte, label string, opts LoadOptions) (*Model, error) {
	if len(model) == 0 {
		return nil, fmt.Errorf("load model %s: empty model bytes", label)
	}
	if opts.Half {
		b, err := halfModel(model, label)
		if err != nil {
			return nil, err
		}
		model = b
	}
	if err := ort.Init(""); err != nil {
		return nil, err
	}
	if pm, err := ir.Read(model, label); err == nil && len(model) < maxEditBytes && editForGeneration(pm) {
		if b, err := ir.Marshal(pm); err == nil {
			model = b
		}
	}
	ins, outs, err := ortgo.GetInputOutputInfoWithONNXData(model)
	if err != nil {
		return nil, fmt.Errorf("load model %s: %w", label, err)
	}
	return open(label, ins, outs, opts, func(o ort.Options) (*ort.Session, error) {
		return ort.NewSession(model, label, o)
	})
}

func open(label string, ins, outs []ort.IOInfo, opts LoadOptions, newSess func(ort.Options) (*ort.Session, error)) (*Model, error) {
	lay, err := ReadLayout(label, ins, outs, CheckOptions{TokenizerVocab: opts.TokenizerVocab, Config: opts.Config})
	if err != nil {
		return nil, err
	}
	if err := lay.complete(label); err != nil {
		return nil, err
	}
	// The session returns only logits and the cache, in a fixed order, so
	// every output can be a pre-allocated Go tensor.
	so := opts.Session
	so.Outputs = []string{Logits}
	for i := 0; i < lay.Layers; i++ {
		so.Outputs = append(so.Outputs, PresentKey(i), PresentValue(i))
	}
	if lay.HasDecodeHead {
		so.Outputs = append(so.Outputs, headOutputs...)
		if lay.HasBlockSums {
			so.Outputs = append(so.Outputs, HeadBlockSums)
		} else {
			so.Outputs = append(so.Outputs, HeadProbsSum)
		}
	}
	sess, err := newSess(so)
	if err != nil {
		return nil, err
	}
	ho := opts.Session
	ho.Outputs = nil
	m := &Model{label: label, sess: sess, Layout: lay, Config: opts.Config, Generation: opts.Generation,
		inputs: byName(ins), bound: map[string]ort.Value{}, sessOpts: ho, devs: newDeviceState(opts)}
	m.slot = slotsOf(sess, lay)
	return m, nil
}

func slotsOf(sess *ort.Session, lay Layout) slots {
	in, out := map[string]int{}, map[string]int{}
	for i, v := range sess.Inputs() {
		in[v.Name] = i
	}
	for i, v := range sess.Outputs() {
		out[v.Name] = i
	}
	s := slots{ids: in[InputIDs], mask: in[AttentionMask], pos: -1, branch: -1, keep: -1, logits: out[Logits],
		nIn: len(sess.Inputs()), nOut: len(sess.Outputs())}
	if p, ok := in[PositionIDs]; ok {
		s.pos = p
	}
	if p, ok := in[UseCacheBranch]; ok {
		s.branch = p
	}
	if p, ok := in[LogitsToKeep]; ok {
		s.keep = p
	}
	s.head = headSlotsOf(in, out)
	for i := 0; i < lay.Layers; i++ {
		s.pastK = append(s.pastK, in[PastKey(i)])
		s.pastV = append(s.pastV, in[PastValue(i)])
		s.presK = append(s.presK, out[PresentKey(i)])
		s.presV = append(s.presV, out[PresentValue(i)])
	}
	return s
}

// Label is the model's path or name.
func (m *Model) Label() string { return m.label }

// Session is the underlying session (for runs outside generation).
func (m *Model) Session() *ort.Session { return m.sess }

// Bind feeds an input outside the causal-LM layout (such as a weight the
// graph takes as an input) on every run. The tensor is used in place: a
// trainer that updates its data between calls changes what the next
// generation computes, with no copy and no reload.
func (m *Model) Bind(name string, v ort.Value) error {
	info, ok := m.inputs[name]
	if !ok {
		return fmt.Errorf("model %s: bind %q: no such input", m.label, name)
	}
	if !m.isExtra(name) {
		return fmt.Errorf("model %s: bind %q: generation feeds this input itself", m.label, name)
	}
	if v == nil {
		return fmt.Errorf("model %s: bind %q: nil value", m.label, name)
	}
	if dt := ortgo.TensorElementDataType(v.DataType()); dt != info.DataType {
		return fmt.Errorf("model %s: bind %q: element type %s, want %s", m.label, name, typeName(dt), typeName(info.DataType))
	}
	if err := m.checkBindShape(name, v.GetShape(), info); err != nil {
		return err
	}
	m.mu.Lock()
	m.bound[name] = v
	m.mu.Unlock()
	return nil
}

// checkBindShape refuses a bound value whose shape does not fit the input.
func (m *Model) checkBindShape(name string, shape []int64, info ort.IOInfo) error {
	if len(shape) != len(info.Dimensions) {
		return fmt.Errorf("model %s: bind %q: shape %v, want %v", m.label, name, shape, info.Dimensions)
	}
	for d, want := range info.Dimensions {
		if want >= 0 && shape[d] != want {
			return fmt.Errorf("model %s: bind %q: shape %v, want %v", m.label, name, shape, info.Dimensions)
		}
	}
	return nil
}

func (m *Model) isExtra(name string) bool {
	for _, e := range m.Layout.Extra {
		if e == name {
			return true
		}
	}
	return false
}

// Close releases the session and the generation buffers. Bound tensors
// belong to the caller and are not destroyed.
func (m *Model) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ws = workspace{}
	for _, h := range m.heads {
		h.close()
	}
	m.heads = nil
	m.devs.close()
	return m.sess.Destroy()
}

// ReleaseBuffers drops the cache and logits buffers kept between
// Generate calls (they are sized by the largest call so far), for example
// before a memory-hungry training step. The next call allocates afresh.
func (m *Model) ReleaseBuffers() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ws = workspace{}
}

// DefaultEOS is the end-of-sequence ids from generation_config.json, else
// config.json.
func (m *Model) DefaultEOS() []int64 {
	if m.Generation != nil && len(m.Generation.EOSTokenID) > 0 {
		return m.Generation.EOSTokenID
	}
	if m.Config != nil {
		return m.Config.EOSTokenID
	}
	return nil
}

// DefaultPad is pad_token_id, else the first EOS id, else 0.
func (m *Model) DefaultPad() int64 {
	for _, ids := range []TokenIDs{m.genPad(), m.cfgPad()} {
		if len(ids) > 0 {
			return ids[0]
		}
	}
	if eos := m.DefaultEOS(); len(eos) > 0 {
		return eos[0]
	}
	return 0
}

func (m *Model) genPad() TokenIDs {
	if m.Generation == nil {
		return nil
	}
	return m.Generation.PadTokenID
}

func (m *Model) cfgPad() TokenIDs {
	if m.Config == nil {
		return nil
	}
	return m.Config.PadTokenID
}

// readModelFile parses an ONNX file (its external data not yet loaded) and
// returns its size in bytes.
func readModelFile(file string) (*onnxpb.ModelProto, int64, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, 0, fmt.Errorf("load model %s: %w", file, err)
	}
	pm, err := ir.Read(raw, file)
	if err != nil {
		return nil, 0, err
	}
	return pm, int64(len(raw)), nil
}
