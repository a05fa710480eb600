package ort

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>

// OrtApiBase's layout is fixed by ORT's ABI: two function pointers.
typedef struct {
	const void *(*GetApi)(uint32_t version);
	const char *(*GetVersionString)(void);
} tagprOrtApiBase;

typedef const tagprOrtApiBase *(*tagprGetApiBaseFn)(void);

static const char *tagpr_probe(const char *path, char **err) {
	void *h = dlopen(path, RTLD_LAZY | RTLD_LOCAL);
	if (!h) { *err = dlerror(); return NULL; }
	tagprGetApiBaseFn fn = (tagprGetApiBaseFn)dlsym(h, "OrtGetApiBase");
	if (!fn) { *err = "the library does not export OrtGetApiBase (not an ONNX Runtime library?)"; return NULL; }
	const tagprOrtApiBase *base = fn();
	if (!base || !base->GetVersionString) { *err = "OrtGetApiBase returned nothing"; return NULL; }
	// The handle stays open: the version string lives in the library.
	return base->GetVersionString();
}
*/
import "C"

import (
	"fmt"
	"strconv"
	"strings"
	"unsafe"
)

// MinVersion is the oldest ONNX Runtime whose C API (24) onnxruntime_go v1.27 needs.
const MinVersion = "1.24.0"

// ProbeVersion loads the library at path and returns the ONNX Runtime version
// it reports, without initializing anything.
func ProbeVersion(path string) (string, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var cerr *C.char
	v := C.tagpr_probe(cpath, &cerr)
	if v == nil {
		return "", fmt.Errorf("load ONNX Runtime library %s: %s", path, C.GoString(cerr))
	}
	return C.GoString(v), nil
}

// versionAtLeast compares dotted versions numerically ("1.30.0" >= "1.24.0").
func versionAtLeast(v, min string) bool {
	a, b := strings.Split(v, "."), strings.Split(min, ".")
	for i := 0; i < len(b); i++ {
		var x, y int
		if i < len(a) {
			x, _ = strconv.Atoi(strings.TrimFunc(a[i], func(r rune) bool { return r < '0' || r > '9' }))
		}
		y, _ = strconv.Atoi(b[i])
		if x != y {
			return x > y
		}
	}
	return true
}
