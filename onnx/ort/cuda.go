package ort

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdlib.h>

// tagpr_preload loads a library for the whole process (RTLD_GLOBAL), as
// onnxruntime's Python package does with ctypes before ORT loads its CUDA
// provider, whose dependencies then resolve to the copies already loaded.
static const char *tagpr_preload(const char *path) {
	return dlopen(path, RTLD_NOW | RTLD_GLOBAL) ? NULL : dlerror();
}

typedef int (*tagpr_cu_int_fn)(unsigned int);
typedef int (*tagpr_cu_ptr_fn)(int *);
typedef int (*tagpr_cu_str_fn)(int, const char **);

// tagpr_cuda_driver loads the NVIDIA driver library and counts the devices
// it sees (after CUDA_VISIBLE_DEVICES). It returns the CUresult of the first
// failing call (0: success), or -1 when the library or a symbol is missing.
static int tagpr_cuda_driver(int *version, int *count, const char **err) {
	void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_GLOBAL);
	if (!h) { *err = dlerror(); return -1; }
	tagpr_cu_int_fn init = (tagpr_cu_int_fn)dlsym(h, "cuInit");
	tagpr_cu_ptr_fn ver = (tagpr_cu_ptr_fn)dlsym(h, "cuDriverGetVersion");
	tagpr_cu_ptr_fn cnt = (tagpr_cu_ptr_fn)dlsym(h, "cuDeviceGetCount");
	tagpr_cu_str_fn name = (tagpr_cu_str_fn)dlsym(h, "cuGetErrorString");
	if (!init || !ver || !cnt) { *err = "libcuda.so.1 lacks cuInit/cuDriverGetVersion/cuDeviceGetCount"; return -1; }
	int rc = ver(version);
	if (rc == 0) rc = init(0);
	if (rc == 0) rc = cnt(count);
	if (rc != 0 && name) name(rc, err);
	return rc;
}
*/
import "C"

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"unsafe"
)

// cudaLib is one shared library the CUDA provider needs, in the order they
// are preloaded: each after the ones it links against (cuBLAS after
// cuBLASLt), cuDNN last (it loads its own sub-libraries from its folder).
type cudaLib struct {
	Soname  string
	Package string // the PyPI package that ships it
}

var cudaLibs = []cudaLib{
	{"libcudart.so.13", "nvidia-cuda-runtime"},
	{"libcublasLt.so.13", "nvidia-cublas"},
	{"libcublas.so.13", "nvidia-cublas"},
	{"libcurand.so.10", "nvidia-curand"},
	{"libcudnn.so.9", "nvidia-cudnn-cu13"},
}

// CUDAProviderLibrary is the file beside libonnxruntime that holds ORT's
// CUDA execution provider; a build without it is CPU-only.
const CUDAProviderLibrary = "libonnxruntime_providers_cuda.so"

// CUDAStatus is what this machine offers the CUDA provider.
type CUDAStatus struct {
	Driver        string            // "" when libcuda.so.1 loaded
	DriverVersion int               // e.g. 13000 for CUDA 13.0
	Devices       int               // visible devices
	Libraries     map[string]string // soname → path it is loaded from ("" when not found)
}

// DriverStatus loads the NVIDIA driver (if present) and counts the visible
// devices. It does not touch ONNX Runtime.
func DriverStatus() CUDAStatus {
	var ver, n C.int
	var cerr *C.char
	rc := C.tagpr_cuda_driver(&ver, &n, &cerr)
	st := CUDAStatus{DriverVersion: int(ver), Devices: int(n)}
	switch {
	case rc == -1:
		st.Driver = "the NVIDIA driver library libcuda.so.1 is not loadable (" + C.GoString(cerr) + "): this machine has no NVIDIA driver"
		st.Devices = 0
	case rc != 0:
		st.Driver = fmt.Sprintf("the NVIDIA driver (libcuda.so.1) failed to start: CUresult %d (%s)", int(rc), C.GoString(cerr))
		st.Devices = 0
	}
	return st
}

// Describe is one line for `tagpr version`.
func (s CUDAStatus) Describe() string {
	switch {
	case s.Driver != "":
		return "no device visible: " + s.Driver
	case s.Devices == 0:
		return fmt.Sprintf("driver CUDA %d.%d, no device visible (CUDA_VISIBLE_DEVICES=%q)", s.DriverVersion/1000, s.DriverVersion%1000/10, os.Getenv("CUDA_VISIBLE_DEVICES"))
	}
	return fmt.Sprintf("driver CUDA %d.%d, %d device(s) visible", s.DriverVersion/1000, s.DriverVersion%1000/10, s.Devices)
}

// cudaSearchDirs are the folders searched for the CUDA libraries, in order:
// the ORT library's own folder (where `tagpr setup --gpu` extracts them),
// the folders in extra (Runtime.CUDALibraries), then the nvidia-* Python
// packages of every site-packages found. The system's own paths come last,
// by loading the bare soname.
func cudaSearchDirs(ortLib string, extra []string) []string {
	dirs := []string{filepath.Dir(ortLib)}
	dirs = append(dirs, extra...)
	for _, sp := range sitePackages() {
		for _, sub := range []string{"cu13/lib", "cudnn/lib", "cublas/lib", "cuda_runtime/lib", "curand/lib"} {
			dirs = append(dirs, filepath.Join(sp, "nvidia", sub))
		}
	}
	return dirs
}

var sitePackagesOnce = sync.OnceValue(findSitePackages)

func sitePackages() []string { return sitePackagesOnce() }

