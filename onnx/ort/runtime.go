package ort

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/tagpr/tagpr/onnx/lock"
)

// Runtime is where this process's sessions run, chosen once at start from
// the command line or the run config.
type Runtime struct {
	Library  string // the ONNX Runtime library ("" discovers it; see Discover and DiscoverGPU)
	Provider string // "cpu" or "cuda"
	Device   int    // CUDA device ordinal
	Threads  int    // intra-op threads per session (0: ORT's default)
	// Spinning is whether every session's pool threads busy-wait after a
	// run: SpinOn or SpinOff; SpinAuto (or "") leaves each use its own
	// default (Options.DefaultSpinning).
	Spinning Spinning
	// CUDALibraries are extra folders to search for the CUDA libraries.
	CUDALibraries []string
}

// Spinning is a choice for ORT's intra-op pool threads after a run: spin
// (busy-wait, so the next run starts at once) or sleep (leaving the cores to
// other work). Which is faster depends on what else runs on the cores.
type Spinning string

const (
	SpinAuto Spinning = "auto" // each use's default
	SpinOn   Spinning = "on"
	SpinOff  Spinning = "off"
)

// SpinKey is ORT's session config entry for it ("1" spins, "0" sleeps).
const SpinKey = "session.intra_op.allow_spinning"

// Options are the session options that carry this runtime: the base every
// stage's sessions start from.
func (rt Runtime) Options() Options {
	o := Options{Provider: rt.Provider, CUDADevice: rt.Device, IntraOpThreads: rt.Threads}
	switch rt.Spinning {
	case SpinOn:
		o.ConfigEntries = map[string]string{SpinKey: "1"}
	case SpinOff:
		o.ConfigEntries = map[string]string{SpinKey: "0"}
	}
	return o
}

// DefaultSpinning returns o with its pool threads spinning (on) or not,
// unless o already says (the runtime's choice, or a caller's): a use whose
// sessions take turns with other work on the same cores turns it off. The
// caller's map is not modified.
func (o Options) DefaultSpinning(on bool) Options {
	if _, set := o.ConfigEntries[SpinKey]; set {
		return o
	}
	v := "0"
	if on {
		v = "1"
	}
	entries := map[string]string{SpinKey: v}
	for k, e := range o.ConfigEntries {
		entries[k] = e
	}
	o.ConfigEntries = entries
	return o
}

func (rt Runtime) String() string {
	if strings.EqualFold(rt.Provider, "cuda") {
		return fmt.Sprintf("cuda device %d", rt.Device)
	}
	return rt.Provider
}

var declared struct {
	sync.Mutex
	rt   Runtime
	cuda CUDAStatus
}

// Start loads ONNX Runtime for rt, checks that rt.Provider can run here and
// declares rt the runtime of this process: from then on every session must
// be created with Options naming the same provider and device (Options built
// from rt.Options()). A session whose Options name none — a caller that made
// ort.Options{} instead of passing the configured ones down — or another one
// is refused, so nothing runs on the CPU by mistake.
//
// With provider cuda, Start finds an ORT build with the CUDA provider
// (DiscoverGPU), preloads the CUDA libraries in dependency order, loads the
// NVIDIA driver and counts devices, and fails naming everything missing.
// Start with the zero Runtime lifts the requirement (tests that follow one
// that declared a runtime).
func Start(rt Runtime) error {
	if rt.Provider == "" && rt.Library == "" {
		declared.Lock()
		declared.rt = Runtime{}
		declared.Unlock()
		return nil
	}
	switch rt.Provider = strings.ToLower(rt.Provider); rt.Provider {
	case "cpu":
		if err := Init(rt.Library); err != nil {
			return err
		}
	case "cuda":
		if err := startCUDA(&rt); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown execution provider %q (runtime.provider / --provider: want cpu or cuda)", rt.Provider)
	}
	if rt.Threads < 0 {
		return fmt.Errorf("runtime.threads %d: want ≥ 0 (0: one per core)", rt.Threads)
	}
	if err := rt.Spinning.Validate(); err != nil {
		return err
	}
	declared.Lock()
	declared.rt = rt
	declared.Unlock()
	return nil
}

// Validate refuses anything but auto, on, off and "" (auto).
func (s Spinning) Validate() error {
	switch s {
	case "", SpinAuto, SpinOn, SpinOff:
		return nil
	}
	return fmt.Errorf("--spinning (runtime.spinning) %q: want auto, on or off", string(s))
}

func startCUDA(rt *Runtime) error {
	lib, err := DiscoverGPU(rt.Library)
	if err != nil {
		// Still name the driver and device, so one run says all that is missing.
		st := DriverStatus()
		problems := []string{err.Error()}
		if st.Driver != "" {
			problems = append(problems, st.Driver)
		} else if st.Devices == 0 {
			problems = append(problems, "no CUDA device is visible ("+st.Describe()+")")
		}
		return &StartCUDAError{Problems: problems}
	}
	st, err := prepareCUDA(lib, rt.Device, rt.CUDALibraries)
	if err != nil {
		return err
	}
	if err := Init(lib); err != nil {
		return err
	}
	if err := cudaAvailable(rt.Device); err != nil {
		return &StartCUDAError{Problems: []string{fmt.Sprintf("ONNX Runtime at %s refused the CUDA provider: %v", lib, err)}}
	}
	rt.Library = lib
	declared.Lock()
	declared.cuda = st
	declared.Unlock()
	return nil
}

