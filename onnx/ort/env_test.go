package ort

import (
	ortgo "github.com/yalue/onnxruntime_go"

	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/onnx/lock"
)

// fakeRuntime compiles a shared library that exports OrtGetApiBase and
// reports the given version, standing in for an old ONNX Runtime build.
func fakeRuntime(t *testing.T, version string) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "fake.c")
	code := `#include <stddef.h>
#include <stdint.h>
static const char *ver(void) { return "` + version + `"; }
static const void *api(uint32_t v) { (void)v; return NULL; }
static struct { const void *(*a)(uint32_t); const char *(*v)(void); } base = { api, ver };
const void *OrtGetApiBase(void) { return &base; }
`
	if err := os.WriteFile(src, []byte(code), 0o644); err != nil {
		t.Fatal(err)
	}
	lib := filepath.Join(dir, "libonnxruntime.so.1")
	out, err := exec.Command("cc", "-shared", "-fPIC", "-o", lib, src).CombinedOutput()
	if err != nil {
		t.Fatalf("compile fake runtime (needs a C compiler, as cgo does): %v\n%s", err, out)
	}
	return lib
}

func TestTooOldRuntimeRefused(t *testing.T) {
	lib := fakeRuntime(t, "1.20.1")
	v, err := ProbeVersion(lib)
	if err != nil || v != "1.20.1" {
		t.Fatalf("ProbeVersion = %q, %v", v, err)
	}
	err = initOnce(lib)
	if err == nil {
		t.Fatal("a 1.20 runtime was accepted")
	}
	for _, want := range []string{"1.20.1", "too old", MinVersion, lib, "make setup"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q does not mention %q", err, want)
		}
	}
}

func TestMissingRuntimeRefusedWithFix(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.so")
	err := initOnce(missing)
	if !errors.Is(err, ErrLibraryMissing) || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), EnvLibraryPath) {
		t.Fatalf("got %v; want ErrLibraryMissing naming %s and the env var", err, missing)
	}
	// A file that is not a shared library at all.
	junk := filepath.Join(t.TempDir(), "junk.so")
	os.WriteFile(junk, []byte("not an ELF file"), 0o644)
	if err := initOnce(junk); err == nil || !strings.Contains(err.Error(), junk) {
		t.Fatalf("junk library: got %v", err)
	}
	// No models.lock anywhere above the directory.
	if _, _, err := FromLockFile(t.TempDir()); !errors.Is(err, ErrLibraryMissing) {
		t.Fatalf("FromLockFile without a lock: %v", err)
	}
}

// initRetryChildEnv makes the test binary run TestInitAfterMissingLibrary's
// body in a process of its own, where Init has not run yet.
const initRetryChildEnv = "TAGPR_ORT_INIT_RETRY_CHILD"

// TestInitAfterMissingLibrary: a first Init that finds no library loads
// nothing, so a later Init that names one (or finds the pinned one) starts
// the runtime instead of repeating the first failure for the process's life.
func TestInitAfterMissingLibrary(t *testing.T) {
	if os.Getenv(initRetryChildEnv) == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestInitAfterMissingLibrary$")
		cmd.Env = append(os.Environ(), initRetryChildEnv+"=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("child: %v\n%s", err, out)
		}
		return
	}
	missing := filepath.Join(t.TempDir(), "nope.so")
	if err := Init(missing); !errors.Is(err, ErrLibraryMissing) {
		t.Fatalf("Init(%s) = %v; want ErrLibraryMissing", missing, err)
	}
	if err := Init(""); err != nil {
		t.Fatalf("Init after a missing library: %v (run `make setup` first)", err)
	}
	if Version() == "" {
		t.Fatal("no version after Init")
	}
}

func TestDiscoveryOrder(t *testing.T) {
	explicit := fakeRuntime(t, "1.30.0")
	fromEnv := fakeRuntime(t, "1.30.0")
	t.Setenv(EnvLibraryPath, fromEnv)
	p, src, err := Discover(explicit)
	if err != nil || p != explicit || src != FromConfig {
		t.Fatalf("explicit: %s %s %v", p, src, err)
	}
	p, src, err = Discover("")
	if err != nil || p != fromEnv || src != FromEnv {
		t.Fatalf("env: %s %s %v", p, src, err)
	}
	t.Setenv(EnvLibraryPath, "")
	p, src, err = Discover("")
	if err != nil || src != FromLock || !strings.HasSuffix(p, "libonnxruntime.so.1") {
		t.Fatalf("lock cache: %s %s %v (run `make setup` first)", p, src, err)
	}
}