// findSitePackages lists Python package folders: the active virtualenv or
// conda env, what python3 itself reports, and the usual system places.
func findSitePackages() []string {
	var roots []string
	for _, env := range []string{"VIRTUAL_ENV", "CONDA_PREFIX"} {
		if p := os.Getenv(env); p != "" {
			g, _ := filepath.Glob(filepath.Join(p, "lib", "python3*", "site-packages"))
			roots = append(roots, g...)
		}
	}
	if py, err := exec.LookPath("python3"); err == nil {
		out, err := exec.Command(py, "-c", "import site,sys;print('\\n'.join(site.getsitepackages()+[site.getusersitepackages()]))").Output()
		if err == nil {
			roots = append(roots, strings.Fields(string(out))...)
		}
	}
	for _, pat := range []string{"/usr/local/lib/python3*/dist-packages", "/usr/local/lib/python3*/site-packages",
		"/usr/lib/python3/dist-packages", "/usr/lib/python3*/site-packages", "/opt/conda/lib/python3*/site-packages"} {
		g, _ := filepath.Glob(pat)
		sort.Sort(sort.Reverse(sort.StringSlice(g)))
		roots = append(roots, g...)
	}
	seen := map[string]bool{}
	var out []string
	for _, r := range roots {
		if st, err := os.Stat(r); err == nil && st.IsDir() && !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	return out
}

// findCUDALibs locates each CUDA library: the first search folder holding
// it, else "" (left to the system's own search when preloading).
func findCUDALibs(dirs []string) map[string]string {
	found := map[string]string{}
	for _, l := range cudaLibs {
		found[l.Soname] = ""
		for _, d := range dirs {
			p := filepath.Join(d, l.Soname)
			if st, err := os.Stat(p); err == nil && !st.IsDir() {
				found[l.Soname] = p
				break
			}
		}
	}
	return found
}

// preloadCUDA loads every CUDA library, in dependency order, from where
// findCUDALibs found it or else by soname through the system's search. It
// returns one problem per library that did not load, naming its package.
func preloadCUDA(found map[string]string) (loaded map[string]string, problems []string) {
	loaded = map[string]string{}
	for _, l := range cudaLibs {
		target := found[l.Soname]
		if target == "" {
			target = l.Soname
		}
		ct := C.CString(target)
		msg := C.tagpr_preload(ct)
		C.free(unsafe.Pointer(ct))
		if msg != nil {
			problems = append(problems, fmt.Sprintf("CUDA library %s (PyPI %s) did not load: %s", l.Soname, l.Package, C.GoString(msg)))
			continue
		}
		loaded[l.Soname] = target
	}
	return loaded, problems
}

// gpuLibraryProblem says why the ORT library at path cannot run CUDA
// sessions ("" when the provider library is beside it).
func gpuLibraryProblem(path string) string {
	if _, err := os.Stat(filepath.Join(filepath.Dir(path), CUDAProviderLibrary)); err != nil {
		return fmt.Sprintf("ONNX Runtime at %s is CPU-only (no %s beside it): run `tagpr setup --gpu` "+
			"(or `make setup-gpu`), or point %s at an onnxruntime-gpu build", path, CUDAProviderLibrary, EnvLibraryPath)
	}
	return ""
}

// CUDAProviderStatus is one line for `tagpr version`: whether the library
// at ortLib can run CUDA sessions, and where the CUDA libraries are found.
func CUDAProviderStatus(ortLib string) string {
	if p := gpuLibraryProblem(ortLib); p != "" {
		return "not in this library: " + p
	}
	var missing []string
	for soname, path := range findCUDALibs(cudaSearchDirs(ortLib, nil)) {
		if path == "" {
			missing = append(missing, soname)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Sprintf("%s present; not found in its folder or Python's nvidia-* packages (left to the system's library path): %s",
			CUDAProviderLibrary, strings.Join(missing, ", "))
	}
	return CUDAProviderLibrary + " present, CUDA 13 libraries found"
}

// StartCUDAError lists everything that keeps the CUDA provider from
// starting, so one run names all that is missing.
type StartCUDAError struct{ Problems []string }

func (e *StartCUDAError) Error() string {
	return "--provider cuda cannot start on this machine:\n  - " + strings.Join(e.Problems, "\n  - ")
}

// prepareCUDA checks the driver, the device, the ORT build and the CUDA
// libraries for device, and preloads the libraries. It runs before ORT
// creates its first CUDA session and fails naming what is missing.
func prepareCUDA(ortLib string, device int, extraDirs []string) (CUDAStatus, error) {
	var problems []string
	if p := gpuLibraryProblem(ortLib); p != "" {
		problems = append(problems, p)
	}
	st := DriverStatus()
	switch {
	case st.Driver != "":
		problems = append(problems, st.Driver)
	case st.Devices == 0:
		problems = append(problems, "no CUDA device is visible ("+st.Describe()+")")
	case device < 0 || device >= st.Devices:
		problems = append(problems, fmt.Sprintf("CUDA device %d requested, %d visible", device, st.Devices))
	}
	found := findCUDALibs(cudaSearchDirs(ortLib, extraDirs))
	loaded, libProblems := preloadCUDA(found)
	st.Libraries = loaded
	if len(libProblems) > 0 {
		libProblems[len(libProblems)-1] += "; `tagpr setup --gpu` fetches the CUDA 13 libraries, or install the nvidia-* packages named here"
	}
	problems = append(problems, libProblems...)
	if len(problems) > 0 {
		return st, &StartCUDAError{Problems: problems}
	}
	return st, nil
}
