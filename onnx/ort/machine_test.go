package ort

import (
	"strings"
	"testing"
)

// Machine names the CPU, its SIMD level, the threads a session runs on and
// the loaded runtime's version: what a result's reproduction depends on.
func TestMachine(t *testing.T) {
	MustInit()
	got := Machine(Options{IntraOpThreads: 3})
	for _, want := range []string{cpuModel(), simdLevel(), "cpu, 3 intra-op threads", "ONNX Runtime " + Version()} {
		if want == "" || !strings.Contains(got, want) {
			t.Errorf("Machine = %q, want it to contain %q", got, want)
		}
	}
	if Version() == "" {
		t.Fatal("no runtime version after Init")
	}
	if cuda := Machine(Options{Provider: "cuda", CUDADevice: 1}); !strings.Contains(cuda, "cuda") || !strings.Contains(cuda, "CUDA device 1") {
		t.Errorf("Machine for cuda = %q", cuda)
	}
}
