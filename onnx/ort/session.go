package ort

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"sync/atomic"
	"unsafe"

	ortgo "github.com/yalue/onnxruntime_go"
)

// Value is a tensor (or other ORT value) passed to or returned from a run.
type Value = ortgo.Value

// Tensor is a tensor backed by a Go slice; ORT reads and writes that slice
// directly, so weights owned by Go are fed without copies.
type Tensor[T ortgo.TensorData] = ortgo.Tensor[T]

// IOInfo describes one declared input or output.
type IOInfo = ortgo.InputOutputInfo

// Options are per-session settings.
type Options struct {
	IntraOpThreads int    // 0: ORT's default (one per core)
	InterOpThreads int    // 0: ORT's default
	OptLevel       string // "all" (default), "extended", "basic" or "disable"
	Provider       string // "cpu" (default) or "cuda"
	CUDADevice     int
	// Outputs restricts which outputs a run returns; empty means all.
	Outputs []string
	// NoMemArena turns ORT's CPU memory arena off: lower peak memory for
	// graphs whose intermediate sizes vary, at some allocation cost.
	NoMemArena bool
	// NoMemPattern turns off ORT's memory pattern: from the second run on,
	// ORT otherwise allocates one block for all intermediates as the first
	// run laid them out, on top of the arena's blocks.
	NoMemPattern bool
	// ProfilePrefix, when set, makes ORT write a JSON profile of every run
	// to files starting with this prefix.
	ProfilePrefix string
	// ConfigEntries are ORT session config entries, e.g. SpinKey: "0" so
	// idle pool threads do not spin and starve Go goroutines between runs.
	ConfigEntries map[string]string
}

// Session is a loaded model with named inputs and outputs.
type Session struct {
	label   string
	sess    *ortgo.DynamicAdvancedSession
	inputs  []IOInfo
	outputs []IOInfo
	inIdx   map[string]int
	outIdx  map[string]int
	// allocs are ORT allocators for device memory (device.go), by device:
	// they must live as long as the tensors they allocated, so until Destroy.
	allocs map[Device]unsafe.Pointer
}

// NewSessionFromFile loads an ONNX model file (external data is resolved next to it).
func NewSessionFromFile(path string, opts Options) (*Session, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("load model %s: %w", path, err)
	}
	return newSession(path, nil, path, opts)
}

// NewSession loads a model from bytes; label names it in errors.
func NewSession(model []byte, label string, opts Options) (*Session, error) {
	if len(model) == 0 {
		return nil, fmt.Errorf("load model %s: empty model bytes", label)
	}
	return newSession("", model, label, opts)
}

func newSession(path string, data []byte, label string, opts Options) (*Session, error) {
	if err := Init(""); err != nil {
		return nil, err
	}
	if err := checkRuntime(label, opts); err != nil {
		return nil, err
	}
	so, err := sessionOptions(opts)
	if err != nil {
		return nil, fmt.Errorf("load model %s: %w", label, err)
	}
	defer so.Destroy()
	var ins, outs []IOInfo
	if path != "" {
		ins, outs, err = modelFileIO(path, label)
	} else {
		ins, outs, err = modelIO(data, label)
	}
	if err != nil {
		return nil, err
	}
	if len(opts.Outputs) > 0 {
		outs, err = selectOutputs(label, outs, opts.Outputs)
		if err != nil {
			return nil, err
		}
	}
	inNames, outNames := names(ins), names(outs)
	var sess *ortgo.DynamicAdvancedSession
	if path != "" {
		sess, err = ortgo.NewDynamicAdvancedSession(path, inNames, outNames, so)
	} else {
		sess, err = ortgo.NewDynamicAdvancedSessionWithONNXData(data, inNames, outNames, so)
	}
	if err == nil && (len(inNames) == 0 || len(outNames) == 0) {
		// onnxruntime_go cannot run a session without inputs or outputs.
		sess.Destroy()
		err = fmt.Errorf("the graph declares %d inputs and %d outputs; tagpr needs at least one of each", len(inNames), len(outNames))
	}
	if err != nil {
		return nil, fmt.Errorf("load model %s: %w", label, err)
	}
	s := &Session{label: label, sess: sess, inputs: ins, outputs: outs, inIdx: index(ins), outIdx: index(outs)}
	recordSession(label, opts)
	liveSessions.Add(1)
	return s, nil
}

// liveSessions counts the sessions created and not yet destroyed.
var liveSessions atomic.Int64