func TestLockedRuntimeMismatchRefused(t *testing.T) {
	dir := t.TempDir()
	lib := filepath.Join(dir, ".cache", "ort", "libonnxruntime.so.1")
	os.MkdirAll(filepath.Dir(lib), 0o755)
	os.WriteFile(lib, []byte("pinned bytes"), 0o755)
	f := &lock.File{Path: filepath.Join(dir, lock.FileName)}
	if _, err := f.Pin(thisPlatformRuntimeName(t), lock.Runtime, "", lib); err != nil {
		t.Fatal(err)
	}
	if err := f.Save(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := FromLockFile(dir); err != nil {
		t.Fatalf("intact pinned library refused: %v", err)
	}
	os.WriteFile(lib, []byte("swapped bytes"), 0o755)
	_, _, err := FromLockFile(dir)
	var mm *lock.MismatchError
	if !errors.As(err, &mm) || !strings.Contains(err.Error(), lib) {
		t.Fatalf("swapped library: got %v, want a mismatch naming %s", err, lib)
	}
}

func thisPlatformRuntimeName(t *testing.T) string {
	for _, n := range []string{"onnxruntime-linux-x64", "onnxruntime-linux-arm64"} {
		if lock.ForThisPlatform(lock.Entry{Name: n, Kind: lock.Runtime}) {
			return n
		}
	}
	t.Fatal("no runtime entry name for this platform")
	return ""
}

func TestVersionCompare(t *testing.T) {
	for _, c := range []struct {
		v    string
		want bool
	}{{"1.30.0", true}, {"1.24.0", true}, {"1.23.2", false}, {"2.0.0", true}, {"1.9.0", false}, {"1.24.0-dev", true}} {
		if got := versionAtLeast(c.v, MinVersion); got != c.want {
			t.Errorf("versionAtLeast(%s) = %v", c.v, got)
		}
	}
}

func TestInitLoadsPinnedRuntime(t *testing.T) {
	if err := Init(""); err != nil {
		t.Fatalf("Init: %v", err)
	}
	if !versionAtLeast(Version(), "1.30.0") {
		t.Fatalf("loaded version %q, want the pinned 1.30", Version())
	}
	if ps, err := LibraryProviders(); err != nil || !strings.Contains(strings.Join(ps, ","), "CPUExecutionProvider") {
		t.Fatalf("providers %v, %v", ps, err)
	}
	if _, err := NewTensor([]int64{}, []float32{1}); err == nil {
		t.Fatal("rank-0 tensor accepted")
	}
	if _, err := NewSession([]byte("\x08\x07garbage"), "junk", Options{}); err == nil || !strings.Contains(err.Error(), "junk") {
		t.Fatalf("garbage model: %v", err)
	}
	if _, err := NewSession(nil, "empty", Options{}); err == nil {
		t.Fatal("empty model accepted")
	}
	if _, err := sessionOptions(Options{Provider: "tpu"}); err == nil || !strings.Contains(err.Error(), "tpu") {
		t.Fatalf("unknown provider: %v", err)
	}
	if _, err := sessionOptions(Options{Provider: "cuda"}); err == nil || !strings.Contains(err.Error(), "--provider cuda") {
		t.Fatalf("cuda without a runtime started for it: %v", err)
	}
}

// startAndRunSession starts the runtime and makes and destroys a session
// (the GPT-2 fixture): what every tagpr command does.
func startAndRunSession(t *testing.T) {
	t.Helper()
	if err := Init(""); err != nil {
		t.Fatal(err)
	}
	s, err := NewSessionFromFile(filepath.Join("..", "testdata", "pytorch", "gpt2", "model.onnx"), Declared().Options())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Destroy(); err != nil {
		t.Fatal(err)
	}
}

// Starting the runtime and running a session leave no file in TMPDIR: ORT
// 1.30's telemetry SDK creates an empty mat-debug-PID.log there in every
// process, which Init removes.
func TestInitLeavesNoTraceLogInTempDir(t *testing.T) {
	startAndRunSession(t)
	p := filepath.Join(os.TempDir(), fmt.Sprintf("mat-debug-%d.log", os.Getpid()))
	if _, err := os.Stat(p); err == nil {
		t.Fatalf("%s is left in TMPDIR by this process", p)
	}
}

// telemetryChildEnv makes the test binary run
// TestInitCollectsNoTelemetry's body in a process of its own, with HOME and
// TMPDIR in a fresh folder, where Init has not run yet.
const telemetryChildEnv = "TAGPR_ORT_TELEMETRY_CHILD"

// Starting the runtime and running a session write nothing under HOME: ORT
// 1.30's Linux build otherwise creates a device id and a telemetry event
// database under ~/.cache/Microsoft at every start, queued for upload.
func TestInitCollectsNoTelemetry(t *testing.T) {
	if os.Getenv(telemetryChildEnv) == "" {
		home := t.TempDir()
		cmd := exec.Command(os.Args[0], "-test.run=^TestInitCollectsNoTelemetry$")
		cmd.Env = append(os.Environ(), telemetryChildEnv+"=1", "HOME="+home, "TMPDIR="+home)
		cmd.Env = slices.DeleteFunc(cmd.Env, func(kv string) bool { return strings.HasPrefix(kv, EnvDisableTelemetry+"=") })
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("child: %v\n%s", err, out)
		}
		var left []string
		filepath.WalkDir(home, func(p string, d fs.DirEntry, err error) error {
			if err == nil && p != home && !strings.HasPrefix(d.Name(), "go-build") {
				left = append(left, strings.TrimPrefix(p, home))
			}
			return nil
		})
		if len(left) > 0 {
			t.Fatalf("the runtime left %v in a fresh HOME; want nothing (%s=1)", left, EnvDisableTelemetry)
		}
		return
	}
	startAndRunSession(t)
}

