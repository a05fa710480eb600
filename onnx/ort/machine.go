package ort

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strings"

	"golang.org/x/sys/cpu"
)

// Machine describes what, beside the model and its inputs, decides the
// floats a session computes: the provider, the CPU and the SIMD level ONNX
// Runtime's CPU kernels (MLAS) dispatch on, the intra-op thread count and
// the runtime's version. Two runs that agree on it reproduce each other byte
// for byte; two that differ need not (another SIMD level rounds sums
// differently, and a long training run amplifies that).
func Machine(o Options) string {
	threads := o.IntraOpThreads
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	provider := o.Provider
	if provider == "" {
		provider = "cpu"
	}
	unit := "threads"
	if threads == 1 {
		unit = "thread"
	}
	s := fmt.Sprintf("%s, %s; %s, %d intra-op %s; ONNX Runtime %s", cpuModel(), simdLevel(), provider, threads, unit, Version())
	if provider == "cuda" {
		s += fmt.Sprintf(" (CUDA device %d)", o.CUDADevice)
	}
	return s
}

// cpuModel is the CPU's name from /proc/cpuinfo, or the architecture where
// that is not readable (not Linux, or a CPU that does not name itself).
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			if v = strings.TrimSpace(v); v != "" {
				return v
			}
		}
	}
	return runtime.GOARCH
}

// simdLevel is the widest vector instruction set MLAS can dispatch on.
func simdLevel() string {
	switch runtime.GOARCH {
	case "amd64":
		switch {
		case cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VL:
			return "AVX-512"
		case cpu.X86.HasAVX2 && cpu.X86.HasFMA:
			return "AVX2"
		case cpu.X86.HasAVX:
			return "AVX"
		}
		return "SSE"
	case "arm64":
		if cpu.ARM64.HasSVE {
			return "NEON, SVE"
		}
		return "NEON"
	}
	return runtime.GOARCH
}