// LiveSessions is the number of sessions of this process not yet destroyed:
// tests check that work which opens sessions releases them (a long-running
// process must not keep models it is done with).
func LiveSessions() int64 { return liveSessions.Load() }

func sessionOptions(o Options) (*ortgo.SessionOptions, error) {
	so, err := ortgo.NewSessionOptions()
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*ortgo.SessionOptions, error) { so.Destroy(); return nil, err }
	if o.IntraOpThreads > 0 {
		if err := so.SetIntraOpNumThreads(o.IntraOpThreads); err != nil {
			return fail(err)
		}
	}
	if o.InterOpThreads > 0 {
		if err := so.SetInterOpNumThreads(o.InterOpThreads); err != nil {
			return fail(err)
		}
	}
	if o.NoMemArena {
		if err := so.SetCpuMemArena(false); err != nil {
			return fail(err)
		}
	}
	if o.NoMemPattern {
		if err := so.SetMemPattern(false); err != nil {
			return fail(err)
		}
	}
	if o.ProfilePrefix != "" {
		if err := so.EnableProfiling(o.ProfilePrefix); err != nil {
			return fail(fmt.Errorf("enable profiling to %s: %w", o.ProfilePrefix, err))
		}
	}
	for _, k := range sortedKeys(o.ConfigEntries) {
		if err := so.AddSessionConfigEntry(k, o.ConfigEntries[k]); err != nil {
			return fail(fmt.Errorf("session config entry %s=%q: %w", k, o.ConfigEntries[k], err))
		}
	}
	lvl, err := optLevel(o.OptLevel)
	if err != nil {
		return fail(err)
	}
	if err := so.SetGraphOptimizationLevel(lvl); err != nil {
		return fail(err)
	}
	switch strings.ToLower(o.Provider) {
	case "", "cpu":
	case "cuda":
		if Declared().Provider != "cuda" {
			// Without Start the CUDA libraries were never preloaded: say how.
			return fail(fmt.Errorf("execution provider cuda requested but the runtime was not started for it " +
				"(run with --provider cuda, or call ort.Start with Provider \"cuda\" before creating sessions)"))
		}
		if err := appendCUDA(so, o.CUDADevice); err != nil {
			return fail(fmt.Errorf("execution provider cuda not available in %s: %v", LibraryPath(), err))
		}
	default:
		return fail(fmt.Errorf("unknown execution provider %q (want cpu or cuda)", o.Provider))
	}
	return so, nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func optLevel(s string) (ortgo.GraphOptimizationLevel, error) {
	switch strings.ToLower(s) {
	case "", "all":
		return ortgo.GraphOptimizationLevelEnableAll, nil
	case "extended":
		return ortgo.GraphOptimizationLevelEnableExtended, nil
	case "basic":
		return ortgo.GraphOptimizationLevelEnableBasic, nil
	case "disable", "none":
		return ortgo.GraphOptimizationLevelDisableAll, nil
	}
	return 0, fmt.Errorf("unknown graph optimization level %q (want all, extended, basic or disable)", s)
}

func selectOutputs(label string, all []IOInfo, want []string) ([]IOInfo, error) {
	idx := index(all)
	out := make([]IOInfo, 0, len(want))
	for _, n := range want {
		i, ok := idx[n]
		if !ok {
			return nil, fmt.Errorf("load model %s: no output named %q (outputs: %s)", label, n, strings.Join(names(all), ", "))
		}
		out = append(out, all[i])
	}
	return out, nil
}

func names(infos []IOInfo) []string {
	out := make([]string, len(infos))
	for i, in := range infos {
		out[i] = in.Name
	}
	return out
}

func index(infos []IOInfo) map[string]int {
	m := make(map[string]int, len(infos))
	for i, in := range infos {
		m[in.Name] = i
	}
	return m
}

// Inputs and Outputs describe the session's declared values, in run order.
func (s *Session) Inputs() []IOInfo  { return s.inputs }
func (s *Session) Outputs() []IOInfo { return s.outputs }

// Label is the model path or name used in errors.
func (s *Session) Label() string { return s.label }

// HasInput reports whether the model declares an input of that name.
func (s *Session) HasInput(name string) bool { _, ok := s.inIdx[name]; return ok }

// Destroy releases the session.
func (s *Session) Destroy() error {
	if s == nil || s.sess == nil {
		return nil
	}
	s.releaseAllocators()
	err := s.sess.Destroy()
	s.sess = nil
	liveSessions.Add(-1)
	return err
}