func TestSessionOptionsApply(t *testing.T) {
	if err := Init(""); err != nil {
		t.Fatal(err)
	}
	prefix := filepath.Join(t.TempDir(), "prof")
	so, err := sessionOptions(Options{NoMemArena: true, ProfilePrefix: prefix, IntraOpThreads: 1, InterOpThreads: 1, OptLevel: "basic",
		ConfigEntries: map[string]string{SpinKey: "0"}})
	if err != nil {
		t.Fatal(err)
	}
	defer so.Destroy()
	if v, err := so.GetSessionConfigEntry(SpinKey); err != nil || v != "0" {
		t.Fatalf("config entry not applied: %q %v", v, err)
	}
	if _, err := sessionOptions(Options{OptLevel: "fastest"}); err == nil || !strings.Contains(err.Error(), "fastest") {
		t.Fatalf("unknown optimization level: %v", err)
	}
}

// The signature scan agrees with ORT's own listing on the PyTorch exports
// (inputs, outputs, dtypes and symbolic dims), from bytes and from the file.
func TestModelSignatureMatchesORT(t *testing.T) {
	if err := Init(""); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"gpt2", "llama"} {
		path := filepath.Join("..", "testdata", "pytorch", name, "model.onnx")
		wantIn, wantOut, err := ortgo.GetInputOutputInfo(path)
		if err != nil {
			t.Fatal(err)
		}
		fromFile, fromFileOut, err := modelFileIO(path, path)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := os.ReadFile(path)
		fromBytes, fromBytesOut, err := modelIO(data, path)
		if err != nil {
			t.Fatal(err)
		}
		for _, got := range [][2][]IOInfo{{fromFile, fromFileOut}, {fromBytes, fromBytesOut}} {
			if fmt.Sprint(got[0]) != fmt.Sprint(wantIn) || fmt.Sprint(got[1]) != fmt.Sprint(wantOut) {
				t.Fatalf("%s: signature\n%v\n%v\nORT says\n%v\n%v", name, got[0], got[1], wantIn, wantOut)
			}
		}
	}
	if _, _, err := modelIO([]byte{0x3a, 0xff}, "cut"); err == nil || !strings.Contains(err.Error(), "cut") {
		t.Fatalf("truncated model: %v", err)
	}
	empty := filepath.Join(t.TempDir(), "empty.onnx")
	os.WriteFile(empty, nil, 0o644)
	if _, err := NewSessionFromFile(empty, Options{}); err == nil {
		t.Fatal("empty model file accepted")
	}
}
