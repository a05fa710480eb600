package ort

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	ortgo "github.com/yalue/onnxruntime_go"

	"github.com/tagpr/tagpr/onnx/lock"
)

// EnvLibraryPath is the environment variable a user sets to use their own
// ONNX Runtime build (for example one with the CUDA provider).
const EnvLibraryPath = "ONNXRUNTIME_SHARED_LIBRARY_PATH"

// EnvDisableTelemetry is ONNX Runtime's opt-out of the telemetry its Linux
// and macOS builds collect since 1.29: at every start a device id and an
// event database (executable path, OS, providers, run counts) under
// ~/.cache/Microsoft/DeveloperTools/.onnxruntime, queued for upload to
// Microsoft. Init sets it to 1 unless the user set it (any value: theirs
// holds, and "0" leaves ORT's telemetry on), since a training job's machine
// should not report home by default.
const EnvDisableTelemetry = "ORT_DISABLE_TELEMETRY"

// LibrarySource says how the runtime library was found.
type LibrarySource string

const (
	FromConfig LibrarySource = "flag/config"
	FromEnv    LibrarySource = "env " + EnvLibraryPath
	FromLock   LibrarySource = lock.FileName + " cache"
)

// ErrLibraryMissing is wrapped by every "no library found" error.
var ErrLibraryMissing = errors.New("ONNX Runtime library not found")

const fixHint = "run `make setup` (or `tagpr setup`) to fetch the pinned ONNX Runtime 1.30 into .cache/, " +
	"or set " + EnvLibraryPath + " / the runtime.library config key to a libonnxruntime.so of version >= " + MinVersion

// Discover finds the runtime library in the order: explicit path (flag or
// config) → $ONNXRUNTIME_SHARED_LIBRARY_PATH → the models.lock cache found
// from the working directory upwards → the one found from the executable's
// directory upwards (so bin/tagpr works from any directory). A library from
// a lock cache is verified against its pin.
func Discover(explicit string) (string, LibrarySource, error) {
	if explicit != "" {
		return checkFile(explicit, FromConfig)
	}
	if p := os.Getenv(EnvLibraryPath); p != "" {
		return checkFile(p, FromEnv)
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", "", err
	}
	p, src, err := FromLockFile(wd)
	if errors.Is(err, ErrLibraryMissing) {
		// Run from elsewhere (another project with its own models.lock, or
		// none): the checkout the binary was built in has the pinned runtime.
		if exe, eerr := os.Executable(); eerr == nil {
			if p2, src2, err2 := FromLockFile(filepath.Dir(exe)); err2 == nil {
				return p2, src2, nil
			}
		}
	}
	return p, src, err
}

// FromLockFile returns the pinned runtime library for this platform from the
// models.lock nearest to dir, verified.
func FromLockFile(dir string) (string, LibrarySource, error) {
	lf, err := lock.Find(dir)
	if err != nil {
		return "", "", fmt.Errorf("%w: no flag/config path, %s unset, and %v; %s", ErrLibraryMissing, EnvLibraryPath, err, fixHint)
	}
	f, err := lock.Load(lf)
	if err != nil {
		return "", "", err
	}
	for _, e := range f.Entries {
		if e.Kind != lock.Runtime || !lock.ForThisPlatform(e) {
			continue
		}
		p := f.Abs(e)
		if _, err := os.Stat(p); err != nil {
			return "", "", fmt.Errorf("%w: %s pins %s at %s, which is not there; %s", ErrLibraryMissing, lf, e.Name, p, fixHint)
		}
		if err := f.Verify(e); err != nil {
			return "", "", fmt.Errorf("runtime library: %w", err)
		}
		return p, FromLock, nil
	}
	return "", "", fmt.Errorf("%w: %s pins no runtime for %s/%s; %s", ErrLibraryMissing, lf, runtime.GOOS, runtime.GOARCH, fixHint)
}

func checkFile(p string, src LibrarySource) (string, LibrarySource, error) {
	if _, err := os.Stat(p); err != nil {
		return "", "", fmt.Errorf("%w: %s from %s: %v; %s", ErrLibraryMissing, p, src, err, fixHint)
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", "", err
	}
	return abs, src, nil
}

