package ort

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// lift undoes a test's Start, so later tests see no declared runtime.
func lift(t *testing.T) {
	t.Cleanup(func() { Start(Runtime{}) })
}

// Once a runtime is declared, a session whose Options do not carry it —
// none at all, or another provider — is refused; one built from
// rt.Options() is created and recorded with those options.
func TestSessionsMustCarryTheDeclaredRuntime(t *testing.T) {
	model := filepath.Join("..", "testdata", "pytorch", "gpt2", "model.onnx")
	rt := Runtime{Provider: "CPU", Threads: 1}
	if err := Start(rt); err != nil {
		t.Fatal(err)
	}
	lift(t)
	if got := Declared(); got.Provider != "cpu" || got.Threads != 1 {
		t.Fatalf("declared %+v", got)
	}
	before := SessionCount()
	_, err := NewSessionFromFile(model, Options{})
	if !errors.Is(err, ErrNoRuntimeOptions) || !strings.Contains(err.Error(), model) || !strings.Contains(err.Error(), "pass the configured ort.Options down (ort.Declared().Options()") {
		t.Fatalf("session without runtime options: %v", err)
	}
	if _, err := NewSessionFromFile(model, Options{Provider: "cuda"}); !errors.Is(err, ErrNoRuntimeOptions) || !strings.Contains(err.Error(), "runs on cpu") {
		t.Fatalf("session for another provider: %v", err)
	}
	s, err := NewSessionFromFile(model, Declared().Options())
	if err != nil {
		t.Fatal(err)
	}
	s.Destroy()
	recs := SessionsSince(before)
	if len(recs) != 1 || recs[0].Label != model || recs[0].Options.Provider != "cpu" || recs[0].Options.IntraOpThreads != 1 {
		t.Fatalf("recorded sessions %+v, want the one created with the runtime's options", recs)
	}
	if err := Start(Runtime{Provider: "tpu"}); err == nil || !strings.Contains(err.Error(), "tpu") {
		t.Fatalf("unknown provider: %v", err)
	}
	// Lifted, options are taken as given again (library use).
	Start(Runtime{})
	if s, err := NewSessionFromFile(model, Options{}); err != nil {
		t.Fatal(err)
	} else {
		s.Destroy()
	}
}

// cLib compiles a small shared library (no dependencies) named name in dir.
func cLib(t *testing.T, dir, name string) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "lib.c")
	os.WriteFile(src, []byte("int tagpr_fake_"+strings.NewReplacer(".", "_", "-", "_").Replace(name)+"(void) { return 1; }\n"), 0o644)
	out := filepath.Join(dir, name)
	if b, err := exec.Command("cc", "-shared", "-fPIC", "-Wl,-soname,"+name, "-o", out, src).CombinedOutput(); err != nil {
		t.Fatalf("compile %s: %v\n%s", name, err, b)
	}
	return out
}

// fakeGPULayout is a folder laid out like `tagpr setup --gpu` leaves it: the
// real (CPU) ORT library under the GPU build's name, a provider library
// beside it, and stand-ins for the CUDA libraries.
func fakeGPULayout(t *testing.T, withLibs bool) string {
	t.Helper()
	cpu, _, err := Discover("")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	lib := filepath.Join(dir, "libonnxruntime.so.1.31.1")
	if err := os.Symlink(cpu, lib); err != nil {
		t.Fatal(err)
	}
	cLib(t, dir, CUDAProviderLibrary)
	if withLibs {
		for _, l := range cudaLibs {
			cLib(t, dir, l.Soname)
		}
	}
	return lib
}

// Without a GPU, --provider cuda fails at start naming what is missing, and
// creates nothing; here the machine has no NVIDIA driver.
func TestCUDARefusedWithoutDriverNamingWhatIsMissing(t *testing.T) {
	if DriverStatus().Driver == "" {
		t.Fatal("this test expects a machine without the NVIDIA driver (libcuda.so.1); on a GPU machine run scripts/gpu/check.sh instead")
	}
	before := SessionCount()
	// The CPU-only library: the build and the driver are both named.
	cpu, _, _ := Discover("")
	err := Start(Runtime{Provider: "cuda", Library: cpu})
	var se *StartCUDAError
	if !errors.As(err, &se) {
		t.Fatalf("Start(cuda) on a CPU-only library: %v", err)
	}
	for _, want := range []string{"CPU-only", CUDAProviderLibrary, "tagpr setup --gpu", "libcuda.so.1", "no NVIDIA driver"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal lacks %q:\n%v", want, err)
		}
	}
	// A GPU build with every CUDA library present: only the driver is missing.
	err = Start(Runtime{Provider: "cuda", Library: fakeGPULayout(t, true)})
	if !errors.As(err, &se) || len(se.Problems) != 1 || !strings.Contains(se.Problems[0], "libcuda.so.1") {
		t.Fatalf("GPU build without a driver: %v", err)
	}
	if Declared().Provider == "cuda" || SessionCount() != before {
		t.Fatal("a failed Start declared cuda or created sessions")
	}
	// Nothing sets up CUDA behind the caller's back.
	if _, err := sessionOptions(Options{Provider: "cuda"}); err == nil {
		t.Fatal("a cuda session option was accepted without Start")
	}
}