// Run feeds inputs by name and returns every selected output, allocated by
// ORT. Outputs given in `into` are written in place instead (pre-allocated
// tensors, e.g. ping-pong weights); those are returned as given.
func (s *Session) Run(inputs map[string]Value, into map[string]Value) (*Outputs, error) {
	in := make([]Value, len(s.inputs))
	for name, v := range inputs {
		i, ok := s.inIdx[name]
		if !ok {
			return nil, fmt.Errorf("run %s: model has no input %q (inputs: %s)", s.label, name, strings.Join(names(s.inputs), ", "))
		}
		in[i] = v
	}
	out := make([]Value, len(s.outputs))
	for name, v := range into {
		i, ok := s.outIdx[name]
		if !ok {
			return nil, fmt.Errorf("run %s: model has no output %q", s.label, name)
		}
		out[i] = v
	}
	if err := s.RunOrdered(in, out); err != nil {
		return nil, err
	}
	return &Outputs{names: s.outIdx, values: out, given: into}, nil
}

// RunOrdered is Run without maps: in and out follow Inputs() and Outputs();
// nil entries in out are allocated by ORT and stored back into out.
func (s *Session) RunOrdered(in, out []Value) error {
	if s.sess == nil {
		return fmt.Errorf("run %s: session destroyed", s.label)
	}
	for i, info := range s.inputs {
		if err := checkValue(info, in[i]); err != nil {
			return fmt.Errorf("run %s: input %w", s.label, err)
		}
	}
	for i, info := range s.outputs {
		if out[i] != nil {
			if err := checkValue(info, out[i]); err != nil {
				return fmt.Errorf("run %s: output %w", s.label, err)
			}
		}
	}
	err := s.sess.Run(in, out)
	afterRun()
	if err != nil {
		return fmt.Errorf("run %s: %w", s.label, err)
	}
	return nil
}

// checkValue compares a value with the declared type and the fixed dims.
func checkValue(info IOInfo, v Value) error {
	if v == nil {
		return fmt.Errorf("%q is missing (want %s %v)", info.Name, info.DataType, info.Dimensions)
	}
	if info.OrtValueType != ortgo.ONNXTypeTensor {
		return nil
	}
	if got := ortgo.TensorElementDataType(v.DataType()); got != info.DataType {
		return fmt.Errorf("%q has element type %s, want %s", info.Name, got, info.DataType)
	}
	shape := v.GetShape()
	if len(shape) != len(info.Dimensions) {
		return fmt.Errorf("%q has shape %v (rank %d), want rank %d %v", info.Name, shape, len(shape), len(info.Dimensions), info.Dimensions)
	}
	for d, want := range info.Dimensions {
		if want >= 0 && shape[d] != want {
			return fmt.Errorf("%q has shape %v, want %v (dim %d must be %d)", info.Name, shape, info.Dimensions, d, want)
		}
	}
	return nil
}

// Outputs holds a run's results by name.
type Outputs struct {
	names  map[string]int
	values []Value
	given  map[string]Value
}

// Get returns the output of that name, or nil.
func (o *Outputs) Get(name string) Value {
	i, ok := o.names[name]
	if !ok {
		return nil
	}
	return o.values[i]
}

// Destroy frees the outputs ORT allocated (not the ones passed in `into`).
func (o *Outputs) Destroy() {
	for n, i := range o.names {
		if _, given := o.given[n]; !given && o.values[i] != nil {
			o.values[i].Destroy()
		}
	}
}

// NewTensor wraps data (not copied) as a tensor of the given shape. Rank 0 is
// refused because onnxruntime_go cannot carry it: use shape [1].
func NewTensor[T ortgo.TensorData](shape []int64, data []T) (*Tensor[T], error) {
	if err := Init(""); err != nil {
		return nil, err
	}
	if len(shape) == 0 {
		return nil, fmt.Errorf("new tensor: rank-0 tensors are not supported by onnxruntime_go; use shape [1]")
	}
	return ortgo.NewTensor(ortgo.NewShape(shape...), data)
}

// Data returns a tensor value's backing slice, or an error naming the type mismatch.
func Data[T ortgo.TensorData](name string, v Value) ([]T, error) {
	t, ok := v.(*ortgo.Tensor[T])
	if !ok {
		var zero T
		if v == nil {
			return nil, fmt.Errorf("output %q is missing", name)
		}
		return nil, fmt.Errorf("output %q has element type %s, want %T", name, ortgo.TensorElementDataType(v.DataType()), zero)
	}
	return t.GetData(), nil
}