// Declared is the runtime Start declared (the zero Runtime when none was:
// library use, where Options are taken as given).
func Declared() Runtime {
	declared.Lock()
	defer declared.Unlock()
	return declared.rt
}

// ErrNoRuntimeOptions is wrapped by the refusal of a session created without
// the declared runtime's options.
var ErrNoRuntimeOptions = errors.New("session created without the runtime options")

// checkRuntime refuses session options that do not carry the declared
// runtime's provider and device.
func checkRuntime(label string, o Options) error {
	rt := Declared()
	if rt.Provider == "" {
		return nil
	}
	p := strings.ToLower(o.Provider)
	switch {
	case p == "":
		return fmt.Errorf("load model %s: %w (no execution provider) while this process runs on %s: "+
			"the code creating it must pass the configured ort.Options down (ort.Declared().Options(), as the Session "+
			"field of a trainer's or loader's options)", label, ErrNoRuntimeOptions, rt)
	case p != rt.Provider || p == "cuda" && o.CUDADevice != rt.Device:
		got := Runtime{Provider: p, Device: o.CUDADevice}
		return fmt.Errorf("load model %s: %w: it asks for %s while this process runs on %s", label, ErrNoRuntimeOptions, got, rt)
	}
	return nil
}

// SessionRecord is one session this process created: its label and the
// options it was created with.
type SessionRecord struct {
	Label   string
	Options Options
}

var created struct {
	sync.Mutex
	list  []SessionRecord // the last ones, at most 2·keptSessionRecords
	total int             // every session created
}

// keptSessionRecords bounds the records kept: a process that creates
// sessions in a loop (a library caller's New/Close per experiment) kept one
// record per session it ever created.
const keptSessionRecords = 4096

func recordSession(label string, o Options) {
	created.Lock()
	defer created.Unlock()
	created.list = append(created.list, SessionRecord{Label: label, Options: o})
	created.total++
	if len(created.list) > 2*keptSessionRecords {
		created.list = append([]SessionRecord(nil), created.list[len(created.list)-keptSessionRecords:]...)
	}
}

// SessionCount is the number of sessions created in this process so far: a
// mark for SessionsSince.
func SessionCount() int {
	created.Lock()
	defer created.Unlock()
	return created.total
}

// SessionsSince lists the sessions created after the first mark ones
// (SessionCount's value then), in order, at most the last 4096: tests check
// that each stage's sessions carry the runtime options.
func SessionsSince(mark int) []SessionRecord {
	created.Lock()
	defer created.Unlock()
	kept := created.total - len(created.list) // records dropped before list[0]
	return append([]SessionRecord(nil), created.list[min(len(created.list), max(0, mark-kept)):]...)
}

// DiscoverGPU finds an ONNX Runtime build with the CUDA provider: the
// explicit path, then $ONNXRUNTIME_SHARED_LIBRARY_PATH, then the one
// `tagpr setup --gpu` extracted for the nearest models.lock (from the
// working directory, then from the executable's), then an onnxruntime-gpu
// installed in a Python site-packages.
func DiscoverGPU(explicit string) (string, error) {
	if explicit != "" || os.Getenv(EnvLibraryPath) != "" {
		p, _, err := Discover(explicit)
		return p, err
	}
	var tried []string
	starts := []string{"."}
	if exe, err := os.Executable(); err == nil {
		starts = append(starts, filepath.Dir(exe))
	}
	for _, from := range starts {
		lf, err := lock.Find(from)
		if err != nil {
			continue
		}
		f, err := lock.Load(lf)
		if err != nil {
			return "", err
		}
		dir := f.GPUDir()
		m, err := f.ReadManifest(dir)
		if err != nil {
			tried = append(tried, err.Error())
			continue
		}
		for _, fl := range m.Files {
			if strings.HasPrefix(fl.Name, "libonnxruntime.so.") {
				return filepath.Join(dir, fl.Name), nil
			}
		}
		tried = append(tried, dir+" holds no libonnxruntime.so.*")
	}
	for _, sp := range sitePackages() {
		libs, _ := filepath.Glob(filepath.Join(sp, "onnxruntime", "capi", "libonnxruntime.so.1*"))
		for _, l := range libs {
			if gpuLibraryProblem(l) == "" {
				return l, nil
			}
		}
	}
	tried = append(tried, "no onnxruntime-gpu in Python's site-packages")
	return "", fmt.Errorf("%w: no ONNX Runtime build with the CUDA provider found (%s); run `tagpr setup --gpu` "+
		"(or `make setup-gpu`) on a machine with network, or set %s", ErrLibraryMissing, strings.Join(tried, "; "), EnvLibraryPath)
}