// The CUDA libraries are found in the ORT library's folder first, then in
// extra folders, and each one that does not load is named with its package.
func TestCUDALibrariesFoundAndPreloadedInOrder(t *testing.T) {
	ortLib := fakeGPULayout(t, false)
	extra := t.TempDir()
	for _, l := range cudaLibs[:3] {
		cLib(t, extra, l.Soname)
	}
	cLib(t, filepath.Dir(ortLib), "libcudart.so.13") // the ORT folder wins over extra
	found := findCUDALibs(cudaSearchDirs(ortLib, []string{extra}))
	if found["libcudart.so.13"] != filepath.Join(filepath.Dir(ortLib), "libcudart.so.13") || found["libcublas.so.13"] != filepath.Join(extra, "libcublas.so.13") {
		t.Fatalf("found %v", found)
	}
	found["libcurand.so.10"] = filepath.Join(extra, "missing", "libcurand.so.10")
	found["libcudnn.so.9"] = filepath.Join(extra, "missing", "libcudnn.so.9")
	loaded, problems := preloadCUDA(found)
	if len(loaded) != 3 || len(problems) != 2 {
		t.Fatalf("loaded %v, problems %v", loaded, problems)
	}
	if !strings.Contains(problems[0], "libcurand.so.10") || !strings.Contains(problems[0], "nvidia-curand") || !strings.Contains(problems[1], "nvidia-cudnn-cu13") {
		t.Fatalf("problems %v", problems)
	}
	if s := CUDAProviderStatus(ortLib); !strings.Contains(s, "present") {
		t.Fatalf("provider status %q", s)
	}
}

// runtime.spinning: on and off set ORT's entry on every session's options
// (read back from ORT's own session options), and a use's default
// (DefaultSpinning) applies only when the runtime leaves it (auto), without
// touching the caller's map; anything else is refused naming the key.
func TestSpinningReachesSessionOptions(t *testing.T) {
	if err := Init(""); err != nil {
		t.Fatal(err)
	}
	entry := func(o Options) string {
		so, err := sessionOptions(o)
		if err != nil {
			t.Fatal(err)
		}
		defer so.Destroy()
		v, err := so.GetSessionConfigEntry(SpinKey)
		if err != nil {
			return "unset"
		}
		return v
	}
	for _, c := range []struct {
		spin            Spinning
		runtime, useOff string // the entry from Options(), and after DefaultSpinning(false)
		useOn           string // after DefaultSpinning(true)
	}{
		{SpinAuto, "unset", "0", "1"},
		{"", "unset", "0", "1"},
		{SpinOn, "1", "1", "1"},
		{SpinOff, "0", "0", "0"},
	} {
		o := Runtime{Provider: "cpu", Spinning: c.spin}.Options()
		before := len(o.ConfigEntries)
		if got := entry(o); got != c.runtime {
			t.Errorf("spinning %q: runtime options give %s, want %s", c.spin, got, c.runtime)
		}
		if got := entry(o.DefaultSpinning(false)); got != c.useOff {
			t.Errorf("spinning %q, a use defaulting to off: %s, want %s", c.spin, got, c.useOff)
		}
		if got := entry(o.DefaultSpinning(true)); got != c.useOn {
			t.Errorf("spinning %q, a use defaulting to on: %s, want %s", c.spin, got, c.useOn)
		}
		if len(o.ConfigEntries) != before {
			t.Errorf("spinning %q: DefaultSpinning changed the caller's entries: %v", c.spin, o.ConfigEntries)
		}
	}
	lift(t)
	err := Start(Runtime{Provider: "cpu", Spinning: "sometimes"})
	if err == nil || !strings.Contains(err.Error(), `runtime.spinning) "sometimes": want auto, on or off`) {
		t.Fatalf("unknown spinning: %v", err)
	}
}

// The session records are bounded: a process creating sessions in a loop
// keeps the last ones, not one record per session it ever created, and
// SessionsSince still lists the ones after a mark, in order.
func TestSessionRecordsAreBounded(t *testing.T) {
	start := SessionCount()
	for i := 0; i < 3*keptSessionRecords; i++ {
		recordSession(fmt.Sprint("loop ", i), Options{})
	}
	if got := SessionCount(); got != start+3*keptSessionRecords {
		t.Fatalf("SessionCount %d, want %d", got, start+3*keptSessionRecords)
	}
	created.Lock()
	n := len(created.list)
	created.Unlock()
	if n > 2*keptSessionRecords {
		t.Fatalf("%d session records kept after %d sessions, want at most %d", n, 3*keptSessionRecords, 2*keptSessionRecords)
	}
	mark := SessionCount() - 3
	recordSession("after the mark", Options{})
	recs := SessionsSince(mark)
	if len(recs) != 4 || recs[0].Label != fmt.Sprint("loop ", 3*keptSessionRecords-3) || recs[3].Label != "after the mark" {
		t.Fatalf("SessionsSince(mark): %v", recs)
	}
}