var env struct {
	sync.Mutex
	path    string
	version string
	err     error
	done    bool
}

// Init loads the runtime library (found with Discover(explicit)) and creates
// the process-wide environment. Once a library was loaded, later calls return
// that call's result, and an explicit path that differs from the loaded one is
// an error; a call that found no library (ErrLibraryMissing: nothing loaded)
// leaves the next one free to name it.
func Init(explicit string) error {
	env.Lock()
	defer env.Unlock()
	if env.done {
		if env.err == nil && explicit != "" {
			if abs, _ := filepath.Abs(explicit); abs != env.path {
				return fmt.Errorf("ONNX Runtime already initialized from %s; cannot switch to %s in one process", env.path, explicit)
			}
		}
		return env.err
	}
	err := initOnce(explicit)
	if errors.Is(err, ErrLibraryMissing) {
		return err
	}
	env.done, env.err = true, err
	return err
}

func initOnce(explicit string) error {
	path, src, err := Discover(explicit)
	if err != nil {
		return err
	}
	v, err := ProbeVersion(path)
	if err != nil {
		return fmt.Errorf("%w (found via %s); %s", err, src, fixHint)
	}
	if !versionAtLeast(v, MinVersion) {
		return fmt.Errorf("ONNX Runtime %s at %s (via %s) is too old: tagpr needs >= %s (C API 24); %s", v, path, src, MinVersion, fixHint)
	}
	// ORT reads the opt-out once, as its environment starts: it must be in
	// the process's environment before (and children inherit it: the
	// onnxruntime-Python peers the benchmarks start).
	if _, set := os.LookupEnv(EnvDisableTelemetry); !set {
		if err := os.Setenv(EnvDisableTelemetry, "1"); err != nil {
			return fmt.Errorf("set %s: %w", EnvDisableTelemetry, err)
		}
	}
	ortgo.SetSharedLibraryPath(path)
	if err := ortgo.InitializeEnvironment(ortgo.WithLogLevelError()); err != nil {
		return fmt.Errorf("initialize ONNX Runtime %s from %s: %w", v, path, err)
	}
	if err := initCAPI(path); err != nil {
		return err
	}
	removeTraceLog()
	env.path, env.version = path, v
	return nil
}

// removeTraceLog deletes the empty $TMPDIR/mat-debug-PID.log that the
// telemetry SDK inside ONNX Runtime 1.30's Linux build creates when the
// environment starts and never removes: without this every tagpr command and
// test binary left one more file in TMPDIR, forever. The SDK writes to it
// only its own errors (its event database locked by another process), which
// tagpr has no use for; a log that already holds some is left alone.
func removeTraceLog() {
	p := filepath.Join(os.TempDir(), fmt.Sprintf("mat-debug-%d.log", os.Getpid()))
	if st, err := os.Lstat(p); err == nil && st.Mode().IsRegular() && st.Size() == 0 {
		os.Remove(p)
	}
}

// MustInit is for tests and benchmarks: it initializes or panics with the fix.
func MustInit() {
	if err := Init(""); err != nil {
		panic(err)
	}
}

// Version is the loaded runtime's version ("" before Init).
func Version() string {
	env.Lock()
	defer env.Unlock()
	return env.version
}

// LibraryPath is the loaded runtime library's path ("" before Init).
func LibraryPath() string {
	env.Lock()
	defer env.Unlock()
	return env.path
}

// cudaAvailable reports whether the loaded library accepts the CUDA provider
// for device (it loads the provider library and its CUDA dependencies).
func cudaAvailable(device int) error {
	so, err := ortgo.NewSessionOptions()
	if err != nil {
		return err
	}
	defer so.Destroy()
	return appendCUDA(so, device)
}

func appendCUDA(so *ortgo.SessionOptions, device int) error {
	opts, err := ortgo.NewCUDAProviderOptions()
	if err != nil {
		return err
	}
	defer opts.Destroy()
	// TF32 off: MatMuls in true fp32, so CUDA matches the CPU to fp32
	// precision (ORT's CUDA provider turns TF32 on by default on Ampere+).
	if err := opts.Update(map[string]string{"device_id": fmt.Sprint(device), "use_tf32": "0"}); err != nil {
		return err
	}
	return so.AppendExecutionProviderCUDA(opts)
}
